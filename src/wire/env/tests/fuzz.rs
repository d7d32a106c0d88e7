//! The variables handover reads from its own environment (socket
//! activation), the worker command's placeholders, `--announce` and the
//! fd placement: no panic, and the documented results.
use std::collections::HashSet;

use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::fuzz_tests::{config, one_line, text};

const OWN_PID: u32 = 42;

/// A value for one of the activation variables.
fn value() -> impl Strategy<Value = OsString> {
    prop_oneof![
        2 => Just(OsString::from(OWN_PID.to_string())),
        2 => (0..6usize).prop_map(|n| OsString::from(n.to_string())),
        1 => any::<u64>().prop_map(|n| OsString::from(n.to_string())),
        1 => (0..=u32::MAX as u64 + 1).prop_map(|n| OsString::from(n.to_string())),
        2 => text(&["web", "unknown", ":", "", "0", "42", "-1", "+1", " 1"]).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

/// `name`, mostly set to one of `values`.
fn maybe(
    name: &'static str,
    values: BoxedStrategy<OsString>,
) -> impl Strategy<Value = Vec<(OsString, OsString)>> {
    prop::option::weighted(0.8, values).prop_map(move |v| v.map(|v| (name.into(), v)).into_iter().collect())
}

/// Mostly an activation for us, its variables changed, repeated or left out.
fn env() -> impl Strategy<Value = Vec<(OsString, OsString)>> {
    let pid = prop_oneof![3 => Just(OsString::from(OWN_PID.to_string())), 1 => value()];
    let names = prop_oneof![Just(OsString::from("web:unknown")), value()];
    let name = select(&[LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, "HOME"][..]).prop_map(OsString::from);
    let others = prop::collection::vec((name, value()), 0..4);
    let parts = (
        maybe(LISTEN_PID, pid.boxed()),
        maybe(LISTEN_FDS, value().boxed()),
        maybe(LISTEN_FDNAMES, names.boxed()),
    );
    (parts, others, any::<bool>()).prop_map(|((pid, fds, names), others, others_first)| {
        let ours = [pid, fds, names].concat();
        if others_first { [others, ours].concat() } else { [ours, others].concat() }
    })
}

/// What `decode_activation` must find: whether it is for us, and the count.
fn expected_count(env: &[(OsString, OsString)]) -> Option<Option<usize>> {
    let var = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.to_str());
    let for_us = var(LISTEN_PID).flatten().is_some_and(|pid| is_decimal(pid) && pid.parse() == Ok(OWN_PID));
    let fds = var(LISTEN_FDS).filter(|_| for_us)?;
    Some(fds.filter(|v| is_decimal(v)).and_then(|v| v.parse().ok()))
}

/// One piece of a worker argument, with what it must expand to.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    First,
    Named(&'static str),
}

const NAMES: &[&str] = &["web", "admin", "", "a:b", "x\ny"];

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => "[a-z:/ =fd\n\u{e9}]{0,6}".prop_map(Piece::Text),
        1 => Just(Piece::First),
        2 => select(NAMES).prop_map(Piece::Named),
    ]
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    prop::collection::vec(piece(), 0..5)
}

fn slots_named(names: &[Option<&'static str>]) -> Vec<Slot<'static>> {
    (FIRST_LISTEN_FD..).zip(names).map(|(fd, &name)| Slot { key: "", name, fd }).collect()
}

fn check_activation(env: &[(OsString, OsString)]) -> Result<(), TestCaseError> {
    let names = env.iter().rev().find(|(k, _)| k == LISTEN_FDNAMES).map(|(_, v)| v);
    match (expected_count(env), decode_activation(env, OWN_PID)) {
        (None | Some(Some(0)), Ok(None)) => {}
        (Some(Some(count)), Ok(Some(activation))) => {
            prop_assert_eq!(activation.names.len(), count);
            prop_assert!(count <= MAX_LISTEN_FDS);
            let named = |n: &str| !n.is_empty() && n != UNNAMED_FD;
            prop_assert!(activation.names.iter().all(|n| n.as_deref().is_none_or(named)));
            if let Some(names) = names {
                prop_assert_eq!(names.as_bytes().split(|&b| b == b':').count(), count);
            }
        }
        (Some(count), Err(Error { message: why, .. })) => {
            prop_assert!(one_line(&why), "{}", why);
            let bad_count = count.is_none_or(|n| n > MAX_LISTEN_FDS);
            let bad_names = why.starts_with(&format!("{LISTEN_FDNAMES} has "));
            prop_assert!(bad_count != bad_names, "{}", why);
            prop_assert!(bad_names || why.starts_with(&format!("invalid {LISTEN_FDS} value ")), "{}", why);
        }
        (want, got) => prop_assert!(false, "expected {:?}, got {:?}", want, got),
    }
    Ok(())
}

/// Arguments made of `args`' pieces expand to exactly their fds, or fail
/// (one line) because a listener is missing.
fn check_pieces(args: &[Vec<Piece>], names: &[Option<&'static str>]) -> Result<(), TestCaseError> {
    let slots = slots_named(names);
    let mut argv = vec![OsString::from("{fd}")];
    let mut want = argv.clone();
    let mut missing = false;
    for pieces in args {
        let (mut arg, mut expanded) = (String::new(), String::new());
        for piece in pieces {
            let (typed, fd) = match piece {
                Piece::Text(text) => (text.clone(), None),
                Piece::First => ("{fd}".to_owned(), Some(slots.first())),
                Piece::Named(name) => {
                    (format!("{{fd:{name}}}"), Some(slots.iter().find(|s| s.name == Some(name))))
                }
            };
            arg.push_str(&typed);
            match fd {
                None => expanded.push_str(&typed),
                Some(Some(slot)) => expanded.push_str(&slot.fd.to_string()),
                Some(None) => missing = true,
            }
        }
        argv.push(arg.into());
        want.push(expanded.into());
    }
    let checked = check_placeholders(&argv, names);
    match expand_placeholders(&argv, &slots) {
        Ok(expanded) => {
            prop_assert!(!missing);
            prop_assert_eq!(expanded, want);
            prop_assert_eq!(checked, Ok(()));
        }
        Err(Error { message: why, .. }) => {
            prop_assert!(missing);
            prop_assert!(one_line(&why), "{}", why);
            prop_assert_eq!(checked.map_err(|e| e.message), Err(why));
        }
    }
    Ok(())
}

/// Any argument: only those holding `{fd` change, errors are one line.
fn check_argv(argv: &[OsString], names: &[Option<&'static str>]) -> Result<(), TestCaseError> {
    match expand_placeholders(argv, &slots_named(names)) {
        Ok(expanded) => {
            prop_assert_eq!(expanded.len(), argv.len());
            prop_assert_eq!(expanded.first(), argv.first());
            for (before, after) in argv.iter().zip(&expanded).skip(1) {
                let typed = before.as_bytes().windows(3).any(|w| w == b"{fd");
                prop_assert!(typed || before == after, "{:?} became {:?}", before, after);
            }
        }
        Err(Error { message: why, .. }) => prop_assert!(one_line(&why), "{}", why),
    }
    Ok(())
}

/// Pinned listeners get their pin, the others the lowest free fds from 3
/// in order; only a negative or repeated pin is refused.
fn check_place(pins: &[Option<i32>]) -> Result<(), TestCaseError> {
    let pinned: Vec<i32> = pins.iter().flatten().copied().collect();
    let distinct: HashSet<i32> = pinned.iter().copied().collect();
    match place(pins) {
        Ok(fds) => {
            prop_assert_eq!(fds.len(), pins.len());
            prop_assert_eq!(fds.iter().collect::<HashSet<_>>().len(), fds.len(), "{:?}", fds);
            let mut free = (FIRST_LISTEN_FD..).filter(|fd| !distinct.contains(fd));
            for (pin, fd) in pins.iter().zip(&fds) {
                prop_assert_eq!(*fd, pin.unwrap_or_else(|| free.next().unwrap()));
            }
        }
        Err(Error { message: why, .. }) => {
            let twice = distinct.len() < pinned.len();
            prop_assert!(twice || pinned.iter().any(|&fd| fd < 0), "{}", why);
            prop_assert!(one_line(&why), "{}", why);
        }
    }
    Ok(())
}

/// `--announce`: accepted exactly when every comma-separated name (trimmed)
/// is a protocol's, and then those protocols are on; else one line.
fn check_announce(text: &str) -> Result<(), TestCaseError> {
    let names: Vec<&str> = text.split(',').map(str::trim).collect();
    match Announce::parse(text) {
        Ok(announce) => {
            prop_assert!(names.iter().all(|name| Announce::NAMES.contains(name)), "{:?}", text);
            let on = |name: &str| names.contains(&name);
            let want = Announce {
                server_starter: on("server-starter"),
                systemd: on("systemd"),
                einhorn: on("einhorn"),
            };
            prop_assert_eq!(announce, want);
        }
        Err(Error { message: why, .. }) => {
            prop_assert!(names.iter().any(|name| !Announce::NAMES.contains(name)), "{}", why);
            prop_assert!(why.starts_with(&format!("invalid --announce value {text:?}: ")), "{}", why);
            prop_assert!(one_line(&why), "{}", why);
        }
    }
    Ok(())
}

const PROTOCOLS: &[&str] = &["server-starter", "systemd", "einhorn", ",", " ", "upstart", "SYSTEMD"];

fn pins() -> impl Strategy<Value = Vec<Option<i32>>> {
    let pin = prop_oneof![0..8i32, any::<i32>(), Just(i32::MAX)];
    prop::collection::vec(prop::option::of(pin), 0..8)
}

fn names() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    prop::collection::vec(prop::option::of(select(NAMES)), 0..4)
}

/// Arguments with stray, broken and real placeholders, one of them not UTF-8.
fn argv() -> impl Strategy<Value = Vec<OsString>> {
    let arg = text(&["{fd}", "{fd:", "{fd", "}", "{", "web", "\u{e9}"]).prop_map(OsString::from);
    let raw = prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec);
    (prop::collection::vec(arg, 0..4), raw).prop_map(|(args, raw)| [args, vec![raw]].concat())
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_decode_activation(env in env()) {
        check_activation(&env)?;
    }

    #[test]
    fn fuzz_expand_placeholders(args in prop::collection::vec(pieces(), 0..4), names in names()) {
        check_pieces(&args, &names)?;
    }

    #[test]
    fn fuzz_expand_placeholders_bytes(argv in argv(), names in names()) {
        check_argv(&argv, &names)?;
    }

    #[test]
    fn fuzz_announce(text in text(PROTOCOLS)) {
        check_announce(&text)?;
    }

    #[test]
    fn fuzz_place(pins in pins()) {
        check_place(&pins)?;
    }
}
