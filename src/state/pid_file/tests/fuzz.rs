//! Pid files as anyone may have written them: no panic; a pid read is the
//! number on the first line and a valid process id; a refusal is one line
//! naming the file. Both readers: the clients' watch (at most 64 bytes,
//! from offset 0) and the whole-file one.
use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{config, mutated, one_line, text};

const WRITTEN: &[&str] = &["4242\n", " 321 \nrest\n", "2147483647\n", "1"];

fn check(contents: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    fs::write(&path, contents).unwrap();
    let watched = PidFileWatch::open(&path).unwrap().read_pid();
    for read in [read_pid(&path), watched] {
        match read {
            Ok(pid) => {
                prop_assert!(pid > 0 && pid <= i32::MAX as u32, "{}", pid);
                let text = String::from_utf8_lossy(contents);
                let first = text.lines().next().unwrap_or("").trim();
                prop_assert_eq!(first.parse::<u32>(), Ok(pid));
            }
            Err(crate::error::Error { message: why, .. }) => {
                prop_assert!(one_line(&why), "{}", why);
                prop_assert!(why.contains(&format!("pid file {}", path.display())), "{}", why);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn fuzz_read_pid(contents in text(&["4242", "0", "-1", "+7", "4294967296", " ", "\n", "\r\n"])) {
        check(contents.as_bytes())?;
    }

    #[test]
    fn fuzz_read_pid_mutated(contents in mutated(WRITTEN)) {
        check(&contents)?;
    }
}
