//! A hostile local user against a supervisor run as root: links and
//! sockets planted in directories that user can write. Each test is one
//! reproduction of what used to work: the supervisor followed the link,
//! wrote through it or trusted the directory; now it refuses with one line
//! naming the path, or goes somewhere safe, and the victim is untouched.
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::errors::run_in;
use crate::harness::*;

const NOBODY: u32 = 65534;

fn root() -> bool {
    can_run("root", nix::unistd::Uid::effective().is_root())
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory as `nobody` would have made it.
fn theirs(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap();
    chmod(path, mode);
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// A symlink `nobody` planted at `at`.
fn planted(target: &Path, at: &Path) {
    symlink(target, at).unwrap();
    std::os::unix::fs::lchown(at, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// handover with `args` and a worker that would serve; it must refuse to
/// start. Returns its output. A supervisor that starts instead is killed
/// after a generous bound (a refusal comes before anything is bound), so
/// the old behaviour fails here rather than hanging the run.
fn refused(args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--")
        .arg(example("hello"))
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + REFUSAL_BOUND;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = child.try_wait().unwrap().is_none();
    if started {
        // The group: the supervisor and its worker.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!started && !output.status.success(), "it started: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    output
}

/// How long a refusal may take at most.
const REFUSAL_BOUND: Duration = Duration::from_secs(20);

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Attack 1: a socket in a directory `nobody` owns. `nobody` could swap
/// the path for a link between bind and chmod (a root-owned file became
/// 0777 after 121 starts); the directory is refused outright now, and so
/// is one anyone can write without the sticky bit.
#[test]
fn a_socket_is_not_made_in_a_directory_another_user_can_change() {
    if !root() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let owned = top.path().join("owned");
    theirs(&owned, 0o755);
    let open = top.path().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    for dir in [&owned, &open] {
        let sock = dir.join("web.sock");
        let control = dir.join("control");
        for args in [
            vec!["--path", sock.to_str().unwrap()],
            vec!["--port", "127.0.0.1:0", "--control", control.to_str().unwrap()],
        ] {
            let output = refused(&args);
            let text = stderr(&output);
            assert!(text.contains(&dir.display().to_string()), "names the directory: {text}");
            assert!(!sock.exists() && !control.exists(), "nothing left behind: {text}");
        }
    }
    // A link `nobody` planted in a sticky directory is not followed.
    let sticky = top.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let victim = top.path().join("victim");
    fs::create_dir(&victim).unwrap();
    planted(&victim, &sticky.join("run"));
    let through = sticky.join("run/web.sock");
    let text = stderr(&refused(&["--path", through.to_str().unwrap()]));
    assert!(text.contains("symbolic link of uid 65534"), "{text}");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "nothing made through the link");
}

/// Its own sticky directory is fine: the socket gets exactly its mode.
#[test]
fn a_socket_in_a_sticky_directory_gets_its_mode() {
    let top = tempfile::tempdir().unwrap();
    chmod(top.path(), 0o1777);
    let sock = top.path().join("web.sock");
    let s = handover()
        .args(["--listen", &format!("unix:{}?mode=0660", sock.display()), "--status-file", "{dir}/status"])
        .args(["--", example("hello").to_str().unwrap(), "--quiet"])
        .start();
    s.wait_generations(&[1]);
    let meta = fs::symlink_metadata(&sock).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o660, "{}", s.dossier());
}

/// Attack 3: links planted where the pid and status files go, in a 1777
/// directory. root-owned files behind them used to be overwritten (`1\n`).
#[test]
fn pid_and_status_files_are_never_written_through_a_planted_link() {
    if !root() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let d = top.path().join("d");
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o1777);
    let (v1, v2) = (top.path().join("v1"), top.path().join("v2"));
    fs::write(&v1, "precious 1\n").unwrap();
    fs::write(&v2, "precious 2\n").unwrap();
    planted(&v1, &d.join("app.pid"));
    let pid = d.join("app.pid");
    let status = d.join("app.status");
    let text = stderr(&refused(&[
        "--port",
        "127.0.0.1:0",
        "--pid-file",
        pid.to_str().unwrap(),
        "--status-file",
        status.to_str().unwrap(),
    ]));
    assert!(text.contains(&pid.display().to_string()), "{text}");
    assert_eq!(fs::read_to_string(&v1).unwrap(), "precious 1\n");

    // The status file's link is replaced by the file, never written through.
    fs::remove_file(&pid).unwrap();
    planted(&v2, &status);
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--pid-file", pid.to_str().unwrap()])
        .args([
            "--status-file",
            status.to_str().unwrap(),
            "--",
            example("hello").to_str().unwrap(),
            "--quiet",
        ])
        .start();
    wait_for(
        "the status file",
        || s.dossier(),
        || fs::read_to_string(&status).ok().filter(|t| t.starts_with("1:")),
    );
    assert_eq!(fs::read_to_string(&v2).unwrap(), "precious 2\n");
    assert!(!fs::symlink_metadata(&status).unwrap().file_type().is_symlink());
    // Nothing but the two files: no temporary file under a guessable name.
    let mut names: Vec<String> =
        fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["app.pid", "app.status"], "{}", s.dossier());
}

/// Attack 3, the log file: a link `nobody` planted is not opened.
#[test]
fn a_log_file_is_not_opened_through_a_planted_link() {
    if !root() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    chmod(top.path(), 0o1777);
    let victim = top.path().join(".victim");
    fs::write(&victim, "precious\n").unwrap();
    chmod(&victim, 0o600);
    let log = top.path().join("app.log");
    planted(&victim, &log);
    let text = stderr(&refused(&["--port", "127.0.0.1:0", "--log-file", log.to_str().unwrap()]));
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// Attack 4: `ln -s /etc/shadow env/LEAK` in an envdir, and a worker run
/// as `nobody`, used to hand the worker the secret root read for it.
#[test]
fn an_envdir_link_does_not_leak_a_file_to_the_worker() {
    if !root() {
        return;
    }
    let b = handover();
    chmod(b.dir(), 0o1777);
    let env = b.dir().join("env");
    fs::create_dir(&env).unwrap();
    let secret = b.dir().join(".secret");
    fs::write(&secret, "root:*:secret\n").unwrap();
    chmod(&secret, 0o600);
    symlink(&secret, env.join("LEAK")).unwrap();
    fs::write(env.join("PLAIN"), "fine\n").unwrap();
    let report = "printf '%s %s\\n' \"${LEAK-unset}\" \"${PLAIN-unset}\" > {dir}/seen; exec sleep 1000";
    let s = b
        .args(["--port", "127.0.0.1:0", "--user", "nobody", "--envdir", env.to_str().unwrap()])
        .args(["--", "sh", "-c", report])
        .start();
    let seen = s.path("seen");
    let text = wait_for(
        "the worker's report",
        || s.dossier(),
        || fs::read_to_string(&seen).ok().filter(|t| t.ends_with('\n')),
    );
    assert_eq!(text, "unset fine\n", "{}", s.dossier());
}

/// Attack 5: XDG_RUNTIME_DIR at a 0777 directory without the sticky bit:
/// `nobody` could replace handover's directory there and receive the
/// workers' READY=1. Only a runtime directory that is ours and 0700 is used.
#[test]
fn a_runtime_directory_others_can_write_is_not_used() {
    let b = handover();
    let open = b.dir().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let private = b.dir().join("private");
    fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    for (xdg, used) in [(&open, false), (&private, true)] {
        let report = "printf '%s\\n' \"$NOTIFY_SOCKET\" > {dir}/notify; exec sleep 1000";
        let s = handover()
            .env("XDG_RUNTIME_DIR", xdg.to_str().unwrap())
            .args(["--port", "127.0.0.1:0", "--", "sh", "-c", report])
            .start();
        let seen = s.path("notify");
        let text = wait_for(
            "the worker's report",
            || s.dossier(),
            || fs::read_to_string(&seen).ok().filter(|t| t.ends_with('\n')),
        );
        assert_eq!(Path::new(text.trim()).starts_with(xdg), used, "{text} {}", s.dossier());
        let socket_dir = Path::new(text.trim()).parent().unwrap();
        assert_eq!(fs::metadata(socket_dir).unwrap().mode() & 0o777, 0o700);
    }
}

/// A pid file `nobody` planted, in a directory it owns and in a sticky
/// one, naming a root process that holds the file's lock (so the lock
/// check alone is satisfied): root's `stop` and `restart` used to signal
/// that process. The client now trusts a pid file only where the
/// supervisor could have made it.
#[test]
fn a_planted_pid_file_makes_no_client_signal_its_pid() {
    if !root() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let (owned, sticky) = (top.path().join("owned"), top.path().join("sticky"));
    theirs(&owned, 0o755);
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    for dir in [&owned, &sticky] {
        let file = dir.join("app.pid");
        fs::write(&file, "").unwrap();
        std::os::unix::fs::lchown(&file, Some(NOBODY), Some(NOBODY)).unwrap();
        // The victim: root's, holding the file's lock, its pid in the file.
        let mut victim = (Command::new("flock").arg("--no-fork").arg(&file).args(["sleep", "1000"]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        fs::write(&file, format!("{}\n", victim.id())).unwrap();
        wait_for("the victim's lock on the pid file", String::new, || locked(&file).then_some(()));
        for command in ["stop", "restart"] {
            let out = run_in(top.path(), &[command, "--pid-file", file.to_str().unwrap(), "--timeout", "1s"]);
            assert_ne!(out.code, Some(0), "{command} trusted {}: {}", file.display(), out.dossier());
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.dossier());
            assert!(
                victim.try_wait().unwrap().is_none(),
                "{command} signalled the victim: {}",
                out.dossier()
            );
        }
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}

/// Whether someone holds a lock on `file` (a non-blocking try fails).
fn locked(file: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    Flock::lock(fs::File::open(file).unwrap(), FlockArg::LockSharedNonblock).is_err()
}
