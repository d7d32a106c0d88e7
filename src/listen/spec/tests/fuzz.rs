//! `--port`, `--path` and `--listen` values from the command line: no
//! panic; what parses prints back to itself; a refusal is one line that
//! quotes the value.
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::fuzz_tests::{config, mutated_text, one_line, text};

const PORT_TOKENS: &[&str] =
    &["8080", "u", "u53", "0", "127.0.0.1", "localhost", "::1", "[::1]", "[", "]", ":", "=", "=5", "fe80::1"];

#[rustfmt::skip]
const LISTEN_TOKENS: &[&str] = &[
    "tcp://", "udp://", "unix:", "unix://", "web=", "127.0.0.1", "[::1]", "::", ":80", ":0", "/run/a.sock",
    "?", "&", "backlog=", "mode=", "owner=", "group=", "nodelay=", "0660", "777", "16", "0", "1", "yes",
    "unknown=", "#", "@",
];

const VALID_LISTEN: &[&str] = &[
    "tcp://127.0.0.1:8080",
    "web=tcp://[::1]:0?backlog=128&nodelay=off",
    "dns=udp://[::]:53",
    "unix:/run/app.sock",
    "admin=unix:///run/a.sock?mode=0660&owner=www-data&group=33&backlog=16",
];

/// `--port` text that parses to `spec`.
fn port_text(spec: &ListenSpec) -> String {
    let Address::Inet { host, port, udp } = &spec.address else { panic!("--port gave {spec:?}") };
    let host = match host.as_deref() {
        Some(h) if h.contains(':') => format!("[{h}]:"),
        Some(h) => format!("{h}:"),
        None => String::new(),
    };
    let pin = spec.pin.map(|fd| format!("={fd}")).unwrap_or_default();
    format!("{host}{}{port}{pin}", if *udp { "u" } else { "" })
}

/// `--listen` text that parses to `spec`.
fn listen_text(spec: &ListenSpec) -> String {
    let name = spec.name.as_ref().map(|n| format!("{n}=")).unwrap_or_default();
    let mut options = Vec::new();
    let address = match &spec.address {
        Address::Inet { host, port, udp } => {
            let host = host.as_deref().expect("--listen always has a host");
            let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
            format!("{}://{host}:{port}", if *udp { "udp" } else { "tcp" })
        }
        Address::Unix { path, options: unix } => {
            options.extend(unix.mode.map(|m| format!("mode={m:o}")));
            options.extend(unix.owner.as_ref().map(|o| format!("owner={o}")));
            options.extend(unix.group.as_ref().map(|g| format!("group={g}")));
            format!("unix://{}", path.to_str().expect("parsed from a str"))
        }
    };
    options.extend(spec.backlog.map(|b| format!("backlog={b}")));
    options.extend(spec.nodelay.map(|on| format!("nodelay={}", u8::from(on))));
    let query = if options.is_empty() { String::new() } else { format!("?{}", options.join("&")) };
    format!("{name}{address}{query}")
}

fn check_port(s: &str) -> Result<(), TestCaseError> {
    match ListenSpec::parse_port(s) {
        Ok(spec) => {
            prop_assert_eq!(spec.name.as_ref(), None);
            prop_assert_eq!(spec.backlog, None);
            let again = port_text(&spec);
            prop_assert_eq!(ListenSpec::parse_port(&again), Ok(spec.clone()), "printed as {:?}", again);
            let _ = (spec.key(0), spec.describe());
        }
        Err(Error { message, .. }) => {
            prop_assert!(message.starts_with(&format!("invalid --port value {s:?}: ")), "{}", message);
            prop_assert!(one_line(&message), "{}", message);
        }
    }
    Ok(())
}

fn check_listen(s: &str) -> Result<(), TestCaseError> {
    match ListenSpec::parse_listen(s) {
        Ok(spec) => {
            prop_assert_eq!(spec.pin, None);
            if let Some(name) = &spec.name {
                prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN && name != UNNAMED_FD);
                prop_assert!(name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b':' && b != b'='));
            }
            prop_assert!(spec.backlog.is_none_or(|b| b > 0));
            if let Address::Unix { options, .. } = &spec.address {
                prop_assert!(options.mode.is_none_or(|m| m <= 0o777));
            }
            let again = listen_text(&spec);
            prop_assert_eq!(ListenSpec::parse_listen(&again), Ok(spec.clone()), "printed as {:?}", again);
            let _ = (spec.key(0), spec.describe());
        }
        Err(Error { message, .. }) => {
            prop_assert!(message.starts_with(&format!("invalid --listen value {s:?}: ")), "{}", message);
            prop_assert!(one_line(&message), "{}", message);
        }
    }
    Ok(())
}

/// Names for `check_unique_names`, one of them not one a `--listen` could give.
const NAMES: &[Option<&str>] = &[None, Some("a"), Some("b"), Some("c\n")];

fn named(name: Option<&'static str>) -> ListenSpec {
    ListenSpec { name: name.map(str::to_owned), ..ListenSpec::parse_path("/s") }
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn fuzz_parse_port(s in text(PORT_TOKENS)) {
        check_port(&s)?;
    }

    #[test]
    fn fuzz_parse_listen(s in text(LISTEN_TOKENS)) {
        check_listen(&s)?;
    }

    #[test]
    fn fuzz_parse_listen_mutated(s in mutated_text(VALID_LISTEN)) {
        check_listen(&s)?;
    }

    #[test]
    fn fuzz_parse_path(s in any::<String>()) {
        let spec = ListenSpec::parse_path(&s);
        prop_assert_eq!(spec.key(0), s);
        let _ = spec.describe();
    }

    #[test]
    fn fuzz_check_unique_names(names in prop::collection::vec(select(NAMES), 0..6)) {
        let specs: Vec<ListenSpec> = names.iter().copied().map(named).collect();
        let named: Vec<&str> = names.iter().flatten().copied().collect();
        let unique = named.iter().collect::<std::collections::HashSet<_>>().len() == named.len();
        match check_unique_names(&specs) {
            Ok(()) => prop_assert!(unique),
            Err(Error { message, .. }) => {
                prop_assert!(!unique);
                let named = message.starts_with("two listeners are named ");
                prop_assert!(one_line(&message) && named, "{}", message);
            }
        }
    }
}
