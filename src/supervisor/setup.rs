//! Starting the supervisor: everything between a valid `Config` and the
//! first turn of the event loop.
//!
//! Order matters: the worker command is checked and the pid file locked
//! first (a second instance fails before touching anything), then sockets
//! are bound, the private sockets (notify, einhorn, control) created,
//! signal handlers installed, output redirected and the process
//! daemonized. Any failure undoes what was done: no pid file, socket file
//! or process is left behind.
use std::io::Write;

use super::Supervisor;
use super::control::ControlServer;
use super::log::Log;
use super::{output, reaper};
use crate::config::Config;
use crate::error::Fatal;
use crate::listen::{self, Listener};
use crate::machine::Machine;
use crate::state::{PidFile, StatusFile};
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::notify::NotifySocket;
use crate::supervisor::signals::Signals;
use crate::supervisor::watch::Watcher;
use crate::sys::spawn;
use crate::wire::env as protocol;

/// What must be undone if set-up fails halfway.
#[derive(Default)]
struct Undo<'a> {
    pid_file: Option<PidFile>,
    listeners: &'a [Listener],
    control: Option<&'a ControlServer>,
}

impl Undo<'_> {
    fn run(self) {
        self.listeners.iter().for_each(|l| drop(l.remove_file()));
        if let Some(control) = self.control {
            let _ = control.remove();
        }
        if let Some(pid_file) = self.pid_file {
            let _ = pid_file.remove();
        }
    }
}

/// Run until stopped; returns the exit code.
pub fn run(mut config: Config) -> Result<i32, Fatal> {
    let log =
        Log { compat: config.compat, json: config.capture == Some(crate::supervisor::capture::Format::Json) };
    let program = &config.command[0];
    spawn::check(program, &config.base_env, config.dir.as_deref())
        .map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    if config.compat {
        // start_server's banner, on the terminal even with --log-file.
        let pid = std::process::id();
        let _ = writeln!(std::io::stderr(), "start_server (pid:{pid}) starting now...");
    }
    let mut pid_file = match &config.pid_file {
        Some(path) => Some(PidFile::acquire(path).map_err(|e| Fatal::new(1, e.to_string()))?),
        None => None,
    };
    // Sockets our own service manager passed are adopted before anything binds.
    let inherited = config.activation.as_ref().map_or(Ok(Vec::new()), listen::take_inherited);
    let opened = inherited.and_then(|i| listen::open_all(&config.listeners, config.backlog, i));
    let (listeners, unmatched) = match opened {
        Ok(opened) => (opened.listeners, opened.unmatched),
        Err(e) => {
            Undo { pid_file, ..Undo::default() }.run();
            return Err(Fatal::new(1, e.to_string()));
        }
    };
    if config.listeners.is_empty() {
        // Nothing asked for: every adopted socket is a listener, at 3, 4, ...
        config.fds = protocol::place(&vec![None; listeners.len()]).unwrap_or_default();
    }
    let slots: Vec<protocol::Slot> = (listeners.iter().zip(&config.fds))
        .map(|(l, &fd)| protocol::Slot { key: &l.key, name: l.spec.name.as_deref(), fd })
        .collect();
    match protocol::expand_placeholders(&config.command, &slots) {
        Ok(command) => config.command = command,
        Err(e) => {
            Undo { pid_file, listeners: &listeners, control: None }.run();
            return Err(Fatal::new(2, e));
        }
    }
    let fail = |what: &str, e: std::io::Error| Fatal::new(1, format!("cannot create the {what}: {e}"));
    let private = (|| {
        let notify = NotifySocket::bind().map_err(|e| fail("notify socket", e))?;
        let einhorn = EinhornSocket::bind(&notify.path().with_file_name("einhorn"))
            .map_err(|e| fail("einhorn socket", e))?;
        if let Some(c) = &config.credentials {
            notify
                .grant(c.uid, c.gid, &[einhorn.path()])
                .map_err(|e| fail("worker sockets for --user", e))?;
        }
        let control = config
            .control
            .as_deref()
            .map(ControlServer::bind)
            .transpose()
            .map_err(|e| Fatal::new(1, e.to_string()))?;
        Ok::<_, Fatal>((notify, einhorn, control))
    })();
    let (notify, einhorn, control) = match private {
        Ok(parts) => parts,
        Err(e) => {
            Undo { pid_file, listeners: &listeners, control: None }.run();
            return Err(e);
        }
    };
    let process = (|| {
        let signals = Signals::install().map_err(|e| fail("signal handlers", e))?;
        let logger = match &config.log {
            Some(target) => output::redirect(target)?,
            None => None,
        };
        if config.daemonize {
            output::detach()?;
        }
        Ok::<_, Fatal>((signals, logger))
    })();
    let (signals, logger) = match process {
        Ok(parts) => parts,
        Err(e) => {
            Undo { pid_file, listeners: &listeners, control: control.as_ref() }.run();
            return Err(e);
        }
    };
    if let Err(e) = reaper::become_subreaper() {
        log.line(&format!("cannot become a subreaper ({e}): orphans of workers go to init"));
    }
    if let Some(pid_file) = &mut pid_file
        && let Err(e) = pid_file.write_pid(std::process::id())
    {
        log.line(&format!("cannot write the pid file: {e}"));
    }
    for inherited in unmatched {
        log.line(&format!("inherited {inherited} matches no listener; closed"));
    }
    for (listener, fd) in listeners.iter().zip(&config.fds) {
        if listener.replaced_stale
            && let Some(path) = &listener.created_path
        {
            log.line(&format!("removing existing socket file:{}", path.display()));
        }
        if listener.spec.pin.is_some() {
            log.line(&format!("socket is duplicated to file descriptor {fd}"));
        }
        let adopted = listener.inherited_fd.map(|n| format!(", inherited fd {n}")).unwrap_or_default();
        log.extra(&format!("listening on {} as fd {fd} ({}{adopted})", listener.local, listener.key));
    }
    let status_file = config.status_file.as_deref().map(StatusFile::new);
    let machine = Machine::new(config.policy.clone());
    let capture = config.capture.map(crate::supervisor::capture::Capture::new);
    let watcher = match config.watch.is_empty() {
        true => None,
        false => match Watcher::new(&config.watch) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                Undo { pid_file, listeners: &listeners, control: control.as_ref() }.run();
                return Err(Fatal::new(1, e));
            }
        },
    };
    let mut supervisor = Supervisor {
        config,
        log,
        listeners,
        notify,
        einhorn,
        control,
        signals,
        machine,
        pid_file,
        status_file,
        logger,
        capture,
        watcher,
    };
    supervisor.serve()
}
