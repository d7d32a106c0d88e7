//! The lifecycle policy as a pure state machine.
//!
//! `Machine::handle(now, input)` returns the effects to perform; it makes no
//! syscalls and reads no clock, so every rule below is tested by tables
//! (`machine/tests.rs`). The event loop feeds it inputs (signals, exits,
//! READY=1, control requests, timer ticks), performs the effects, and
//! sleeps until `next_deadline()`.
//!
//! Invariants:
//! - At most one generation is starting (`candidate`) at a time. A restart
//!   asked for during a start is coalesced into one pending restart, taken
//!   as soon as the start ends; any spawn satisfies every request before it.
//! - A probation window is never shortened by a signal: alive-readiness is
//!   `spawned_at + interval`, whatever else arrives meanwhile.
//! - The serving generation is told to stop only after all N workers of
//!   its successor are ready; a successor that fails is stopped and the
//!   serving one is untouched.
//! - A dead serving worker with live siblings is respawned alone, in its
//!   generation; a generation left with no worker is replaced by a new one
//!   (start_server's numbering). Spawns of a slot or a generation happen at
//!   most once per `interval`, except restarts asked for, which start at once.
//! - Once stopping, nothing is spawned.
use std::time::Instant;

use nix::sys::signal::Signal;

use event::{Event, Pid};

pub mod event;
mod exits;
mod generation;
mod ready;
mod types;

use exits::stopping_outcome;

use generation::Generation;
pub use types::*;

#[derive(Debug)]
struct Stopping {
    since: Instant,
    killed: bool,
    code: i32,
}

#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    generation: u64,
    current: Option<Generation>,
    candidate: Option<Generation>,
    old: Vec<Generation>,
    pending_restart: bool,
    /// A new generation waiting for the rate limit.
    next_spawn_at: Option<Instant>,
    last_spawn_at: Option<Instant>,
    /// Control requests and the generation that answers them (None: not spawned yet).
    waiters: Vec<(RequestId, Option<u64>)>,
    announced: bool,
    reloading: bool,
    stopping: Option<Stopping>,
    next_watchdog: Option<Instant>,
    counters: Counters,
    last_outcome: Option<Outcome>,
    /// Failed starts of the first generation, in a row.
    start_failures: u32,
    /// A watched change restarts at this time (pushed back by each change).
    restart_on_change_at: Option<Instant>,
}

impl Machine {
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            generation: 0,
            current: None,
            candidate: None,
            old: Vec::new(),
            pending_restart: false,
            next_spawn_at: None,
            last_spawn_at: None,
            waiters: Vec::new(),
            announced: false,
            reloading: false,
            stopping: None,
            next_watchdog: None,
            counters: Counters::default(),
            last_outcome: None,
            start_failures: 0,
            restart_on_change_at: None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start => {
                self.next_watchdog = self.policy.watchdog.map(|every| now + every);
                self.spawn_generation(now, &mut fx);
            }
            Input::Spawned { generation, index, pid } => {
                let slot = self
                    .generation_mut(generation)
                    .and_then(|g| g.workers.iter_mut().find(|w| w.index == index));
                if let Some(worker) = slot {
                    worker.pid = Some(pid);
                    fx.push(Effect::Log(Event::StartingWorker { pid }));
                    if self.current.as_ref().is_some_and(|g| g.number == generation) {
                        fx.push(self.status());
                    }
                } else {
                    // Its generation failed or stopping began while it was spawned.
                    fx.push(Effect::KillGroup { pid });
                }
            }
            Input::SpawnFailed { generation, index, error } => {
                self.spawn_failed(now, generation, index, error, &mut fx)
            }
            Input::Exited { pid, status } => self.exited(now, pid, status, &mut fx),
            Input::Ready { pid } => self.ready_message(now, pid, &mut fx),
            Input::Hup => self.restart(now, None, &mut fx),
            Input::Restart { request } => self.restart(now, Some(request), &mut fx),
            Input::Terminate(signal) => self.terminate(now, signal, &mut fx),
            Input::Forward(signal) => {
                let pids = self.current.as_ref().map(Generation::pids).unwrap_or_default();
                fx.extend(pids.iter().map(|&pid| Effect::Signal { pid, signal }));
                fx.push(Effect::Log(Event::Forwarded { signal, pids }));
            }
            Input::Changed => {
                if self.stopping.is_none() {
                    self.restart_on_change_at = Some(now + self.policy.watch_debounce);
                }
            }
            Input::Tick => self.tick(now, &mut fx),
        }
        fx
    }

    /// The earliest instant at which a `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines: Vec<Instant> = Vec::new();
        deadlines.extend(self.next_watchdog);
        if let Some(stopping) = &self.stopping {
            if !stopping.killed {
                deadlines.extend(self.policy.stop_timeout.map(|t| stopping.since + t));
            }
        } else {
            deadlines.extend(self.next_spawn_at);
            deadlines.extend(self.restart_on_change_at);
            if let Some(c) = &self.candidate {
                deadlines.extend(self.candidate_deadline(c));
            }
            if let Some(current) = &self.current {
                deadlines.extend(current.workers.iter().filter_map(|w| w.respawn_at));
                deadlines.extend(self.probation_ends(current));
            }
            deadlines.extend(self.auto_restart_at());
        }
        for old in &self.old {
            deadlines.extend(old.signal_at);
            if !old.killed {
                deadlines.extend(old.signalled_at.zip(self.policy.drain_timeout).map(|(at, t)| at + t));
            }
        }
        deadlines.into_iter().min()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn last_outcome(&self) -> Option<&Outcome> {
        self.last_outcome.as_ref()
    }

    /// Every generation with a live or starting worker, oldest first.
    pub fn views(&self) -> Vec<View> {
        let view = |g: &Generation, phase| View {
            generation: g.number,
            phase,
            pids: g.pids(),
            spawned_at: g.spawned_at,
            ready_at: g.ready_at,
            signalled_at: g.signalled_at,
        };
        let mut views: Vec<View> = self.old.iter().map(|g| view(g, "draining")).collect();
        views.extend(self.current.iter().map(|g| view(g, "serving")));
        views.extend(self.candidate.iter().map(|g| view(g, "starting")));
        views.sort_by_key(|v| v.generation);
        views
    }

    fn generation_mut(&mut self, number: u64) -> Option<&mut Generation> {
        let mut all = self.candidate.iter_mut().chain(self.current.iter_mut()).chain(self.old.iter_mut());
        all.find(|g| g.number == number)
    }

    /// Live generations for the status file: serving and draining.
    fn status(&self) -> Effect {
        let mut lines: Vec<(u64, Pid)> = self.current.iter().flat_map(Generation::lines).collect();
        lines.extend(self.old.iter().flat_map(Generation::lines));
        lines.sort_unstable();
        Effect::WriteStatus(lines)
    }

    fn spawn_generation(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.generation += 1;
        let generation = self.generation;
        self.candidate = Some(Generation::new(generation, self.policy.workers, now));
        self.last_spawn_at = Some(now);
        self.next_spawn_at = None;
        self.pending_restart = false;
        for waiter in self.waiters.iter_mut().filter(|(_, g)| g.is_none()) {
            waiter.1 = Some(generation);
        }
        fx.extend((0..self.policy.workers).map(|index| Effect::Spawn { generation, index }));
    }

    /// A new generation, no sooner than one interval after the last one.
    fn schedule_spawn(&mut self, now: Instant) {
        let earliest = self.last_spawn_at.map_or(now, |t| t + self.policy.interval);
        self.next_spawn_at = Some(earliest.max(now));
    }

    /// Tell the service manager a reload is under way, once per reload.
    fn mark_reloading(&mut self, fx: &mut Vec<Effect>) {
        if !self.reloading && self.announced {
            self.reloading = true;
            fx.push(Effect::Notify(Upward::Reloading));
        }
    }

    fn restart(&mut self, now: Instant, request: Option<RequestId>, fx: &mut Vec<Effect>) {
        if self.stopping.is_some() {
            match request {
                Some(request) => fx.push(Effect::Reply { request, outcome: stopping_outcome() }),
                None => fx.push(Effect::Log(Event::IgnoredDuringShutdown { signal: Signal::SIGHUP })),
            }
            return;
        }
        if let Some(request) = request {
            self.waiters.push((request, None));
        }
        if let Some(generation) = self.candidate.as_ref().map(|c| c.number) {
            self.pending_restart = true;
            fx.push(Effect::Log(Event::HupCoalesced { generation }));
            self.mark_reloading(fx);
            return;
        }
        fx.push(Effect::Log(if request.is_some() { Event::RestartRequested } else { Event::ReceivedHup }));
        self.mark_reloading(fx);
        // A generation waiting for its slot will run the newest code anyway.
        if self.next_spawn_at.is_none() {
            self.spawn_generation(now, fx);
        }
    }

    fn candidate_deadline(&self, c: &Generation) -> Option<Instant> {
        match self.policy.ready {
            ReadyMode::Alive | ReadyMode::Auto => self.probation_ends(c),
            ReadyMode::Notify => self.policy.ready_timeout.map(|t| c.spawned_at + t),
        }
    }

    /// When the next worker of `g` that is not ready yet has been alive an interval.
    fn probation_ends(&self, g: &Generation) -> Option<Instant> {
        if self.policy.ready == ReadyMode::Notify {
            return None;
        }
        let waiting = g.workers.iter().filter(|w| w.pid.is_some() && !w.ready);
        waiting.map(|w| w.spawned_at + self.policy.interval).min()
    }

    fn auto_restart_at(&self) -> Option<Instant> {
        let interval = self.policy.auto_restart?;
        let idle = self.candidate.is_none() && self.next_spawn_at.is_none();
        let since = self.current.as_ref().filter(|_| idle)?.ready_at?;
        Some(if self.old.is_empty() { since + interval } else { since + 2 * interval })
    }
}

#[cfg(test)]
mod tests;
