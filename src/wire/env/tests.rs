use super::*;

fn slot(key: &'static str, fd: i32) -> Slot<'static> {
    Slot { key, name: None, fd }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn tcp_ipv6_and_unix_from_fd_3() {
    let slots = [slot("127.0.0.1:18010", 3), slot("[::1]:18011", 4), slot("/tmp/s.sock", 5)];
    assert_eq!(
        listener_env(&slots, Announce::ALL),
        env(&[
            ("SERVER_STARTER_PORT", "127.0.0.1:18010=3;[::1]:18011=4;/tmp/s.sock=5"),
            ("LISTEN_FDS", "3"),
            ("LISTEN_FDNAMES", "unknown:unknown:unknown"),
            ("EINHORN_FD_COUNT", "3"),
            ("EINHORN_FD_0", "3"),
            ("EINHORN_FD_1", "4"),
            ("EINHORN_FD_2", "5"),
        ])
    );
}

#[test]
fn no_listeners_still_announces_the_supervisor() {
    assert_eq!(
        listener_env(&[], Announce::ALL),
        env(&[("SERVER_STARTER_PORT", ""), ("EINHORN_FD_COUNT", "0")])
    );
    assert!(!speaks_systemd(&[]));
}

#[test]
fn single_bare_port() {
    assert_eq!(
        listener_env(&[slot("8080", 3)], Announce::ALL),
        env(&[
            ("SERVER_STARTER_PORT", "8080=3"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", "unknown"),
            ("EINHORN_FD_COUNT", "1"),
            ("EINHORN_FD_0", "3"),
        ])
    );
}

#[test]
fn names_fill_listen_fdnames() {
    let slots = [
        Slot { key: "8080", name: Some("http"), fd: 3 },
        slot("8443", 4),
        Slot { key: "/run/app.sock", name: Some("admin"), fd: 5 },
    ];
    let vars = listener_env(&slots, Announce::ALL);
    assert!(vars.contains(&("LISTEN_FDNAMES".into(), "http:unknown:admin".into())));
    assert!(vars.contains(&("SERVER_STARTER_PORT".into(), "8080=3;8443=4;/run/app.sock=5".into())));
}

#[test]
fn pinned_layouts_skip_systemd_unless_contiguous_from_3() {
    // `18034=9`, then an unpinned listener at 3: not expressible for systemd.
    let slots = [slot("18034", 9), slot("127.0.0.1:18035", 3)];
    assert_eq!(
        listener_env(&slots, Announce::ALL),
        env(&[
            ("SERVER_STARTER_PORT", "18034=9;127.0.0.1:18035=3"),
            ("EINHORN_FD_COUNT", "2"),
            ("EINHORN_FD_0", "9"),
            ("EINHORN_FD_1", "3"),
        ])
    );
    // Pinned to stdin.
    let stdin = [slot("127.0.0.1:18035", 0)];
    assert_eq!(
        listener_env(&stdin, Announce::ALL),
        env(&[
            ("SERVER_STARTER_PORT", "127.0.0.1:18035=0"),
            ("EINHORN_FD_COUNT", "1"),
            ("EINHORN_FD_0", "0"),
        ])
    );
    // Out of order, or a gap.
    assert!(!speaks_systemd(&[slot("a", 4), slot("b", 3)]));
    assert!(!speaks_systemd(&[slot("a", 3), slot("b", 5)]));
    // Pins that happen to be 3, 4 in order are fine.
    assert!(speaks_systemd(&[slot("a", 3), slot("b", 4)]));
}

#[test]
fn generation() {
    assert_eq!(generation_env(1), ("SERVER_STARTER_GENERATION", "1".to_owned()));
    assert_eq!(generation_env(42), ("SERVER_STARTER_GENERATION", "42".to_owned()));
}

#[test]
fn supervisor_private_variables() {
    let private = [
        "SERVER_STARTER_PORT",
        "SERVER_STARTER_GENERATION",
        "EINHORN_CHILD_INDEX",
        "HANDOVER_WORKER_INDEX",
        "EINHORN_SOCK_PATH",
        "EINHORN_MASTER_PID",
        "HANDOVER_UPGRADE_STATE",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "EINHORN_FD_COUNT",
        "EINHORN_FD_0",
        "EINHORN_FD_17",
    ];
    for name in private {
        assert!(is_supervisor_private(OsStr::new(name)), "{name}");
    }
    let inherited = [
        "PATH",
        "ENVDIR",
        "KILL_OLD_DELAY",
        "EINHORN_FD_",
        "EINHORN_FD_X",
        "EINHORN_FD_1a",
        "LISTEN_FDS_EXTRA",
        "listen_fds",
    ];
    for name in inherited {
        assert!(!is_supervisor_private(OsStr::new(name)), "{name}");
    }
}

#[test]
fn placement() {
    assert_eq!(place(&[]), Ok(vec![]));
    assert_eq!(place(&[None, None, None]), Ok(vec![3, 4, 5]));
    assert_eq!(place(&[Some(9), None]), Ok(vec![9, 3]));
    assert_eq!(place(&[None, Some(3), None]), Ok(vec![4, 3, 5]));
    assert_eq!(place(&[None, None, Some(4)]), Ok(vec![3, 5, 4]));
    assert_eq!(place(&[Some(0), None]), Ok(vec![0, 3]));
    assert_eq!(place(&[Some(3), Some(4)]), Ok(vec![3, 4]));
}

#[test]
fn placement_errors() {
    assert_eq!(
        place(&[Some(5), None, Some(5)]),
        Err(Error::usage("two listeners are pinned to fd 5 (check the =FD suffixes)"))
    );
    assert_eq!(place(&[Some(-1)]), Err(Error::usage("cannot pin a listener to fd -1")));
}

fn os_env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn names(list: &[Option<&str>]) -> Option<Activation> {
    let names = list.iter().map(|n| n.map(str::to_owned)).collect();
    Some(Activation { names })
}

#[test]
fn activation_addressed_to_us() {
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Vars, Option<Activation>)] = &[
        (&[], None),
        (&[("LISTEN_FDS", "2")], None),
        (&[("LISTEN_PID", "41"), ("LISTEN_FDS", "2")], None),
        (&[("LISTEN_PID", "x"), ("LISTEN_FDS", "2")], None),
        (&[("LISTEN_PID", " 42"), ("LISTEN_FDS", "2")], None),
        (&[("LISTEN_PID", "+42"), ("LISTEN_FDS", "2")], None),
        (&[("LISTEN_PID", "42")], None),
        (&[("LISTEN_PID", "42"), ("LISTEN_FDS", "0")], None),
        (&[("LISTEN_PID", "42"), ("LISTEN_FDS", "2")], names(&[None, None])),
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "3"), ("LISTEN_FDNAMES", "web:unknown:")],
            names(&[Some("web"), None, None]),
        ),
        (
            &[("LISTEN_PID", "1"), ("LISTEN_PID", "42"), ("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "a b")],
            names(&[Some("a b")]),
        ),
    ];
    for (vars, want) in cases {
        assert_eq!(decode_activation(&os_env(vars), 42).as_ref(), Ok(want), "{vars:?}");
    }
    let activation = names(&[Some("web"), None]).unwrap();
    let fds: Vec<_> = activation.fds().collect();
    assert_eq!(fds, [(3, Some("web")), (4, None)]);
}

#[test]
fn malformed_activation_for_us_is_an_error() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "two")],
            r#"invalid LISTEN_FDS value "two": expected the number of passed fds"#,
        ),
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "-1")],
            r#"invalid LISTEN_FDS value "-1": expected the number of passed fds"#,
        ),
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "2147483645")],
            r#"invalid LISTEN_FDS value "2147483645": expected the number of passed fds"#,
        ),
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "2"), ("LISTEN_FDNAMES", "web")],
            "LISTEN_FDNAMES has 1 names for LISTEN_FDS=2",
        ),
        (
            &[("LISTEN_PID", "42"), ("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "a:b")],
            "LISTEN_FDNAMES has 2 names for LISTEN_FDS=1",
        ),
    ];
    for (vars, want) in cases {
        assert_eq!(decode_activation(&os_env(vars), 42), Err(Error::usage(*want)), "{vars:?}");
    }
    // Not addressed to us: not our business, whatever it holds.
    let theirs = os_env(&[("LISTEN_PID", "7"), ("LISTEN_FDS", "two")]);
    assert_eq!(decode_activation(&theirs, 42), Ok(None));
}

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn named_slots() -> [Slot<'static>; 3] {
    [
        Slot { key: "8080", name: None, fd: 3 },
        Slot { key: "/run/admin.sock", name: Some("admin"), fd: 4 },
        Slot { key: "[::1]:53", name: Some("dns"), fd: 9 },
    ]
}

#[test]
fn placeholders_become_worker_fds() {
    let slots = named_slots();
    let cases: &[(&[&str], &[&str])] = &[
        (&["uvicorn", "--fd", "{fd}"], &["uvicorn", "--fd", "3"]),
        (
            &["hypercorn", "--bind", "fd://{fd:admin}", "app:app"],
            &["hypercorn", "--bind", "fd://4", "app:app"],
        ),
        (&["w", "{fd:dns}{fd}-{fd:admin}"], &["w", "93-4"]),
        // Only the exact tokens; everything else passes unchanged.
        (&["w", "{{fd}}"], &["w", "{3}"]),
        (
            &["w", "{fd", "{fd:admin", "{FD}", "{ fd}", "fd"],
            &["w", "{fd", "{fd:admin", "{FD}", "{ fd}", "fd"],
        ),
        (&["w", "{fd{fd}"], &["w", "{fd3"]),
        (&["w", "{}", "{name}", "}{"], &["w", "{}", "{name}", "}{"]),
        // The program itself is not an argument.
        (&["{fd}", "{fd}"], &["{fd}", "3"]),
        (&[], &[]),
    ];
    for (input, want) in cases {
        assert_eq!(expand_placeholders(&argv(input), &slots), Ok(argv(want)), "{input:?}");
    }
    let raw = OsString::from_vec(b"\xff{fd}\xfe".to_vec());
    let expanded = expand_placeholders(&[OsString::from("w"), raw], &slots).unwrap();
    assert_eq!(expanded[1].as_bytes(), b"\xff3\xfe", "bytes, not UTF-8");
}

#[test]
fn unknown_placeholders_are_errors_naming_them() {
    let slots = named_slots();
    let cases: &[(&[&str], &[Slot], &str)] = &[
        (&["w", "{fd}"], &[], "the worker command uses {fd}, but there is no listener"),
        (
            &["w", "--fd={fd:web}"],
            &slots,
            r#"the worker command uses {fd:web}, but no listener is named "web"; the names are admin, dns"#,
        ),
        (
            &["w", "{fd:}"],
            &slots,
            r#"the worker command uses {fd:}, but no listener is named ""; the names are admin, dns"#,
        ),
        (
            &["w", "{fd:web}"],
            &slots[..1],
            r#"the worker command uses {fd:web}, but no listener is named "web"; no listener has a name (--listen NAME=...)"#,
        ),
    ];
    for (input, slots, want) in cases {
        assert_eq!(expand_placeholders(&argv(input), slots), Err(Error::usage(*want)), "{input:?}");
    }
}

#[test]
fn placeholders_are_checked_against_names_at_startup() {
    let command = argv(&["w", "--fd", "{fd}", "--admin", "{fd:admin}"]);
    assert_eq!(check_placeholders(&command, &[None, Some("admin")]), Ok(()));
    assert_eq!(
        check_placeholders(&command, &[None, Some("web")]),
        Err(Error::usage(
            r#"the worker command uses {fd:admin}, but no listener is named "admin"; the names are web"#
        ))
    );
    assert_eq!(
        check_placeholders(&argv(&["w", "{fd}"]), &[]),
        Err(Error::usage("the worker command uses {fd}, but there is no listener"))
    );
    assert_eq!(check_placeholders(&argv(&["w", "plain"]), &[]), Ok(()));
}

#[test]
fn announce_chooses_the_protocols() {
    let slots = [slot("8080", 3)];
    let only = |text: &str| listener_env(&slots, Announce::parse(text).unwrap());
    assert_eq!(only("server-starter"), env(&[("SERVER_STARTER_PORT", "8080=3")]));
    assert_eq!(only("systemd"), env(&[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "unknown")]));
    assert_eq!(
        only("einhorn, server-starter"),
        env(&[("SERVER_STARTER_PORT", "8080=3"), ("EINHORN_FD_COUNT", "1"), ("EINHORN_FD_0", "3")])
    );
    assert_eq!(Announce::parse("server-starter,systemd,einhorn"), Ok(Announce::ALL));
    let err = Announce::parse("systemd,upstart").unwrap_err();
    assert_eq!(
        err.message,
        "invalid --announce value \"systemd,upstart\": \"upstart\" is not one of server-starter, systemd, einhorn"
    );
    assert!(Announce::parse("").is_err());
}

/// Found by `fuzz_decode_activation`: a count up to i32::MAX was taken,
/// and a name slot allocated for each (50 GB) before any fd was checked,
/// so `LISTEN_PID=$$ LISTEN_FDS=2147483644` aborted the supervisor.
#[test]
fn an_impossible_fd_count_is_refused_before_anything_is_allocated() {
    let decode = |count: &str| decode_activation(&os_env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", count)]), 42);
    let invalid = |count: &str| {
        Error::usage(format!("invalid LISTEN_FDS value {count:?}: expected the number of passed fds"))
    };
    assert_eq!(decode("2147483644"), Err(invalid("2147483644")));
    let over = (MAX_LISTEN_FDS + 1).to_string();
    assert_eq!(decode(&over), Err(invalid(&over)));
    let most = decode(&MAX_LISTEN_FDS.to_string()).unwrap().unwrap();
    assert_eq!(most.names.len(), MAX_LISTEN_FDS);
}

/// Found by `fuzz_expand_placeholders`: the name typed in the command and
/// the listeners' names (LISTEN_FDNAMES may hold anything) were printed
/// raw, so a newline split the error.
#[test]
fn placeholder_errors_stay_on_one_line() {
    let slots = [Slot { key: "", name: Some("x\ny"), fd: 3 }];
    assert_eq!(
        expand_placeholders(&argv(&["w", "{fd:a\rb}"]), &slots),
        Err(Error::usage(
            r#"the worker command uses {fd:a\rb}, but no listener is named "a\rb"; the names are x\ny"#
        ))
    );
}

mod fuzz;
