//! `Config::new` as a whole, on random option values, worker commands and
//! environments: no panic; a refusal is a usage error (exit code 2) on one
//! line; what is accepted keeps the bounds (durations at most
//! `MAX_DURATION`, exit codes 0-255, one distinct fd per listener, none of
//! the supervisor's own variables passed down).
use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;

use super::fuzz::{DURATION_TOKENS, SIGNAL_TOKENS, check_error};
use super::*;
use crate::fuzz_tests::{config, near, text};
use crate::wire::env::is_supervisor_private;

/// Envdirs to point `--envdir` and `ENVDIR` at, made once: one setting the
/// start_server variables to usable values, one to bad ones.
static ENVDIRS: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let root = tempfile::tempdir().unwrap();
    for (dir, values) in [("good", ["1", "7", "0.5"]), ("bad", ["yes", "-1", "soon"])] {
        let dir = root.path().join(dir);
        std::fs::create_dir(&dir).unwrap();
        let names =
            [protocol::ENABLE_AUTO_RESTART, protocol::AUTO_RESTART_INTERVAL, protocol::KILL_OLD_DELAY];
        for (name, value) in names.into_iter().zip(values) {
            std::fs::write(dir.join(name), value).unwrap();
        }
    }
    root
});

fn some_path() -> impl Strategy<Value = PathBuf> {
    let envdirs = ENVDIRS.path().to_owned();
    let fixed = select(&["good", "bad", "missing", "", "a\nb"][..]);
    prop_oneof![
        3 => fixed.prop_map(move |name| envdirs.join(name)),
        1 => text(&["/", "tmp", ".", ".."]).prop_map(PathBuf::from),
    ]
}

#[rustfmt::skip]
const VALID_DURATIONS: &[&str] = &["0", "1", "2.5", "500ms", "2s", "1m", "365d", "366d"];
#[rustfmt::skip]
const VALID_SIGNALS: &[&str] = &["TERM", "QUIT", "USR1", "sighup", "10", "KILL"];
#[rustfmt::skip]
const VALID_PORTS: &[&str] = &["8080", "u53", "127.0.0.1:0", "[::1]:0=5", "0=1", "0=4", "localhost:u0"];
#[rustfmt::skip]
const VALID_LISTEN: &[&str] = &[
    "web=tcp://127.0.0.1:0?nodelay=0", "unix:/x?mode=600&backlog=3", "dns=udp://[::1]:0", "web=unix:/y",
];

/// An optional value: mostly absent, else mostly valid.
fn maybe(
    valid: &'static [&'static str],
    tokens: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.3, near(valid, tokens))
}

fn durations() -> impl Strategy<Value = Option<String>> {
    maybe(VALID_DURATIONS, DURATION_TOKENS)
}

fn start_server_opts() -> impl Strategy<Value = StartServerOpts> {
    let port = prop::collection::vec(near(VALID_PORTS, &["8080", "u", "127.0.0.1:", "=", "[::1]"]), 0..3);
    let path = prop::collection::vec(text(&["/run/a.sock", "x"]).prop_map(PathBuf::from), 0..2);
    let signals = || maybe(VALID_SIGNALS, SIGNAL_TOKENS);
    let log_file = maybe(&["log.txt", "| cat", "|"], &["|", " ", "cat"]);
    let backlog = prop::option::of(prop_oneof![-2..3i32, any::<i32>()]);
    let daemonize = prop::bool::weighted(0.05);
    (
        (port, path, prop::option::weighted(0.2, some_path()), durations(), signals(), signals()),
        (prop::option::weighted(0.3, some_path()), log_file, daemonize, any::<[bool; 3]>()),
        (durations(), durations(), backlog),
    )
        .prop_map(
            |((port, path, dir, interval, hup, term), (envdir, log_file, daemonize, flags), rest)| {
                let [enable_auto_restart, restart, stop] = flags;
                let (auto_restart_interval, kill_old_delay, backlog) = rest;
                StartServerOpts {
                    port,
                    path,
                    dir,
                    interval,
                    signal_on_hup: hup,
                    signal_on_term: term,
                    pid_file: None,
                    status_file: None,
                    envdir,
                    log_file,
                    daemonize,
                    enable_auto_restart,
                    auto_restart_interval,
                    kill_old_delay,
                    backlog,
                    restart,
                    stop,
                }
            },
        )
}

fn handover_opts() -> impl Strategy<Value = HandoverOpts> {
    let ready = select(&[ReadyArg::Auto, ReadyArg::Alive, ReadyArg::Notify][..]);
    let listen = prop::collection::vec(near(VALID_LISTEN, &["web=", "tcp://", "127.0.0.1:0", "?"]), 0..3);
    let workers = prop_oneof![1 => Just(0), 9 => 1..4usize];
    let stop_on_exit = prop::collection::vec(prop_oneof![9 => 0..256i32, 1 => any::<i32>()], 0..3);
    let names =
        prop::option::weighted(0.1, select(&["root", "0", "nobody", "no such user", "", "a\nb", "\0"][..]));
    let target = select(&[SignalTarget::Pid, SignalTarget::Group][..]);
    let format = select(&[LogFormat::Text, LogFormat::Json][..]);
    let announce = maybe(&["systemd", "server-starter, einhorn"], &["systemd", ",", "upstart", " "]);
    let on_usr1 = prop::option::of(select(&[OnUsr1::Reopen, OnUsr1::Forward, OnUsr1::Both][..]));
    (
        (ready, durations(), durations(), durations(), listen, workers, stop_on_exit),
        (any::<Option<u32>>(), target, any::<bool>(), format, names.clone(), names),
        (announce, any::<bool>(), on_usr1),
    )
        .prop_map(
            |(
                (ready, ready_timeout, drain, stop, listen, workers, codes),
                rest,
                (announce, no_nodelay, on_usr1),
            )| {
                let (max_start_attempts, signal_target, log_capture, log_format, user, group) = rest;
                HandoverOpts {
                    ready,
                    ready_timeout,
                    drain_timeout: drain,
                    stop_timeout: stop,
                    listen,
                    workers,
                    stop_on_exit: codes,
                    max_start_attempts,
                    signal_target,
                    cgroup: Default::default(),
                    log_capture,
                    log_format,
                    on_usr1,
                    watch: Vec::new(),
                    user: user.map(str::to_owned),
                    group: group.map(str::to_owned),
                    control: None,
                    metrics_listen: None,
                    announce,
                    no_tcp_nodelay: no_nodelay,
                }
            },
        )
}

/// The worker command: mostly a program, sometimes none, with placeholders.
fn command() -> impl Strategy<Value = Vec<OsString>> {
    let arg =
        near(&["prog", "{fd}", "{fd:web}", "--fd={fd:dns}"], &["{fd", ":", "}"]).prop_map(OsString::from);
    prop_oneof![1 => Just(Vec::new()), 9 => prop::collection::vec(arg, 1..3)]
}

/// The variables `Config::new` reads, with values near and far from valid.
fn environment() -> impl Strategy<Value = Vec<(OsString, OsString)>> {
    let own = std::process::id().to_string();
    let pid = prop_oneof![Just(own.clone()), text(&["1", "0"])];
    let envdir = some_path().prop_map(|path| path.into_os_string().into_string().unwrap());
    let numbers = || near(&["0", "1", "2", "2000000", "18446744073709551615"], &["0", "1"]);
    let durations = || near(VALID_DURATIONS, DURATION_TOKENS);
    #[rustfmt::skip]
    let pairs = prop_oneof![
        (Just(protocol::LISTEN_PID), pid.clone()), (Just(protocol::WATCHDOG_PID), pid),
        (Just(protocol::LISTEN_FDS), numbers()), (Just(protocol::WATCHDOG_USEC), numbers()),
        (Just(protocol::LISTEN_FDNAMES), near(&["web", "web:dns", "unknown:"], &["\n"])),
        (Just(protocol::ENVDIR), envdir), (Just(protocol::ENABLE_AUTO_RESTART), text(&["1", "0"])),
        (Just(protocol::AUTO_RESTART_INTERVAL), durations()), (Just(protocol::KILL_OLD_DELAY), durations()),
        (Just("HOME"), text(&["/root"])),
    ];
    prop::collection::vec(pairs.prop_map(|(k, v)| (OsString::from(k), OsString::from(v))), 0..6)
}

fn check_config(config: &Config) -> Result<(), TestCaseError> {
    let policy = &config.policy;
    let durations = [policy.interval, policy.kill_old_delay, policy.orphan_grace, policy.watch_debounce];
    let optional = [policy.ready_timeout, policy.drain_timeout, policy.stop_timeout, policy.auto_restart];
    for duration in durations.into_iter().chain(optional.into_iter().flatten()).chain(policy.watchdog) {
        prop_assert!(duration <= MAX_DURATION, "{:?}", policy);
    }
    prop_assert!(policy.workers >= 1 && !config.command.is_empty() && config.backlog > 0);
    prop_assert!(policy.stop_on_exit.iter().all(|code| (0..=255).contains(code)));
    prop_assert_eq!(config.fds.len(), config.listeners.len());
    let distinct: std::collections::HashSet<_> = config.fds.iter().collect();
    prop_assert_eq!(distinct.len(), config.fds.len());
    prop_assert!(config.capture.is_none() || !config.fds.iter().any(|fd| (1..=2).contains(fd)));
    prop_assert!(!config.base_env.iter().any(|(name, _)| is_supervisor_private(name)));
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_config_new(
        compat in any::<bool>(),
        opts in start_server_opts(),
        more in handover_opts(),
        command in command(),
        env in environment(),
    ) {
        match Config::new(compat, opts, more, command, env) {
            Ok(config) => check_config(&config)?,
            Err(error) => check_error(&error, &[])?,
        }
    }
}

/// Found by `fuzz_config_new`: these values were printed raw, so a newline
/// in one split the error over two lines.
#[test]
fn refusals_quoting_a_value_stay_on_one_line() {
    let missing = ENVDIRS.path().join("a\nb");
    let shown = format!("{}/a\\nb", ENVDIRS.path().display());
    let env = |name: &str, value: &Path| vec![(OsString::from(name), value.as_os_str().to_owned())];
    let user = |user: &str| HandoverOpts { user: Some(user.into()), ..HandoverOpts::default() };
    let group = |group: &str| HandoverOpts { group: Some(group.into()), ..HandoverOpts::default() };
    let cases = [
        (
            StartServerOpts { dir: Some(missing.clone()), ..Default::default() },
            HandoverOpts::default(),
            vec![],
        ),
        (
            StartServerOpts { envdir: Some(missing.clone()), ..Default::default() },
            HandoverOpts::default(),
            vec![],
        ),
        (StartServerOpts::default(), HandoverOpts::default(), env(protocol::ENVDIR, &missing)),
        (StartServerOpts::default(), user("a\nb"), vec![]),
        (StartServerOpts::default(), group("a\rb"), vec![]),
    ];
    let wants = [
        format!("--dir {shown}: not a directory"),
        format!("cannot read envdir {shown}: No such file or directory"),
        format!("cannot read envdir {shown}: No such file or directory"),
        r"--user a\nb: no such user; give an existing user name or uid".to_owned(),
        r"--group a\rb: no such group; give an existing group name or gid".to_owned(),
    ];
    for ((opts, more, env), want) in cases.into_iter().zip(wants) {
        let error = Config::new(false, opts, more, vec!["prog".into()], env).unwrap_err();
        assert_eq!(error, Error::usage(want));
    }
}
