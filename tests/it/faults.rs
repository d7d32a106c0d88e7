//! Faults of the supervisor's own outputs: it keeps answering, loses no
//! captured line, and leaves nothing behind.
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::control::{Raw, setpriv};
use crate::harness::*;

/// The children of `pid` whose command line contains `needle`.
fn children(pid: i32, needle: &str) -> Vec<i32> {
    (all_pids().into_iter())
        .filter(|&p| parent_of(p) == Some(pid) && cmdline_of(p).contains(needle))
        .collect()
}

/// The log command never reads: the pipe fills with the supervisor's own
/// lines after some hundred restarts. Every restart is still answered, and
/// an upgrade still goes through.
#[test]
fn a_log_reader_that_stops_reading_leaves_the_supervisor_answering() {
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-file", "| exec sleep 1001 >/dev/null 2>&1", "--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .arg("--quiet")
        .start();
    s.wait_generations(&[1]);
    let loggers = children(s.pid(), "sleep 1001");
    assert_eq!(loggers.len(), 1, "the log command: {loggers:?}");
    let mut control = Raw::connect(&s.path("ctl"));
    for n in 0..300u64 {
        let reply = control.ask("restart");
        assert_eq!(reply["ok"], true, "restart {n}: {reply}");
        assert_eq!(reply["generation"], n + 2, "restart {n}: {reply}");
    }
    assert_eq!(control.ask("status")["ok"], true);
    // An upgrade carries the lines the log has not taken across the exec.
    control.send(r#"{"command":"upgrade","wait":true}"#);
    assert_eq!(control.reply()["ok"], true);
    assert_eq!(control.ask("restart")["generation"], 302);
    assert_eq!(children(s.pid(), "sleep 1001"), loggers, "the same log command");
    s.signal(Signal::SIGTERM);
    let status = s.wait_exit();
    let _ = kill(Pid::from_raw(loggers[0]), Signal::SIGKILL);
    assert_eq!(status.code(), Some(0), "{}", s.dossier());
    assert!(!s.path("ctl").exists() && !s.path("status").exists(), "files left behind");
}

/// The log command exits after five lines: it is started again, so new
/// workers (which print at start) do not die of SIGPIPE, every restart
/// works, and the supervisor says what happened in the new log.
#[test]
fn a_log_command_that_exits_is_started_again() {
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-file", "| head -n 5 >> {dir}/log", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--notify"])
        .start();
    s.wait_generations(&[1]);
    let mut control = Raw::connect(&s.path("ctl"));
    for n in 0..10u64 {
        let reply = control.ask("restart");
        assert_eq!(reply["ok"], true, "restart {n}: {reply}\n{}", s.dossier());
    }
    let log = s.path("log");
    let said = wait_for(
        "the log command's exit in the log",
        || s.dossier(),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("the log command (pid ").then_some(text)
        },
    );
    assert!(said.contains("; starting it again"), "{said}");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

/// The processes of group `pgid`.
fn group(pgid: i32) -> Vec<i32> {
    all_pids().into_iter().filter(|&p| group_of(p) == Some(pgid) && alive(p)).collect()
}

/// An old generation's leader exits on TERM but a member of its group
/// ignores it: the generation drains until the group is empty, and
/// `--drain-timeout` ends the member too.
#[test]
fn drain_means_the_whole_process_group() {
    let worker = example("worker").display().to_string();
    let script =
        format!("(trap '' TERM; exec sleep 1002) & exec {worker} --journal {{dir}}/journal --notify");
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--drain-timeout", "1s", "--stop-timeout", "1s"])
        .args(["--control", "{dir}/ctl", "--status-file", "{dir}/status", "--", "sh", "-c"])
        .arg(&script)
        .start();
    let first = s.wait_generations(&[1])[0].1;
    let members = wait_for(
        "the member of generation 1's group",
        || s.dossier(),
        || {
            let members = group(first);
            (members.len() == 2).then_some(members)
        },
    );
    let mut control = Raw::connect(&s.path("ctl"));
    let reply = control.ask("restart");
    assert_eq!(reply["ok"], true, "{reply}");
    // Answered once the old generation is gone: its whole group.
    assert!(group(first).is_empty(), "still running after the restart's answer: {:?}", group(first));
    let gone_ms = reply["signal_to_old_gone_ms"].as_f64().unwrap();
    assert!(
        gone_ms >= 900.0,
        "the old generation counted as gone after {gone_ms} ms, before the drain timeout"
    );
    let status = control.ask("status");
    assert_eq!(status["generations"].as_array().unwrap().len(), 1, "{status}");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
    for pid in members {
        assert!(!alive(pid), "{pid} outlived the supervisor");
    }
}

/// The errors of the `spawn_failed` records in `--log-format json` output.
fn spawn_failures(output: &str) -> Vec<String> {
    let records = output.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let failed = records.filter(|r| r["event"] == "spawn_failed");
    failed.map(|r| r["fields"]["error"].as_str().unwrap_or_default().to_string()).collect()
}

/// With 20 listeners and 43 fds (one is the supervisor's own binary, kept
/// open for an upgrade's roll-back), a worker cannot be given its sockets:
/// one clear line, the resource-exhaustion exit code, nothing left.
#[test]
fn an_fd_limit_too_low_for_the_listeners_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "ulimit -n 43 && exec \"$@\"", "sh"]).arg(binary());
    for _ in 0..20 {
        command.args(["--port", "127.0.0.1:0"]);
    }
    let status_file = dir.path().join("status");
    command
        .arg("--status-file")
        .arg(&status_file)
        .args(["--log-format", "json", "--"])
        .arg(example("worker"));
    let output = command.stdin(std::process::Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(71), "{stderr}");
    let failed = spawn_failures(&stderr);
    assert_eq!(failed.len(), 1, "one line for the failure: {stderr}");
    // (In cgroup mode the child's first need of an fd is to join its cgroup.)
    let said = ["cannot place the listening sockets", "cannot join the worker's cgroup"];
    let said = said.map(|what| format!("{what}: Too many open files"));
    assert!(said.iter().any(|s| failed[0].ends_with(s.as_str())), "{stderr}");
    assert!(!stderr.contains("could not find") && !status_file.exists(), "{stderr}");
}

/// A storm of restart requests while a generation starts: the coalescing
/// line is printed once and the rest counted, not hundreds of identical lines.
#[test]
fn identical_lines_of_a_restart_storm_are_counted() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"],
        &["--notify", "--startup-delay", "300"],
    );
    s.wait_generations(&[1]);
    let mut control = Raw::connect(&s.path("ctl"));
    let storm = "{\"command\":\"restart\"}\n".repeat(200);
    control.send(storm.trim_end());
    for n in 0..200 {
        let reply = control.reply();
        assert_eq!(reply["ok"], true, "reply {n}: {reply}");
    }
    let said = s.wait_line("the line above came ");
    assert!(said.ends_with("one more restart will follow it"), "{said}");
    // A connection has at most 64 requests in hand, so the 200 coalesce into
    // a few generations, each printing its line once (and its count).
    let printed = s.count_lines("is starting; one more restart will follow it");
    assert!(printed <= 16, "{printed} such lines for 200 requests\n{}", s.dossier());
}

/// The private directories under `tmp`.
fn runtime_dirs(tmp: &Path) -> Vec<std::path::PathBuf> {
    let entries = std::fs::read_dir(tmp).unwrap().flatten();
    entries
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("handover-"))
        .collect()
}

/// A supervisor killed with SIGKILL leaves its runtime directory; the next
/// start in the same place removes it.
#[test]
fn a_start_removes_what_a_killed_supervisor_left() {
    let first = handover();
    let tmp = first.dir().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp_text = tmp.display().to_string();
    let mut killed = first
        .env("TMPDIR", &tmp_text)
        .env("XDG_RUNTIME_DIR", &tmp_text)
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .arg("--notify")
        .start();
    let worker = killed.wait_generations(&[1])[0].1;
    killed.signal(Signal::SIGKILL);
    // Its worker, orphaned, holds the test's output pipes: it goes too.
    let _ = nix::sys::signal::killpg(Pid::from_raw(worker), Signal::SIGKILL);
    killed.wait_exit();
    let left = runtime_dirs(&tmp);
    assert_eq!(left.len(), 1, "{left:?}");
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&left[0]).unwrap().set_modified(an_hour_ago).unwrap();
    let next = handover()
        .env("TMPDIR", &tmp_text)
        .env("XDG_RUNTIME_DIR", &tmp_text)
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .arg("--notify")
        .start();
    next.wait_line("removed 1 runtime directory left by supervisors that are gone");
    assert!(!left[0].exists());
    assert_eq!(runtime_dirs(&tmp).len(), 1, "its own");
}

/// Under a process limit, a generation of 50 workers cannot be forked:
/// one line, the resource-exhaustion exit code, no retry storm, nothing
/// left. Run as nobody: root is not held to RLIMIT_NPROC.
#[test]
fn a_process_limit_too_low_for_the_workers_is_said_once() {
    let prlimit = Path::new("/usr/bin/prlimit");
    let Some(setpriv) = setpriv().filter(|_| prlimit.exists()) else {
        eprintln!("skipped: needs root, setpriv, prlimit and a binary other users can reach");
        return;
    };
    let mut command = std::process::Command::new(setpriv);
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(prlimit).arg("--nproc=8:8");
    command.arg(binary()).args(["--port", "127.0.0.1:0", "--workers", "50", "--log-format", "json", "--"]);
    let output =
        command.arg(example("worker")).current_dir("/").stdin(std::process::Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(71), "{stderr}");
    let failed = spawn_failures(&stderr);
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(failed[0].contains("cannot fork: Resource temporarily unavailable"), "{stderr}");
    assert!(stderr.lines().count() < 40, "{stderr}");
}

/// Without /proc, fd 2 (a pipe here) cannot be opened again as a private
/// non-blocking file: the one case where a stalled log can block the
/// supervisor. It says so, once, first thing.
#[test]
fn a_log_that_may_block_is_said_to_at_start() {
    if !root_and_unshare() {
        return;
    }
    let b = handover();
    let script = format!(
        "umount -l /proc && exec {} --port 127.0.0.1:0 --status-file {}/status -- sleep 1000",
        binary().display(),
        b.dir().display()
    );
    let s = b.program("unshare".into()).args(["--mount", "sh", "-c"]).arg(script).start();
    s.wait_generations(&[1]);
    let warning = "cannot open the log (fd 2) again through /proc/self/fd/2";
    assert!(s.lines()[0].contains(warning), "{}", s.dossier());
    assert_eq!(s.count_lines(warning), 1, "{}", s.dossier());
}
