use super::*;

#[test]
fn decimal_without_allocation() {
    let mut slot = [b'x'; 12];
    write_decimal(&mut slot, 4194304);
    assert_eq!(&slot[..8], b"4194304\0");
    write_decimal(&mut slot, 0);
    assert_eq!(&slot[..2], b"0\0");
}

#[test]
fn open_fds_are_listed_without_allocating() {
    // Other tests open and close fds meanwhile: only ours are certain.
    let probe = std::fs::File::open("/dev/null").unwrap();
    let mut seen = Vec::new();
    assert!(each_open_fd(|fd| seen.push(fd)));
    for fd in [0, 1, 2, probe.as_raw_fd()] {
        assert!(seen.contains(&fd), "fd {fd} not in {seen:?}");
    }
    let listed = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), listed, "each fd once");
}

#[test]
fn resolves_like_execvp() {
    let env = [(OsString::from("PATH"), OsString::from("/nonexistent:/bin:/usr/bin"))];
    assert!(resolve(OsStr::new("sh"), &env).unwrap().ends_with("sh"));
    assert_eq!(resolve(OsStr::new("no-such-program-x"), &env), Err(libc::ENOENT));
    assert_eq!(resolve(OsStr::new("./relative"), &env), Ok(PathBuf::from("./relative")));
}

fn request<'a>(command: &'a [OsString], contain: Contain<'a>) -> Request<'a> {
    Request { command, env: &[], listen_pid: false, dir: None, fds: &[], credentials: None, contain }
}

#[test]
fn a_cgroup_that_cannot_be_joined_is_a_failed_spawn() {
    let command = [OsString::from("/bin/true")];
    let missing = Path::new("/nonexistent/handover-test");
    let error = spawn(&request(&command, Contain::Cgroup(missing))).unwrap_err();
    assert_eq!((error.what.as_str(), error.errno), ("join the worker's cgroup", libc::ENOENT));
}

#[test]
fn in_session_mode_the_worker_leads_a_session() {
    let command = ["/bin/sleep", "5"].map(OsString::from);
    let pid = spawn(&request(&command, Contain::Session)).unwrap();
    let sid = nix::unistd::getsid(Some(pid)).unwrap();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    assert_eq!(sid, pid);
}
