//! Performing what the machine asks for: spawning a worker with its
//! environment, writing the status file, answering the control socket,
//! and the clean-up at exit.
use std::ffi::OsString;
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::signal::Signal;

use super::capture::Capture;
use super::replies;
use super::{Supervisor, output, reaper};
use crate::config::{LogTarget, OnUsr1};
use crate::machine::{self, Input};
use crate::state;
use crate::supervisor::control::RequestId;
use crate::sys::spawn;
use crate::wire::control;
use crate::wire::env as protocol;

impl Supervisor {
    pub(super) fn spawn(&mut self, generation: u64, index: usize) -> Input {
        // Every fork of this batch for a generation whose spawn failed would
        // fail the same way (fork, fd limit, a missing program): not tried.
        if let Some((failed, error)) = &self.failed_spawn
            && *failed == generation
        {
            return Input::SpawnFailed { generation, index, error: error.clone() };
        }
        // Listeners are ours: undo what an earlier generation did to them.
        let alone = self.machine.views().iter().all(|v| v.pids.is_empty());
        for line in crate::listen::check_all(&mut self.listeners, self.config.backlog, generation, alone) {
            self.log.line(&line);
        }
        let env = self.worker_env(generation, index);
        let mut fds: Vec<(RawFd, RawFd)> = (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &target)| (l.socket.as_raw_fd(), target))
            .collect();
        let pipes = self.capture.as_mut().map(Capture::open).transpose().unwrap_or_else(|e| {
            self.log.line(&format!(
                "cannot create log capture pipes ({e}); this worker's output goes unprefixed"
            ));
            None
        });
        if let Some(p) = &pipes {
            fds.extend([(p.stdout.as_raw_fd(), 1), (p.stderr.as_raw_fd(), 2)]);
        }
        let request = spawn::Request {
            command: &self.config.command,
            env: &env,
            // Whether the listeners are announced by socket activation, not
            // whatever the environment holds.
            listen_pid: self.config.announce.systemd && protocol::speaks_systemd(&self.slots()),
            dir: self.config.dir.as_deref(),
            fds: &fds,
            credentials: self.config.credentials.as_ref(),
            contain: self.contain.spawn_mode(),
        };
        let result = spawn::spawn(&request);
        // Our copies of the write ends go now: a stream ends when the worker's do.
        let token = pipes.map(|p| p.token);
        if let (Some(capture), Some(token)) = (self.capture.as_mut(), token) {
            match &result {
                Ok(pid) => capture.attach(token, generation, pid.as_raw()),
                Err(_) => capture.abandon(token),
            }
        }
        match result {
            Ok(pid) => Input::Spawned { generation, index, pid: pid.as_raw() },
            Err(error) => {
                crate::listen::not_started(&self.listeners, generation);
                self.failed_spawn = Some((generation, error.clone()));
                Input::SpawnFailed { generation, index, error }
            }
        }
    }

    /// The listeners as the worker sees them: key, name, fd.
    fn slots(&self) -> Vec<protocol::Slot<'_>> {
        (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &fd)| protocol::Slot { key: &l.key, name: l.spec.name.as_deref(), fd })
            .collect()
    }

    /// The supervisor's startup environment, the envdir as it is now, then
    /// every protocol's variables.
    pub(super) fn worker_env(&self, generation: u64, index: usize) -> Vec<(OsString, OsString)> {
        let mut env = self.config.base_env.clone();
        if let Some(dir) = &self.config.envdir {
            match state::read_envdir(dir) {
                Ok(loaded) => {
                    loaded.warnings.iter().for_each(|w| self.log.line(w));
                    // The protocols' variables and ENVDIR are handover's to
                    // set, never the envdir's.
                    let mut vars = loaded.vars;
                    vars.retain(|(name, _)| {
                        !protocol::is_supervisor_private(name) && name != protocol::ENVDIR
                    });
                    env = state::overlay_env(&env, &vars);
                }
                Err(e) => self.log.line(&format!("{e}; using the startup environment")),
            }
        }
        let announce = self.config.announce;
        let mut vars = protocol::listener_env(&self.slots(), announce);
        let (name, value) = protocol::generation_env(generation);
        vars.push((name.to_string(), value));
        vars.extend(protocol::worker_index_env(index));
        vars.push((protocol::NOTIFY_SOCKET.to_string(), self.notify.path().to_string_lossy().into_owned()));
        if announce.einhorn {
            vars.extend(protocol::einhorn_env(&self.einhorn.path().to_string_lossy(), std::process::id()));
        }
        for (name, value) in vars {
            env.retain(|(k, _)| *k != *name);
            env.push((name.into(), value.into()));
        }
        env
    }

    pub(super) fn write_status(&mut self, gens: &[(u64, i32)]) {
        if let Some(status) = &mut self.status_file {
            let gens: Vec<(u64, u32)> = gens.iter().map(|&(g, p)| (g, p as u32)).collect();
            if let Err(e) = status.write(&gens) {
                self.log.line(&format!("cannot write the status file: {e}"));
            }
        }
    }

    pub(super) fn reply(&mut self, request: machine::RequestId, outcome: &machine::Outcome) {
        let mut reply = replies::outcome(outcome);
        if let control::Restart::Done(done) = &mut reply {
            // A generation serving on a broken listener is no plain success.
            done.warnings = crate::listen::broken(&self.listeners);
        }
        if let Some(control) = self.control.as_mut() {
            control.reply(RequestId(request), &reply);
        }
    }

    /// SIGUSR1 or `reopen`: what `--on-usr1` says. Reopens `--log-file`
    /// if it says to (the path, or why not); the input that forwards USR1
    /// to the serving generation if it says to.
    pub(super) fn on_usr1(&mut self) -> (crate::error::Result<Option<String>>, Option<Input>) {
        let reopen = matches!(self.config.on_usr1, OnUsr1::Reopen | OnUsr1::Both);
        let forward = matches!(self.config.on_usr1, OnUsr1::Forward | OnUsr1::Both);
        let reopened = match &self.config.log {
            Some(target @ LogTarget::File(path)) if reopen => match output::reopen(target) {
                Ok(()) => {
                    self.log.retarget(false);
                    let path = path.display().to_string();
                    self.log.extra(&format!("reopened the log file {path}"));
                    Ok(Some(path))
                }
                Err(e) => {
                    self.log.line(&format!("{}; still writing to the old log", e.message));
                    Err(e)
                }
            },
            _ => Ok(None),
        };
        (reopened, forward.then_some(Input::Forward(Signal::SIGUSR1)))
    }

    /// Whatever workers left behind (re-parented to us) goes too.
    pub(super) fn stop_orphans(&mut self) {
        let mut keep: Vec<i32> = self.logger.iter().filter_map(|l| l.pid).collect();
        // A log pipeline's own processes re-parented to us are the logger's.
        keep.extend(self.contain.logger_members());
        let stopped = reaper::stop_orphans(&keep, self.config.policy.orphan_grace);
        if !stopped.is_empty() {
            let pids: Vec<String> = stopped.iter().map(i32::to_string).collect();
            self.log.line(&format!("stopped processes the workers left behind: {}", pids.join(",")));
        }
    }

    /// Remove exactly the files this process created. The control socket
    /// stays open (its file gone) until the process exits, so a `stop`
    /// client sees its connection end only then.
    pub(super) fn clean_up(&mut self) {
        let mut removed = Vec::new();
        if let Some(control) = self.control.as_mut() {
            control.flush();
            removed.push(("the control socket", control.remove()));
        }
        removed.extend(self.status_file.take().map(|status| ("the status file", status.remove())));
        removed.extend(self.listeners.iter().map(|listener| ("socket file", listener.remove_file())));
        removed.extend(self.pid_file.take().map(|pid_file| ("the pid file", pid_file.remove())));
        for (what, result) in removed {
            if let Err(e) = result {
                self.log.line(&format!("cannot remove {what}: {e}"));
            }
        }
    }
}
