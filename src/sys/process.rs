//! The supervisor's own process: becoming a daemon, tying a child's life
//! to ours, and its environment.
use std::io;
use std::os::unix::process::CommandExt;

/// fork, setsid, fork: the caller continues as a daemon in a new session.
/// The two intermediate processes `_exit(0)` without running any clean-up.
///
/// Forking is sound only while the process has one thread (a lock held by
/// another thread would stay locked for ever in the child), so this checks
/// `/proc/self/task` first and refuses otherwise.
pub fn daemonize() -> io::Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        let text = format!("{threads} threads are running; only a single-threaded process may fork");
        return Err(io::Error::other(text));
    }
    for round in 0..2 {
        // SAFETY: the process is single-threaded (checked above, and this
        // function starts no thread), so the child may go on running
        // ordinary Rust code.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            // SAFETY: _exit ends the parent without running destructors,
            // which would remove files the daemon now owns.
            _ => unsafe { libc::_exit(0) },
        }
        if round == 0 {
            nix::unistd::setsid()?;
        }
    }
    Ok(())
}

/// Makes the child `command` starts get SIGTERM when this thread ends (the
/// drill's supervisor under test: killed drill, no orphaned supervisor).
/// The parent's death is a thread's exit in Linux's terms, so `command`
/// must be spawned from a thread that lives as long as the child should,
/// the main thread. A child whose parent died before the call fails to
/// start instead.
pub fn stop_with_parent(command: &mut std::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and makes only two
    // async-signal-safe system calls (prctl, getppid); its errors are bare
    // errnos, so it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Reads and removes an environment variable: the self-upgrade's state
/// record is named in one, which nothing this process starts may see.
/// Call at the very start of `main`, before any thread exists.
pub fn take_env(name: &str) -> Option<std::ffi::OsString> {
    let value = std::env::var_os(name)?;
    // SAFETY: called first thing in `main`, while the process has a single
    // thread, so no other thread reads the environment meanwhile.
    unsafe { std::env::remove_var(name) };
    Some(value)
}
