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
//! The service manager is told `RELOADING=1` before the exec and `READY=1`
//! after, when it had been told `READY=1` (a supervisor still starting, or
//! in a restart, tells it nothing more).
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, raise, sigprocmask};
use nix::unistd::Pid;

use super::Supervisor;
use super::control::RequestId;
use super::readiness;
use crate::error::io_text;
use crate::machine::Upward;
use crate::machine::event::ExitStatus;
use crate::sys;
use crate::wire::control::{Upgraded, Verdict};
use crate::wire::env::HANDOVER_UPGRADE_STATE;
use record::{ExitRecord, ListenerRecord, PidFileRecord, Record};

pub mod record;
pub mod resume;

pub use resume::{check, resume};

/// argv[1] of the verify run.
pub const VERIFY_FLAG: &str = "--verify-upgrade-state";
/// The first word a verify run prints when the record is fine.
pub const VERIFY_OK: &str = "handover-upgrade-state-ok";
/// How long a verify run may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Of a verify run's output, at most this much is read.
const MAX_OUTPUT: usize = 64 * 1024;

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

/// Requests for one binary, and when the first came.
struct Asked {
    binary: PathBuf,
    /// The binary's file, open since before the verify run: what is executed.
    file: OwnedFd,
    /// Each with whether it waits for the new image.
    requests: Vec<(RequestId, bool)>,
    at: Instant,
}

struct Verifying {
    asked: Asked,
    pid: i32,
    out: File,
    err: File,
    deadline: Instant,
    /// Killed for taking too long: its exit is only collected.
    abandoned: bool,
}

struct Verified {
    asked: Asked,
    /// The version the new binary reported.
    to: String,
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

/// An instant as nanoseconds from `now` (negative: in the past).
pub fn offset(at: Instant, now: Instant) -> i64 {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match at.checked_duration_since(now) {
        Some(ahead) => ns(ahead),
        None => -ns(now.duration_since(at)),
    }
}

/// The instant `offset` nanoseconds from `now`; out of range gives `now`.
pub fn instant(offset: i64, now: Instant) -> Instant {
    let d = Duration::from_nanos(offset.unsigned_abs());
    let at = if offset >= 0 { now.checked_add(d) } else { now.checked_sub(d) };
    at.unwrap_or(now)
}

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

/// Whether the path asked for still names the file opened before the
/// verify run (the one that answered, and the one to execute).
fn still_the_same(asked: &Asked) -> Result<(), String> {
    let identity = |st: nix::sys::stat::FileStat| (st.st_dev, st.st_ino);
    let opened = nix::sys::stat::fstat(&asked.file).map(identity);
    let named = nix::sys::stat::stat(&asked.binary).map(identity);
    match (opened, named) {
        (Ok(opened), Ok(named)) if opened == named => Ok(()),
        (_, Err(e)) => {
            let e = io_text(&io::Error::from(e));
            Err(format!("{} changed while it was checked ({e}); ask again", asked.binary.display()))
        }
        _ => Err(format!("{} was replaced while it was checked; ask again", asked.binary.display())),
    }
}

/// A pipe end to read a verify run's output from, without blocking.
fn nonblocking(fd: impl Into<OwnedFd>) -> io::Result<File> {
    let fd: OwnedFd = fd.into();
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// What a pipe holds now, at most `MAX_OUTPUT` bytes.
fn read_now(file: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = file.take(MAX_OUTPUT as u64).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
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
    /// An upgrade was asked for: answered at once when it cannot be,
    /// else joined to the one under way or started with a verify run.
    pub(super) fn upgrade_requested(&mut self, id: RequestId, binary: Option<String>, wait: bool) {
        let binary = binary.map_or_else(|| self.upgrades.binary.clone(), PathBuf::from);
        if self.machine.stopping() {
            return self.refuse_upgrade(&[(id, wait)], "the supervisor is stopping");
        }
        let under_way = (self.upgrades.verifying.as_mut().filter(|v| !v.abandoned).map(|v| &mut v.asked))
            .or(self.upgrades.verified.as_mut().map(|v| &mut v.asked));
        if let Some(asked) = under_way {
            if asked.binary == binary {
                asked.requests.push((id, wait));
                return;
            }
            let text =
                format!("an upgrade to {} is under way; ask again when it is done", asked.binary.display());
            return self.refuse_upgrade(&[(id, wait)], &text);
        }
        let now = Instant::now();
        self.log.line(&format!("upgrade asked for: checking {}", binary.display()));
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
        let file = match nix::fcntl::open(&binary, flags, nix::sys::stat::Mode::empty()) {
            Ok(file) => file,
            Err(e) => {
                let why = format!("cannot run {}: {}", binary.display(), io_text(&io::Error::from(e)));
                return self.refuse_upgrade(&[(id, wait)], &why);
            }
        };
        let asked = Asked { binary, file, requests: vec![(id, wait)], at: now };
        match self.start_verify(&asked.binary, now) {
            Ok((pid, out, err)) => {
                let deadline = now + VERIFY_TIMEOUT;
                self.upgrades.verifying =
                    Some(Verifying { asked, pid, out, err, deadline, abandoned: false });
            }
            Err(why) => self.refuse_upgrade(&asked.requests, &why),
        }
    }

    /// Runs `binary --verify-upgrade-state` with this moment's record on
    /// stdin; its pid and its stdout and stderr, or why it cannot run.
    fn start_verify(&mut self, binary: &Path, now: Instant) -> Result<(i32, File, File), String> {
        let record = self.record(now, Vec::new(), false, now);
        let stdin =
            memfd(&record, true).map_err(|e| format!("cannot write the state record: {}", io_text(&e)))?;
        let argv0 = record.argv.first().cloned().unwrap_or_else(|| binary.as_os_str().to_owned());
        let cannot_run = |e: io::Error| format!("cannot run {}: {}", binary.display(), io_text(&e));
        let mut child = std::process::Command::new(binary)
            .arg0(argv0)
            .arg(VERIFY_FLAG)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(cannot_run)?;
        // Reaped by the loop's waitpid: the handle is only for the pipes.
        let pid = child.id() as i32;
        let pipes = (child.stdout.take().map(nonblocking), child.stderr.take().map(nonblocking));
        match pipes {
            (Some(Ok(out)), Some(Ok(err))) => Ok((pid, out, err)),
            _ => {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                Err(format!("cannot read what {} answers", binary.display()))
            }
        }
    }

    /// Whether `pid` was a verify run; if so its verdict is taken here.
    pub(super) fn upgrade_child_exited(&mut self, pid: i32, status: ExitStatus) -> bool {
        if self.upgrades.verifying.as_ref().is_none_or(|v| v.pid != pid) {
            return false;
        }
        let Some(mut run) = self.upgrades.verifying.take() else { return false };
        if run.abandoned {
            return true;
        }
        let (out, err) = (read_now(&mut run.out), read_now(&mut run.err));
        let said = out.lines().find_map(|line| line.strip_prefix(VERIFY_OK));
        let version = said.and_then(|rest| rest.split_whitespace().next());
        match (status, version) {
            (ExitStatus::Code(0), Some(version)) => match still_the_same(&run.asked) {
                Ok(()) => {
                    self.upgrades.verified = Some(Verified { asked: run.asked, to: version.to_string() })
                }
                Err(why) => self.refuse_upgrade(&run.asked.requests, &why),
            },
            _ => {
                // Its last line, without the `handover: ` every error line starts with.
                let why = (err.lines().rev().map(str::trim).find(|l| !l.is_empty()))
                    .map(|l| l.strip_prefix("handover: ").or(l.strip_prefix("start_server: ")).unwrap_or(l));
                let binary = run.asked.binary.display();
                let text = match why {
                    Some(why) => format!("{binary} cannot take over: {why}"),
                    None => format!(
                        "{binary} cannot take over: it is no handover that reads this state ({status})"
                    ),
                };
                self.refuse_upgrade(&run.asked.requests, &text);
            }
        }
        true
    }

    /// A verify run past its deadline is killed and the upgrade refused.
    pub(super) fn upgrade_tick(&mut self, now: Instant) {
        let Some(run) = self.upgrades.verifying.as_mut().filter(|v| !v.abandoned && now >= v.deadline) else {
            return;
        };
        run.abandoned = true;
        let _ = killpg(Pid::from_raw(run.pid), Signal::SIGKILL);
        let (requests, binary) = (std::mem::take(&mut run.asked.requests), run.asked.binary.clone());
        let text = format!("{} did not answer within {}s", binary.display(), VERIFY_TIMEOUT.as_secs());
        self.refuse_upgrade(&requests, &format!("{text}; not upgraded"));
    }

    fn refuse_upgrade(&mut self, requests: &[(RequestId, bool)], why: &str) {
        self.log.line(&format!("upgrade refused: {why}"));
        if let Some(control) = &mut self.control {
            for &(id, _) in requests {
                control.reply(id, &Verdict::refused(format!("upgrade refused: {why}")));
            }
        }
    }

    /// At the end of a turn: execute the verified binary. Returns only if
    /// there was nothing to do or the exec failed.
    pub(super) fn upgrade_now(&mut self) {
        let Some(verified) = self.upgrades.verified.take() else { return };
        let Verified { asked, to } = verified;
        if self.machine.stopping() {
            return self.refuse_upgrade(&asked.requests, "the supervisor is stopping");
        }
        let binary = asked.binary.display().to_string();
        self.log.line(&format!("upgrading from handover {VERSION} to {to} ({binary})"));
        self.log.settle();
        let reply = |took_ms| Upgraded {
            ok: true,
            pid: std::process::id(),
            binary: binary.clone(),
            from: VERSION.to_string(),
            to: to.clone(),
            took_ms,
        };
        if let Some(control) = &mut self.control {
            for &(id, _) in asked.requests.iter().filter(|(_, wait)| !wait) {
                control.reply(id, &reply(None));
            }
            control.flush();
        }
        let reloading = self.machine.manager_ready();
        if reloading {
            readiness::upward(&Upward::Reloading);
        }
        // From here until the new image unblocks them, signals wait.
        let mut mask = SigSet::empty();
        if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut mask)) {
            return self.upgrade_failed(&asked, reloading, &format!("cannot block signals: {e}"));
        }
        for signal in self.signals.take_raw() {
            let _ = raise(signal);
        }
        self.log.flush();
        let waiting = asked.requests.iter().filter(|(_, wait)| *wait).map(|(id, _)| id.0).collect();
        // The record's instants are offsets from this moment, which its
        // `written_at` reading of the clock names for the new image.
        let mut record = self.record(Instant::now(), waiting, reloading, asked.at);
        record.binary_fd = Some(asked.file.as_raw_fd());
        let why = exec(&asked, &record);
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
        self.upgrade_failed(&asked, reloading, &why);
    }

    fn upgrade_failed(&mut self, asked: &Asked, reloading: bool, why: &str) {
        if reloading {
            readiness::upward(&Upward::Ready);
        }
        let waiting: Vec<_> = asked.requests.iter().filter(|(_, wait)| *wait).copied().collect();
        self.refuse_upgrade(&waiting, why);
    }

    /// The state record of this moment. `waiting`: the requests the new
    /// image answers; `asked`: when the upgrade was asked for.
    pub(super) fn record(&self, now: Instant, waiting: Vec<u64>, reloading: bool, asked: Instant) -> Record {
        let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let listeners = (self.listeners.iter())
            .map(|l| ListenerRecord {
                fd: l.socket.as_raw_fd(),
                key: l.key.clone(),
                local: l.local.clone(),
                name: l.spec.name.clone(),
                created: l.created_path.as_ref().map(|p| {
                    let (dev, ino) = p.identity();
                    (p.path().to_owned(), dev, ino)
                }),
                inherited_fd: l.inherited_fd,
            })
            .collect();
        let exit = |status: &ExitStatus| match *status {
            ExitStatus::Code(code) => ExitRecord::Code(code),
            ExitStatus::Signal { signal, core } => ExitRecord::Signal { signal, core },
        };
        Record {
            format: record::FORMAT,
            version: VERSION.to_string(),
            written_at: monotonic_ns(),
            argv: std::env::args_os().collect(),
            env: std::env::vars_os().collect(),
            started_ms: ms(self.upgrades.supervisor_started),
            upgrades: self.upgrades.count,
            machine: self.machine.snapshot(now),
            listeners,
            notify: self.notify.carry(),
            einhorn: self.einhorn.carry(),
            control: self.control.as_ref().map(|c| c.carry()),
            pid_file: self.pid_file.as_ref().map(|p| PidFileRecord { fd: p.fd(), path: p.path().to_owned() }),
            status_written: self.status_file.as_ref().is_some_and(|f| f.written()),
            logger: self.logger.as_ref().map(|l| l.carry(now)),
            capture: self.capture.as_ref().map(|c| c.carry()),
            lingering: self.lingering.iter().map(|(pid, status)| (*pid, exit(status))).collect(),
            log_pending: self.log.sink().unsent().to_vec(),
            reloading,
            waiting,
            requested_at: offset(asked, now),
            binary_fd: None,
        }
    }
}

/// Executes the binary asked for (its open file) with the record; returns
/// only if that failed, with every fd as it was, saying why.
fn exec(asked: &Asked, record: &Record) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let binary = &asked.binary;
    // The binary's own fd among them: a script's interpreter opens it as /dev/fd/N.
    let fds = record.fds();
    let state = match memfd(record, false) {
        Ok(file) => file,
        Err(e) => return format!("cannot write the state record: {}", io_text(&e)),
    };
    let c = |bytes: &[u8]| CString::new(bytes).map_err(|_| "a NUL byte in the command line".to_string());
    let strings = || -> Result<(Vec<CString>, Vec<CString>), String> {
        let argv = record.argv.iter().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?;
        let pair = |(k, v): &(std::ffi::OsString, std::ffi::OsString)| {
            c(&[k.as_bytes(), b"=", v.as_bytes()].concat())
        };
        let mut env: Vec<CString> = record.env.iter().map(pair).collect::<Result<_, _>>()?;
        env.push(c(format!("{HANDOVER_UPGRADE_STATE}={}", state.as_raw_fd()).as_bytes())?);
        Ok((argv, env))
    };
    let (argv, env) = match strings() {
        Ok(strings) => strings,
        Err(why) => return why,
    };
    if let Err(e) = sys::fd::set_cloexec(&fds, false) {
        let _ = sys::fd::set_cloexec(&fds, true);
        return format!("cannot hand over the fds: {}", io_text(&e));
    }
    let errno = match nix::unistd::execveat(&asked.file, c"", &argv, &env, AtFlags::AT_EMPTY_PATH) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    let _ = sys::fd::set_cloexec(&fds, true);
    format!("cannot execute {}: {}", binary.display(), io_text(&io::Error::from(errno)))
}
