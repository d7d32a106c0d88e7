use super::*;

fn inet(host: Option<&str>, port: u16, udp: bool, pin: Option<RawFd>) -> ListenSpec {
    ListenSpec { pin, ..ListenSpec::new(Address::Inet { host: host.map(str::to_owned), port, udp }) }
}

#[test]
fn parses_every_port_form() {
    let cases = [
        ("8080", inet(None, 8080, false, None)),
        ("u8080", inet(None, 8080, true, None)),
        ("8080=5", inet(None, 8080, false, Some(5))),
        ("u53=0", inet(None, 53, true, Some(0))),
        ("0", inet(None, 0, false, None)),
        ("127.0.0.1:8080", inet(Some("127.0.0.1"), 8080, false, None)),
        ("localhost:u53", inet(Some("localhost"), 53, true, None)),
        ("127.0.0.1:8080=0", inet(Some("127.0.0.1"), 8080, false, Some(0))),
        ("[::1]:8080", inet(Some("::1"), 8080, false, None)),
        ("::1:8080", inet(Some("::1"), 8080, false, None)),
        ("[::]:u8080=9", inet(Some("::"), 8080, true, Some(9))),
        ("fe80::1:2:443", inet(Some("fe80::1:2"), 443, false, None)),
        ("[127.0.0.1]:8080", inet(Some("127.0.0.1"), 8080, false, None)),
        (" 8080 ", inet(None, 8080, false, None)),
        (" 127.0.0.1 : u8080 = 5 ", inet(Some("127.0.0.1"), 8080, true, Some(5))),
        ("[ ::1 ]:80", inet(Some("::1"), 80, false, None)),
    ];
    for (input, want) in cases {
        assert_eq!(ListenSpec::parse_port(input), Ok(want), "{input:?}");
    }
}

#[test]
fn rejects_malformed_ports() {
    let syntax = "expected PORT, HOST:PORT or [IPV6]:PORT, optionally u-prefixed and =FD";
    let cases = [
        ("abc", syntax.to_owned()),
        ("", syntax.to_owned()),
        (":", syntax.to_owned()),
        (":8080", syntax.to_owned()),
        ("host:", syntax.to_owned()),
        ("[::1", syntax.to_owned()),
        ("::1]:80", syntax.to_owned()),
        ("8080=x", syntax.to_owned()),
        ("8080=-1", syntax.to_owned()),
        ("8080=", syntax.to_owned()),
        ("U8080", syntax.to_owned()),
        ("u 8080", syntax.to_owned()),
        ("+80", syntax.to_owned()),
        ("70000", "port 70000 is out of range (0-65535)".to_owned()),
        ("8080=99999999999", "fd 99999999999 is out of range".to_owned()),
        ("::zz:80", r#""::zz" is not a numeric IPv6 address"#.to_owned()),
        ("[1:2]:80", r#""1:2" is not a numeric IPv6 address"#.to_owned()),
    ];
    for (input, why) in cases {
        let want = Error::usage(format!("invalid --port value {input:?}: {why}"));
        assert_eq!(ListenSpec::parse_port(input), Err(want), "{input:?}");
    }
}

#[test]
fn keys_follow_start_server() {
    let key = |s: &str, port| ListenSpec::parse_port(s).unwrap().key(port);
    assert_eq!(key("8080", 8080), "8080");
    assert_eq!(key("u8080=5", 8080), "8080");
    assert_eq!(key("0", 41234), "41234");
    assert_eq!(key("127.0.0.1:8080", 8080), "127.0.0.1:8080");
    assert_eq!(key("localhost:u53", 53), "localhost:53");
    assert_eq!(key("127.0.0.1:0", 41234), "127.0.0.1:41234");
    assert_eq!(key("[::1]:8080", 8080), "[::1]:8080");
    assert_eq!(key("::1:8080", 8080), "[::1]:8080");
    assert_eq!(key("[::]:8080", 8080), "[::]:8080");
    assert_eq!(key("[127.0.0.1]:8080", 8080), "127.0.0.1:8080");
    assert_eq!(ListenSpec::parse_path("./x.sock").key(0), "./x.sock");
    assert_eq!(ListenSpec::parse_path("/tmp/s.sock").key(0), "/tmp/s.sock");
}

fn named(name: &str, spec: ListenSpec) -> ListenSpec {
    ListenSpec { name: Some(name.to_owned()), ..spec }
}

fn unix(path: &str, options: UnixOptions, backlog: Option<i32>) -> ListenSpec {
    ListenSpec { backlog, ..ListenSpec::new(Address::Unix { path: path.into(), options }) }
}

#[test]
fn parses_every_listen_form() {
    let tcp = |host: &str, port| inet(Some(host), port, false, None);
    let udp = |host: &str, port| inet(Some(host), port, true, None);
    let plain = |path: &str| unix(path, UnixOptions::default(), None);
    let long_name = "n".repeat(255);
    let cases = [
        ("tcp://127.0.0.1:8080", tcp("127.0.0.1", 8080)),
        ("tcp://0.0.0.0:80", tcp("0.0.0.0", 80)),
        ("tcp://localhost:0", tcp("localhost", 0)),
        ("tcp://[::1]:8080", tcp("::1", 8080)),
        ("tcp://[::]:0", tcp("::", 0)),
        ("web=tcp://0.0.0.0:80", named("web", tcp("0.0.0.0", 80))),
        ("tcp://127.0.0.1:0?backlog=128", ListenSpec { backlog: Some(128), ..tcp("127.0.0.1", 0) }),
        ("udp://127.0.0.1:53", udp("127.0.0.1", 53)),
        ("dns=udp://[::1]:0", named("dns", udp("::1", 0))),
        ("unix:/run/app.sock", plain("/run/app.sock")),
        ("unix:rel.sock", plain("rel.sock")),
        ("unix:///run/app.sock", plain("/run/app.sock")),
        ("unix://rel.sock", plain("rel.sock")),
        ("unix:/a=b", plain("/a=b")),
        ("web=unix:/a=b", named("web", plain("/a=b"))),
        (
            "admin=unix:/run/a.sock?mode=0660&owner=www-data&group=www-data&backlog=16",
            named(
                "admin",
                unix(
                    "/run/a.sock",
                    UnixOptions {
                        mode: Some(0o660),
                        owner: Some("www-data".into()),
                        group: Some("www-data".into()),
                    },
                    Some(16),
                ),
            ),
        ),
        (
            "unix:/x?group=33&mode=600",
            unix(
                "/x",
                UnixOptions { mode: Some(0o600), group: Some("33".into()), ..UnixOptions::default() },
                None,
            ),
        ),
        ("a b=tcp://h:1", named("a b", tcp("h", 1))),
        (&format!("{long_name}=tcp://h:1"), named(&long_name, tcp("h", 1))),
    ];
    for (input, want) in cases {
        assert_eq!(ListenSpec::parse_listen(input), Ok(want), "{input:?}");
    }
}

#[test]
fn rejects_malformed_listen_values() {
    let syntax = "expected [NAME=]tcp://HOST:PORT, udp://HOST:PORT or unix:PATH, \
                  optionally followed by ?OPTION=VALUE&...";
    let tcp_syntax = "expected tcp://HOST:PORT or tcp://[IPV6]:PORT";
    let long_name = format!("{}=tcp://h:1", "n".repeat(256));
    let cases: &[(&str, &str)] = &[
        ("", syntax),
        ("8080", syntax),
        ("127.0.0.1:8080", syntax),
        ("/run/app.sock", syntax),
        ("web=8080", syntax),
        ("http://h:80", r#"unknown scheme "http" (expected tcp://, udp:// or unix:)"#),
        ("tcp:127.0.0.1:80", tcp_syntax),
        ("udp:h:53", "expected udp://HOST:PORT or udp://[IPV6]:PORT"),
        ("tcp://:80", "HOST is required (tcp://0.0.0.0:80 for every IPv4 address)"),
        ("tcp://127.0.0.1", tcp_syntax),
        ("tcp://127.0.0.1:", tcp_syntax),
        ("tcp://127.0.0.1:http", tcp_syntax),
        ("tcp://127.0.0.1:80/", tcp_syntax),
        ("tcp://a b:80", tcp_syntax),
        ("tcp://user@h:80", tcp_syntax),
        ("tcp://[::1:80", tcp_syntax),
        ("tcp://127.0.0.1:70000", "port 70000 is out of range (0-65535)"),
        ("tcp://::1:80", "an IPv6 address goes in brackets: tcp://[::1]:80"),
        ("tcp://[::zz]:80", r#""::zz" is not a numeric IPv6 address"#),
        ("unix:", "unix: needs a PATH"),
        ("unix://", "unix: needs a PATH"),
        ("=tcp://h:1", "the listener name before '=' is empty"),
        ("we\tb=tcp://h:1", r#"listener name "we\tb" may hold printable ASCII characters only, without ':'"#),
        (
            "caf\u{e9}=tcp://h:1",
            "listener name \"caf\u{e9}\" may hold printable ASCII characters only, without ':'",
        ),
        (
            "unknown=tcp://h:1",
            r#"listener name "unknown" is systemd's word for an unnamed socket; choose another"#,
        ),
        (&long_name, "the listener name is longer than 255 characters"),
        ("tcp://h:80?mode=0660", r#"option "mode" (tcp takes backlog, nodelay)"#),
        ("udp://h:53?backlog=5", r#"option "backlog" (udp takes no options)"#),
        ("unix:/x?colour=red", r#"unknown option "colour" (unix takes mode, owner, group, backlog)"#),
        ("tcp://h:80?reuseport=1", r#"unknown option "reuseport" (tcp takes backlog, nodelay)"#),
        ("unix:/x?mode", r#"expected OPTION=VALUE, found "mode""#),
        ("unix:/x?", r#"expected OPTION=VALUE, found """#),
        ("unix:/x?mode=0660&&owner=x", r#"expected OPTION=VALUE, found """#),
        ("unix:/x?mode=0660&mode=0600", r#"option "mode" is given twice"#),
        ("unix:/x?owner=", r#"option "owner" needs a value"#),
        ("unix:/x?mode=999", r#"mode "999" is not an octal permission mode like 0660"#),
        ("unix:/x?mode=01777", r#"mode "01777" is not an octal permission mode like 0660"#),
        ("unix:/x?mode=rw", r#"mode "rw" is not an octal permission mode like 0660"#),
        ("unix:/x?backlog=0", r#"backlog "0" is not a number from 1 to 2147483647"#),
        ("tcp://h:1?backlog=-1", r#"backlog "-1" is not a number from 1 to 2147483647"#),
        ("tcp://h:1?backlog=+5", r#"backlog "+5" is not a number from 1 to 2147483647"#),
    ];
    for (input, why) in cases {
        let want = Error::usage(format!("invalid --listen value {input:?}: {why}"));
        assert_eq!(ListenSpec::parse_listen(input), Err(want), "{input:?}");
    }
}

#[test]
fn listen_keys_are_the_port_forms() {
    let key = |s: &str, port| ListenSpec::parse_listen(s).unwrap().key(port);
    assert_eq!(key("tcp://127.0.0.1:0", 41234), "127.0.0.1:41234");
    assert_eq!(key("web=tcp://0.0.0.0:80", 80), "0.0.0.0:80");
    assert_eq!(key("tcp://localhost:8080", 8080), "localhost:8080");
    assert_eq!(key("tcp://[::1]:8080", 8080), "[::1]:8080");
    assert_eq!(key("udp://[::]:53", 53), "[::]:53");
    assert_eq!(key("unix:rel.sock?mode=0600", 0), "rel.sock");
    assert_eq!(key("unix:///run/a.sock", 0), "/run/a.sock");
}

#[test]
fn descriptions_name_protocol_and_address() {
    let describe = |s: &str| ListenSpec::parse_listen(s).unwrap().describe();
    assert_eq!(describe("web=tcp://127.0.0.1:80"), "tcp 127.0.0.1:80");
    assert_eq!(describe("udp://[::1]:53"), "udp [::1]:53");
    assert_eq!(describe("unix:/run/a.sock?mode=0600"), "unix /run/a.sock");
    assert_eq!(ListenSpec::parse_port("8080").unwrap().describe(), "tcp 0.0.0.0:8080");
    assert_eq!(ListenSpec::parse_port("localhost:u53").unwrap().describe(), "udp localhost:53");
}

#[test]
fn names_must_be_unique() {
    let specs = |values: &[&str]| -> Vec<ListenSpec> {
        let parse = |v: &&str| ListenSpec::parse_listen(v).unwrap();
        values.iter().map(parse).collect()
    };
    let distinct = specs(&["a=tcp://h:1", "b=tcp://h:2", "tcp://h:3", "tcp://h:4"]);
    assert_eq!(check_unique_names(&distinct), Ok(()));
    let twice = specs(&["a=tcp://h:1", "b=tcp://h:2", "a=unix:/x"]);
    assert_eq!(
        check_unique_names(&twice),
        Err(Error::usage(r#"two listeners are named "a": names must be unique"#))
    );
}

/// Found by `fuzz_parse_listen`: parts of the value were printed raw, so a
/// newline in it split the error over two lines.
#[test]
fn refusals_stay_on_one_line_whatever_the_value() {
    let cases = [
        ("tcp://::\n", r#"an IPv6 address goes in brackets: tcp://[:]:\n"#),
        ("udp://:\r", r#"HOST is required (udp://0.0.0.0:\r for every IPv4 address)"#),
        (
            "tcp://\n127.0.0.1:tcp://\n127.0.0.1:8080",
            r#"an IPv6 address goes in brackets: tcp://[\n127.0.0.1:tcp://\n127.0.0.1]:8080"#,
        ),
    ];
    for (input, why) in cases {
        let want = Error::usage(format!("invalid --listen value {input:?}: {why}"));
        assert_eq!(ListenSpec::parse_listen(input), Err(want), "{input:?}");
    }
}

mod fuzz;
