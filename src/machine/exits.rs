//! Processes that end: failed starts, dead workers, drained generations,
//! and the supervisor's own stop.
use std::time::Duration;

use super::time::Moment;

use nix::sys::signal::Signal;

use super::generation::{Draining, Generation, Stop, Worker};
use super::state::{Manager, Phase, Stopping};
use super::*;
use crate::machine::event::{Event, ExitStatus, Failure, Hint, Pid, SpawnError};

impl Machine {
    pub(super) fn terminate(&mut self, now: Moment, received: Signal, fx: &mut Vec<Effect>) {
        if self.stopping() {
            fx.push(Effect::Log(Event::IgnoredDuringShutdown { signal: received }));
            return;
        }
        let sending = if received == Signal::SIGINT { Signal::SIGTERM } else { self.policy.signal_on_term };
        let pids = self.live_pids();
        fx.push(Effect::Log(Event::ShutdownReceived { received, sending, pids }));
        self.stop(now, sending, 0, fx);
    }

    /// Stop every worker with `sending`; exit with `code` once all are gone.
    pub(super) fn stop(&mut self, now: Moment, sending: Signal, code: i32, fx: &mut Vec<Effect>) {
        debug_assert!(!self.stopping(), "stopped twice");
        let Some(running) = self.phase.running_mut() else { return };
        let starting = running.slot.take().map(|(candidate, _)| Draining::told(candidate, now));
        self.phase = Phase::Stopping(Stopping { since: now, killed: false, code, starting });
        let pids = self.live_pids();
        fx.push(Effect::Notify(Upward::Stopping));
        if let Some(t) = self.policy.stop_timeout {
            fx.push(Effect::Notify(Upward::ExtendTimeout(t + Duration::from_secs(5))));
        }
        fx.extend(pids.iter().map(|&pid| Effect::Signal { pid, signal: sending }));
        for (request, _) in self.waiters.drain(..) {
            fx.push(Effect::Reply { request, outcome: stopping_outcome() });
        }
        self.generations_mut().for_each(Generation::drop_unborn);
        for old in self.old.iter_mut().filter(|d| d.due_at().is_some()) {
            old.stop = Stop::Told { at: now, killed: false };
        }
        self.finish_if_done(fx);
    }

    /// Remove a worker that has exited from whichever generation held it.
    pub(super) fn forget(&mut self, pid: Pid) {
        self.generations_mut().for_each(|g| g.workers.retain(|w| w.pid() != Some(pid)));
        match &mut self.phase {
            Phase::Running(running) if running.slot.candidate().is_some_and(|g| g.workers.is_empty()) => {
                running.slot.take();
            }
            Phase::Running(_) => {}
            Phase::Stopping(stopping) => drop(stopping.starting.take_if(|d| d.generation.workers.is_empty())),
        }
        self.current.take_if(|g| g.workers.is_empty());
        self.old.retain(|d| !d.generation.workers.is_empty());
    }

    pub(super) fn live_pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.generations().flat_map(Generation::pids).collect();
        pids.sort_unstable();
        pids
    }

    pub(super) fn finish_if_done(&mut self, fx: &mut Vec<Effect>) {
        if let Phase::Stopping(stopping) = &self.phase
            && self.live_pids().is_empty()
        {
            fx.push(Effect::Log(Event::Exiting));
            fx.push(Effect::Exit(stopping.code));
        }
    }

    pub(super) fn spawn_failed(
        &mut self,
        now: Moment,
        generation: u64,
        index: usize,
        error: SpawnError,
        fx: &mut Vec<Effect>,
    ) {
        let code = error.exit_code();
        let stopping = self.stopping();
        // A generation that failed already was reported: its other workers'
        // failures (all N of --workers N when fork fails) say nothing new.
        let ours = |g: &Generation| g.number == generation;
        if self.candidate().is_some_and(ours) || (!stopping && self.current.as_ref().is_some_and(ours)) {
            fx.push(Effect::Log(Event::SpawnFailed { generation, error: error.clone() }));
        }
        if stopping {
            return;
        }
        if let Some(c) =
            self.phase.running_mut().and_then(|r| r.slot.candidate_mut()).filter(|c| c.number == generation)
        {
            c.workers.retain(|w| w.index() != index);
            let first = !self.manager.announced() && self.current.is_none();
            self.fail_candidate(now, Failure::SpawnFailed(error), fx);
            if first && !self.stopping() {
                // The first generation cannot even be executed: a config error.
                self.stop(now, Signal::SIGTERM, code, fx);
            }
        } else if let Some(current) = self.current.as_mut().filter(|g| g.number == generation) {
            let interval = self.policy.interval;
            if let Some(w) = current.workers.iter_mut().find(|w| w.index() == index)
                && let Worker::Starting { index, .. } = *w
            {
                *w = Worker::Respawning { index, at: now + interval };
            }
        }
    }

    /// The starting generation failed: stop what runs of it, answer those
    /// waiting for it, try again.
    pub(super) fn fail_candidate(&mut self, now: Moment, failure: Failure, fx: &mut Vec<Effect>) {
        // A pending restart needs nothing more: the retry runs the newest code.
        let Some((mut failed, _pending)) = self.phase.running_mut().and_then(|r| r.slot.take()) else {
            return;
        };
        self.counters.failures += 1;
        let generation = failed.number;
        let outcome = Outcome::Failed { generation: Some(generation), failure: failure.clone() };
        for (request, _) in self.waiters.extract_if(.., |(_, g)| *g == Some(generation)) {
            fx.push(Effect::Reply { request, outcome: outcome.clone() });
        }
        self.last_outcome = Some(outcome);
        failed.drop_unborn();
        if !failed.workers.is_empty() {
            fx.extend(failed.pids().into_iter().map(|pid| Effect::Signal { pid, signal: Signal::SIGTERM }));
            self.old.push(Draining::told(failed, now));
            fx.push(self.status());
        }
        if self.manager == Manager::Reloading {
            let serving = self.current.as_ref().map(|g| g.number);
            let line = StatusLine::RestartFailed { generation, failure: failure.clone(), serving };
            fx.push(Effect::Notify(Upward::Status(line)));
            self.manager.ready(fx);
        }
        let Some(running) = self.phase.running_mut() else { return };
        if !self.manager.announced() {
            running.start_failures += 1;
            if self.policy.max_start_attempts.is_some_and(|max| running.start_failures >= max) {
                let attempts = running.start_failures;
                fx.push(Effect::Log(Event::GaveUp { attempts, last: failure }));
                return self.stop(now, Signal::SIGTERM, 1, fx);
            }
        }
        if let Some(vacancy) = running.vacancy() {
            vacancy.schedule(now, self.policy.interval);
        }
    }

    pub(super) fn exited(&mut self, now: Moment, pid: Pid, status: ExitStatus, fx: &mut Vec<Effect>) {
        let stopping = self.stopping();
        let code = status.shell_code();
        let ours = self.candidate().into_iter().chain(self.current.iter()).any(|g| g.has(pid));
        if ours && !stopping && self.policy.stop_on_exit.contains(&code) {
            fx.push(Effect::Log(Event::StopOnExit { pid, status, code }));
            self.forget(pid);
            fx.push(self.status());
            return self.stop(now, self.policy.signal_on_term, code, fx);
        }
        if self.candidate().is_some_and(|c| c.has(pid)) {
            self.candidate_exited(now, pid, status, fx);
        } else if let Some(current) = self.current.as_mut().filter(|g| !stopping && g.has(pid)) {
            fx.push(Effect::Log(Event::DiedUnexpectedly { pid, status }));
            if current.any_alive_besides(pid) {
                let interval = self.policy.interval;
                if let Some(w) = current.workers.iter_mut().find(|w| w.pid() == Some(pid))
                    && let Worker::Live(live) = w
                {
                    *w = Worker::Respawning { index: live.index, at: (live.spawned_at + interval).max(now) };
                }
            } else {
                self.current = None;
                if let Some(vacancy) = self.phase.running_mut().and_then(Running::vacancy) {
                    // A generation starting or waiting for its turn (a
                    // retry) replaces it: that one is no respawn.
                    if vacancy.empty() {
                        self.counters.respawns += 1;
                    }
                    vacancy.schedule(now, self.policy.interval);
                }
            }
            fx.push(self.status());
        } else if self.generations().any(|g| g.has(pid)) {
            // Draining, or (once stopping) serving.
            let old = self.old.iter().any(|d| d.generation.has(pid));
            self.forget(pid);
            let event =
                if stopping { Event::WorkerDied { pid, status } } else { Event::OldDied { pid, status } };
            fx.push(Effect::Log(event));
            fx.push(self.status());
            if old {
                self.answer_waiters(now, fx);
            }
            self.finish_if_done(fx);
        }
    }

    /// A worker of the starting generation exited: the generation failed
    /// (or, once stopping, is one worker closer to gone).
    fn candidate_exited(&mut self, now: Moment, pid: Pid, status: ExitStatus, fx: &mut Vec<Effect>) {
        match &mut self.phase {
            Phase::Stopping(_) => {
                self.forget(pid);
                fx.push(Effect::Log(Event::WorkerDied { pid, status }));
                self.finish_if_done(fx);
            }
            Phase::Running(running) => {
                let Some(c) = running.slot.candidate_mut() else { return };
                let (generation, lived) = (c.number, now - c.spawned_at);
                c.workers.retain(|w| w.pid() != Some(pid));
                fx.push(Effect::Log(Event::FailedToStart { pid, status }));
                let hint = diagnose(status, lived, self.policy.interval);
                if let Some(hint) = hint {
                    fx.push(Effect::Log(Event::Diagnosis { generation, status, hint }));
                }
                self.fail_candidate(now, Failure::Exited { pid, status, hint }, fx);
            }
        }
    }
}

pub(super) fn stopping_outcome() -> Outcome {
    Outcome::Failed { generation: None, failure: Failure::Stopping }
}

/// A hint for a worker that did not survive its start, where one is clear.
fn diagnose(status: ExitStatus, lived: Duration, interval: Duration) -> Option<Hint> {
    match status {
        ExitStatus::Code(127) => Some(Hint::CommandNotFound),
        ExitStatus::Code(126) => Some(Hint::NotExecutable),
        ExitStatus::Signal { signal: libc::SIGKILL, .. } => Some(Hint::KilledFromOutside),
        ExitStatus::Code(code) if code != 0 && lived < interval => Some(Hint::FailedDuringStartup),
        _ => None,
    }
}
