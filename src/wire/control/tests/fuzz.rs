//! Control lines from a peer: requests the supervisor reads, replies the
//! clients and the drill read. No panic; a request is accepted only when
//! it names a known command; a reply is either refused with its reason,
//! or invalid (one line saying so), or a message that encodes back to
//! itself.
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::fuzz_tests::{bytes, config, mutated, one_line, text};

/// Every line of the recorded exchange, and the requests.
const RECORDED: &[&str] = &[
    STATUS,
    RESTARTED,
    FAILED,
    STOPPING,
    REFUSED,
    r#"{"command":"status"}"#,
    r#"{"command":"restart","extra":[1,{"a":null}]}"#,
    r#"{"command":"stop"}"#,
];

#[rustfmt::skip]
const JSON_TOKENS: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"command\"", "\"status\"", "\"restart\"", "\"stop\"", "\"upgrade\"", "\"binary\"", "\"/bin/x\"", "\"ok\"",
    "true", "false", "null", "\"error\"", "\"pid\"", "4242", "-1", "1.5e3", "\"\\u0000\"", "\"\\ud800\"",
];

fn check_request(line: &[u8]) -> Result<(), TestCaseError> {
    match parse_request(line) {
        Ok(request) => {
            let value: Value = serde_json::from_slice(line).expect("accepted, so JSON");
            let name = name_of(&request.command);
            prop_assert_eq!(value.get("command").and_then(Value::as_str), Some(name.as_str()));
        }
        Err(Error { message: why, .. }) => prop_assert!(one_line(&why), "{}", why),
    }
    Ok(())
}

/// `decode::<T>` keeps its contract on `line`.
fn check_reply<T>(line: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let refused = serde_json::from_slice::<Verdict>(line).ok().filter(|v| !v.ok);
    match (decode::<T>(line), refused) {
        (Ok(message), None) => {
            let again = encode(&message);
            prop_assert_eq!(again.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(decode::<T>(&again), Ok(message));
        }
        (Ok(message), Some(verdict)) => prop_assert!(false, "{:?} taken from {:?}", message, verdict),
        (Err(Error { message: why, code }), Some(verdict)) => {
            prop_assert_eq!(code, crate::error::RUNTIME);
            let text = String::from_utf8_lossy(line);
            let said = format!("the supervisor refused: {}", text.trim_end());
            prop_assert_eq!(why, verdict.error.unwrap_or(said));
        }
        (Err(Error { message: why, .. }), None) => {
            prop_assert!(why.starts_with("the supervisor sent an invalid reply: "), "{}", why);
            prop_assert!(one_line(&why), "{}", why);
        }
    }
    Ok(())
}

fn check_line(line: &[u8]) -> Result<(), TestCaseError> {
    check_request(line)?;
    check_reply::<Status>(line)?;
    check_reply::<Restart>(line)?;
    check_reply::<Stopping>(line)?;
    check_reply::<Verdict>(line)
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_control_random_bytes(line in bytes()) {
        check_line(&line)?;
    }

    #[test]
    fn fuzz_control_json_like(line in text(JSON_TOKENS)) {
        check_line(line.as_bytes())?;
    }

    #[test]
    fn fuzz_control_mutated_exchange(line in mutated(RECORDED)) {
        check_line(&line)?;
    }

    #[test]
    fn fuzz_control_requests_with_any_command(name in any::<String>(), extra in any::<Option<i64>>()) {
        let line = serde_json::json!({ "command": name, "extra": extra }).to_string();
        let names = ["status", "restart", "stop", "upgrade", "reopen", "events", "follow", "metrics"];
        let known = names.contains(&name.as_str()).then(|| serde_json::from_value::<Command>(Value::String(name.clone())).unwrap());
        match parse_request(line.as_bytes()) {
            Ok(request) => prop_assert_eq!(Some(request.command), known),
            Err(Error { message: why, .. }) => {
                prop_assert!(known.is_none() && one_line(&why), "{}", why);
                prop_assert!(why.starts_with("unknown command "), "{}", why);
            }
        }
    }
}
