//! Upgrading handover itself in place (`handover upgrade`): the running
//! supervisor executes a new binary in its own process, so its pid, its
//! children, its process group and its place under systemd or as PID 1
//! stay; the workers notice nothing.
//!
//! 1. A request (`{"command":"upgrade"}` on the control socket) names the
//!    binary, by default the path this image was executed from (after a
//!    package upgrade, the new file).
//! 2. Verify: the binary runs as a child, `BINARY --verify-upgrade-state`,
//!    with a state record of this moment on stdin. It must read it (format,
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
//!    are raised again), the record is written to a memfd, close-on-exec
//!    is cleared on every fd it names, and the binary is executed with the
//!    supervisor's own argv and environment plus `HANDOVER_UPGRADE_STATE`
//!    (`execveat` on the open file).
//!    If `execve` fails, the flags and the mask are put back and the
//!    supervisor goes on as it was.
//! 4. The new image (`resume`) takes the fds, rebuilds every part from the
//!    record, installs its signal handlers, unblocks signals, reaps
//!    children that exited in between, and serves.
//!
//! Steps 1–2 are `verify.rs`, 3 is `exec.rs`, 4 is `resume.rs`; the
//! record's format is `record.rs`.
//!
//! The service manager is told `RELOADING=1` before the exec and `READY=1`
//! after, when it had been told `READY=1` (a supervisor still starting, or
//! in a restart, tells it nothing more).
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::Supervisor;
use super::control::RequestId;
use crate::error::io_text;
use crate::sys;
use crate::wire::control::Verdict;
use record::Record;
use verify::{Verified, Verifying};

mod exec;
pub mod record;
pub mod resume;
mod verify;

pub use resume::{check, resume};

/// argv[1] of the verify run.
pub const VERIFY_FLAG: &str = "--verify-upgrade-state";
/// The first word a verify run prints when the record is fine.
pub const VERIFY_OK: &str = "handover-upgrade-state-ok";
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
    verifying: Option<Verifying>,
    verified: Option<Verified>,
}

impl Upgrades {
    pub fn new(started: SystemTime) -> Upgrades {
        Upgrades {
            binary: own_binary(),
            image_started: SystemTime::now(),
            supervisor_started: started,
            count: 0,
            verifying: None,
            verified: None,
        }
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

pub use crate::machine::snapshot::{instant, offset};

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads, the same
/// for every image of the process.
pub fn monotonic_ns() -> u64 {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else { return 0 };
    let (secs, nanos) = (now.tv_sec().max(0) as u64, now.tv_nsec().max(0) as u64);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The fds a record names, owned again: each part of the supervisor takes
/// its own by number.
pub struct Carried {
    fds: Vec<(RawFd, Option<OwnedFd>)>,
}

impl Carried {
    pub fn take_all(numbers: &[RawFd]) -> io::Result<Carried> {
        let owned = sys::fd::take_carried(numbers)
            .map_err(|(fd, e)| io::Error::other(format!("carried fd {fd}: {}", io_text(&e))))?;
        Ok(Carried { fds: numbers.iter().copied().zip(owned.into_iter().map(Some)).collect() })
    }

    /// The carried fd `number`; an error if the record did not name it.
    pub fn fd(&mut self, number: RawFd) -> io::Result<OwnedFd> {
        let slot = self.fds.iter_mut().find(|(n, _)| *n == number).and_then(|(_, fd)| fd.take());
        slot.ok_or_else(|| {
            io::Error::other(format!("the state record names fd {number} twice or not at all"))
        })
    }
}

/// The record as a memfd, positioned at its start, close-on-exec or not.
fn memfd(record: &Record, cloexec: bool) -> io::Result<File> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let flags = if cloexec { MFdFlags::MFD_CLOEXEC } else { MFdFlags::empty() };
    let mut file = File::from(memfd_create(c"handover-state", flags)?);
    file.write_all(&record.encode())?;
    file.rewind()?;
    Ok(file)
}

impl Supervisor {
    /// Logs why, and answers each request with it.
    fn refuse_upgrade(&mut self, requests: &[(RequestId, bool)], why: &str) {
        self.log.line(&format!("upgrade refused: {why}"));
        if let Some(control) = &mut self.control {
            for &(id, _) in requests {
                control.reply(id, &Verdict::refused(format!("upgrade refused: {why}")));
            }
        }
    }
}
