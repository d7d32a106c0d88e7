//! The control socket (`--control PATH`) through the real binary: its file,
//! `handover status|restart|stop --control PATH`, answers while an old
//! generation drains, the peer check, and what garbage gets.
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::errors::{Outcome, listing, run_in};
use crate::harness::*;

/// handover on 127.0.0.1:0 with its control socket at `{dir}/ctl`.
fn controlled(options: &[&str], worker: &[&str]) -> Supervisor {
    with_worker(&[&["--port", "127.0.0.1:0", "--control", "{dir}/ctl"], options].concat(), worker)
}

/// `handover ARGS --control {dir}/ctl`, run to its end.
fn client(s: &Supervisor, args: &str) -> Outcome {
    let mut args: Vec<&str> = args.split_whitespace().collect();
    args.extend(["--control", "{dir}/ctl"]);
    run_in(s.dir.path(), &args)
}

/// `status --json`: exit 0, nothing on stderr; the reply.
fn status(s: &Supervisor) -> Value {
    let o = client(s, "status --json");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", o.dossier()))
}

/// (generation, phase) of each generation in a status reply.
fn phases(status: &Value) -> Vec<(u64, String)> {
    let gens = status["generations"].as_array().expect("generations");
    gens.iter().map(|g| (g["generation"].as_u64().unwrap(), g["phase"].as_str().unwrap().into())).collect()
}

fn phase_list(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|&(g, p)| (g, p.to_string())).collect()
}

/// A raw connection to the control socket, one JSON line each way.
pub struct Raw {
    reader: BufReader<UnixStream>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw { reader: BufReader::new(stream) }
    }

    pub fn send(&mut self, line: &str) {
        self.reader.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    pub fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("a reply before the deadline");
        assert!(n > 0, "the connection ended without a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// `{"command":COMMAND}` and its reply.
    pub fn ask(&mut self, command: &str) -> Value {
        self.send(&format!("{{\"command\":\"{command}\"}}"));
        self.reply()
    }

    /// Nothing has arrived so far.
    fn quiet(&mut self) -> bool {
        self.reader.get_ref().set_nonblocking(true).unwrap();
        let idle = matches!(self.reader.fill_buf(), Err(e) if e.kind() == ErrorKind::WouldBlock);
        self.reader.get_ref().set_nonblocking(false).unwrap();
        idle
    }
}

#[test]
fn control_socket_is_private_and_removed_at_exit() {
    let mut s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let meta = fs::symlink_metadata(s.path("ctl")).unwrap();
    assert!(meta.file_type().is_socket(), "{}", s.dossier());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert_eq!(listing(s.dir.path()), ["journal"], "left behind\n{}", s.dossier());
}

#[test]
fn status_reports_listeners_generations_and_counters() {
    let s = controlled(&[], &["--notify"]);
    let addr = s.tcp_addr();
    let worker = s.wait_generations(&[1])[0].1;
    let st = status(&s);
    assert_eq!(st["ok"], true, "{st:#}");
    assert_eq!(st["pid"], s.pid());
    assert_eq!(st["stopping"], false);
    let listener = serde_json::json!({"fd": 3, "name": null, "key": addr, "address": format!("tcp {addr}")});
    assert_eq!(st["listeners"], serde_json::json!([listener]), "{st:#}");
    assert_eq!(phases(&st), phase_list(&[(1, "serving")]));
    let generation = &st["generations"][0];
    assert_eq!(generation["pids"], serde_json::json!([worker]));
    assert!(generation["started"].is_string() && generation["ready"].is_string(), "{st:#}");
    assert!(generation["told_to_stop"].is_null(), "{st:#}");
    assert_eq!(st["counters"], serde_json::json!({"restarts": 0, "failures": 0, "respawns": 0}));

    let o = client(&s, "status");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}", o.dossier());
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], format!("supervisor pid {}", s.pid()), "{}", o.dossier());
    let image = format!("handover {} ({}) running since ", env!("CARGO_PKG_VERSION"), binary().display());
    assert!(lines[1].starts_with(&image), "{}", o.dossier());
    assert_eq!(lines[2], format!("listener fd 3  tcp {addr}"), "{}", o.dossier());
    assert!(lines[3].starts_with("generation 1  serving"), "{}", o.dossier());
    assert!(lines[3].contains(&format!("pids {worker}  started ")), "{}", o.dossier());
    // (A `last restart:` line before it: see no_restart_yet_means_no_last_restart.)
    assert_eq!(lines.last(), Some(&"restarts 0, failures 0, respawns 0"), "{}", o.dossier());
}

#[test]
fn no_restart_yet_means_no_last_restart() {
    let s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let st = status(&s);
    assert!(st["last_restart"].is_null(), "{st:#}");
    let text = client(&s, "status").stdout;
    assert!(!text.contains("last restart"), "{text}");
}

/// `generation G is serving (pids P): ready X ms after spawn, old generation
/// gone Y ms after it was told to stop` -> (X, Y), checking G and P.
fn restart_line(line: &str, generation: u64, pids: &str) -> (f64, f64) {
    let head = format!("generation {generation} is serving (pids {pids}): ready ");
    let rest = line.strip_prefix(&head).unwrap_or_else(|| panic!("{line:?} does not start with {head:?}"));
    let (ready, rest) = rest.split_once(" ms after spawn, old generation gone ").expect(line);
    let gone = rest.strip_suffix(" ms after it was told to stop").expect(line);
    (ready.parse().expect(line), gone.parse().expect(line))
}

#[test]
fn restart_wait_prints_the_new_generation_and_its_timings() {
    let s = controlled(&[], &["--notify"]);
    let first = s.wait_generations(&[1])[0].1;
    let o = client(&s, "restart --wait");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    // Answered once generation 1 is gone, so the status file says so already.
    let second = s.status_file();
    assert_eq!(second.iter().map(|&(g, _)| g).collect::<Vec<_>>(), [2], "{}", s.dossier());
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.dossier());
    let (ready, gone) = restart_line(o.stdout.trim_end(), 2, &second[0].1.to_string());
    assert!(ready >= 0.0 && gone >= 0.0, "{}", o.dossier());
    assert!(!alive(first));

    let st = status(&s);
    assert_eq!(phases(&st), phase_list(&[(2, "serving")]));
    assert_eq!(st["last_restart"]["ok"], true, "{st:#}");
    assert_eq!(st["last_restart"]["generation"], 2, "{st:#}");
    assert_eq!(st["counters"], serde_json::json!({"restarts": 1, "failures": 0, "respawns": 0}));
}

#[test]
fn failed_restart_wait_exits_1_and_the_old_generation_keeps_serving() {
    let s = controlled(&[], &["--notify", "--crash-if-generation-at-least", "2"]);
    let addr = s.tcp_addr();
    let first = s.wait_generations(&[1])[0].1;
    let o = client(&s, "restart --wait");
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    let lines = o.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", o.dossier());
    assert!(lines[0].starts_with("handover: "), "{}", o.dossier());
    for needle in ["generation 2 failed", "exited with 1"] {
        assert!(lines[0].contains(needle), "no {needle:?}\n{}", o.dossier());
    }
    assert!(o.stdout.is_empty(), "{}", o.dossier());
    assert_eq!(generation_of(&ask(&addr).unwrap()), Some(1));

    // Retries (every --interval) may be starting; generation 1 alone serves.
    let st = status(&s);
    let serving: Vec<_> = phases(&st).into_iter().filter(|(_, p)| p == "serving").collect();
    assert_eq!(serving, phase_list(&[(1, "serving")]), "{st:#}");
    assert_eq!(st["generations"][0]["pids"], serde_json::json!([first]), "{st:#}");
    assert_eq!(st["last_restart"]["ok"], false, "{st:#}");
    assert!(st["counters"]["failures"].as_u64().unwrap() >= 1, "{st:#}");
    assert_eq!(st["counters"]["restarts"], 0, "{st:#}");
}

#[test]
fn status_and_a_second_restart_while_old_generations_drain() {
    // The old workers ignore TERM and no drain timeout ends them: they
    // drain until the test kills them.
    let s = controlled(
        &["--stop-timeout", "100ms", "--log-format", "json"],
        &["--notify", "--ignore-term", "forever"],
    );
    let first = s.wait_generations(&[1])[0].1;
    assert_eq!(client(&s, "restart").code, Some(0));
    s.wait_journal(&["term", &format!("pid={first}")]);
    let st = status(&s);
    assert_eq!(phases(&st), phase_list(&[(1, "draining"), (2, "serving")]), "{st:#}");
    assert!(st["generations"][0]["told_to_stop"].is_string(), "{st:#}");
    assert!(st["generations"][1]["told_to_stop"].is_null(), "{st:#}");
    let second = st["generations"][1]["pids"][0].as_i64().unwrap() as i32;
    let text = client(&s, "status").stdout;
    assert!(text.contains("generation 1  draining") && text.contains("generation 2  serving"), "{text}");

    let mut restart = Raw::connect(&s.path("ctl"));
    restart.send(r#"{"command":"restart"}"#);
    s.wait_journal(&["term", &format!("pid={second}")]);
    let expected = phase_list(&[(1, "draining"), (2, "draining"), (3, "serving")]);
    // A status reply comes after any reply the supervisor wrote before it.
    assert_eq!(phases(&status(&s)), expected);
    assert!(restart.quiet(), "answered while generations 1 and 2 run\n{}", s.dossier());

    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    s.wait_event("exited", |r| pids_of(r, "pids") == [first] && r["role"] == "draining");
    assert_eq!(phases(&status(&s)), phase_list(&[(2, "draining"), (3, "serving")]));
    assert!(restart.quiet(), "answered while generation 2 runs\n{}", s.dossier());

    kill(Pid::from_raw(second), Signal::SIGKILL).unwrap();
    let reply = restart.reply();
    assert_eq!((&reply["ok"], &reply["generation"]), (&Value::Bool(true), &Value::from(3)), "{reply}");
    assert!(reply["signal_to_old_gone_ms"].is_number(), "{reply}");
    let st = status(&s);
    assert_eq!(phases(&st), phase_list(&[(3, "serving")]));
    assert_eq!(st["generations"][0]["pids"], reply["pids"]);
    assert_eq!(st["counters"]["restarts"], 2, "{st:#}");
}

#[test]
fn restart_wait_meanwhile_is_answered_once_the_drain_timeout_ended_the_old_ones() {
    let s = controlled(
        &["--drain-timeout", "300ms", "--stop-timeout", "100ms", "--log-format", "json"],
        &["--notify", "--ignore-term", "forever"],
    );
    let first = s.wait_generations(&[1])[0].1;
    assert_eq!(client(&s, "restart").code, Some(0));
    s.wait_journal(&["term", &format!("pid={first}")]);
    let o = client(&s, "restart --wait");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    assert!(o.stdout.starts_with("generation 3 is serving"), "{}", o.dossier());
    let pids = s.worker_pids();
    for old in &pids[..2] {
        assert!(!alive(*old), "worker {old} still runs\n{}", s.dossier());
        s.wait_event("killed", |r| r["deadline"] == "drain" && pids_of(r, "pids") == [*old]);
    }
    assert_eq!(phases(&status(&s)), phase_list(&[(3, "serving")]));
}

#[test]
fn stop_returns_after_the_supervisor_has_exited() {
    let s = controlled(&[], &["--notify"]);
    let addr = s.tcp_addr();
    s.wait_generations(&[1]);
    let o = client(&s, "stop");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    assert!(!alive(s.pid()), "supervisor still running\n{}", s.dossier());
    assert_eq!(listing(s.dir.path()), ["journal"], "left behind\n{}", s.dossier());
    TcpListener::bind(&addr).unwrap_or_else(|e| panic!("{addr} still bound: {e}"));
}

/// `setpriv` on PATH, if this test can switch users at all (root only).
/// Under CI (`CI` set) a test that cannot is a failure, not a skip.
pub fn setpriv() -> Option<PathBuf> {
    let skip = |why: String| {
        assert!(std::env::var_os("CI").is_none(), "{why}: this test cannot run, and CI must run it");
        // One write, so the line stays whole among libtest's own output.
        let _ = std::io::stderr().write_all(format!("skipped: {why}\n").as_bytes());
        None
    };
    if !nix::unistd::geteuid().is_root() {
        return skip("not root: cannot run a process as another user".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(found) = std::env::split_paths(&path).map(|d| d.join("setpriv")).find(|p| p.exists()) else {
        return skip("setpriv not found (util-linux): cannot run a process as another user".into());
    };
    // uid 65534 must reach the binary.
    let reachable = binary().ancestors().skip(1).all(|d| {
        fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0) || d.as_os_str().is_empty()
    });
    if !reachable {
        return skip(format!("{} is not reachable by other users", binary().display()));
    }
    Some(found)
}

fn read_all(stream: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_string(&mut text);
    }
    text
}

/// `handover status --control PATH` as uid/gid 65534, run to its end.
fn status_as_nobody(setpriv: &Path, control: &Path) -> Outcome {
    let mut child = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary())
        .args(["status", "--control"])
        .arg(control)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    let command = format!("setpriv ... handover status --control {}", control.display());
    let status = wait_for(&command, String::new, || child.try_wait().unwrap());
    let (stdout, stderr) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
    Outcome { code: status.code(), stdout, stderr, command }
}

#[test]
fn another_users_client_is_refused_and_logged() {
    let Some(setpriv) = setpriv() else { return };
    let b = handover();
    // The temp dir is 0700: let uid 65534 through to a public sub-directory.
    fs::set_permissions(b.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::create_dir(b.dir().join("pub")).unwrap();
    fs::set_permissions(b.dir().join("pub"), fs::Permissions::from_mode(0o755)).unwrap();
    let s = b
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/pub/ctl", "--status-file", "{dir}/status"])
        .arg("--")
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--notify"])
        .start();
    s.wait_generations(&[1]);
    let control = s.path("pub/ctl");

    // The socket's mode 0600 is the first fence: connect(2) fails.
    let o = status_as_nobody(&setpriv, &control);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    assert!(o.stderr.contains("Permission denied"), "{}", o.dossier());

    // SO_PEERCRED is the second, for a socket made reachable by mistake.
    fs::set_permissions(&control, fs::Permissions::from_mode(0o666)).unwrap();
    let o = status_as_nobody(&setpriv, &control);
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    let lines = o.stderr_lines();
    assert!(lines.len() == 1 && lines[0].starts_with("handover: "), "{}", o.dossier());
    assert!(o.stdout.is_empty(), "{}", o.dossier());
    s.wait_line("control: refused connection from uid 65534 (pid ");
    let root = run_in(s.dir.path(), &["status", "--json", "--control", "{dir}/pub/ctl"]);
    assert_eq!(root.code, Some(0), "{}", root.dossier());
}

#[test]
fn restart_without_wait_returns_at_once_and_the_restart_happens() {
    // Generation 1 ignores TERM: a restart that waited would still wait.
    let s = controlled(&["--stop-timeout", "100ms"], &["--notify", "--ignore-term", "forever"]);
    let first = s.wait_generations(&[1])[0].1;
    let o = client(&s, "restart");
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (Some(0), "", ""), "{}", o.dossier());
    assert!(alive(first), "{}", s.dossier());
    s.wait_generations(&[1, 2]);
    s.wait_journal(&["term", &format!("pid={first}")]);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    s.wait_generations(&[2]);
}

#[test]
fn garbage_is_answered_with_an_error_and_the_supervisor_keeps_running() {
    let s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let mut raw = Raw::connect(&s.path("ctl"));
    raw.send("hello");
    let reply = raw.reply();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("not JSON"), "{reply}");
    raw.send(r#"{"command":"reboot"}"#);
    let reply = raw.reply();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("unknown command \"reboot\""), "{reply}");
    // The same connection still works.
    raw.send(r#"{"command":"status"}"#);
    assert_eq!(raw.reply()["ok"], true);
    assert!(alive(s.pid()));
    assert_eq!(phases(&status(&s)), phase_list(&[(1, "serving")]));
}

/// Hostile local clients: a full table of connections that say nothing,
/// and pipelining clients that never read, leave `status` answering.
#[test]
fn idle_and_non_reading_clients_do_not_lock_others_out() {
    let s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let control = s.path("ctl");
    let idle: Vec<UnixStream> = (0..100).map(|_| UnixStream::connect(&control).unwrap()).collect();
    status(&s);
    let request = "{\"command\":\"status\"}\n".repeat(64);
    let floods: Vec<UnixStream> = (0..8)
        .map(|_| {
            let mut flood = UnixStream::connect(&control).unwrap();
            flood.write_all(request.as_bytes()).unwrap();
            flood
        })
        .collect();
    status(&s);
    for _ in 0..20 {
        status(&s);
    }
    // Idle connections go after the idle timeout: the oldest ones see EOF.
    let mut first = &idle[0];
    first.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(first.read(&mut byte).unwrap(), 0, "an idle connection was not closed");
    drop((idle, floods));
    status(&s);
}
