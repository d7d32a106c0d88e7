//! Status files as clients read them (written by handover, by
//! start_server, or by anyone): no panic; what is read is sorted, and
//! every generation written is read back.
use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{config, mutated, text};

const WRITTEN: &[&str] = &["9:100\n10:200\n", "10:17816\n9:17794\n", "1:5\n"];

fn check(text: &str) -> Result<(), TestCaseError> {
    let gens = parse_status(text);
    prop_assert!(gens.is_sorted(), "{:?}", gens);
    prop_assert!(gens.len() <= text.lines().count());
    Ok(())
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_parse_status(text in text(&["1", "42", ":", "\n", " ", "\r", "-1", "4294967296", "x"])) {
        check(&text)?;
    }

    #[test]
    fn fuzz_parse_status_mutated(bytes in mutated(WRITTEN)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn fuzz_status_file_round_trip(gens in prop::collection::vec(any::<(u64, u32)>(), 0..6)) {
        let text: String = gens.iter().map(|(g, p)| format!("{g}:{p}\n")).collect();
        let mut sorted = gens.clone();
        sorted.sort_unstable();
        prop_assert_eq!(parse_status(&text), sorted);
    }
}
