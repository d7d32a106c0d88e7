//! Datagrams on the notify socket, as the supervisor reads them (any
//! bytes, made text with U+FFFD): no panic, and exactly the documented
//! meaning: ready when a line is `READY=1`, the status of the last
//! `STATUS=` line.
use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{bytes, config, mutated, text};

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "READY=1", "READY=0", "READY", "STATUS=", "STATUS", "warming up", "RELOADING=1", "STOPPING=1",
    "MAINPID=5", "WATCHDOG=1", "=", "\n", "\n", "ready=1", "READY=1 ", "\u{feff}",
];

const SENT: &[&str] = &["READY=1", "STATUS=warming up\nREADY=1\n", "MAINPID=5\nREADY=1\nSTATUS=a=b"];

fn check(pid: i32, datagram: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(datagram);
    let message = parse(pid, &text);
    prop_assert_eq!(message.pid, pid);
    prop_assert_eq!(message.ready, text.lines().any(|line| line == "READY=1"));
    let status = text.lines().rev().find_map(|line| line.strip_prefix("STATUS="));
    prop_assert_eq!(message.status.as_deref(), status);
    Ok(())
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_sd_notify_random_bytes(pid in any::<i32>(), datagram in bytes()) {
        check(pid, &datagram)?;
    }

    #[test]
    fn fuzz_sd_notify_fields(pid in any::<i32>(), datagram in text(TOKENS)) {
        check(pid, datagram.as_bytes())?;
    }

    #[test]
    fn fuzz_sd_notify_mutated(pid in any::<i32>(), datagram in mutated(SENT)) {
        check(pid, &datagram)?;
    }
}
