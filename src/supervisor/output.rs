//! Where the supervisor's output goes: `--log-file` and `--daemonize`.
//!
//! The log target replaces fds 1 and 2, so workers, which inherit them,
//! write to the same place. Errors until then (bad options, bind failures)
//! go to the terminal. The `| COMMAND` logger runs in its own process group
//! so a Ctrl-C meant for the supervisor does not cut the log short; it ends
//! when the last writer closes the pipe.
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};

use crate::config::LogTarget;
use crate::error::{Context, Error, Result};
use crate::state::SafeDir;
use crate::sys::process;

/// Returns the pid of the `| COMMAND` logger, which must outlive every
/// other child (it gets their last lines).
pub fn redirect(target: &LogTarget) -> Result<Option<i32>, Error> {
    let mut logger = None;
    let fd = match target {
        LogTarget::File(path) => SafeDir::parent_of(path)
            .and_then(|(dir, name)| {
                dir.open_log(&name, OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT, 0o644)
            })
            .context(|| format!("cannot open log file {}", path.display()))?,
        LogTarget::Pipe(command) => {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::piped())
                .process_group(0)
                .spawn()
                .context(|| format!("cannot start log command {command:?}"))?;
            logger = Some(child.id() as i32);
            let stdin = child.stdin.take().expect("stdin was piped");
            std::os::fd::OwnedFd::from(stdin)
        }
    };
    dup2_stdout(&fd)
        .and_then(|()| dup2_stderr(&fd))
        .context(|| "cannot redirect output to the log".into())?;
    Ok(logger)
}

/// SIGUSR1: open `--log-file` again (after logrotate moved it) and point
/// fds 1 and 2 at the new file. Workers keep the old one until their next
/// generation, or use `--log-capture`, whose lines handover writes itself.
pub fn reopen(target: &LogTarget) -> Result<()> {
    match target {
        LogTarget::File(_) => redirect(target).map(drop),
        LogTarget::Pipe(_) => Ok(()),
    }
}

/// Become a daemon: new session, no terminal, stdin from /dev/null.
pub fn detach() -> Result<()> {
    process::daemonize().context(|| "cannot daemonize".into())?;
    let null = std::fs::File::open("/dev/null").context(|| "cannot open /dev/null".into())?;
    dup2_stdin(&null).context(|| "cannot redirect stdin".into())
}
