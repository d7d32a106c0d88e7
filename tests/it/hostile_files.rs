//! A hostile worker against the supervisor's files and output: the pid
//! file it could lock, the log lines it could forge.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;

use crate::errors::run_in;
use crate::harness::*;

fn root() -> bool {
    can_run("root", nix::unistd::Uid::effective().is_root())
}

/// `squat-locked pid=P ...`: the squatter's pid.
fn squatter(line: &str) -> String {
    line.split(' ').find_map(|w| w.strip_prefix("pid=")).expect("pid=").to_string()
}

/// Repro: a `nobody` worker's child opened the 0644 pid file and queued
/// in flock, to hold the lock once the supervisor died. The file is 0600,
/// also one an older version left 0644, so the open is refused.
#[test]
fn a_worker_as_nobody_cannot_open_the_pid_file() {
    if !root() {
        return;
    }
    let b = handover();
    // The worker (nobody) appends to the journal in the test's directory.
    fs::set_permissions(b.dir(), fs::Permissions::from_mode(0o1777)).unwrap();
    let pid_file = b.dir().join("pid");
    fs::write(&pid_file, "").unwrap();
    fs::set_permissions(&pid_file, fs::Permissions::from_mode(0o644)).unwrap();
    let s = b
        .args(["--port", "127.0.0.1:0", "--user", "nobody", "--pid-file", "{dir}/pid", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--flock-pid-file", "{dir}/pid"])
        .start();
    let line = s.wait_journal(&["squat"]);
    assert!(line.contains("open=EACCES"), "{line}\n{}", s.dossier());
    assert_eq!(fs::metadata(&pid_file).unwrap().permissions().mode() & 0o7777, 0o600);
}

/// Repro: a squatter (here a root worker's child, which can open any file)
/// holds the lock after `kill -9` of the supervisor. The clients do not
/// take the file for a live supervisor and signal nobody; a new supervisor
/// names the holder.
#[test]
fn a_squatted_pid_file_is_not_trusted_and_its_holder_is_named() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--flock-pid-file", "{dir}/pid"])
        .start();
    s.wait_journal(&["squat", "open=ok"]);
    let supervisor = s.pid();
    s.signal(Signal::SIGKILL);
    // Not `wait_exit`: the worker, alive, still holds the output pipes.
    wait_for("the supervisor killed", || s.dossier(), || (!alive(supervisor)).then_some(()));
    let squatter = squatter(&s.wait_journal(&["squat-locked"]));
    let dir = s.path("pid").parent().unwrap().to_path_buf();
    let held = format!("names pid {supervisor}, but its lock is held by pid {squatter}");
    for client in [&["status", "--pid-file", "{dir}/pid"][..], &["stop", "--pid-file", "{dir}/pid"]] {
        let o = run_in(&dir, client);
        assert_eq!(o.code, Some(1), "{}", o.dossier());
        assert!(o.stderr.lines().count() == 1 && o.stderr.contains(&held), "{}", o.dossier());
    }
    let o = run_in(&dir, &["--pid-file", "{dir}/pid", "--port", "127.0.0.1:0", "--", "true"]);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    let named = format!("is locked by pid {squatter}, not pid {supervisor} it names");
    assert!(o.error_lines().last().is_some_and(|l| l.contains(&named)), "{}", o.dossier());
    assert!(alive(squatter.parse().unwrap()), "the squatter was signalled");
}

/// Repro: a captured line of ESC/CR sequences overprinted its own
/// `[gen 1 pid P stdout]` prefix with a forged supervisor line. The
/// control characters are written visibly; the record stays one line.
#[test]
fn captured_control_characters_cannot_forge_a_supervisor_line() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--log-capture", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--print"])
        .arg(r"\e[2K\rhandover[2]: generation 7 (pid 9) is ready\xc2\x9b\x00 tab\tend\n")
        .start();
    let line = s.wait_line("stdout] ");
    let forged = r"] \x1b[2K\x0dhandover[2]: generation 7 (pid 9) is ready\u{9b}\x00 tab";
    assert!(line.contains(forged) && line.ends_with("tab\tend"), "{line:?}\n{}", s.dossier());
    assert!(!line.contains('\x1b') && !line.contains('\r'), "{line:?}");
}

/// Repro: the notify and einhorn sockets were chowned to the `--user`
/// worker, which could chmod them 0777. They stay root's, reachable
/// through their group and a directory only that group may enter; the
/// worker's READY=1 and einhorn ack still get through.
#[test]
fn a_worker_as_nobody_does_not_own_its_readiness_sockets() {
    use std::os::unix::fs::MetadataExt;
    if !root() {
        return;
    }
    let b = handover();
    fs::set_permissions(b.dir(), fs::Permissions::from_mode(0o1777)).unwrap();
    let s = b
        .args([
            "--port",
            "127.0.0.1:0",
            "--user",
            "nobody",
            "--ready",
            "notify",
            "--log-format",
            "json",
            "--",
        ])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--notify", "--einhorn-ack"])
        .start();
    let worker: i32 = squatter(&s.wait_journal(&["ack", "result=sent"])).parse().unwrap();
    s.wait_event("ready", |r| r["how"] == "READY=1");
    let environ = fs::read(format!("/proc/{worker}/environ")).unwrap();
    let var = |name: &str| {
        let entry = environ.split(|&b| b == 0).find_map(|e| e.strip_prefix(format!("{name}=").as_bytes()));
        std::path::PathBuf::from(String::from_utf8(entry.expect(name).to_vec()).unwrap())
    };
    let nobody_group = fs::metadata(format!("/proc/{worker}")).unwrap().gid();
    for socket in [var("NOTIFY_SOCKET"), var("EINHORN_SOCK_PATH")] {
        let meta = fs::symlink_metadata(&socket).unwrap();
        let shown = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
        assert_eq!(shown, (0, nobody_group, 0o660), "{}", socket.display());
        let dir = fs::metadata(socket.parent().unwrap()).unwrap();
        assert_eq!((dir.uid(), dir.gid(), dir.mode() & 0o7777), (0, nobody_group, 0o710));
    }
}
