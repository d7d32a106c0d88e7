//! Bad input and failed set-up: one line on stderr naming the object (and
//! the fix), the documented exit code, and nothing left behind: no pid,
//! status or socket file, no worker (it would have written its journal).
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::*;

/// What a one-shot run of handover printed and how it ended.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Outcome {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// stderr without the start banner `handover (pid:N) starting now...`,
    /// which goes to the original stderr as start_server's does.
    pub fn error_lines(&self) -> Vec<&str> {
        (self.stderr.lines())
            .filter(|l| !(l.starts_with("handover (pid:") && l.ends_with(") starting now...")))
            .collect()
    }

    pub fn dossier(&self) -> String {
        format!(
            "--- command: {}\n--- exit: {:?}\n--- stdout:\n{}--- stderr:\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs handover once in `dir` (`{dir}` in an argument is replaced) and
/// waits for it to exit on its own; panics after DEADLINE (killing it).
pub fn run_in(dir: &Path, args: &[&str]) -> Outcome {
    run_in_env(dir, args, &[])
}

/// `run_in` with these variables added to handover's environment.
pub fn run_in_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let dir_text = dir.to_string_lossy();
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir_text)).collect();
    let command = format!("handover {}", args.join(" "));
    let mut child = Command::new(binary())
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn handover");
    let collect = |mut stream: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    // A blocking wait, not polling: a test may check what is true the
    // moment the command returns (`stop`: the supervisor is gone).
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let Ok(status) = exited.recv_timeout(DEADLINE) else {
        // Not reaped yet (the waiting thread is still blocked), so the pid is still its own.
        let _ = kill(pid, Signal::SIGKILL);
        panic!("`{command}` did not exit within {DEADLINE:?}");
    };
    let status = status.expect("wait for handover");
    // A process that inherited the pipes (a daemon, a worker) must not hang the test.
    let left = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(DEADLINE.saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("`{command}`: output still open after it exited"))
    };
    Outcome { code: status.code(), stdout: left(out), stderr: left(err), command }
}

/// Runs handover once in a fresh temp dir.
pub fn run_once(args: &[&str]) -> (Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (run_in(dir.path(), args), dir)
}

pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The files every case asks for (pid, status, a unix socket), then
/// `options`, then the worker with a journal it would create on start.
fn case_args<'a>(options: &[&'a str], worker: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--path", "{dir}/s.sock"];
    args.extend(options);
    args.extend(["--", worker, "--journal", "{dir}/journal"]);
    args
}

/// The last error line has `needles` (`{dir}` replaced); exit `code`; only
/// `kept` (files the test made) in the dir. The banner is tolerated here.
fn assert_failed(o: &Outcome, dir: &Path, code: i32, needles: &[&str], kept: &[&str]) {
    let d = dir.to_string_lossy();
    assert_eq!(o.code, Some(code), "exit code\n{}", o.dossier());
    let lines = o.error_lines();
    let last = lines.last().copied().unwrap_or_default();
    for needle in needles {
        let needle = needle.replace("{dir}", &d);
        assert!(last.contains(&needle), "no {needle:?} in {last:?}\n{}", o.dossier());
    }
    assert!(o.stdout.is_empty(), "stdout\n{}", o.dossier());
    assert_eq!(listing(dir), kept, "left behind\n{}", o.dossier());
}

/// Exactly one line, `handover: ...`, nothing else (no banner either).
fn assert_one_line(o: &Outcome) {
    let lines = o.stderr_lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("handover: "),
        "expected one `handover: ` line\n{}",
        o.dossier()
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let worker = example("worker").display().to_string();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--port", "abc"], &["--port", "\"abc\"", "expected PORT, HOST:PORT"]),
        (&["--port", "127.0.0.1:70000"], &["--port", "70000", "out of range"]),
        (&["--signal-on-hup", "BOGUS"], &["--signal-on-hup", "BOGUS", "TERM, QUIT"]),
        (&["--envdir", "{dir}/missing"], &["envdir {dir}/missing", "No such file"]),
        (&["--daemonize"], &["--daemonize", "needs --log-file"]),
        (&["--interval", "soon"], &["--interval", "\"soon\"", "500ms"]),
        (&["--bogus"], &["--bogus", "--help"]),
        (&["--dir", "{dir}/missing"], &["--dir {dir}/missing", "not a directory"]),
        (&["--port", "127.0.0.1:0=5", "--port", "127.0.0.1:0=5"], &["fd 5", "=FD"]),
        (&["--group", "0"], &["--group without --user", "add --user"]),
    ];
    for (options, needles) in cases {
        let (o, dir) = run_once(&case_args(options, &worker));
        assert_failed(&o, dir.path(), 2, needles, &[]);
        assert_one_line(&o);
    }
}

/// A value quoted raw in a message (here a client's path) cannot split it:
/// the line is printed with its control characters escaped.
#[test]
fn an_error_quoting_a_newline_is_still_one_line() {
    let (o, _dir) = run_once(&["stop", "--pid-file", "{dir}/no\nsuch"]);
    assert_eq!(o.code, Some(1), "exit code\n{}", o.dossier());
    assert_one_line(&o);
    assert!(o.stderr.contains(r"/no\nsuch: No such file"), "{}", o.dossier());
}

#[test]
fn absurd_durations_are_refused_at_startup() {
    let worker = example("worker").display().to_string();
    let options = [
        "--interval",
        "--kill-old-delay",
        "--auto-restart-interval",
        "--ready-timeout",
        "--drain-timeout",
        "--stop-timeout",
    ];
    for option in options {
        for value in ["1e20", "18446744073709551615", "366d", "inf", "NaN"] {
            let (o, dir) = run_once(&case_args(&[option, value], &worker));
            assert_failed(&o, dir.path(), 2, &[option, value], &[]);
            assert_one_line(&o);
        }
        let (o, dir) = run_once(&case_args(&[option, "-1"], &worker));
        assert_failed(&o, dir.path(), 2, &[option, "must not be negative"], &[]);
        assert_one_line(&o);
    }
    for (name, value) in [("KILL_OLD_DELAY", "1e30"), ("AUTO_RESTART_INTERVAL", "1e30")] {
        let dir = tempfile::tempdir().unwrap();
        let args = case_args(&["--enable-auto-restart"], &worker);
        let o = run_in_env(dir.path(), &args, &[(name, value), ("ENABLE_AUTO_RESTART", "1")]);
        assert_failed(&o, dir.path(), 2, &[name, value], &[]);
        assert_one_line(&o);
    }
}

#[test]
fn absurd_counts_are_refused_at_startup() {
    let worker = example("worker").display().to_string();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--workers", "18446744073709551615"], &["--workers", "at most 10000"]),
        (&["--workers", "10001"], &["--workers", "at most 10000"]),
        (&["--max-start-attempts", "0"], &["--max-start-attempts", "1 or more"]),
        (&["--backlog", "-5"], &["--backlog", "0 (default) or more"]),
    ];
    for (options, needles) in cases {
        let (o, dir) = run_once(&case_args(options, &worker));
        assert_failed(&o, dir.path(), 2, needles, &[]);
        assert_one_line(&o);
    }
}

#[test]
fn stop_on_exit_codes_are_exit_statuses() {
    let worker = example("worker").display().to_string();
    for value in ["300", "-1", "256"] {
        let (o, dir) = run_once(&case_args(&["--stop-on-exit", value], &worker));
        assert_failed(&o, dir.path(), 2, &["--stop-on-exit", value, "0 to 255"], &[]);
        assert_one_line(&o);
    }
}

#[test]
fn missing_command_is_a_usage_error() {
    let (o, dir) =
        run_once(&["--port", "127.0.0.1:0", "--pid-file", "{dir}/pid", "--status-file", "{dir}/status"]);
    assert_failed(&o, dir.path(), 2, &["no worker command", "-- COMMAND"], &[]);
    assert_one_line(&o);
}

/// A start whose port is held by the test: set-up fails after the banner.
fn busy_port() -> (Outcome, tempfile::TempDir, u16, TcpListener) {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let spec = format!("127.0.0.1:{port}");
    let worker = example("worker").display().to_string();
    let (o, dir) = run_once(&case_args(&["--port", &spec], &worker));
    (o, dir, port, busy)
}

#[test]
fn port_in_use_exits_1_and_leaves_nothing() {
    let (o, dir, port, _busy) = busy_port();
    let bind = format!("cannot bind tcp 127.0.0.1:{port}: Address already in use");
    assert_failed(&o, dir.path(), 1, &["handover: ", &bind], &[]);
    assert_eq!(o.error_lines().len(), 1, "{}", o.dossier());
}

#[test]
fn a_failed_bind_removes_the_socket_files_already_made() {
    let worker = example("worker").display().to_string();
    let options = ["--path", "{dir}/nodir/t.sock"];
    let (o, dir) = run_once(&case_args(&options, &worker));
    let needles = ["handover: cannot bind {dir}/nodir/t.sock", "No such file"];
    assert_failed(&o, dir.path(), 1, &needles, &[]);
    assert_eq!(o.error_lines().len(), 1, "{}", o.dossier());
}

#[test]
fn a_locked_pid_file_exits_1_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    // Held by the pid it names (this test), as a running supervisor holds it.
    let me = std::process::id();
    fs::write(&path, format!("{me}\n")).unwrap();
    let _held = Flock::lock(fs::File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
    let worker = example("worker").display().to_string();
    let o = run_in(dir.path(), &case_args(&["--port", "127.0.0.1:0"], &worker));
    let named = format!("pid file {{dir}}/pid (pid {me})");
    let needles = ["handover: ", &named, "stop it first"];
    assert_failed(&o, dir.path(), 1, &needles, &["pid"]);
    assert_eq!(o.error_lines().len(), 1, "{}", o.dossier());
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{me}\n"));
}

#[test]
fn setup_failures_are_exactly_one_line() {
    let (o, _dir, _port, _busy) = busy_port();
    assert_one_line(&o);
}

/// The worker command cannot be executed: `file` is made by `prepare`.
fn unrunnable(file: &str, prepare: impl FnOnce(&Path)) -> (Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let program = dir.path().join(file).display().to_string();
    let args = case_args(&["--port", "127.0.0.1:0"], &program);
    (run_in(dir.path(), &args), dir)
}

fn not_executable(dir: &Path) {
    // Never executed: it has no x bit (and running a file just written risks ETXTBSY).
    let path = dir.join("noexec");
    fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn worker_not_found_exits_127_and_not_executable_126() {
    let (o, dir) = unrunnable("missing", |_| {});
    let needles = ["cannot run worker {dir}/missing: No such file or directory"];
    assert_failed(&o, dir.path(), 127, &needles, &[]);
    let (o, dir) = unrunnable("noexec", not_executable);
    let needles = ["cannot run worker {dir}/noexec: Permission denied"];
    assert_failed(&o, dir.path(), 126, &needles, &["noexec"]);
}

#[test]
fn worker_not_found_is_one_line_before_anything_is_bound() {
    for (file, prepare, cause) in [
        ("missing", (|_: &Path| {}) as fn(&Path), "No such file or directory"),
        ("noexec", not_executable, "Permission denied"),
    ] {
        let (o, dir) = unrunnable(file, prepare);
        assert_one_line(&o);
        let program = dir.path().join(file).display().to_string();
        let line = o.stderr_lines()[0];
        assert!(line.contains(&program) && line.contains(cause), "{}", o.dossier());
    }
}
