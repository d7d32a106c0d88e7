//! The pid file's lock, content and mode, and who is trusted as its holder.

use super::*;

#[test]
fn pid_file_is_exclusive_and_keeps_the_holders_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let mut first = PidFile::acquire(&path).unwrap();
    let me = std::process::id();
    first.write_pid(me).unwrap();
    // flock is per open file description: a second open in this process conflicts.
    let err = PidFile::acquire(&path).unwrap_err();
    assert!(matches!(err, PidFileError::Running { pid: Some(p), holder: None, .. } if p == me), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "another instance is running with pid file {} (pid {me}); stop it first or choose another --pid-file",
            path.display()
        )
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{me}\n"), "the failed acquire truncated");
    assert!(is_locked(&path).unwrap());
    assert_eq!(read_pid(&path), Ok(me));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn running_without_a_readable_pid_omits_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let _first = PidFile::acquire(&path).unwrap();
    let err = PidFile::acquire(&path).unwrap_err();
    assert!(matches!(err, PidFileError::Running { pid: None, .. }));
    assert!(!err.to_string().contains("(pid"));
}

/// A lock taken over by a process the file does not name (a worker's
/// child queued on it while the supervisor lived) is reported by holder.
#[test]
fn a_lock_the_named_pid_does_not_hold_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut squatter = PidFile::acquire(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600, "a reused file is closed");
    squatter.write_pid(1).unwrap();
    let err = PidFile::acquire(&path).unwrap_err();
    let me = std::process::id();
    assert!(matches!(err, PidFileError::Running { pid: Some(1), holder: Some(h), .. } if h == me), "{err:?}");
    assert!(err.to_string().contains(&format!("is locked by pid {me}, not pid 1 it names")), "{err}");
    let watch = PidFileWatch::open(&path).unwrap();
    let refused = watch.holder(1).unwrap_err();
    assert!(refused.message.contains(&format!("names pid 1, but its lock is held by pid {me}")), "{refused}");
    assert_eq!(watch.holder(me), Ok(()));
}

#[test]
fn write_pid_replaces_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    fs::write(&path, "99999999 stale and long\nsecond line\n").unwrap();
    let mut pf = PidFile::acquire(&path).unwrap();
    pf.write_pid(42).unwrap();
    pf.write_pid(7).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "7\n");
}

#[test]
fn remove_unlinks_and_keeps_the_lock_until_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let mut pf = PidFile::acquire(&path).unwrap();
    pf.write_pid(1).unwrap();
    let watch = PidFileWatch::open(&path).unwrap();
    assert!(watch.is_locked().unwrap());
    pf.remove().unwrap();
    assert!(!path.exists());
    assert!(watch.is_locked().unwrap(), "released only when the process exits");
    assert!(!watch.wait_timeout(Duration::ZERO).unwrap());
    assert!(!is_locked(&path).unwrap(), "a missing pid file is not locked");
}

#[test]
fn remove_leaves_a_file_that_replaced_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let pf = PidFile::acquire(&path).unwrap();
    fs::remove_file(&path).unwrap();
    fs::write(&path, "5\n").unwrap();
    pf.remove().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "5\n");
}

#[test]
fn watch_times_out_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pid");
    let _pf = PidFile::acquire(&path).unwrap();
    let watch = PidFileWatch::open(&path).unwrap();
    assert!(!watch.wait_timeout(Duration::from_millis(30)).unwrap());
}

#[test]
fn pid_file_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/pid");
    let err = PidFile::acquire(&missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot open pid file {}: No such file or directory", missing.display())
    );
    assert_eq!(
        read_pid(&missing).unwrap_err(),
        Error::runtime(format!("cannot read pid file {}: No such file or directory", missing.display()))
    );
    let path = dir.path().join("pid");
    for bad in ["", "\n", "abc\n", "0\n", "-5\n", "99999999999\n"] {
        fs::write(&path, bad).unwrap();
        let err = read_pid(&path).unwrap_err();
        assert!(err.message.starts_with(&format!("pid file {} ", path.display())), "{bad:?}: {err}");
    }
    fs::write(&path, " 321 \nrest\n").unwrap();
    assert_eq!(read_pid(&path), Ok(321));
}

mod fuzz;
