//! The new image's side of an upgrade: the state record read back, every
//! part of the supervisor rebuilt on its carried fds, and the loop entered
//! without a new generation. A failure here is fatal (the old image is
//! gone): the processes are stopped and the files removed (`give_up`). The
//! verify run, which makes the same checks (`check`) before the old image
//! executes, is what keeps it from happening.
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::RawFd;
use std::time::{Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use super::record::{MAX_RECORD, Record};
use super::{Carried, Upgrades, VERSION, instant, monotonic_ns};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::listen::{self, Listener};
use crate::machine::{Input, Machine};
use crate::state::{PidFile, StatusFile};
use crate::supervisor::capture::Capture;
use crate::supervisor::control::{ControlServer, RequestId};
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::log::Log;
use crate::supervisor::logger::Logger;
use crate::supervisor::readiness::{self, NotifySocket};
use crate::supervisor::signals::Signals;
use crate::supervisor::watch::Watcher;
use crate::supervisor::{Supervisor, reaper, setup};
use crate::wire::control::Upgraded;

/// Reads a record (at most `MAX_RECORD` bytes).
pub fn read_record(from: impl Read) -> std::result::Result<Record, String> {
    let mut bytes = Vec::new();
    let read = from.take(MAX_RECORD as u64 + 1).read_to_end(&mut bytes);
    read.map_err(|e| format!("cannot read the state record: {e}"))?;
    if bytes.len() > MAX_RECORD {
        return Err(format!("the state record is larger than {MAX_RECORD} bytes"));
    }
    Record::decode(&bytes)
}

/// Whether this handover can take over with `record` and `config` (the
/// command line the record carries, parsed by this handover): the verify
/// run's question, asked again by `resume`.
/// The machine is restored as of `then`, the moment the record was written.
pub fn check(config: &Config, record: &Record, then: Instant) -> std::result::Result<Machine, String> {
    let (asked, carried) = (config.listeners.len(), record.listeners.len());
    if asked != 0 && asked != carried {
        return Err(format!("the command line asks for {asked} listeners, the record carries {carried}"));
    }
    if config.capture.is_some() != record.capture.is_some() {
        return Err("--log-capture differs between the command line and the record".into());
    }
    Machine::restore(config.policy.clone(), record.machine.clone(), then)
        .map_err(|e| format!("the record's state machine is not valid here: {e}"))
}

/// Takes over from the previous image: `state` is the value of
/// `HANDOVER_UPGRADE_STATE`, the fd of the record. Should that fail, the
/// workers are stopped and the files the record names removed, so that
/// nothing is left behind by a supervisor that cannot go on.
pub fn resume(config: Config, state: OsString) -> Result<u8> {
    let fail = |what: String| Error::runtime(format!("cannot take over after an upgrade: {what}"));
    // Handlers first, then the signals held since before the exec come in.
    let signals = Signals::install()
        .map_err(|e| give_up(None, fail(format!("cannot install signal handlers: {e}"))))?;
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::all()), None);
    let fd: Option<RawFd> = state.to_str().and_then(|s| s.parse().ok());
    let record = fd
        .ok_or_else(|| format!("{} is not an fd: {state:?}", crate::wire::env::HANDOVER_UPGRADE_STATE))
        .and_then(|fd| Carried::take_all(&[fd]).and_then(|mut c| c.fd(fd)).map_err(|e| e.to_string()))
        .and_then(|memfd| read_record(std::fs::File::from(memfd)))
        .map_err(|e| give_up(None, fail(e)))?;
    match take_over(config, &record, signals) {
        Ok(mut supervisor) => supervisor.serve(false),
        Err(e) => Err(give_up(Some(&record), fail(e.message))),
    }
}

/// How long the workers of a supervisor that cannot take over get to stop.
const GIVE_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `error`, after stopping every child (TERM, then KILL after
/// `GIVE_UP_GRACE`) and removing the files `record` says this process
/// made: nobody could supervise them any more.
fn give_up(record: Option<&Record>, error: Error) -> Error {
    let stopped = reaper::stop_orphans(&[], GIVE_UP_GRACE);
    if let Some(record) = record {
        let made = (record.listeners.iter().filter_map(|l| l.created.clone()))
            .chain(record.control.iter().map(|c| (c.path.clone(), c.identity.0, c.identity.1)));
        for (path, dev, ino) in made {
            let _ = crate::state::OwnedPath::known(path, (dev, ino)).remove();
        }
        let ours = |path: &std::path::Path| {
            let watch = crate::state::PidFileWatch::open(path).ok();
            watch.and_then(|w| w.read_pid().ok()) == Some(std::process::id())
        };
        if let Some(p) = record.pid_file.as_ref().filter(|p| ours(&p.path)) {
            let _ = std::fs::remove_file(&p.path);
        }
    }
    let processes = match stopped.len() {
        0 => return error,
        1 => "process".to_string(),
        n => format!("{n} processes"),
    };
    Error::runtime(format!("{}; stopped the {processes} it supervised", error.message))
}

/// Every part of the supervisor, rebuilt from `record` on the fds it names.
fn take_over(mut config: Config, record: &Record, signals: Signals) -> Result<Supervisor> {
    let fail = |what: String| Error::runtime(what);
    // The same moment as the record's `now`, on this image's clock.
    let since = std::time::Duration::from_nanos(monotonic_ns().saturating_sub(record.written_at));
    let now = Instant::now();
    let then = now.checked_sub(since).unwrap_or(now);
    let mut fds = Carried::take_all(&record.fds()).map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());

    let mut listeners: Vec<Listener> = Vec::with_capacity(record.listeners.len());
    for (at, l) in record.listeners.iter().enumerate() {
        let carried = listen::Carried {
            socket: socket2::Socket::from(fds.fd(l.fd).map_err(io)?),
            key: l.key.clone(),
            local: l.local.clone(),
            name: l.name.clone(),
            created_path: l
                .created
                .clone()
                .map(|(path, dev, ino)| crate::state::OwnedPath::known(path, (dev, ino))),
            inherited_fd: l.inherited_fd,
        };
        listeners.push(listen::resume(config.listeners.get(at), carried).map_err(|e| fail(e.to_string()))?);
    }
    setup::place(&mut config, &listeners)?;
    let machine = check(&config, record, then).map_err(fail)?;
    let notify = NotifySocket::resume(record.notify.clone(), &mut fds).map_err(io)?;
    let einhorn = EinhornSocket::resume(record.einhorn.clone(), &mut fds).map_err(io)?;
    let control =
        (record.control.clone().map(|c| ControlServer::resume(c, &mut fds, now)).transpose()).map_err(io)?;
    let pid_file = match &record.pid_file {
        Some(p) => Some(
            PidFile::resume(p.path.clone(), fds.fd(p.fd).map_err(io)?).map_err(|e| fail(e.to_string()))?,
        ),
        None => None,
    };
    let capture = match (config.capture, record.capture.clone()) {
        (Some(format), Some(carried)) => Some(Capture::resume(format, carried, &mut fds).map_err(io)?),
        (format, _) => format.map(Capture::new),
    };
    let logger =
        (record.logger.as_ref().map(|l| Logger::resume(l, &mut fds, then)).transpose()).map_err(io)?;
    let json = config.capture == Some(crate::supervisor::capture::Format::Json);
    let mut log = Log::new(config.compat, json);
    log.retarget(logger.is_some());
    log.sink().set_lossy(logger.as_ref().is_some_and(|l| l.pid.is_none()));
    log.sink().captured(&record.log_pending);
    let watcher = match config.watch.is_empty() {
        true => None,
        false => Some(Watcher::new(&config.watch).map_err(Error::runtime)?),
    };
    if let Err(e) = reaper::become_subreaper() {
        log.line(&format!("cannot become a subreaper ({e}): orphans of workers go to init"));
    }
    let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(record.started_ms);
    let mut upgrades = Upgrades::new(started);
    upgrades.count = record.upgrades + 1;
    let mut supervisor = Supervisor {
        status_file: config
            .status_file
            .as_deref()
            .map(|path| StatusFile::resume(path, record.status_written)),
        machine,
        capture,
        config,
        log,
        listeners,
        notify,
        einhorn,
        control,
        signals,
        pid_file,
        logger,
        watcher,
        lingering: record.lingering.clone(),
        failed_spawn: None,
        upgrades,
    };
    let generations: Vec<String> =
        supervisor.machine.views().iter().map(|v| v.generation.to_string()).collect();
    let shown = if generations.is_empty() { "none".to_string() } else { generations.join(", ") };
    let pid = std::process::id();
    supervisor.log.line(&format!(
        "upgraded from handover {} to {VERSION} (pid {pid}, generations {shown})",
        record.version
    ));
    if record.reloading {
        readiness::upward(&crate::machine::Upward::Ready);
    }
    let took = Instant::now().saturating_duration_since(instant(record.requested_at, then));
    if let Some(control) = &mut supervisor.control {
        let binary = supervisor.upgrades.binary.display().to_string();
        for &id in &record.waiting {
            let reply = Upgraded {
                ok: true,
                pid,
                binary: binary.clone(),
                from: record.version.clone(),
                to: VERSION.to_string(),
                took_ms: Some((took.as_secs_f64() * 1e6).round() / 1e3),
            };
            control.reply(RequestId(id), &reply);
        }
    }
    Ok(supervisor)
}

impl Supervisor {
    /// The first inputs of a new image: children that exited while the
    /// images changed, reaped now (their SIGCHLD may have come before the
    /// handler), then a tick. The status file still says what it said.
    pub(in crate::supervisor) fn resumed_inputs(&mut self) -> Vec<Input> {
        let mut inputs = self.child_exits();
        inputs.push(Input::Tick);
        inputs
    }
}
