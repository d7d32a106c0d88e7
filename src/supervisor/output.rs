//! Where the supervisor's output goes: `--log-file` and `--daemonize`.
//!
//! The log target replaces fds 1 and 2, so workers, which inherit them,
//! write to the same place. Errors until then (bad options, bind failures)
//! go to the terminal. The `| COMMAND` logger runs in its own process group
//! so a Ctrl-C meant for the supervisor does not cut the log short; it ends
//! when the last writer closes the pipe (`LogPipe`).
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2};

use crate::config::LogTarget;
use crate::error::{Context, Error, Result};
use crate::state::SafeDir;
use crate::sys::process;

/// Points fds 1 and 2 at `--log-file`. For `| COMMAND`, returns the log
/// pipe: the caller starts the command (`LogPipe::start`), then puts the
/// pipe on fds 1 and 2 (`LogPipe::install`), so that a failure to start
/// is still said on the terminal.
pub fn redirect(target: &LogTarget) -> Result<Option<LogPipe>, Error> {
    match target {
        LogTarget::File(path) => {
            let file = SafeDir::parent_of(path)
                .and_then(|(dir, name)| {
                    dir.open_log(&name, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT, 0o644)
                })
                .context(|| format!("cannot open log file {}", path.display()))?;
            install(&file)?;
            Ok(None)
        }
        LogTarget::Pipe(_) => Ok(Some(LogPipe::new().context(|| "cannot create the log pipe".into())?)),
    }
}

fn install(fd: &OwnedFd) -> Result<(), Error> {
    dup2_stdout(fd).and_then(|()| dup2_stderr(fd)).context(|| "cannot redirect output to the log".into())
}

/// The `| COMMAND` log's one pipe, made once for the life of the
/// supervisor (and carried across its upgrades). Its write end is fds 1
/// and 2, which workers inherit; the supervisor keeps the read end
/// (close-on-exec, never read) so the pipe always has a reader: a writer
/// never gets SIGPIPE or EPIPE while the command is down, and what it
/// wrote waits in the pipe for the command's next start, which gets the
/// same read end as its stdin (as runit and daemontools do). The command's
/// own stdout and stderr are the supervisor's from before the redirect.
#[derive(Debug)]
pub struct LogPipe {
    pub read: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Until `redirect` puts it on fds 1 and 2.
    write: Option<OwnedFd>,
}

impl LogPipe {
    fn new() -> std::io::Result<LogPipe> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        Ok(LogPipe { read, stdout, stderr, write: Some(write) })
    }

    /// The pipe an earlier image of this process kept.
    pub fn resume(read: OwnedFd, stdout: OwnedFd, stderr: OwnedFd) -> LogPipe {
        LogPipe { read, stdout, stderr, write: None }
    }

    /// The read end of the pipe on fd 1, for a record that did not carry
    /// it (written by an older handover): opened again through /proc.
    /// The command's output then goes to /dev/null.
    /// (Fd 1 is a writer of it, so the open does not wait for one.)
    pub fn from_fd1() -> std::io::Result<LogPipe> {
        let read = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open("/proc/self/fd/1")?;
        Ok(LogPipe::resume(read.into(), null()?, null()?))
    }

    /// `--daemonize`: the command's output goes to /dev/null, not to the
    /// terminal (or the caller's pipe) the daemon leaves.
    pub fn detach(&mut self) -> std::io::Result<()> {
        (self.stdout, self.stderr) = (null()?, null()?);
        Ok(())
    }

    /// Fds 1 and 2 lead to the pipe from now on.
    pub fn install(&mut self) -> Result<(), Error> {
        match self.write.take() {
            Some(write) => install(&write),
            None => Ok(()),
        }
    }

    /// The fds a self-upgrade carries: read end, stdout, stderr.
    pub fn fds(&self) -> [RawFd; 3] {
        [self.read.as_raw_fd(), self.stdout.as_raw_fd(), self.stderr.as_raw_fd()]
    }

    /// Starts `command` reading the pipe, in its own process group (and
    /// the cgroup `cgroup`, a directory, before its exec); its pid.
    pub fn start(&self, command: &str, cgroup: Option<&Path>) -> Result<i32, Error> {
        let fds = || -> std::io::Result<[OwnedFd; 3]> {
            Ok([self.read.try_clone()?, self.stdout.try_clone()?, self.stderr.try_clone()?])
        };
        let [stdin, stdout, stderr] = fds().context(|| format!("cannot start log command {command:?}"))?;
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c").arg(command).stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout));
        sh.stderr(Stdio::from(stderr)).process_group(0);
        // Open until the spawn has returned: the child writes to it.
        let procs = cgroup.map(|dir| {
            let mut options = OpenOptions::new();
            options.write(true).custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW);
            let procs = options.open(dir.join("cgroup.procs"));
            procs.context(|| format!("cannot open the log command's cgroup {}", dir.display()))
        });
        let procs = procs.transpose()?;
        if let Some(procs) = &procs {
            process::join_cgroup_at_exec(&mut sh, procs.as_raw_fd());
        }
        let child = sh.spawn().context(|| format!("cannot start log command {command:?}"))?;
        Ok(child.id() as i32)
    }
}

fn null() -> std::io::Result<OwnedFd> {
    let file = OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open("/dev/null")?;
    Ok(file.into())
}

/// SIGUSR1 (`--on-usr1`): open `--log-file` again (after logrotate moved it) and point
/// fds 1 and 2 at the new file. Workers keep the old one until their next
/// generation, or use `--log-capture`, whose lines handover writes itself.
pub fn reopen(target: &LogTarget) -> Result<()> {
    if let LogTarget::File(_) = target {
        redirect(target)?;
    }
    Ok(())
}

/// Become a daemon: new session, no terminal, stdin from /dev/null.
pub fn detach() -> Result<()> {
    process::daemonize().context(|| "cannot daemonize".into())?;
    let null = std::fs::File::open("/dev/null").context(|| "cannot open /dev/null".into())?;
    dup2_stdin(&null).context(|| "cannot redirect stdin".into())
}
