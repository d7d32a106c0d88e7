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

/// Makes the child `command` starts join the cgroup whose `cgroup.procs`
/// is open at `procs` before its exec (writing "0" moves the writer), so
/// everything it starts is in that cgroup from the first instruction.
/// The caller keeps `procs` open until the spawn has returned; a failed
/// write fails the spawn.
pub fn join_cgroup_at_exec(command: &mut std::process::Command, procs: std::os::fd::RawFd) {
    // SAFETY: the closure runs between fork and exec and makes one
    // async-signal-safe system call (write) on an fd the parent holds open;
    // its error is a bare errno, so it allocates nothing.
    unsafe {
        command.pre_exec(move || match libc::write(procs, b"0".as_ptr().cast(), 1) {
            1 => Ok(()),
            _ => Err(io::Error::last_os_error()),
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

/// Executes the file open at `fd` (an `O_PATH` fd of a program, kept by
/// number across an `execve`): `execveat(fd, "", ..., AT_EMPTY_PATH)`.
/// Returns only if that failed.
pub fn execute_fd(
    fd: std::os::fd::RawFd,
    argv: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> io::Error {
    let mut argv: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: both arrays are NUL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call; the path is an empty C
    // string; `fd` is only a number to the kernel (EBADF if not open).
    unsafe {
        libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), env.as_ptr(), libc::AT_EMPTY_PATH)
    };
    io::Error::last_os_error()
}

/// Dispositions set aside by [`ignore_blocked`], to be put back.
pub struct Ignored(Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>);

/// With every signal blocked, before an `execve`: sets `signals` to be
/// ignored, so that a program in between that unblocks signals (dash
/// clears its mask once it has waited for a command) drops them instead
/// of taking their default action, which would end the process. Ignored
/// dispositions survive `execve` and a shell keeps them. Setting one
/// discards what is pending, so those pending are raised again: blocked,
/// a signal stays pending even while ignored (Linux), for the next
/// program's handlers.
pub fn ignore_blocked(signals: &[nix::sys::signal::Signal]) -> io::Result<Ignored> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, raise, sigaction};
    let pending = pending_signals()?;
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let mut saved = Vec::with_capacity(signals.len());
    for &signal in signals {
        // SAFETY: SIG_IGN runs no code in this process; the previous
        // action is kept and put back by `restore`.
        match unsafe { sigaction(signal, &ignore) } {
            Ok(old) => saved.push((signal, old)),
            Err(e) => {
                restore(Ignored(saved));
                return Err(e.into());
            }
        }
    }
    // SAFETY: sigismember only reads the set, initialised by sigpending.
    let is_pending = |s: nix::sys::signal::Signal| unsafe { libc::sigismember(&pending, s as i32) } == 1;
    for &signal in signals.iter().filter(|&&s| is_pending(s)) {
        let _ = raise(signal);
    }
    Ok(Ignored(saved))
}

/// Puts back the dispositions [`ignore_blocked`] set aside (the exec failed).
pub fn restore(ignored: Ignored) {
    for (signal, action) in ignored.0 {
        // SAFETY: the action is the one this process had installed for
        // `signal` just before (signal-hook's handler, or a default).
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}

fn pending_signals() -> io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending writes a full sigset_t to the pointer given.
    if unsafe { libc::sigpending(set.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    Ok(unsafe { set.assume_init() })
}

/// How a reaped child ended: its exit code, or the signal (any number,
/// real-time ones included) and whether it dumped core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal { signal: i32, core: bool },
}

/// One child that has ended, reaped (`waitpid(-1, WNOHANG)`): Ok(None)
/// when none has (or there are no children). Decoded here rather than by
/// nix, whose `WaitStatus` has no value for a real-time signal and
/// returns an error for a child it has already reaped.
pub fn reap_one() -> io::Result<Option<(i32, Ended)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes only the int it is given.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == 0 {
            return Ok(None);
        }
        if pid < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        if libc::WIFEXITED(status) {
            return Ok(Some((pid, Ended::Code(libc::WEXITSTATUS(status)))));
        }
        if libc::WIFSIGNALED(status) {
            let ended = Ended::Signal { signal: libc::WTERMSIG(status), core: libc::WCOREDUMP(status) };
            return Ok(Some((pid, ended)));
        }
        // Stopped or continued: not asked for (no WUNTRACED), not an end.
    }
}
