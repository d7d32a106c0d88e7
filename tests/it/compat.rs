//! start_server compatibility: the binary invoked as `start_server` (banner,
//! bare log lines with start_server 0.35's exact texts, `--version`,
//! Getopt::Long-style options) and the client modes `--stop`/`--restart`,
//! also under the name handover with its `restart`, `status` subcommands.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

/// `{dir}/start_server`, a symlink to the handover binary.
fn link_start_server(dir: &Path) -> PathBuf {
    let link = dir.join("start_server");
    if !link.exists() {
        std::os::unix::fs::symlink(binary(), &link).unwrap();
    }
    link
}

/// start_server with `options` running `command`.
fn start_server(options: &[&str], command: &[String]) -> Supervisor {
    let builder = handover();
    let link = link_start_server(builder.dir());
    builder
        .program(link)
        .args(options)
        .args(["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--"])
        .args(command)
        .start()
}

/// The test worker, journal in `{dir}/journal`, reporting READY=1.
fn worker() -> Vec<String> {
    let worker = example("worker").display().to_string();
    [&worker, "--journal", "{dir}/journal", "--notify"].map(String::from).to_vec()
}

/// The probe: it reports to `{dir}/probe.json` and says READY=1 once its
/// TERM handler is installed, and exits 0 on TERM. It prints nothing on
/// stderr (the test worker's startup note takes several writes, which the
/// supervisor's lines can land between).
fn quiet_worker() -> Vec<String> {
    let probe = example("probe").display().to_string();
    [&probe, "--out", "{dir}/probe.json", "--notify"].map(String::from).to_vec()
}

/// Waits until the probe of `generation` has reported (so it handles TERM).
fn reported(s: &Supervisor, generation: u64) {
    let file = s.path("probe.json");
    let needle = format!(r#""generation":"{generation}""#);
    let found = || std::fs::read_to_string(&file).is_ok_and(|t| t.contains(&needle));
    wait_for(&needle, || s.dossier(), || found().then_some(()));
}

/// The supervisor's lines: without the worker's output (the probe's JSON on stdout).
fn log(s: &Supervisor) -> Vec<String> {
    let lines = s.lines().into_iter();
    lines.filter(|l| !l.starts_with('{')).collect()
}

/// A finished one-shot command.
struct Ran {
    status: ExitStatus,
    pid: u32,
    stdout: String,
    stderr: String,
}

/// Runs `program` to completion (killed and failed after DEADLINE).
fn run<S: AsRef<OsStr>>(program: &Path, args: impl IntoIterator<Item = S>) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not exit in time", program.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let pid = child.id();
    // Exited: the status is kept, and the pipes hold the whole output.
    let output = child.wait_with_output().unwrap();
    Ran {
        status,
        pid,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `start_server ARGS` in a fresh temp dir, for the options that exit at once.
fn start_server_once(args: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    run(&link_start_server(dir.path()), args)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn log_is_start_servers_through_a_restart_and_a_stop() {
    let mut s = start_server(&["--port", "127.0.0.1:0"], &quiet_worker());
    let first = s.wait_generations(&[1])[0].1;
    reported(&s, 1);
    s.signal(Signal::SIGHUP);
    let second = s.wait_generations(&[2])[0].1;
    reported(&s, 2);
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
    s.wait_line("exiting");
    let expected = [
        format!("start_server (pid:{}) starting now...", s.pid()),
        format!("starting new worker {first}"),
        "received HUP, spawning a new worker".to_string(),
        format!("starting new worker {second}"),
        format!("new worker is now running, sending TERM to old workers:{first}"),
        "killing old workers".to_string(),
        format!("old worker {first} died, status:0"),
        format!("received TERM, sending TERM to all workers:{second}"),
        format!("worker {second} died, status:0"),
        "exiting".to_string(),
    ];
    assert_eq!(log(&s), expected, "{}", s.dossier());
}

#[test]
fn worker_crashing_at_startup_is_reported_with_the_raw_wait_status() {
    let exit_3 = ["sh", "-c", "exit 3"].map(String::from);
    let s = start_server(&["--port", "127.0.0.1:0"], &exit_3);
    let line = s.wait_line("seems to have failed to start");
    let pid = s.worker_pids()[0];
    assert_eq!(line, format!("new worker {pid} seems to have failed to start, exit status:768"));
    assert_eq!(log(&s)[1], format!("starting new worker {pid}"));
}

#[test]
fn help_and_version_exit_0_on_stdout() {
    for args in [["--version"], ["--ver"], ["-version"]] {
        let ran = start_server_once(&args);
        assert_eq!(ran.status.code(), Some(0), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.trim_end().ends_with("0.35"), "{args:?}: {}", ran.stdout);
    }
    let ran = start_server_once(&["--help"]);
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    for option in ["--port", "--path", "--restart", "--stop"] {
        assert!(ran.stdout.contains(option), "{option} in {}", ran.stdout);
    }
}

#[test]
fn version_prints_exactly_0_35() {
    for args in [["--version"], ["--ver"], ["-version"]] {
        assert_eq!(start_server_once(&args).stdout, "0.35\n", "{args:?}");
    }
}

#[test]
fn help_and_version_print_nothing_on_stderr() {
    for args in [["--version"], ["--help"]] {
        assert_eq!(start_server_once(&args).stderr, "", "{args:?}");
    }
    for args in [["--version"], ["--help"]] {
        assert_eq!(run(&binary(), args).stderr, "", "handover {args:?}");
    }
}

#[test]
fn ambiguous_prefix_is_a_usage_error_in_one_line() {
    let ran = start_server_once(&["--p=1", "--", "true"]);
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.starts_with("start_server: ") && ran.stderr.contains("--p"), "{}", ran.stderr);
    assert_eq!(ran.stdout, "");
}

#[test]
fn stop_client_returns_once_the_supervisor_has_exited() {
    let mut s = start_server(&["--port", "127.0.0.1:0", "--path", "{dir}/a.sock"], &worker());
    s.wait_generations(&[1]);
    let pid_file = s.path("pid");
    let ran = run(&s.path("start_server"), ["--stop", "--pid-file", text(&pid_file)]);
    assert!(ran.status.success(), "{}", ran.stderr);
    assert_eq!(ran.stderr, format!("stop_server (pid:{}) stopping now (pid:{})...\n", ran.pid, s.pid()));
    for file in ["pid", "status", "a.sock"] {
        assert!(!s.path(file).exists(), "{file} still there when --stop returned");
    }
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn restart_client_returns_when_the_new_generation_serves_alone() {
    let s = start_server(&["--port", "127.0.0.1:0"], &worker());
    let first = s.wait_generations(&[1])[0].1;
    let (pid_file, status_file) = (s.path("pid"), s.path("status"));
    let ran = run(
        &s.path("start_server"),
        ["--restart", "--pid-file", text(&pid_file), "--status-file", text(&status_file)],
    );
    assert!(ran.status.success(), "{}\n{}", ran.stderr, s.dossier());
    let status = s.status_file();
    assert!(
        status.len() == 1 && status[0].0 == 2 && status[0].1 != first,
        "{status:?} right after --restart returned\n{}",
        s.dossier()
    );
}

#[test]
fn legacy_client_flags_work_under_the_name_handover() {
    let mut s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    s.wait_generations(&[1]);
    let (pid_file, status_file) = (s.path("pid"), s.path("status"));
    let (pid_file, status_file) = (text(&pid_file), text(&status_file));
    let restart = ["--restart", "--pid-file", pid_file, "--status-file", status_file];
    let ran = run(&binary(), restart);
    assert!(ran.status.success(), "{}\n{}", ran.stderr, s.dossier());
    let status = s.status_file();
    assert_eq!(status.iter().map(|g| g.0).collect::<Vec<_>>(), [2], "{status:?}");

    let ran = run(&binary(), ["--stop", "--pid-file", pid_file]);
    assert!(ran.status.success(), "{}", ran.stderr);
    assert!(!s.path("pid").exists(), "pid file still there when --stop returned");
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn restart_wait_and_status_subcommands() {
    let s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    let first = s.wait_generations(&[1])[0].1;
    let (pid_file, status_file) = (s.path("pid"), s.path("status"));
    let target = ["--pid-file", text(&pid_file), "--status-file", text(&status_file)];
    let status = |json: bool| {
        let mut args = vec!["status"];
        args.extend(target);
        args.extend(json.then_some("--json"));
        let ran = run(&binary(), args);
        assert!(ran.status.success(), "{}", ran.stderr);
        ran.stdout
    };
    assert_eq!(status(false), format!("supervisor pid {} running\ngeneration 1  pid {first}\n", s.pid()));
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"pid": s.pid(), "running": true,
            "generations": [{"generation": 1, "pid": first}]})
    );

    let mut args = vec!["restart", "--wait"];
    args.extend(target);
    let ran = run(&binary(), args);
    assert!(ran.status.success(), "{}\n{}", ran.stderr, s.dossier());
    assert_eq!(ran.stdout, "generation 2 is serving\n");
    let now = s.status_file();
    assert!(now.len() == 1 && now[0].0 == 2, "{now:?}");
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(json["generations"], serde_json::json!([{"generation": 2, "pid": now[0].1}]));
}
