//! Starting a worker: fork and execve with everything prepared before.
//!
//! `spawn` forks and execs a worker. Everything the child needs is built
//! before the fork (C strings, pointer arrays, the fd plan, the close
//! ranges), so between fork and exec the child makes only
//! async-signal-safe system calls on that data: no allocation, no locks,
//! no logging, no unwinding. In the child, in order:
//!
//! 1. every signal disposition back to default (ignored ones survive exec,
//!    Rust ignores SIGPIPE, posix_spawn leaves 32 and 33 ignored), then its
//!    own process group;
//! 2. `LISTEN_PID` written with its own pid into a pre-allocated slot;
//! 3. `chdir` to `--dir`;
//! 4. listeners moved to their target fds: first copied above every target
//!    (so no move clobbers a source), then `dup2`ed into place, which
//!    clears close-on-exec on the targets only;
//! 5. close-on-exec set on every other fd above 2, so nothing else leaks;
//! 6. the signal mask emptied (the parent blocked everything around fork);
//! 7. `execve`. On failure the errno goes back through a close-on-exec pipe
//!    and the child `_exit`s: it never runs the parent's clean-up.
//!
//! The parent reads that pipe: end-of-file means the exec succeeded.
use std::ffi::{CString, OsStr, OsString};
use std::io::Read;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{Pid, pipe2};

use crate::error::SpawnError;
use safe::{CGROUP_PROCS, each_open_fd, join_cgroup, mark_cloexec, write_decimal};

mod safe;

/// `LISTEN_PID=` followed by room for any pid and the NUL.
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
const SLOT_LEN: usize = 40;

pub struct Request<'a> {
    pub command: &'a [OsString],
    pub env: &'a [(OsString, OsString)],
    /// Add `LISTEN_PID=<the worker's pid>`.
    pub listen_pid: bool,
    pub dir: Option<&'a Path>,
    /// (source fd in the supervisor, fd number in the worker)
    pub fds: &'a [(RawFd, RawFd)],
    /// Run as this user (`--user`, `--group`).
    pub credentials: Option<&'a Credentials>,
    /// How the worker is contained.
    pub contain: Contain<'a>,
}

/// Where the child puts itself before anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contain<'a> {
    /// A session of its own (`setsid`): it leads it and its process group.
    Session,
    /// A process group of its own, and the cgroup `<pid>` created below
    /// this cgroup directory.
    Cgroup(&'a Path),
}

/// Who the worker runs as: supplementary groups, then gid, then uid are
/// set in the child, before exec; a failure is fatal for that worker, which
/// then never runs with the supervisor's privileges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Find the program as `execvp` would, in the worker's PATH.
pub fn resolve(program: &OsStr, env: &[(OsString, OsString)]) -> Result<PathBuf, i32> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    let path = path.unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK) {
            Ok(()) if candidate.is_file() => return Ok(candidate),
            Ok(()) | Err(Errno::EACCES) if candidate.exists() => denied = true,
            _ => {}
        }
    }
    Err(if denied { libc::EACCES } else { libc::ENOENT })
}

/// Check before anything is bound that the first spawn can exec the
/// program: found (else 127) and executable (else 126), as a shell says.
pub fn check(program: &OsStr, env: &[(OsString, OsString)], dir: Option<&Path>) -> Result<(), SpawnError> {
    let name = program.to_string_lossy();
    let what =
        if name.contains('/') { format!("run worker {name}") } else { format!("find worker {name} in PATH") };
    let failed = |errno| SpawnError { what: what.clone(), errno };
    let path = resolve(program, env).map_err(failed)?;
    let path = match dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    let meta = std::fs::metadata(&path).map_err(|e| failed(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if meta.is_dir() {
        return Err(failed(libc::EISDIR));
    }
    nix::unistd::access(&path, nix::unistd::AccessFlags::X_OK).map_err(|e| failed(e as i32))
}

fn cstring(bytes: &[u8]) -> Result<CString, i32> {
    CString::new(bytes).map_err(|_| libc::EINVAL)
}

/// Everything the child touches, built before the fork.
struct Plan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    /// The `LISTEN_PID=` entry, filled in by the child.
    listen_pid: Option<Box<[u8; SLOT_LEN]>>,
    dir: Option<CString>,
    fds: Vec<(RawFd, RawFd)>,
    /// Lowest fd number above every target: where sources are staged.
    staging_floor: RawFd,
    /// fd ranges (inclusive) that get close-on-exec.
    cloexec_ranges: Vec<(u32, u32)>,
    open_max: RawFd,
    nsig: libc::c_int,
    credentials: Option<Credentials>,
    /// Session mode: no cgroup.
    session: bool,
    /// `<base>/` and room for the pid and `/cgroup.procs`, filled in by the
    /// child; the length of `<base>/`.
    cgroup: Option<(Vec<u8>, usize)>,
}

impl Plan {
    fn new(req: &Request, what: &mut String) -> Result<Plan, i32> {
        let program = req.command.first().ok_or(libc::EINVAL)?;
        *what = format!("exec {}", program.to_string_lossy());
        let path = resolve(program, req.env)?;
        let path = cstring(path.as_os_str().as_bytes())?;
        let argv = req.command.iter().map(|a| cstring(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
        let entry = |(name, value): &(OsString, OsString)| [name.as_bytes(), b"=", value.as_bytes()].concat();
        let env = req.env.iter().map(|pair| cstring(&entry(pair))).collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        let listen_pid = req.listen_pid.then(|| {
            let mut slot = Box::new([0u8; SLOT_LEN]);
            slot[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
            slot
        });
        if let Some(slot) = &listen_pid {
            env_ptrs.push(slot.as_ptr().cast());
        }
        env_ptrs.push(std::ptr::null());
        let dir = req.dir.map(|dir| cstring(dir.as_os_str().as_bytes())).transpose()?;
        let mut targets: Vec<RawFd> = req.fds.iter().map(|&(_, target)| target).collect();
        targets.sort_unstable();
        let staging_floor = targets.last().map_or(3, |&t| (t + 1).max(3));
        let mut cloexec_ranges = Vec::new();
        let mut next = 3u32;
        for &target in targets.iter().filter(|&&t| t >= 3) {
            if target as u32 > next {
                cloexec_ranges.push((next, target as u32 - 1));
            }
            next = target as u32 + 1;
        }
        cloexec_ranges.push((next, u32::MAX));
        let open_max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft.min(1 << 20) as RawFd);
        Ok(Plan {
            path,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            listen_pid,
            dir,
            fds: req.fds.to_vec(),
            staging_floor,
            cloexec_ranges,
            open_max,
            nsig: libc::SIGRTMAX() + 1,
            credentials: req.credentials.cloned(),
            session: req.contain == Contain::Session,
            cgroup: match req.contain {
                Contain::Session => None,
                Contain::Cgroup(base) => {
                    let mut path = base.as_os_str().as_bytes().to_vec();
                    path.push(b'/');
                    let len = path.len();
                    path.resize(len + 24 + CGROUP_PROCS.len(), 0);
                    Some((path, len))
                }
            },
        })
    }
}

/// Start a worker; returns its pid once it has exec'd.
pub fn spawn(req: &Request) -> Result<Pid, SpawnError> {
    let mut what = String::from("exec");
    let mut plan = Plan::new(req, &mut what).map_err(|errno| SpawnError { what: what.clone(), errno })?;
    let failed = |what: &str, errno: Errno| SpawnError { what: what.into(), errno: errno as i32 };
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| failed("create a pipe", e))?;
    let mut saved = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut saved))
        .map_err(|e| failed("block signals", e))?;
    // SAFETY: the child runs only `child`, which makes async-signal-safe
    // calls on memory prepared above and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(&mut plan, report_write.as_raw_fd());
    }
    let fork_error = Errno::last();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    drop(report_write);
    if pid < 0 {
        return Err(failed("fork", fork_error));
    }
    let pid = Pid::from_raw(pid);
    // Also here, so the group exists before anyone signals it (not for a
    // session: a group leader cannot call setsid; the exec is waited for).
    if req.contain != Contain::Session {
        let _ = nix::unistd::setpgid(pid, pid);
    }
    // End of file before a whole report (or a failed read): the exec succeeded.
    let mut report = Vec::with_capacity(8);
    let _ = std::fs::File::from(report_read).take(8).read_to_end(&mut report);
    if report.len() < 8 {
        return Ok(pid);
    }
    let _ = nix::sys::wait::waitpid(pid, None);
    let stage = i32::from_ne_bytes(report[..4].try_into().unwrap_or_default());
    let errno = i32::from_ne_bytes(report[4..].try_into().unwrap_or_default());
    let what = match (stage, req.dir) {
        (STAGE_CHDIR, Some(dir)) => format!("chdir {}", dir.display()),
        (STAGE_FDS, _) => "place the listening sockets".to_string(),
        (STAGE_USER, _) => "switch to the worker's user and groups".to_string(),
        (STAGE_CGROUP, _) => "join the worker's cgroup".to_string(),
        _ => what,
    };
    Err(SpawnError { what, errno })
}

const STAGE_CHDIR: i32 = 1;
const STAGE_FDS: i32 = 2;
const STAGE_EXEC: i32 = 3;
const STAGE_USER: i32 = 4;
const STAGE_CGROUP: i32 = 5;

/// Between fork and exec. Only async-signal-safe calls; never returns.
fn child(plan: &mut Plan, report: RawFd) -> ! {
    // SAFETY: all calls below are async-signal-safe system calls (rt_sigaction,
    // setpgid, setsid, mkdirat, openat, setgroups, setgid, setuid, prctl, getpid, chdir, fcntl, dup2,
    // close_range, sigprocmask,
    // execve, write, _exit) on data prepared before the fork.
    unsafe {
        // The raw system call: glibc's signal() refuses 32 and 33, which
        // posix_spawn callers (Rust's Command among them) leave ignored.
        let default = [0u64; 4];
        for signal in 1..plan.nsig {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, signal, default.as_ptr(), 0usize, 8usize);
            }
        }
        if plan.session {
            libc::setsid();
        } else {
            libc::setpgid(0, 0);
        }
        // One fd at a time, closed before the fds are placed.
        if let Some((path, len)) = plan.cgroup.as_mut()
            && !join_cgroup(path, *len)
        {
            fail(report, STAGE_CGROUP);
        }
        // libc's wrappers: they make the 32-bit-id calls on every
        // architecture (the raw SYS_setuid of i686 and armv7 takes 16 bits),
        // and after fork this thread is the process, so glibc has no other
        // thread to broadcast the change to.
        if let Some(c) = &plan.credentials
            && (libc::setgroups(c.groups.len(), c.groups.as_ptr()) != 0
                || libc::setgid(c.gid) != 0
                || libc::setuid(c.uid) != 0)
        {
            fail(report, STAGE_USER);
        }
        // A dropped worker cannot gain privileges back through a setuid or
        // file-capability program it executes.
        if plan.credentials.is_some() && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(report, STAGE_USER);
        }
        if let Some(slot) = plan.listen_pid.as_deref_mut() {
            write_decimal(&mut slot[LISTEN_PID_PREFIX.len()..], libc::getpid() as u64);
        }
        if let Some(dir) = &plan.dir
            && libc::chdir(dir.as_ptr()) != 0
        {
            fail(report, STAGE_CHDIR);
        }
        // The report pipe must survive the moves below, so it is staged too;
        // if even that fails (no fd left), it is still open where it was.
        let staged = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, plan.staging_floor);
        if staged < 0 {
            fail(report, STAGE_FDS);
        }
        let report = staged;
        for (source, _) in plan.fds.iter_mut() {
            *source = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, plan.staging_floor);
            if *source < 0 {
                fail(report, STAGE_FDS);
            }
        }
        for &(source, target) in &plan.fds {
            if libc::dup2(source, target) < 0 {
                fail(report, STAGE_FDS);
            }
        }
        let ranges = &plan.cloexec_ranges;
        let all_done = ranges.iter().all(|&(first, last)| {
            libc::syscall(libc::SYS_close_range, first, last, libc::CLOSE_RANGE_CLOEXEC) == 0
        });
        // Before Linux 5.11: every open fd listed in /proc, or failing that
        // every number up to the fd limit.
        if !all_done && !each_open_fd(|fd| mark_cloexec(ranges, fd)) {
            for fd in 3..plan.open_max {
                mark_cloexec(ranges, fd);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.path.as_ptr(), plan.argv_ptrs.as_ptr(), plan.env_ptrs.as_ptr());
        fail(report, STAGE_EXEC);
    }
}

/// Report `errno` and the stage to the parent, then `_exit`.
fn fail(report: RawFd, stage: i32) -> ! {
    let errno = Errno::last_raw();
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&stage.to_ne_bytes());
    message[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write and _exit are async-signal-safe; `message` is on the stack.
    unsafe {
        libc::write(report, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests;
