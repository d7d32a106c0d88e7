use nix::sys::signal::Signal;

use super::*;

fn build(opts: StartServerOpts, env: &[(&str, &str)]) -> Result<Config> {
    let env = env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect();
    Config::new(false, opts, HandoverOpts::default(), vec!["prog".into()], env)
}

fn value(config: &Config, name: &str) -> Option<String> {
    lookup(&config.base_env, name).map(|v| v.to_string_lossy().into_owned())
}

#[test]
fn durations_accept_seconds_and_humane_forms() {
    assert_eq!(parse_duration("interval", "3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("interval", "500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("interval", "1m"), Ok(Duration::from_secs(60)));
    assert_eq!(parse_duration("interval", "0.25"), Ok(Duration::from_millis(250)));
    assert!(parse_duration("interval", "-1").is_err());
    let err = parse_duration("interval", "abc").unwrap_err();
    assert!(err.message.starts_with("invalid --interval value \"abc\""), "{err}");
}

#[test]
fn signals_are_validated_at_startup() {
    assert_eq!(parse_signal("x", "term"), Ok(Signal::SIGTERM));
    assert_eq!(parse_signal("x", "SIGUSR1"), Ok(Signal::SIGUSR1));
    assert_eq!(parse_signal("x", "10"), Ok(Signal::SIGUSR1));
    assert!(parse_signal("signal-on-hup", "BOGUS").unwrap_err().message.contains("--signal-on-hup"));
    let kill = parse_signal("signal-on-hup", "KILL").unwrap_err().to_string();
    assert!(kill.contains("SIGKILL cannot be caught") && kill.contains("give TERM or QUIT"), "{kill}");
}

#[test]
fn start_server_variables_are_exported_and_read_back() {
    let opts =
        StartServerOpts { enable_auto_restart: true, kill_old_delay: Some("2".into()), ..Default::default() };
    let config = build(opts, &[("LISTEN_FDS", "3"), ("NOTIFY_SOCKET", "/run/x"), ("HOME", "/root")]).unwrap();
    assert_eq!(value(&config, "ENABLE_AUTO_RESTART").as_deref(), Some("1"));
    assert_eq!(value(&config, "KILL_OLD_DELAY").as_deref(), Some("2"));
    assert_eq!(value(&config, "LISTEN_FDS"), None, "the supervisor's own, never passed down");
    assert_eq!(value(&config, "NOTIFY_SOCKET"), None);
    assert_eq!(config.policy.auto_restart, Some(Duration::from_secs(360)));
    assert_eq!(config.policy.kill_old_delay, Duration::from_secs(2));
    assert_eq!(config.policy.orphan_grace, Duration::from_secs(10), "no --stop-timeout: 10 s");

    let env = [("ENABLE_AUTO_RESTART", "1"), ("AUTO_RESTART_INTERVAL", "7")];
    let config = build(StartServerOpts::default(), &env).unwrap();
    assert_eq!(config.policy.auto_restart, Some(Duration::from_secs(7)));
    assert_eq!(config.policy.kill_old_delay, Duration::from_secs(5), "auto-restart default");
}

#[test]
fn bad_input_is_one_line_naming_the_option() {
    let cases: Vec<(StartServerOpts, &str)> = vec![
        (StartServerOpts { daemonize: true, ..Default::default() }, "--daemonize needs --log-file"),
        (StartServerOpts { port: vec!["abc".into()], ..Default::default() }, "abc"),
        (StartServerOpts { interval: Some("soon".into()), ..Default::default() }, "--interval"),
        (StartServerOpts { backlog: Some(-1), ..Default::default() }, "--backlog"),
        (StartServerOpts { dir: Some("/nonexistent/dir".into()), ..Default::default() }, "--dir"),
        (
            StartServerOpts { envdir: Some("/nonexistent/envdir".into()), ..Default::default() },
            "/nonexistent/envdir",
        ),
        (StartServerOpts { port: vec!["1=5".into(), "2=5".into()], ..Default::default() }, "fd 5"),
    ];
    for (opts, needle) in cases {
        let err = build(opts, &[]).unwrap_err();
        assert!(err.message.contains(needle) && !err.message.contains('\n'), "{err}");
    }
}

#[test]
fn log_file_pipe_form() {
    let opts = StartServerOpts { log_file: Some("  | cat >> x.log".into()), ..Default::default() };
    assert_eq!(build(opts, &[]).unwrap().log, Some(LogTarget::Pipe("cat >> x.log".into())));
}

#[test]
fn usr1_reopens_a_log_file_and_is_forwarded_otherwise_unless_told() {
    let on_usr1 = |log: Option<&str>, asked: Option<OnUsr1>| {
        let opts = StartServerOpts { log_file: log.map(str::to_owned), ..Default::default() };
        let more = HandoverOpts { on_usr1: asked, ..HandoverOpts::default() };
        Config::new(false, opts, more, vec!["prog".into()], Vec::new()).map(|c| c.on_usr1)
    };
    assert_eq!(on_usr1(Some("app.log"), None), Ok(OnUsr1::Reopen));
    assert_eq!(on_usr1(None, None), Ok(OnUsr1::Forward));
    assert_eq!(on_usr1(Some("| logger"), None), Ok(OnUsr1::Forward));
    assert_eq!(on_usr1(Some("app.log"), Some(OnUsr1::Both)), Ok(OnUsr1::Both));
    assert_eq!(on_usr1(Some("app.log"), Some(OnUsr1::Forward)), Ok(OnUsr1::Forward));
    let refused = on_usr1(Some("| logger"), Some(OnUsr1::Reopen)).unwrap_err();
    assert_eq!(refused.code, crate::error::USAGE);
    assert!(refused.message.starts_with("--on-usr1 reopen needs --log-file FILE"), "{}", refused.message);
    assert!(on_usr1(None, Some(OnUsr1::Both)).is_err());
}

mod fuzz;
mod fuzz_new;

#[test]
fn tcp_listeners_get_nodelay_under_handovers_name_only() {
    let nodelay = |compat: bool, more: HandoverOpts| {
        let opts = StartServerOpts { port: vec!["127.0.0.1:0".into(), "u53".into()], ..Default::default() };
        let config = Config::new(compat, opts, more, vec!["prog".into()], Vec::new()).unwrap();
        config.listeners.iter().map(|l| l.nodelay).collect::<Vec<_>>()
    };
    assert_eq!(nodelay(false, HandoverOpts::default()), [Some(true), None], "TCP only");
    assert_eq!(
        nodelay(true, HandoverOpts::default()),
        [Some(false), None],
        "start_server's sockets as they were"
    );
    let off = HandoverOpts { no_tcp_nodelay: true, ..HandoverOpts::default() };
    assert_eq!(nodelay(false, off), [Some(false), None]);
    let listen =
        HandoverOpts { listen: vec!["tcp://127.0.0.1:0?nodelay=0".into()], ..HandoverOpts::default() };
    let opts = StartServerOpts::default();
    let config = Config::new(false, opts, listen, vec!["prog".into()], Vec::new()).unwrap();
    assert_eq!(config.listeners[0].nodelay, Some(false), "?nodelay= wins");
}
