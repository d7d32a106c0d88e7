//! Upgrading handover itself in place (`handover upgrade`): the running
//! supervisor executes a new binary in its own process, so its pid, its
//! children, its process group and its place under systemd or as PID 1
//! stay; the workers notice nothing.
//!
//! 1. A request (`{"command":"upgrade"}` on the control socket) names the
//!    binary, by default the path this image was executed from (after a
//!    package upgrade, the new file).
//! 2. Verify: the binary runs as a child as the exec would run it (the
//!    supervisor's command line and environment) with
//!    `HANDOVER_UPGRADE_STATE=verify` and a state record of this moment on
//!    stdin (a handover before roll-back was run `BINARY
//!    --verify-upgrade-state`, which this one still answers). It must read it (format,
//!    command line, machine) and print `VERIFY_OK` within `VERIFY_TIMEOUT`.
//!    Anything else (missing, not executable, another architecture, an
//!    older handover without this mode, a record it cannot read) refuses
//!    the upgrade with one line, and this image carries on untouched. The
//!    loop never waits for the child: its exit comes as SIGCHLD.
//!    The binary is opened (`O_PATH`) before the verify run, and the file
//!    executed later is that open file: if the path names another file by
//!    the time the run answers (replaced meanwhile), the upgrade is refused.
//! 3. Exec, at the end of a turn, every input handled: every signal is
//!    blocked (they stay pending across `execve`; those that had arrived
//!    are raised again) and those that would end the process are also
//!    ignored (a wrapper shell may unblock them), the record, no larger
//!    than a program reads, is written to a memfd, close-on-exec is
//!    cleared on every fd it names, and the binary is executed with the
//!    supervisor's own argv and environment plus `HANDOVER_UPGRADE_STATE`
//!    and `HANDOVER_UPGRADE_ROLLBACK` (`execveat` on the open file).
//!    If `execve` fails, the flags and the mask are put back and the
//!    supervisor goes on as it was.
//! 4. The new image (`resume`) takes the fds, rebuilds every part from the
//!    record (its configuration included), installs its signal handlers,
//!    unblocks signals, reaps children that exited in between, and serves.
//!    Should any of that fail, it executes the previous image's binary
//!    again with the same record, which takes over and refuses the upgrade.
//!
//! Steps 1–2 are `verify.rs`, 3 is `exec.rs`, 4 is `resume.rs` and
//! `rollback.rs`; the record's format is `record.rs`.
//!
//! The service manager is told `RELOADING=1` before the exec and `READY=1`
//! after, when it had been told `READY=1` (a supervisor still starting, or
//! in a restart, tells it nothing more).
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::Supervisor;
use super::control::RequestId;
use crate::sys;
use crate::wire::control::Verdict;
use verify::{Verified, Verifying};

mod exec;
pub mod record;
pub mod resume;
mod rollback;
mod verify;

pub use resume::{check, resume};

/// argv[1] of the verify run.
pub const VERIFY_FLAG: &str = "--verify-upgrade-state";
/// The first word a verify run prints when the record is fine.
pub const VERIFY_OK: &str = "handover-upgrade-state-ok";
/// `HANDOVER_UPGRADE_STATE` of a verify run (the record is on stdin).
pub const VERIFY_STATE: &str = "verify";
/// `PREVIOUS:STATE`: the previous image's binary and the record, by fd, to
/// execute again should the new program fail to take over.
pub const ROLLBACK: &str = "HANDOVER_UPGRADE_ROLLBACK";
/// Set by a program that rolled back to the previous one: why.
pub const ROLLED_BACK: &str = "HANDOVER_UPGRADE_ROLLED_BACK";
/// How long a verify run may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This image and the upgrade under way, if any.
pub struct Upgrades {
    /// The binary this image was executed from.
    pub binary: PathBuf,
    pub image_started: SystemTime,
    pub supervisor_started: SystemTime,
    /// Upgrades since the supervisor first started.
    pub count: u64,
    /// This image's own binary (`O_PATH`, opened at its start): executed
    /// again should an upgrade's new program fail to take over.
    own: Option<OwnedFd>,
    verifying: Option<Verifying>,
    verified: Option<Verified>,
}

impl Upgrades {
    /// The pid of the new program's verify run, while it runs.
    pub fn verify_pid(&self) -> Option<i32> {
        self.verifying.as_ref().map(|v| v.pid)
    }

    pub fn new(started: SystemTime) -> Upgrades {
        Upgrades {
            binary: own_binary(),
            image_started: SystemTime::now(),
            supervisor_started: started,
            count: 0,
            // `/proc/self/exe` still opens it after a package upgrade
            // replaced the file. None without `/proc`: no roll-back then.
            own: nix::fcntl::open("/proc/self/exe", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ok(),
            verifying: None,
            verified: None,
        }
    }

    fn own_fd(&self) -> Option<RawFd> {
        self.own.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// When a verify run is given up.
    pub fn deadline(&self) -> Option<Instant> {
        self.verifying.as_ref().filter(|v| !v.abandoned).map(|v| v.deadline)
    }

    /// The running image, for `status`.
    pub fn image(&self) -> crate::wire::control::Image {
        let stamp = |t| humantime::format_rfc3339_millis(t).to_string();
        crate::wire::control::Image {
            version: VERSION.to_string(),
            binary: self.binary.display().to_string(),
            started: stamp(self.image_started),
            supervisor_started: stamp(self.supervisor_started),
            upgrades: self.count,
        }
    }
}

/// The path this image was executed from (`/proc/self/exe` now, while it
/// still names the file; a later package upgrade replaces that file).
fn own_binary() -> PathBuf {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    // Already replaced: "/usr/bin/handover (deleted)" names the new file.
    let text = exe.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    }
}

/// What a previous image of this process handed over in its environment,
/// taken out first thing in `main`, so that nothing started here sees it.
pub struct Handed {
    /// `HANDOVER_UPGRADE_STATE`: the record's fd, or `verify`.
    pub record: OsString,
    rollback: Option<OsString>,
    rolled_back: Option<OsString>,
}

impl Handed {
    /// Call at the very start of `main`, before any thread exists.
    pub fn take() -> Option<Handed> {
        let state = sys::process::take_env(crate::wire::env::HANDOVER_UPGRADE_STATE);
        let rollback = sys::process::take_env(ROLLBACK);
        let rolled_back = sys::process::take_env(ROLLED_BACK);
        state.map(|record| Handed { record, rollback, rolled_back })
    }

    /// A verify run of the new protocol: the command line is the
    /// supervisor's, as for the exec.
    pub fn verifying(&self) -> bool {
        self.record == VERIFY_STATE
    }
}

/// An encoded record as a memfd, positioned at its start, close-on-exec or not.
fn memfd(record: &[u8], cloexec: bool) -> io::Result<File> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let flags = if cloexec { MFdFlags::MFD_CLOEXEC } else { MFdFlags::empty() };
    let mut file = File::from(memfd_create(c"handover-state", flags)?);
    file.write_all(record)?;
    file.rewind()?;
    Ok(file)
}

impl Supervisor {
    /// Logs why, and answers each request with it.
    pub(super) fn refuse_upgrade(&mut self, requests: &[(RequestId, bool)], why: &str) {
        let what = crate::wire::event::What::UpgradeRefused { reason: why.to_string() };
        self.log.said(what, None, Vec::new(), &format!("upgrade refused: {why}"));
        if let Some(control) = &mut self.control {
            for &(id, _) in requests {
                control.reply(id, &Verdict::refused(format!("upgrade refused: {why}")));
            }
        }
    }
}
