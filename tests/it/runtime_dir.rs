//! Where the private directory of the notify and einhorn sockets goes
//! (`state::runtime`): `$HANDOVER_RUNTIME_DIR` when set, else a private
//! `$XDG_RUNTIME_DIR`, the temp dir, then `/dev/shm`, as in a scratch
//! container image that has no `/tmp` (tests/it/container.rs runs that
//! image); a failure is one line naming the path and the fix.
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::errors::run_in_env;
use crate::harness::*;

/// The worker writes its NOTIFY_SOCKET to `{dir}/notify`, then sleeps.
const REPORT: &str = "printf '%s\\n' \"$NOTIFY_SOCKET\" > {dir}/notify; exec sleep 1000";

/// The NOTIFY_SOCKET a worker of handover gets with this environment.
fn notify_socket(env: &[(&str, &str)]) -> PathBuf {
    let mut b = handover();
    for (name, value) in env {
        let value = value.replace("{dir}", &b.dir().to_string_lossy());
        b = b.env(name, &value);
    }
    let s = b.args(["--port", "127.0.0.1:0", "--", "sh", "-c", REPORT]).start();
    let text = wait_for(
        "the worker's report",
        || s.dossier(),
        || fs::read_to_string(s.path("notify")).ok().filter(|t| t.ends_with('\n')),
    );
    let socket = PathBuf::from(text.trim());
    let private = socket.parent().unwrap();
    let meta = fs::metadata(private).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.uid()),
        (0o700, nix::unistd::geteuid().as_raw()),
        "{}",
        s.dossier()
    );
    socket
}

#[test]
fn handover_runtime_dir_names_where_the_private_directory_goes() {
    let top = tempfile::tempdir().unwrap();
    let run = top.path().join("run");
    fs::create_dir(&run).unwrap();
    let socket = notify_socket(&[("HANDOVER_RUNTIME_DIR", run.to_str().unwrap())]);
    assert_eq!(socket.parent().unwrap().parent().unwrap(), run);
    // Removed when the supervisor stopped (dropped, above).
    assert_eq!(fs::read_dir(&run).unwrap().count(), 0);
}

#[test]
fn without_a_temp_dir_the_private_directory_goes_in_dev_shm() {
    if !can_run("/dev/shm", Path::new("/dev/shm").is_dir()) {
        return;
    }
    let socket = notify_socket(&[("TMPDIR", "{dir}/missing"), ("XDG_RUNTIME_DIR", "")]);
    assert_eq!(socket.parent().unwrap().parent().unwrap(), Path::new("/dev/shm"));
}

#[test]
fn an_unusable_runtime_dir_is_one_line_naming_it_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let missing = dir.path().join("missing");
    for (given, why) in [(&missing, "No such file or directory"), (&open, "is writable by other users")] {
        let env = [("HANDOVER_RUNTIME_DIR", given.to_str().unwrap())];
        let o = run_in_env(dir.path(), &["--port", "127.0.0.1:0", "--", "sleep", "1000"], &env);
        assert_eq!(o.code, Some(1), "{}", o.dossier());
        let lines = o.error_lines();
        assert_eq!(lines.len(), 1, "{}", o.dossier());
        let line = lines[0];
        let expected =
            format!("handover: cannot create the notify socket: HANDOVER_RUNTIME_DIR={}: ", given.display());
        assert!(line.starts_with(&expected), "{}", o.dossier());
        assert!(line.contains(why), "{}", o.dossier());
        assert!(line.ends_with("; set it to a directory that this user can write and no other user can (or a sticky one, as /tmp)"), "{}", o.dossier());
    }
}
