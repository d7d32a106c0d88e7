//! The /proc texts and the memory the observer reads (any bytes, made
//! text with U+FFFD where text is read): no panic, and results within
//! bounds.
use proptest::prelude::*;

use super::parse;
use crate::fuzz_tests::{bytes, config, mutated, text};

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "tfd:", "events:", "data:", "pos:", "ino:", "sdev:", " ", "  ", "\n", "0x", "0x7ffe5951",
    "270", "43", "232", "-1", "running", "socket:[", "]", "12345", "19", "1d5078b", "0A", "01",
    ":",
];

const SEEN: &[&str] = &[
    "270 0xfb 0x7ffe59510120 0x0 0x0 0x7ffe59510030 0x7ffe59510040 0x7ffe59510000 0x7fd913250aec\n",
    "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t18\ntfd:        3 events:       19 data:                3  pos:0 ino:1d5078b sdev:9\n",
    "socket:[30738315]",
    "812 813 814\n",
];

fn check(text: &str) -> Result<(), TestCaseError> {
    if let Some((number, args)) = parse::syscall(text) {
        let _ = super::calls::decode(number, &args);
    }
    prop_assert!(parse::epoll_targets(text).len() <= parse::MAX_TARGETS);
    let _ = parse::socket_inode(text);
    prop_assert!(parse::pids(text).all(|p| p > 0));
    Ok(())
}

fn check_memory(memory: &[u8], nfds: u64) -> Result<(), TestCaseError> {
    prop_assert!(parse::pollfds(memory).len() <= memory.len() / 8);
    let set = parse::fd_set(memory, nfds);
    prop_assert!(set.iter().all(|&fd| fd >= 0 && (fd as u64) < nfds.min(parse::MAX_SELECT_FDS)));
    prop_assert!(set.windows(2).all(|w| w[0] < w[1]));
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_observe_random_bytes(data in bytes()) {
        check(&String::from_utf8_lossy(&data))?;
    }

    #[test]
    fn fuzz_observe_fields(data in text(TOKENS)) {
        check(&data)?;
    }

    #[test]
    fn fuzz_observe_mutated(data in mutated(SEEN)) {
        check(&String::from_utf8_lossy(&data))?;
    }

    #[test]
    fn fuzz_observe_memory(data in bytes(), nfds in any::<u64>()) {
        check_memory(&data, nfds)?;
    }
}
