//! Starting the supervisor: everything between a valid `Config` and the
//! first turn of the event loop.
//!
//! Order matters: the worker command is checked and the pid file locked
//! first (a second instance fails before touching anything), then sockets
//! are bound, the private sockets (notify, einhorn, control) created,
//! signal handlers installed, output redirected and the process
//! daemonized. Any failure undoes what was done (`Started`, a guard
//! disarmed on success): no pid file, socket file or process is left
//! behind.
use std::io::Write;

use super::control::ControlServer;
use super::log::Log;
use super::logger::Logger;
use super::{Parts, Supervisor};
use super::{output, reaper};
use crate::config::{Config, LogTarget};
use crate::error::{Context, Result};
use crate::listen::{self, Listener};
use crate::machine::Machine;
use crate::state::{PidFile, StatusFile};
use crate::supervisor::contain::Containment;
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::notify_socket::{self, NotifySocket};
use crate::supervisor::signals::Signals;
use crate::supervisor::watch::Watcher;
use crate::sys::spawn;
use crate::wire::env as protocol;

/// What a failed start must undo. Until `disarm`, dropping it removes the
/// files this start created: unix socket files, the control socket, the
/// pid file (its lock goes with it). Every early return undoes the same.
struct Started {
    pid_file: Option<PidFile>,
    listeners: Vec<Listener>,
    control: Option<ControlServer>,
    /// Session until chosen (whose `finish` does nothing).
    contain: Containment,
}

impl Started {
    /// Set-up succeeded: the supervisor owns these now, and nothing is
    /// left for the drop to undo.
    fn disarm(mut self) -> (Option<PidFile>, Vec<Listener>, Option<ControlServer>, Containment) {
        (
            self.pid_file.take(),
            std::mem::take(&mut self.listeners),
            self.control.take(),
            std::mem::replace(&mut self.contain, Containment::session()),
        )
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.listeners.iter().for_each(|l| drop(l.remove_file()));
        if let Some(control) = &self.control {
            let _ = control.remove();
        }
        if let Some(pid_file) = self.pid_file.take() {
            let _ = pid_file.remove();
        }
        self.contain.finish();
    }
}

/// Run until stopped; returns the exit code.
pub fn run(mut config: Config) -> Result<u8> {
    let mut log = Log::new(config.compat, config.log_json);
    spawn::check(&config.command[0], &config.base_env, config.dir.as_deref())?;
    if config.compat {
        // start_server's banner, on the terminal even with --log-file.
        let pid = std::process::id();
        let _ = writeln!(std::io::stderr(), "start_server (pid:{pid}) starting now...");
    }
    let status_file = (config.status_file.as_deref())
        .map(|path| StatusFile::new(path).context(|| format!("cannot use status file {}", path.display())))
        .transpose()?;
    let pid_file = config.pid_file.as_deref().map(PidFile::acquire).transpose()?;
    let mut started =
        Started { pid_file, listeners: Vec::new(), control: None, contain: Containment::session() };
    // Sockets our own service manager passed are adopted before anything binds.
    let inherited = config.activation.as_ref().map_or(Ok(Vec::new()), listen::take_inherited)?;
    let opened = listen::open_all(&config.listeners, config.backlog, inherited)?;
    started.listeners = opened.listeners;
    place(&mut config, &started.listeners)?;
    let cleaned = notify_socket::runtime_dir().map_or(0, |dir| notify_socket::clean_stale(&dir));
    let notify = NotifySocket::bind().context(creating("notify socket"))?;
    let einhorn =
        EinhornSocket::bind(&notify.path().with_file_name("einhorn")).context(creating("einhorn socket"))?;
    if let Some(c) = &config.credentials {
        notify.grant(c.gid, &[einhorn.path()]).context(creating("worker sockets for --user"))?;
    }
    started.control = config.control.as_deref().map(ControlServer::bind).transpose()?;
    let scrape = config.metrics_listen.map(super::scrape::MetricsServer::bind).transpose()?;
    if let Some(addr) = scrape.as_ref().and_then(super::scrape::MetricsServer::local_addr) {
        log.extra(&format!("serving metrics on http://{addr}/metrics"));
    }
    let signals = Signals::install().context(creating("signal handlers"))?;
    let pipe = config.log.as_ref().map(output::redirect).transpose()?.flatten();
    let (contain, why) = Containment::choose(config.cgroups);
    started.contain = contain;
    let logger = match (pipe, &config.log) {
        (Some(mut pipe), Some(LogTarget::Pipe(command))) => {
            if config.daemonize {
                pipe.detach().context(|| "cannot open /dev/null".into())?;
            }
            let cgroup = started.contain.logger_cgroup();
            Some(Logger::start(command, pipe, cgroup.as_deref(), std::time::Instant::now())?)
        }
        _ => None,
    };
    if config.daemonize {
        output::detach()?;
    }
    log.retarget(logger.is_some());
    let watcher = (!config.watch.is_empty()).then(|| Watcher::new(&config.watch)).transpose()?;
    let (mut pid_file, listeners, control, contain) = started.disarm();
    if cleaned > 0 {
        let what = if cleaned == 1 { "directory" } else { "directories" };
        log.extra(&format!("removed {cleaned} runtime {what} left by supervisors that are gone"));
    }
    if let Err(e) = reaper::become_subreaper() {
        log.line(&format!("cannot become a subreaper ({e}): orphans of workers go to init"));
    }
    match why {
        Some(why) => log.line(&format!("containment: session per worker ({why})")),
        None => log.extra(&format!("containment: {}", contain.describe())),
    }
    if let Some(pid_file) = &mut pid_file
        && let Err(e) = pid_file.write_pid(std::process::id())
    {
        log.line(&format!("cannot write the pid file: {e}"));
    }
    for inherited in opened.unmatched {
        log.line(&format!("inherited {inherited} matches no listener; closed"));
    }
    for (listener, fd) in listeners.iter().zip(&config.fds) {
        if listener.replaced_stale
            && let Some(path) = &listener.created_path
        {
            log.line(&format!("removing existing socket file:{}", path.path().display()));
        }
        if listener.spec.pin.is_some() {
            log.line(&format!("socket is duplicated to file descriptor {fd}"));
        }
        let adopted = listener.inherited_fd.map(|n| format!(", inherited fd {n}")).unwrap_or_default();
        log.extra(&format!("listening on {} as fd {fd} ({}{adopted})", listener.local, listener.key));
    }
    let parts = Parts {
        machine: Machine::new(config.policy.clone()),
        listeners,
        notify,
        einhorn,
        control,
        signals,
        pid_file,
        status_file,
        logger,
        capture: None,
        watcher,
        lingering: Vec::new(),
        contain,
        upgrades: super::upgrade::Upgrades::new(std::time::SystemTime::now()),
        scrape,
    };
    Supervisor::assemble(config, log, parts).serve(true)
}

/// The listeners' fds in the workers and the command's `{fd:NAME}`
/// placeholders, now that the listeners are known.
pub(super) fn place(config: &mut Config, listeners: &[Listener]) -> Result<()> {
    if config.listeners.is_empty() {
        // Nothing asked for: every adopted socket is a listener, at 3, 4, ...
        config.fds = protocol::place(&vec![None; listeners.len()]).unwrap_or_default();
    }
    let slots: Vec<protocol::Slot> = (listeners.iter().zip(&config.fds))
        .map(|(l, &fd)| protocol::Slot { key: &l.key, name: l.spec.name.as_deref(), fd })
        .collect();
    config.command = protocol::expand_placeholders(&config.command, &slots)?;
    Ok(())
}

/// `cannot create the WHAT`, for `Context::context`.
fn creating(what: &'static str) -> impl FnOnce() -> String {
    move || format!("cannot create the {what}")
}
