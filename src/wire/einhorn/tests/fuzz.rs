//! Lines on the einhorn socket, from any local process: no panic; a pid
//! read is positive; a JSON ack decodes to exactly what it says; the
//! answer to anything is one line in einhorn's transport.
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::*;
use crate::fuzz_tests::{bytes, config, mutated, one_line, text};

const SENT: &[&str] = &[
    GO_EINHORN,
    GOJI,
    RUBY,
    RUBY_KEEP_OPEN,
    RUBY_JSON,
    NODE,
    "{\"command\":\"ehlo\",\"user\":\"ops\"}",
    "---%0Acommand: 'worker:ack'%0Apid: \"1234\"%0A",
];

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "---", "%0A", "%", "%2", "%25", "%zz", "%ff", "%C3%A9", "command", "comand", "pid", "Pid", ": ", ":",
    "worker:ack", "1234", "-1", "0", "2147483648", "'", "\"", "{", "}", "\n", "#", "...",
];

/// The reply line carries `text` in einhorn's transport.
fn check_reply(text: &str) -> Result<(), TestCaseError> {
    let line = encode_reply(text);
    prop_assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1));
    let json = percent_decode(std::str::from_utf8(&line).expect("JSON is UTF-8").trim_end());
    let value: Value = serde_json::from_str(&json.expect("escapes are valid")).expect("JSON");
    prop_assert_eq!(value[MESSAGE_KEY].as_str(), Some(text));
    Ok(())
}

fn check(line: &[u8]) -> Result<(), TestCaseError> {
    let message = decode(line);
    if let Some(Message { pid: Some(pid), .. }) = message {
        prop_assert!(pid > 0, "pid {}", pid);
    }
    match answer(message.as_ref()) {
        None => prop_assert_eq!(message.and_then(|m| m.command), Some(ACK.to_owned())),
        Some(text) => {
            prop_assert!(one_line(&text), "{}", text);
            check_reply(&text)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_einhorn_random_bytes(line in bytes()) {
        check(&line)?;
    }

    #[test]
    fn fuzz_einhorn_fields(line in text(TOKENS)) {
        check(line.as_bytes())?;
    }

    #[test]
    fn fuzz_einhorn_mutated(line in mutated(SENT)) {
        check(&line)?;
    }

    #[test]
    fn fuzz_einhorn_json_says_what_it_means(
        command in any::<String>(),
        pid in prop_oneof![any::<i64>(), -2..70_000i64],
        keys in (select(&COMMAND_KEYS[..]), select(&PID_KEYS[..])),
        quoted in any::<bool>(),
    ) {
        let pid_value = if quoted { Value::from(pid.to_string()) } else { Value::from(pid) };
        let line = serde_json::json!({ keys.0: command, keys.1: pid_value }).to_string();
        let want = Message { command: Some(command), pid: i32::try_from(pid).ok().filter(|&p| p > 0) };
        prop_assert_eq!(decode(line.as_bytes()), Some(want));
    }

    #[test]
    fn fuzz_einhorn_ack_pid(peer in any::<Option<i32>>(), claimed in any::<Option<i32>>()) {
        let pid = ack_pid(peer, claimed);
        prop_assert!(pid.is_none_or(|p| p > 0));
        match peer.filter(|&p| p > 0) {
            Some(peer) => prop_assert_eq!(pid, Some(peer)),
            None => prop_assert_eq!(pid, claimed.filter(|&p| p > 0)),
        }
    }

    #[test]
    fn fuzz_einhorn_replies(text in any::<String>()) {
        check_reply(&text)?;
    }
}
