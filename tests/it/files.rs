//! The supervisor's files (pid file, status file, log file), daemon mode,
//! and the client commands `stop`, `restart --wait` and `status`.
use std::fs;
use std::net::TcpListener;
use std::path::Path;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::errors::{Outcome, run_in};
use crate::harness::*;

/// How every client here finds its supervisor.
const TARGET: [&str; 4] = ["--pid-file", "{dir}/pid", "--status-file", "{dir}/status"];

/// `handover OPTIONS --pid-file --status-file -- worker --journal WORKER_ARGS`.
fn worker_cmd(b: Builder, options: &[&str], worker_args: &[&str]) -> Builder {
    command(b, options, &example("worker"), worker_args)
}

/// The same with `program` as the worker (a link to it).
fn command(b: Builder, options: &[&str], program: &Path, worker_args: &[&str]) -> Builder {
    (b.args(options).args(TARGET).arg("--").arg(program))
        .args(["--journal", "{dir}/journal"])
        .args(worker_args)
}

/// Space-separated words (none of these arguments has a space).
fn words(text: &str) -> Vec<&str> {
    text.split(' ').collect()
}

/// The start of the worker's stderr line. Only this piece: the worker's
/// `eprintln!` is several write(2) calls, so a supervisor line can land in
/// the middle of the worker's line.
const WORKER_STDERR: &str = "worker: pid ";

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Pids after `starting new worker ` in a log.
fn workers_in(log: &str) -> Vec<i32> {
    (log.lines())
        .filter_map(|l| l.split("starting new worker ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Stops on drop what the harness cannot see: workers whose lines went to
/// a log file, and a daemon (the pid in the pid file). The supervisor is
/// dropped (stopped) first, then survivors get SIGKILL (workers: their group).
struct Sweep {
    s: Option<Supervisor>,
    log: &'static str,
}

impl Sweep {
    fn s(&self) -> &Supervisor {
        self.s.as_ref().unwrap()
    }

    fn log(&self) -> String {
        read(&self.s().path(self.log))
    }

    fn dossier(&self) -> String {
        format!("{}\n--- {}:\n{}", self.s().dossier(), self.log, self.log())
    }

    /// Only the banner reached the terminal. Waits for it with `wait_for`:
    /// the harness reads stdout and stderr in two threads and marks the
    /// output closed when stdout ends, maybe before the stderr thread has
    /// pushed the banner, so `wait_line` would fail. A terminal line after
    /// the banner was written long before the worker's line reached the
    /// log, so it is read by now (a lagging reader could only hide one).
    /// Called once the log has lines: nothing went to the terminal (the
    /// banner is start_server's alone).
    fn assert_terminal_is_silent(&self) {
        assert_eq!(self.s().lines(), Vec::<String>::new(), "{}", self.dossier());
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str) -> String {
        wait_for(
            &format!("{needle:?} in {}", self.log),
            || self.dossier(),
            || self.log().lines().find(|l| l.contains(needle)).map(str::to_owned),
        )
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let s = self.s.take().unwrap();
        let workers = workers_in(&read(&s.path(self.log)));
        let daemon: Option<i32> = read(&s.path("pid")).trim().parse().ok();
        let foreground = s.pid();
        drop(s);
        if let Some(pid) = daemon.filter(|&p| p != foreground && alive(p)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for pid in workers.into_iter().filter(|&p| alive(p)) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn assert_one_line(o: &Outcome, code: i32, needles: &[&str]) {
    let lines = o.stderr_lines();
    assert_eq!(o.code, Some(code), "{}", o.dossier());
    assert_eq!(lines.len(), 1, "{}", o.dossier());
    assert!(lines[0].starts_with("handover: "), "{}", o.dossier());
    for needle in needles {
        assert!(lines[0].contains(needle), "no {needle:?}\n{}", o.dossier());
    }
}

#[test]
fn second_instance_with_the_same_pid_file_fails_at_once() {
    let first = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    let addr = first.tcp_addr();
    let status = first.wait_generations(&[1]);
    let pid_text = format!("{}\n", first.pid());
    assert_eq!(read(&first.path("pid")), pid_text);
    let worker = example("worker").display().to_string();
    // Its port is the first one's: had it bound before locking, it would fail with EADDRINUSE.
    let mut args = vec!["--port", &addr, "--path", "{dir}/second.sock"];
    args.extend(TARGET.iter().chain(&["--", &worker, "--journal", "{dir}/second"]));
    let second = run_in(first.dir.path(), &args);
    let pid_file = first.path("pid").display().to_string();
    let lines = second.error_lines();
    assert_eq!(second.code, Some(1), "{}", second.dossier());
    assert_eq!(
        lines,
        [format!(
            "handover: another instance is running with pid file {pid_file} (pid {}); \
             stop it first or choose another --pid-file",
            first.pid()
        )],
        "{}",
        second.dossier()
    );
    for file in ["second.sock", "second"] {
        assert!(!first.path(file).exists(), "{file}\n{}", second.dossier());
    }
    assert_eq!(read(&first.path("pid")), pid_text, "pid file changed");
    assert_eq!(first.status_file(), status, "status file changed");
    assert!(alive(first.pid()));
    assert_eq!(generation_of(&ask(&addr).unwrap()), Some(1));
}

#[test]
fn status_file_lists_lingering_generations_in_numeric_order() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--stop-timeout", "100ms"],
        &["--notify", "--ignore-term", "forever"],
    );
    s.wait_generations(&[1]);
    // Ten generations, so that string order (1, 10, 2, ...) would differ.
    for g in 2..=10 {
        s.signal(Signal::SIGHUP);
        s.wait_generations(&(1..=g).collect::<Vec<u64>>());
    }
    let status = s.status_file();
    let text: String = status.iter().map(|(g, p)| format!("{g}:{p}\n")).collect();
    assert_eq!(read(&s.path("status")), text, "GEN:PID lines, nothing else");
    for &(_, pid) in &status[..9] {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    assert_eq!(s.wait_generations(&[10]), status[9..]);
}

#[test]
fn stale_pid_file_does_not_prevent_start_and_is_removed_at_exit() {
    let b = handover();
    // Nobody holds its lock: the instance that wrote it crashed.
    fs::write(b.dir().join("pid"), "4194303\nleft over by a crash\n").unwrap();
    let stop = run_in(b.dir(), &["stop", "--pid-file", "{dir}/pid"]);
    assert_one_line(&stop, 1, &["stale", "4194303"]);
    let mut s = worker_cmd(b, &["--port", "127.0.0.1:0"], &["--notify"]).start();
    s.wait_generations(&[1]);
    assert_eq!(read(&s.path("pid")), format!("{}\n", s.pid()));
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!s.path("pid").exists(), "{}", s.dossier());
}

#[test]
fn exec_failure_in_a_later_generation_removes_no_file() {
    // start_server's Q1: the failed child ran the parent's clean-up guards.
    let b = handover();
    let link = b.dir().join("w");
    std::os::unix::fs::symlink(example("worker"), &link).unwrap();
    let options = words("--port 127.0.0.1:0 --path {dir}/s.sock --interval 100ms --log-format json");
    let s = command(b, &options, &link, &["--notify"]).start();
    let addr = s.tcp_addr();
    let status = s.wait_generations(&[1]);
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(s.path("nonexistent"), &link).unwrap();
    s.signal(Signal::SIGHUP);
    let cause = format!("cannot exec {}: No such file or directory", link.display());
    s.wait_event("spawn_failed", |r| r["generation"] == 2 && r["error"] == cause.as_str());
    s.wait_event("spawn_failed", |r| r["generation"] == 3 && r["error"] == cause.as_str());
    assert_eq!(read(&s.path("pid")), format!("{}\n", s.pid()));
    assert_eq!(s.status_file(), status);
    assert!(s.path("s.sock").exists(), "{}", s.dossier());
    assert_eq!(generation_of(&ask(&addr).unwrap()), Some(1));
    let mut unix = std::os::unix::net::UnixStream::connect(s.path("s.sock")).unwrap();
    unix.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut unix, &mut answer).unwrap();
    assert_eq!(generation_of(answer.trim()), Some(1));
}

#[test]
fn log_file_is_appended_and_gets_everything() {
    let b = handover();
    fs::write(b.dir().join("log"), "a line from before\n").unwrap();
    let options = ["--port", "127.0.0.1:0", "--log-file", "{dir}/log"];
    let sweep = Sweep { s: Some(worker_cmd(b, &options, &["--notify"]).start()), log: "log" };
    let s = sweep.s();
    let worker = s.wait_generations(&[1])[0].1;
    sweep.wait_log(&format!("starting new worker {worker}"));
    sweep.wait_log(WORKER_STDERR);
    sweep.wait_log("listening on tcp 127.0.0.1:");
    assert_eq!(sweep.log().lines().next(), Some("a line from before"));
    sweep.assert_terminal_is_silent();
}

#[test]
fn log_file_pipe_form_feeds_the_command() {
    let options = ["--port", "127.0.0.1:0", "--log-file", "| cat >> {dir}/piped.log"];
    let sweep = Sweep { s: Some(worker_cmd(handover(), &options, &["--notify"]).start()), log: "piped.log" };
    let worker = sweep.s().wait_generations(&[1])[0].1;
    sweep.wait_log(&format!("starting new worker {worker}"));
    sweep.wait_log(WORKER_STDERR);
    sweep.assert_terminal_is_silent();
}

#[test]
fn daemonize_detaches_serves_and_stops() {
    let options = words("--daemonize --log-file {dir}/log --port 127.0.0.1:0");
    let mut sweep = Sweep { s: Some(worker_cmd(handover(), &options, &["--notify"]).start()), log: "log" };
    let status = sweep.s.as_mut().unwrap().wait_exit();
    assert!(status.success(), "{}", sweep.dossier());
    let s = sweep.s();
    let foreground = s.pid();
    let daemon: i32 = wait_for(
        "the daemon's pid file",
        || sweep.dossier(),
        || read(&s.path("pid")).strip_suffix('\n')?.parse().ok(),
    );
    assert!(daemon != foreground && alive(daemon), "{}", sweep.dossier());
    assert_ne!(parent_of(daemon), Some(std::process::id() as i32), "not detached");
    let line = sweep.wait_log("listening on tcp ");
    let addr = line.split(' ').skip_while(|w| *w != "tcp").nth(1).unwrap();
    assert_eq!(generation_of(&ask(addr).unwrap()), Some(1));
    let worker = s.wait_generations(&[1])[0].1;

    let stop = run_in(s.dir.path(), &["stop", "--pid-file", "{dir}/pid"]);
    assert_eq!(stop.code, Some(0), "{}", stop.dossier());
    assert_eq!(stop.stderr, "", "{}", stop.dossier());
    assert_eq!(crate::errors::listing(s.dir.path()), ["journal", "log"]);
    assert!(!alive(worker), "{}", sweep.dossier());
    // Strictly it should be gone already: see stop_returns_after_the_supervisor_has_exited.
    wait_for("the daemon to exit", || sweep.dossier(), || (!alive(daemon)).then_some(()));
    sweep.wait_log("exiting");
}

#[test]
fn stop_returns_after_the_supervisor_has_exited() {
    // A race: each round fails with high probability, so a few rounds suffice.
    for _ in 0..20 {
        let s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
        let addr = s.tcp_addr();
        s.wait_generations(&[1]);
        let stop = run_in(s.dir.path(), &["stop", "--pid-file", "{dir}/pid"]);
        assert_eq!(stop.code, Some(0), "{}", stop.dossier());
        assert!(!alive(s.pid()), "supervisor still running\n{}", s.dossier());
        TcpListener::bind(&addr).unwrap_or_else(|e| panic!("{addr} still bound: {e}"));
    }
}

#[test]
fn stop_with_a_timeout_fails_when_the_workers_ignore_term() {
    let mut s = with_worker(&["--port", "127.0.0.1:0"], &["--notify", "--ignore-term", "forever"]);
    let worker = s.wait_generations(&[1])[0].1;
    let args = ["stop", "--pid-file", "{dir}/pid", "--timeout", "100ms"];
    let stop = run_in(s.dir.path(), &args);
    let needle = format!("supervisor pid {} still running after 100ms", s.pid());
    assert_one_line(&stop, 1, &[&needle]);
    s.wait_journal(&["term", &format!("pid={worker}")]);
    assert!(alive(s.pid()));
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!s.path("pid").exists() && !s.path("status").exists());
}

#[test]
fn restart_wait_fails_when_every_new_generation_crashes() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--log-format", "json"],
        &["--notify", "--crash-if-generation-at-least", "2"],
    );
    let addr = s.tcp_addr();
    let first = s.wait_generations(&[1]);
    let args = [&words("restart --wait --timeout 500ms"), &TARGET[..]].concat();
    let restart = run_in(s.dir.path(), &args);
    assert_one_line(&restart, 1, &["after 500ms", "generation 1 still running"]);
    s.wait_event("note", |r| r["generation"] == 2 && r["what"] == "diagnosis");
    assert_eq!(s.status_file(), first);
    assert_eq!(generation_of(&ask(&addr).unwrap()), Some(1));
}

/// `handover status [--json]` in `dir`: exit 0, nothing on stderr; stdout.
fn status_of(dir: &Path, json: bool) -> String {
    let mut args = vec!["status"];
    args.extend(json.then_some("--json").iter().chain(&TARGET));
    let o = run_in(dir, &args);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}", o.dossier());
    o.stdout
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

#[test]
fn status_reports_a_running_supervisor() {
    let s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    let (pid, worker) = (s.pid(), s.wait_generations(&[1])[0].1);
    let expected = serde_json::json!({
        "pid": pid, "running": true,
        "generations": [{"generation": 1, "pid": worker}],
    });
    assert_eq!(json(&status_of(s.dir.path(), true)), expected);
    let text = format!("supervisor pid {pid} running\ngeneration 1  pid {worker}\n");
    assert_eq!(status_of(s.dir.path(), false), text);
}

#[test]
fn status_without_a_supervisor_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let expected = serde_json::json!({"pid": null, "running": false, "generations": []});
    assert_eq!(json(&status_of(dir.path(), true)), expected);
    assert_eq!(status_of(dir.path(), false), "supervisor not running\n");
    assert!(crate::errors::listing(dir.path()).is_empty());
}
