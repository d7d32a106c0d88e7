//! The drill's command line: the split, the parse, the bounds.
use super::*;

fn split_str(args: &[&str]) -> (Vec<String>, Vec<String>) {
    let (own, theirs) = split(args.iter().map(OsString::from).collect());
    let text = |v: Vec<OsString>| v.into_iter().map(|a| a.into_string().unwrap()).collect();
    (text(own), text(theirs))
}

#[test]
fn drill_options_are_picked_out_the_rest_goes_to_the_supervisor() {
    let (own, theirs) = split_str(&[
        "--port",
        "127.0.0.1:0",
        "--restarts",
        "5",
        "--interval=2",
        "--json",
        "--workers",
        "2",
        "--",
        "hello",
        "--restarts",
        "9",
    ]);
    assert_eq!(own, ["handover drill", "--restarts", "5", "--json"]);
    assert_eq!(
        theirs,
        ["--port", "127.0.0.1:0", "--interval=2", "--workers", "2", "--", "hello", "--restarts", "9"]
    );
    let drill = parse(own.into_iter().map(OsString::from).collect()).unwrap();
    assert_eq!(drill.restarts, 5);
    assert!(drill.json);
}

#[test]
fn every_drill_option_is_picked_out_by_its_full_name_with_its_value() {
    let declared = crate::cli::long_options(command());
    assert_eq!(*OWN, declared);
    assert!(OWN.contains(&("help".to_owned(), false)));
    let valued = [
        "restarts",
        "rate",
        "junit",
        "supervisor",
        "restart-timeout",
        "keep",
        "max-retried",
        "startup-timeout",
    ];
    for name in valued.into_iter().chain(["upgrades", "upgrade-binary"]) {
        assert!(OWN.contains(&(name.to_owned(), true)), "{name}");
    }
    for name in ["keepalive", "json"] {
        assert!(OWN.contains(&(name.to_owned(), false)), "{name}");
    }
    for (name, valued) in OWN.iter() {
        let option = format!("--{name}");
        let (own, theirs) = split_str(&[&option, "v", "--port", "1"]);
        let (own_value, their_value) = if *valued { (Some("v"), None) } else { (None, Some("v")) };
        let expected: Vec<_> = ["handover drill", &option].into_iter().chain(own_value).collect();
        assert_eq!(own, expected, "{option}");
        let expected: Vec<_> = their_value.into_iter().chain(["--port", "1"]).collect();
        assert_eq!(theirs, expected, "{option}");
    }
}

#[test]
fn max_retried_is_per_connection_and_restart_or_a_percentage() {
    use RetryLimit::{PerConnectionRestart as Per, Percent};
    let parsed = |args: &[&str]| {
        let own = ["handover drill"].iter().chain(args).map(OsString::from).collect();
        parse(own).map(|d| d.max_retried)
    };
    assert_eq!(parsed(&[]).unwrap(), crate::drill::report::DEFAULT_MAX_RETRIED);
    assert_eq!(parsed(&[]).unwrap(), Per(1.0));
    assert_eq!(parsed(&["--max-retried", "0.5%"]).unwrap(), Percent(0.5));
    assert_eq!(parsed(&["--max-retried=0"]).unwrap(), Per(0.0));
    assert_eq!(parsed(&["--max-retried", "100%"]).unwrap(), Percent(100.0));
    assert_eq!(parsed(&["--max-retried", "2.5"]).unwrap(), Per(2.5));
    for bad in ["101%", "-1", "NaN", "one", "%", "inf"] {
        let e = parsed(&[&format!("--max-retried={bad}")]).unwrap_err().to_string();
        assert!(e.contains("expected retries per connection and restart"), "{bad}: {e}");
    }
}

#[test]
fn the_startup_timeout_defaults_to_the_restart_timeout_given_else_60_s() {
    let parsed = |args: &[&str]| {
        let own = ["handover drill"].iter().chain(args).map(OsString::from).collect();
        parse(own).map(|d| (d.startup_timeout().as_secs(), d.restart_timeout().as_secs())).unwrap()
    };
    assert_eq!(parsed(&[]), (60, 120));
    assert_eq!(parsed(&["--restart-timeout", "5s"]), (5, 5));
    assert_eq!(parsed(&["--restart-timeout", "5s", "--startup-timeout=9s"]), (9, 5));
    assert_eq!(parsed(&["--startup-timeout", "2s"]), (2, 120));
}

#[test]
fn upgrades_take_turns_with_restarts_to_absolute_binaries() {
    let parsed = |args: &[&str]| {
        let own = ["handover drill"].iter().chain(args).map(OsString::from).collect();
        parse(own).map_err(|e| e.render().to_string())
    };
    let drill = parsed(&[]).unwrap();
    assert_eq!((drill.upgrades, drill.upgrade_binary.len()), (0, 0));
    let drill = parsed(&["--upgrades", "4", "--upgrade-binary", "/a/handover"]).unwrap();
    assert_eq!(drill.upgrades, 4);
    assert_eq!(drill.upgrade_binary, [PathBuf::from("/a/handover")]);
    let drill = parsed(&["--upgrades=2", "--upgrade-binary=b", "--upgrade-binary", "/c"]).unwrap();
    let here = std::env::current_dir().unwrap();
    assert_eq!(drill.upgrade_binary, [here.join("b"), PathBuf::from("/c")]);
    let e = parsed(&["--supervisor", "start_server", "--upgrades", "1"]).unwrap_err();
    assert_eq!(
        e.lines().next().unwrap(),
        "error: --upgrades cannot be used with --supervisor start_server: only handover, \
         through its control socket, can be upgraded in place"
    );
    let e = parsed(&["--supervisor=x", "--upgrade-binary", "/a"]).unwrap_err();
    assert!(e.starts_with("error: --upgrade-binary cannot be used with --supervisor x: "), "{e}");
    let e = parsed(&["--upgrade-binary", "/a"]).unwrap_err();
    assert!(e.starts_with("error: --upgrade-binary needs --upgrades N"), "{e}");
    assert!(parsed(&["--supervisor", "x", "--upgrades", "0"]).is_ok());
    assert!(parsed(&["--upgrades", "-1"]).is_err());
}

#[test]
fn no_drill_option_hides_a_supervisor_option() {
    let mut supervisor = crate::cli::HandoverCli::command();
    supervisor.build();
    let theirs: Vec<_> = supervisor.get_arguments().filter_map(|a| a.get_long()).collect();
    let shared: Vec<_> = OWN.iter().filter(|(name, _)| theirs.contains(&name.as_str())).collect();
    assert_eq!(shared, [&("help".to_owned(), false)]);
}

#[test]
fn every_number_has_a_bound_and_nothing_is_zero_that_cannot_be() {
    let refused = |args: &[&str]| {
        let own = ["handover drill"].iter().chain(args).map(OsString::from).collect();
        let e = parse(own).map(|_| ()).unwrap_err().render().to_string();
        e.lines().next().unwrap_or_default().to_owned()
    };
    let huge = "18446744073709551615";
    for option in ["--restarts", "--upgrades", "--connections", "--rate", "--requests"] {
        let said = refused(&[option, huge]);
        assert!(said.contains(option) && said.contains("is not in"), "{said}");
    }
    assert!(refused(&["--restarts", "100001"]).contains("is not in 0..=100000"));
    assert!(refused(&["--connections", "10001"]).contains("is not in 1..=10000"));
    assert!(refused(&["--connections", "0"]).contains("is not in 1..=10000"));
    assert!(refused(&["--expect-status", "1000"]).contains("is not in 100..=999"));
    for option in ["--request-timeout", "--restart-timeout", "--startup-timeout", "--duration"] {
        assert_eq!(
            refused(&[option, "0"]),
            format!("error: {option} must be more than 0 (see handover drill --help)")
        );
    }
    let own = ["handover drill", "--restarts", "100000", "--connections", "10000", "--rate", "1000000"];
    let drill = parse(own.into_iter().map(OsString::from).collect()).unwrap();
    assert_eq!((drill.restarts, drill.connections, drill.rate), (100_000, 10_000, Some(1_000_000)));
}

mod fuzz;
