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
use super::{Handed, Upgrades, VERSION, own_binary};
use crate::config::Config;
use crate::error::io_text;
use crate::error::{Error, Result};
use crate::listen::Listener;
use crate::machine::Machine;
use crate::state::{PidFile, StatusFile};
use crate::supervisor::capture::Capture;
use crate::supervisor::carry::{Carry, Part, Resuming};
use crate::supervisor::control::{ControlServer, RequestId};
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::events::Events;
use crate::supervisor::log::Log;
use crate::supervisor::logger::Logger;
use crate::supervisor::notify_socket::{self, NotifySocket};
use crate::supervisor::scrape::MetricsServer;
use crate::supervisor::signals::Signals;
use crate::supervisor::watch::Watcher;
use crate::supervisor::{Parts, Supervisor, reaper, setup};
use crate::sys;
use crate::wire::control::Upgraded;

/// Reads a record (at most `MAX_RECORD` bytes).
pub fn read_record(from: impl Read) -> Result<Record> {
    let mut bytes = Vec::new();
    let read = from.take(MAX_RECORD as u64 + 1).read_to_end(&mut bytes);
    read.map_err(|e| Error::runtime(format!("cannot read the state record: {e}")))?;
    Record::decode(&bytes)
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

/// Takes over from the previous image: `handed.record` is the fd of the
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
    let state = &handed.record;
    let fd: Option<RawFd> = state.to_str().and_then(|s| s.parse().ok());
    let record = fd
        .ok_or_else(|| format!("{} is not an fd: {state:?}", crate::wire::env::HANDOVER_UPGRADE_STATE))
        .and_then(|fd| {
            let bytes = sys::fd::read_from_start(fd, MAX_RECORD);
            let bytes = bytes.map_err(|e| format!("carried fd {fd}: {}", io_text(&e)))?;
            Record::decode(&bytes).map_err(|e| e.message)
        })
        .map_err(|e| undo(None, e))?;
    let config = configure(&record).map_err(|e| undo(Some(&record), e.message))?;
    // Handlers first; the signals held since before the exec come in once it serves.
    let signals = (Signals::install())
        .map_err(|e| undo(Some(&record), format!("cannot install signal handlers: {e}")))?;
    let undo_here = |what: String| undo(Some(&record), what);
    let mut supervisor = take_over(config, &record, signals, rolled_back.as_deref(), &undo_here)?;
    // The record's memfd, read: closed now.
    drop(fd.map(|fd| sys::fd::take_carried(&[fd])));
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
        Vec::<Listener>::remove_files(&record.listeners);
        record.control.iter().for_each(ControlServer::remove_files);
        record.pid_file.iter().for_each(PidFile::remove_files);
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
    let from = &mut Resuming::take(&record.fds(), record.written_at).map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());
    let listeners = Vec::<Listener>::resume(record.listeners.clone(), from, &config).map_err(io)?;
    setup::place(&mut config, &listeners).map_err(|e| fail(e.message))?;
    let machine = check(&config, record).map_err(|e| fail(e.message))?;
    let notify = NotifySocket::resume(record.notify.clone(), from, &config).map_err(io)?;
    let einhorn = EinhornSocket::resume(record.einhorn.clone(), from, &config).map_err(io)?;
    let control = resume_some::<ControlServer>(record.control.clone(), from, &config).map_err(io)?;
    let pid_file = resume_some::<PidFile>(record.pid_file.clone(), from, &config).map_err(io)?;
    // `check` made sure the record carries streams exactly when the command line captures.
    let capture = resume_some::<Capture>(record.capture.clone(), from, &config).map_err(io)?;
    let logger = resume_some::<Logger>(record.logger.clone(), from, &config).map_err(io)?;
    let events = resume_some::<Events>(record.events.clone(), from, &config).map_err(io)?;
    let mut log = Log::new(config.compat, config.log_json);
    if let Some(events) = events {
        *log.events.borrow_mut() = events;
    }
    log.retarget(logger.is_some());
    log.sink().set_lossy(logger.as_ref().is_some_and(|l| l.pid.is_none()));
    log.sink().captured(&record.log_pending);
    let watcher = (!config.watch.is_empty()).then(|| Watcher::new(&config.watch));
    let watcher = watcher.transpose().map_err(|e| fail(e.message))?;
    if let Err(e) = reaper::become_subreaper() {
        log.line(&format!("cannot become a subreaper ({e}): orphans of workers go to init"));
    }
    let (contain, why) = crate::supervisor::contain::Containment::choose(config.cgroups);
    if let Some(why) = why {
        log.line(&format!("containment: session per worker ({why})"));
    }
    // Carried (a record without it: bound again, see `scrape`).
    let scrape = match record.metrics.clone() {
        Some(carried) => Some(MetricsServer::resume(carried, from, &config)),
        None => config
            .metrics_listen
            .map(|a| MetricsServer::bind(a).map_err(|e| std::io::Error::other(e.message))),
    };
    let scrape = match scrape {
        Some(Err(e)) if config.metrics_listen.is_some() => {
            log.line(&format!("{e}; the metrics are still on the control socket"));
            None
        }
        bound => bound.and_then(Result::ok),
    };
    let at = |ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let mut upgrades = Upgrades::new(at(record.started_ms));
    upgrades.count = record.upgrades + u64::from(rolled_back.is_none());
    // A roll-back goes on as the image it was.
    let image_started = record.image_started_ms.filter(|_| rolled_back.is_some());
    upgrades.image_started = image_started.map_or(upgrades.image_started, at);
    let status_file =
        (config.status_file.as_deref()).map(|path| StatusFile::resume(path, record.status_written));
    let parts = Parts {
        machine,
        listeners,
        notify,
        einhorn,
        control,
        signals,
        pid_file,
        status_file,
        logger,
        capture,
        watcher,
        lingering: record.lingering.clone(),
        contain,
        upgrades,
        scrape,
    };
    let mut supervisor = Supervisor::assemble(config, log, parts);
    let generations: Vec<u64> = supervisor.machine.views().iter().map(|v| v.generation).collect();
    let shown: Vec<String> = generations.iter().map(u64::to_string).collect();
    let shown = if shown.is_empty() { "none".to_string() } else { shown.join(", ") };
    let pid = std::process::id();
    supervisor.resume_events();
    if rolled_back.is_none() {
        let text = format!(
            "upgraded from handover {} to {VERSION} (pid {pid}, generations {shown})",
            record.version
        );
        let (from, to) = (record.version.clone(), VERSION.to_string());
        let what = crate::wire::event::What::Upgraded { from, to, generations };
        supervisor.log.said(what, None, Vec::new(), &text);
    }
    if record.reloading {
        notify_socket::upward(&crate::machine::Upward::Ready);
    }
    let took = Instant::now().saturating_duration_since(from.written.instant(record.requested_at));
    if let Some(why) = rolled_back {
        let waiting: Vec<_> = record.waiting.iter().map(|&id| (RequestId(id), true)).collect();
        supervisor.refuse_upgrade(&waiting, &format!("{why}; rolled back to handover {VERSION}"));
    } else if let Some(control) = &mut supervisor.control {
        let binary = supervisor.upgrades.binary.display().to_string();
        let took_ms = Some((took.as_secs_f64() * 1e6).round() / 1e3);
        let reply =
            Upgraded { ok: true, pid, binary, from: record.version.clone(), to: VERSION.into(), took_ms };
        record.waiting.iter().for_each(|&id| control.reply(RequestId(id), &reply));
    }
    Ok(supervisor)
}

/// Part `T` from its record, if the record has one.
fn resume_some<T: Carry>(
    record: Option<Part<T>>,
    from: &mut Resuming,
    config: &Config,
) -> std::io::Result<Option<T>> {
    record.map(|r| T::resume(r, from, config)).transpose()
}
