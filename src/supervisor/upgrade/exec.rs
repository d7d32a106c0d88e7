//! The exec: at the end of a turn, with every input handled, the verified
//! binary's open file is executed with the state record, signals held
//! until the new program takes them. If `execve` fails, everything is put
//! back and the supervisor goes on.
use std::os::fd::AsRawFd;
use std::time::{Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, raise, sigprocmask};

use super::record::{self, ConfigRecord, MAX_RECORD, Record};
use super::verify::{Asked, Verified};
use super::{ROLLBACK, VERSION, memfd};
use crate::error::io_text;
use crate::machine::Upward;
use crate::supervisor::carry::{Carry, Written};
use crate::supervisor::{Supervisor, notify_socket};
use crate::sys;
use crate::wire::control::Upgraded;
use crate::wire::env::HANDOVER_UPGRADE_STATE;
use crate::wire::event::What;

/// The signals the supervisor handles whose default action ends a
/// process: set to be ignored across the exec (see
/// `sys::process::ignore_blocked`). SIGCHLD is not among them: ignoring it
/// would have the kernel reap the workers.
const FATAL_BY_DEFAULT: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
];

/// A control connection owed more replies than this when the record is
/// written is closed by the exec instead of carried: its client reads
/// none of them, and 64 such would make a record too large to carry.
pub(super) const MAX_CARRIED_REPLIES: usize = 256 * 1024;

/// Why an encoded record cannot be carried, if it cannot.
pub(super) fn too_large(encoded: &[u8]) -> Option<String> {
    (encoded.len() > MAX_RECORD).then(|| {
        format!(
            "the state record would be {} bytes, more than the {MAX_RECORD} a program reads",
            encoded.len()
        )
    })
}

impl Supervisor {
    /// At the end of a turn: execute the verified binary. Returns only if
    /// there was nothing to do or the exec failed.
    pub(in crate::supervisor) fn upgrade_now(&mut self) {
        let Some(verified) = self.upgrades.verified.take() else { return };
        let Verified { asked, to } = verified;
        if self.machine.stopping() {
            return self.refuse_upgrade(&asked.requests, "the supervisor is stopping");
        }
        let binary = asked.binary.display().to_string();
        let text = format!("upgrading from handover {VERSION} to {to} ({binary})");
        let what = What::Upgrading { from: VERSION.to_string(), to: to.clone(), binary: binary.clone() };
        self.log.said(what, None, Vec::new(), &text);
        self.log.settle();
        // Followers are not carried: this is the last record they get from this image.
        self.publish();
        let (pid, from) = (std::process::id(), VERSION.to_string());
        let reply = Upgraded { ok: true, pid, binary: binary.clone(), from, to: to.clone(), took_ms: None };
        if let Some(control) = &mut self.control {
            for &(id, _) in asked.requests.iter().filter(|(_, wait)| !wait) {
                control.reply(id, &reply);
            }
            control.flush();
        }
        let reloading = self.machine.manager_ready();
        if reloading {
            notify_socket::upward(&Upward::Reloading);
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
        let mut record = self.record(waiting, reloading, asked.at);
        record.binary_fd = Some(asked.file.as_raw_fd());
        let encoded = record.encode();
        let why = match too_large(&encoded) {
            Some(why) => why,
            // Ignored as well as blocked while a wrapper script may run.
            None => match sys::process::ignore_blocked(FATAL_BY_DEFAULT) {
                Ok(ignored) => {
                    let why = exec(&asked, &record, &encoded);
                    sys::process::restore(ignored);
                    why
                }
                Err(e) => format!("cannot hold signals: {}", io_text(&e)),
            },
        };
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
        self.upgrade_failed(&asked, reloading, &why);
    }

    fn upgrade_failed(&mut self, asked: &Asked, reloading: bool, why: &str) {
        if reloading {
            notify_socket::upward(&Upward::Ready);
        }
        let waiting: Vec<_> = asked.requests.iter().filter(|(_, wait)| *wait).copied().collect();
        self.refuse_upgrade(&waiting, why);
    }

    /// The state record of this moment. `waiting`: the requests the new
    /// image answers; `asked`: when the upgrade was asked for.
    pub(in crate::supervisor) fn record(&self, waiting: Vec<u64>, reloading: bool, asked: Instant) -> Record {
        let ms = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        // The record's instants are offsets from this moment, which its
        // `written_at` reading of the clock names for the new image.
        let (at, written_at) = Written::now();
        Record {
            format: record::FORMAT,
            version: VERSION.to_string(),
            written_at,
            argv: std::env::args_os().collect(),
            env: std::env::vars_os().collect(),
            started_ms: ms(self.upgrades.supervisor_started),
            upgrades: self.upgrades.count,
            machine: self.machine.snapshot(),
            listeners: self.listeners.carry(at),
            notify: self.notify.carry(at),
            einhorn: self.einhorn.carry(at),
            control: self.control.as_ref().map(|c| c.carry(at).bounded(MAX_CARRIED_REPLIES)),
            pid_file: self.pid_file.as_ref().map(|p| p.carry(at)),
            status_written: self.status_file.as_ref().is_some_and(|f| f.written()),
            logger: self.logger.as_ref().map(|l| l.carry(at)),
            capture: self.capture.as_ref().map(|c| c.carry(at)),
            lingering: self.lingering.clone(),
            log_pending: self.log.sink().unsent().to_vec(),
            reloading,
            waiting,
            requested_at: at.offset(asked),
            binary_fd: None,
            config: Some(ConfigRecord::of(&self.config.given)),
            previous_binary: self.upgrades.own_fd(),
            image_started_ms: Some(ms(self.upgrades.image_started)),
            events: Some(self.log.events.borrow().carry(at)),
            metrics: self.scrape.as_ref().map(|s| s.carry(at)),
        }
    }
}

/// Executes the binary asked for (its open file) with the record (and
/// `encoded`, its bytes); returns only if that failed, with every fd as
/// it was, saying why. The new program is told this image's binary and
/// the record's fd, to roll back to should it fail to take over.
fn exec(asked: &Asked, record: &Record, encoded: &[u8]) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let binary = &asked.binary;
    // The binary's own fd among them: a script's interpreter opens it as /dev/fd/N.
    let fds = record.fds();
    let state = match memfd(encoded, false) {
        Ok(file) => file,
        Err(e) => return format!("cannot write the state record: {}", io_text(&e)),
    };
    let fd = state.as_raw_fd();
    let mut env: Vec<Vec<u8>> =
        record.env.iter().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
    env.push(format!("{HANDOVER_UPGRADE_STATE}={fd}").into_bytes());
    env.extend(record.previous_binary.map(|previous| format!("{ROLLBACK}={previous}:{fd}").into_bytes()));
    let argv = record.argv.iter().map(|a| a.as_bytes().to_vec());
    let c = |strings: Vec<Vec<u8>>| strings.into_iter().map(CString::new).collect::<Result<Vec<_>, _>>();
    let (Ok(argv), Ok(env)) = (c(argv.collect()), c(env)) else {
        return "a NUL byte in the command line".to_string();
    };
    if let Err(e) = sys::fd::set_cloexec(&fds, false) {
        let _ = sys::fd::set_cloexec(&fds, true);
        return format!("cannot hand over the fds: {}", io_text(&e));
    }
    let e = sys::process::execute_fd(asked.file.as_raw_fd(), &argv, &env);
    let _ = sys::fd::set_cloexec(&fds, true);
    format!("cannot execute {}: {}", binary.display(), io_text(&e))
}
