//! The new image's side of an upgrade: the state record read back, every
//! part of the supervisor rebuilt on its carried fds, and the loop entered
//! without a new generation. A failure here executes the previous program
//! again (`rollback.rs`); where that cannot be, the processes are stopped
//! and the files removed (`give_up`). The verify run, which makes the same
//! checks (`check`) before the old image executes, is what keeps it from
//! happening.
use std::io::Read;
use std::os::fd::RawFd;
use std::time::{Instant, SystemTime};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use super::record::{MAX_RECORD, Record};
use super::rollback::Rollback;
use super::{Carried, Handed, Upgrades, VERSION, instant, own_binary};
use crate::config::Config;
use crate::error::io_text;
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
use crate::sys;
use crate::wire::control::Upgraded;

/// Reads a record (at most `MAX_RECORD` bytes).
pub fn read_record(from: impl Read) -> Result<Record> {
    let mut bytes = Vec::new();
    let read = from.take(MAX_RECORD as u64 + 1).read_to_end(&mut bytes);
    read.map_err(|e| Error::runtime(format!("cannot read the state record: {e}")))?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> Result<Record> {
    if bytes.len() > MAX_RECORD {
        return Err(Error::runtime(format!("the state record is larger than {MAX_RECORD} bytes")));
    }
    Record::decode(bytes)
}

/// Whether this handover can take over with `record` and `config` (the
/// command line the record carries, parsed by this handover): the verify
/// run's question, asked again by `resume`.
pub fn check(config: &Config, record: &Record) -> Result<Machine> {
    let (asked, carried) = (config.listeners.len(), record.listeners.len());
    if asked != 0 && asked != carried {
        let why = format!("the command line asks for {asked} listeners, the record carries {carried}");
        return Err(Error::runtime(why));
    }
    if config.capture.is_some() != record.capture.is_some() {
        return Err(Error::runtime("--log-capture differs between the command line and the record"));
    }
    Machine::restore(config.policy.clone(), record.machine.clone(), crate::supervisor::moment())
        .map_err(|e| Error::runtime(format!("the record's state machine is not valid here: {e}")))
}

/// Takes over from the previous image: `handed.state` is the fd of the
/// record, `configure` builds the configuration it carries. Should that
/// fail, the previous program is executed again (`rollback`), or when
/// there is none (a roll-back itself, or a handover before roll-back
/// wrote the record) the workers are stopped and the files the record
/// names removed, so that nothing is left behind by a supervisor that
/// cannot go on. Signals stay blocked until the new program serves.
pub fn resume(handed: Handed, configure: impl Fn(&Record) -> Result<Config>) -> Result<u8> {
    let rollback = Rollback::of(&handed);
    let rolled_back = handed.rolled_back.as_ref().map(|why| why.to_string_lossy().into_owned());
    let undo = |record: Option<&Record>, what: String| -> Error {
        let text = format!("cannot take over after an upgrade: {what}");
        let Some(rollback) = &rollback else { return give_up(record, Error::runtime(text)) };
        let binary = own_binary();
        let why =
            format!("handover {VERSION} ({}) could not take over after the exec: {what}", binary.display());
        let failed = rollback.exec(record, &why);
        give_up(record, Error::runtime(format!("{text}; {failed}")))
    };
    let state = &handed.state;
    let fd: Option<RawFd> = state.to_str().and_then(|s| s.parse().ok());
    let record = fd
        .ok_or_else(|| format!("{} is not an fd: {state:?}", crate::wire::env::HANDOVER_UPGRADE_STATE))
        .and_then(|fd| {
            let bytes = sys::fd::read_from_start(fd, MAX_RECORD);
            let bytes = bytes.map_err(|e| format!("carried fd {fd}: {}", io_text(&e)))?;
            decode(&bytes).map_err(|e| e.message)
        })
        .map_err(|e| undo(None, e))?;
    let config = configure(&record).map_err(|e| undo(Some(&record), e.message))?;
    // Handlers first; the signals held since before the exec come in once it serves.
    let signals = (Signals::install())
        .map_err(|e| undo(Some(&record), format!("cannot install signal handlers: {e}")))?;
    let undo_here = |what: String| undo(Some(&record), what);
    let mut supervisor = take_over(config, &record, signals, rolled_back.as_deref(), &undo_here)?;
    // The record's memfd, read: closed now.
    drop(fd.map(|fd| Carried::take_all(&[fd])));
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::all()), None);
    supervisor.serve(false)
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
/// `rolled_back`: why the program after this one gave up (this is the
/// previous program, taking over again). `fail` rolls back, or gives up:
/// it is called while every part built so far still holds its fds.
fn take_over(
    mut config: Config,
    record: &Record,
    signals: Signals,
    rolled_back: Option<&str>,
    fail: &dyn Fn(String) -> Error,
) -> Result<Supervisor> {
    // The same moment as the record's `now`, on this image's clock.
    let since = std::time::Duration::from_nanos(sys::clock::monotonic_ns().saturating_sub(record.written_at));
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
    setup::place(&mut config, &listeners).map_err(|e| fail(e.message))?;
    let machine = check(&config, record).map_err(|e| fail(e.message))?;
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
    let mut log = Log::new(config.compat, config.log_json);
    log.retarget(logger.is_some());
    log.sink().set_lossy(logger.as_ref().is_some_and(|l| l.pid.is_none()));
    log.sink().captured(&record.log_pending);
    let watcher = match config.watch.is_empty() {
        true => None,
        false => Some(Watcher::new(&config.watch).map_err(|e| fail(e.message))?),
    };
    if let Err(e) = reaper::become_subreaper() {
        log.line(&format!("cannot become a subreaper ({e}): orphans of workers go to init"));
    }
    let (contain, why) = crate::supervisor::contain::Containment::choose(config.cgroups);
    if let Some(why) = why {
        log.line(&format!("containment: session per worker ({why})"));
    }
    // Not carried: bound again (see `scrape`).
    let scrape = match config.metrics_listen.map(crate::supervisor::scrape::MetricsServer::bind) {
        Some(Err(e)) => {
            log.line(&format!("{e}; the metrics are still on the control socket"));
            None
        }
        bound => bound.and_then(Result::ok),
    };
    let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(record.started_ms);
    let mut upgrades = Upgrades::new(started);
    upgrades.count = record.upgrades + u64::from(rolled_back.is_none());
    if let Some(ms) = record.image_started_ms.filter(|_| rolled_back.is_some()) {
        upgrades.image_started = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    }
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
        contain,
        foreign_ready: 0,
        census: Default::default(),
        observer: Default::default(),
        failed_pid: None,
        failed_spawn: None,
        upgrades,
        scrape,
    };
    let generations: Vec<String> =
        supervisor.machine.views().iter().map(|v| v.generation.to_string()).collect();
    let shown = if generations.is_empty() { "none".to_string() } else { generations.join(", ") };
    let pid = std::process::id();
    supervisor.resume_events(record.events.clone());
    if rolled_back.is_none() {
        let text = format!(
            "upgraded from handover {} to {VERSION} (pid {pid}, generations {shown})",
            record.version
        );
        let what =
            crate::wire::event::What::Upgraded { from: record.version.clone(), to: VERSION.to_string() };
        supervisor.log.said(what, None, Vec::new(), &text);
    }
    if record.reloading {
        readiness::upward(&crate::machine::Upward::Ready);
    }
    let took = Instant::now().saturating_duration_since(instant(record.requested_at, then));
    if let Some(why) = rolled_back {
        let waiting: Vec<_> = record.waiting.iter().map(|&id| (RequestId(id), true)).collect();
        supervisor.refuse_upgrade(&waiting, &format!("{why}; rolled back to handover {VERSION}"));
    } else if let Some(control) = &mut supervisor.control {
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
