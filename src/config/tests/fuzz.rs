//! Durations and signals as options and variables give them: no panic;
//! a refusal is a usage error (exit code 2) on one line naming the option;
//! an accepted duration is at most `MAX_DURATION` and prints back to
//! itself, an accepted signal can be caught.
use proptest::prelude::*;

use super::*;
use crate::error::USAGE;
use crate::fuzz_tests::{config, one_line, text};

#[rustfmt::skip]
pub(super) const DURATION_TOKENS: &[&str] = &[
    "0", "1", "5", "500", "0.25", "1e3", "1e-9", "31536000", "31536001", "18446744073709551615", ".", "e",
    "ms", "s", "m", "h", "d", "w", "y", "us", "ns", "min", "sec", "years", "days", " ", "-", "+", "inf",
];

#[rustfmt::skip]
pub(super) const SIGNAL_TOKENS: &[&str] = &[
    "SIG", "sig", "TERM", "term", "KILL", "STOP", "USR1", "HUP", "QUIT", "RTMIN", "WINCH", "0", "9",
    "15", "19", "31", "64", "-1", "4294967311",
];

pub(super) fn check_error(error: &Error, names: &[&str]) -> Result<(), TestCaseError> {
    prop_assert_eq!(error.code, USAGE, "{}", error);
    prop_assert!(one_line(&error.message), "{}", error);
    let named = names.is_empty() || names.iter().any(|name| error.message.contains(name));
    prop_assert!(named, "{} names none of {:?}", error, names);
    Ok(())
}

fn check_duration(text: &str) -> Result<(), TestCaseError> {
    match parse_duration("interval", text) {
        Ok(duration) => {
            prop_assert!(duration <= MAX_DURATION);
            if let Ok(secs) = text.trim().parse::<u64>() {
                prop_assert_eq!(duration, Duration::from_secs(secs));
            }
            let humane = humantime::format_duration(duration).to_string();
            prop_assert_eq!(parse_duration("interval", &humane), Ok(duration), "as {}", humane);
        }
        Err(error) => {
            let named = format!("invalid --interval value {:?}: ", text.trim());
            prop_assert!(error.message.starts_with(&named), "{}", error);
            check_error(&error, &[])?;
        }
    }
    Ok(())
}

fn check_signal(text: &str) -> Result<(), TestCaseError> {
    match parse_signal("signal-on-hup", text) {
        Ok(signal) => {
            prop_assert!(!matches!(signal, Signal::SIGKILL | Signal::SIGSTOP));
            prop_assert_eq!(parse_signal("x", signal.as_str()), Ok(signal));
            prop_assert_eq!(parse_signal("x", &(signal as i32).to_string()), Ok(signal));
        }
        Err(error) => check_error(&error, &["--signal-on-hup"])?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_parse_duration(text in text(DURATION_TOKENS)) {
        check_duration(&text)?;
    }

    #[test]
    fn fuzz_parse_duration_any(text in any::<String>()) {
        check_duration(&text)?;
    }

    #[test]
    fn fuzz_parse_signal(text in text(SIGNAL_TOKENS)) {
        check_signal(&text)?;
    }
}
