//! Random `handover drill` command lines: no panic; the split sends every
//! argument to one side, in order; the drill's own options parse or fail
//! with an error that renders; when both sides' options parse, the
//! supervisor got everything from `--` on.
use std::os::unix::ffi::OsStringExt;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::fuzz_tests::{config, text};

/// The drill's own long options and some of the supervisor's.
static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut words: Vec<String> = OWN.iter().map(|(name, _)| format!("--{name}")).collect();
    words.extend(OWN.iter().map(|(name, _)| format!("--{name}=")));
    let special = ["--", "--port", "--interval=1", "--workers", "--restart", "-restarts", "--rest", "prog"];
    words.extend(special.map(str::to_owned));
    words
});

const VALUES: &[&str] = &[
    "3",
    "0",
    "-1",
    "1s",
    "0s",
    "5ms",
    "400",
    "100001",
    "10001",
    "18446744073709551615",
    "18446744073709551616",
    "x",
];

fn arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => select(WORDS.as_slice()).prop_map(OsString::from),
        3 => text(VALUES).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(OsString::from_vec),
    ]
}

/// `part` is `whole` with some elements left out.
fn is_subsequence(part: &[OsString], whole: &[OsString]) -> bool {
    let mut whole = whole.iter();
    part.iter().all(|p| whole.any(|w| w == p))
}

fn check(args: Vec<OsString>) -> Result<(), TestCaseError> {
    let (own, theirs) = split(args.clone());
    prop_assert_eq!(own.first().and_then(|a| a.to_str()), Some("handover drill"));
    prop_assert_eq!(own.len() - 1 + theirs.len(), args.len());
    prop_assert!(is_subsequence(&own[1..], &args) && is_subsequence(&theirs, &args));
    let drill = parse(own).map_err(|e| e.render().to_string());
    // Whatever was given, what parses is within the documented bounds.
    if let Ok(d) = &drill {
        prop_assert!(d.restarts as u64 <= MAX_STEPS && d.upgrades as u64 <= MAX_STEPS);
        prop_assert!((1..=MAX_CONNECTIONS).contains(&(d.connections as u64)));
        prop_assert!(d.rate.is_none_or(|r| (1..=MAX_RATE).contains(&r)));
        prop_assert!(d.requests.is_none_or(|r| (1..=MAX_REQUESTS).contains(&r)));
        prop_assert!(!d.request_timeout.is_zero() && !d.restart_timeout().is_zero());
        prop_assert!(!d.startup_timeout().is_zero() && d.duration.is_none_or(|t| !t.is_zero()));
        prop_assert!((1..=MAX_SAMPLES).contains(&d.max_samples));
    }
    // When both sides accept their arguments, the supervisor got everything
    // from `--` on. (`--` right after a valued option is taken as its value,
    // which clap then refuses.)
    // An option right before the first `--` may have taken it as its value
    // (`--workers --`): then it is no separator.
    let supervisor = [vec![OsString::from("handover")], theirs.clone()].concat();
    let start = args.iter().position(|arg| arg == "--").unwrap_or(args.len());
    let valued =
        start > 0 && args[start - 1].to_str().is_some_and(|a| a.starts_with('-') && !a.contains('='));
    if drill.is_ok()
        && !valued
        && crate::cli::HandoverCli::try_parse_from(crate::cli::normalize_args(supervisor)).is_ok()
    {
        prop_assert!(theirs.ends_with(&args[start..]));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn fuzz_drill_split_and_parse(args in prop::collection::vec(arg(), 0..8)) {
        check(args)?;
    }
}
