//! Random command lines through the normalisation and clap, under both
//! names: no panic; the normalisation only adds a dash to single-dash
//! long options before the command (what follows `--` is left alone), and
//! doing it twice changes nothing.
use std::os::unix::ffi::OsStringExt;
use std::sync::LazyLock;

use clap::Parser;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::fuzz_tests::{config, text};

/// Every long option under both names, with one and two dashes, and
/// words that change how the rest is read.
static WORDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let options = [HandoverCli::command(), StartServerCli::command()].into_iter().flat_map(long_options);
    let mut words: Vec<String> =
        options.flat_map(|(name, _)| [format!("--{name}"), format!("-{name}")]).collect();
    let special =
        ["--", "-", "-h", "-V", "--p", "-int", "restart", "stop", "status", "drill", "prog", "--port="];
    words.extend(special.map(str::to_owned));
    words
});

const VALUES: &[&str] = &["8080", "1", "-1", "=", "x", "{fd}", "1s", "--port=80", "-port=80"];

fn arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => select(WORDS.as_slice()).prop_map(OsString::from),
        3 => text(VALUES).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(OsString::from_vec),
    ]
}

fn argv() -> impl Strategy<Value = Vec<OsString>> {
    let arg0 = select(&["handover", "start_server", "/usr/bin/start_server"][..]).prop_map(OsString::from);
    (arg0, prop::collection::vec(arg(), 0..8)).prop_map(|(arg0, rest)| [vec![arg0], rest].concat())
}

fn check(args: Vec<OsString>) -> Result<(), TestCaseError> {
    let normal = normalize_args(args.clone());
    prop_assert_eq!(normal.len(), args.len());
    for (before, after) in args.iter().zip(&normal) {
        let dashed = before.to_str().map(|text| format!("-{text}"));
        prop_assert!(before == after || after.to_str() == dashed.as_deref(), "{:?} -> {:?}", before, after);
    }
    prop_assert_eq!(normalize_args(normal.clone()), normal.clone());
    // Both parsers, whatever the program's name: neither may panic, and an error renders.
    let handover = HandoverCli::try_parse_from(&normal).map_err(|e| e.render().to_string());
    let start_server = StartServerCli::try_parse_from(&normal).map_err(|e| e.render().to_string());
    // Accepted, the arguments after `--` are the worker's, unchanged. (Like
    // Getopt::Long, the normalisation takes `--` right after a valued option
    // as its value; clap refuses that.)
    if handover.is_ok() || start_server.is_ok() {
        let end = args.iter().position(|arg| arg == "--").map_or(args.len(), |at| at + 1);
        prop_assert_eq!(&normal[end..], &args[end..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn fuzz_normalize_and_parse_args(args in argv()) {
        check(args)?;
    }
}

/// Found by `fuzz_normalize_and_parse_args`: under the name start_server,
/// which has no subcommands, a worker named `restart`, `stop` or `status`
/// had its single-dash arguments rewritten.
#[test]
fn start_server_has_no_subcommand_words() {
    let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
    let worker = args(&["/usr/bin/start_server", "--port", "80", "status", "-verbose"]);
    assert_eq!(normalize_args(worker.clone()), worker);
    let client = args(&["handover", "status", "-json"]);
    assert_eq!(normalize_args(client), args(&["handover", "status", "--json"]));
}
