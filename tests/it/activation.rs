//! Socket activation upward, with `systemd-socket-activate` (Debian package
//! systemd) as the real peer: it binds, waits for the first connection,
//! then execs handover with `LISTEN_FDS`/`LISTEN_PID` set, keeping its
//! pid. handover must adopt those sockets instead of binding, pass them on
//! under their names, and leave the socket files to their owner.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::harness::*;

/// `systemd-socket-activate ACTIVATE_ARGS handover OPTIONS -- probe`, with
/// the first connection to `{dir}/TRIGGER` made so that handover starts.
/// Returns the supervisor and the connection (kept open, never accepted).
fn activated(
    activate: PathBuf,
    activate_args: &[&str],
    options: &[&str],
    trigger: &str,
) -> (Supervisor, UnixStream) {
    let s = handover()
        .program(activate)
        .args(activate_args)
        .arg(binary())
        .args(options)
        .arg("--")
        .arg(example("probe"))
        .args(["--out", "{dir}/probe.json", "--notify"])
        .start();
    let trigger = s.path(trigger);
    let connection =
        wait_for("systemd-socket-activate to listen", || s.dossier(), || UnixStream::connect(&trigger).ok());
    (s, connection)
}

/// `fd FAMILY TYPE LOCAL listening|bound` for every fd above 2.
fn sockets(report: &Value) -> Vec<String> {
    let fds = report["fds"].as_array().expect("fds");
    fds.iter()
        .filter(|f| f["fd"].as_i64() > Some(2))
        .map(|f| {
            let socket = &f["socket"];
            let text = |name: &str| socket[name].as_str().unwrap_or("?").to_owned();
            let state = ["bound", "listening"][usize::from(socket["listening"] == true)];
            let (family, kind, local) = (text("family"), text("type"), text("local"));
            format!("{} {family} {kind} {local} {state}", f["fd"])
        })
        .collect()
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("the socket file").ino()
}

/// The probe saw exactly one listener, the adopted one, announced on fd 3
/// under `name`; LISTEN_PID is its own.
fn assert_one_adopted(report: &Value, path: &Path, name: &str) {
    let path = path.display().to_string();
    assert_eq!(sockets(report), [format!("3 unix stream {path} listening")], "{report:#}");
    assert_eq!(report["listen_fds"], "1", "{report:#}");
    assert_eq!(report["listen_pid_matches"], true, "{report:#}");
    assert_eq!(report["listen_fdnames"], json!([name]), "{report:#}");
    assert_eq!(report["listenfd_ok"], true, "{report:#}");
    assert_eq!(report["server_starter_port"], format!("{path}=3").as_str());
}

#[test]

fn a_named_listener_adopts_the_socket_of_that_name() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let (mut s, _connection) = activated(
        activate,
        &["-l", "{dir}/act.sock", "--fdname=web"],
        &["--listen", "web=unix:{dir}/act.sock?mode=0600"],
        "act.sock",
    );
    let path = s.path("act.sock");
    let created = inode(&path);
    let mode = fs::symlink_metadata(&path).unwrap().mode() & 0o777;
    let first = probe_report(&s, 1);
    assert_one_adopted(&first, &path, "web");
    assert_eq!(probe_report(&s, 1)["ppid"], s.pid(), "handover kept the peer's pid");

    // A new generation gets the very same socket.
    s.signal(Signal::SIGHUP);
    let second = probe_report(&s, 2);
    assert_one_adopted(&second, &path, "web");
    assert_eq!(second["fds"][3]["target"], first["fds"][3]["target"]);

    // Not bound, not chmod-ed, not removed: the file is its manager's.
    assert_eq!(inode(&path), created, "handover replaced the socket file");
    let now = fs::symlink_metadata(&path).unwrap().mode() & 0o777;
    assert_eq!(now, mode, "?mode= applies only to sockets handover binds");
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert_eq!(inode(&path), created, "handover removed the socket file");
}

#[test]

fn without_listener_options_every_inherited_socket_is_passed_on() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let (mut s, _connection) = activated(activate, &["-l", "{dir}/a.sock"], &[], "a.sock");
    let path = s.path("a.sock");
    let created = inode(&path);
    assert_one_adopted(&probe_report(&s, 1), &path, "unknown");
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert_eq!(inode(&path), created, "handover removed the socket file");
}

#[test]

fn an_inherited_socket_no_listener_wants_is_closed_and_logged() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let (s, _connection) = activated(
        activate,
        &["-l", "{dir}/stats.sock", "-l", "{dir}/web.sock", "--fdname=stats:web"],
        &["--listen", "web=unix:{dir}/web.sock"],
        "web.sock",
    );
    let path = s.path("web.sock");
    assert_one_adopted(&probe_report(&s, 1), &path, "web");
    s.wait_line("inherited fd 3 (stats) matches no listener; closed");
    // Closed in handover too, not only kept from the worker.
    let handover_fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    let stats = s.path("stats.sock");
    assert!(
        UnixStream::connect(&stats).is_err(),
        "stats.sock still accepts connections; handover fds: {handover_fds:?}"
    );
}

#[test]
fn an_upgrade_keeps_the_adopted_sockets_as_they_were() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let (mut s, _connection) =
        activated(activate, &["-l", "{dir}/a.sock", "--fdname=web"], &["--control", "{dir}/ctl"], "a.sock");
    let path = s.path("a.sock");
    let created = inode(&path);
    let first = probe_report(&s, 1);
    assert_one_adopted(&first, &path, "web");
    let o = crate::errors::run_in(s.dir.path(), &["upgrade", "--wait", "--control", "{dir}/ctl"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    // The next generation gets the same socket, under the same name.
    s.signal(Signal::SIGHUP);
    let second = probe_report(&s, 2);
    assert_one_adopted(&second, &path, "web");
    assert_eq!(second["fds"][3]["target"], first["fds"][3]["target"]);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert_eq!(inode(&path), created, "handover removed its manager's socket file");
}
