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
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::event::{Event, ExitStatus, Pid, SpawnError};

mod generation;
use generation::Generation;

/// When a new worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// start_server: still alive `interval` after the spawn.
    Alive,
    /// `READY=1` on the notify socket (or einhorn's ack).
    Notify,
    /// `READY=1` if it comes first, else alive after `interval`.
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    pub ready: ReadyMode,
    /// Notify mode: give up on a generation not ready by then.
    pub ready_timeout: Option<Duration>,
    pub kill_old_delay: Duration,
    pub drain_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub signal_on_hup: Signal,
    pub signal_on_term: Signal,
    pub auto_restart: Option<Duration>,
    /// Workers per generation.
    pub workers: usize,
    /// Send `WATCHDOG=1` this often.
    pub watchdog: Option<Duration>,
    /// A worker exiting with one of these codes (128+N for signal N) stops
    /// the supervisor with that code instead of being respawned.
    pub stop_on_exit: Vec<i32>,
    /// Give up (exit 1) when the first generation failed to start this many times in a row.
    pub max_start_attempts: Option<u32>,
    /// `--watch`: restart this long after the last change.
    pub watch_debounce: Duration,
}

/// Identifies a control request awaiting its answer.
pub type RequestId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Start,
    Spawned {
        generation: u64,
        index: usize,
        pid: Pid,
    },
    SpawnFailed {
        generation: u64,
        index: usize,
        error: SpawnError,
    },
    Exited {
        pid: Pid,
        status: ExitStatus,
    },
    /// `READY=1` from this worker (or a process in its group).
    Ready {
        pid: Pid,
    },
    Hup,
    /// A restart asked for on the control socket: answered with its outcome.
    Restart {
        request: RequestId,
    },
    /// TERM or INT: graceful shutdown.
    Terminate(Signal),
    /// Any other catchable signal: passed on to the serving generation.
    Forward(Signal),
    /// A watched file changed (`--watch`).
    Changed,
    /// A deadline may have passed.
    Tick,
}

/// Messages for the supervisor's own service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upward {
    Ready,
    Reloading,
    Stopping,
    Status(String),
    Watchdog,
    ExtendTimeout(Duration),
}

/// What became of a restart that was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Restarted {
        generation: u64,
        pids: Vec<Pid>,
        spawn_to_ready: Duration,
        /// From telling the old generation to stop until its last worker exited.
        signal_to_old_gone: Option<Duration>,
    },
    Failed {
        generation: Option<u64>,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Spawn {
        generation: u64,
        index: usize,
    },
    Signal {
        pid: Pid,
        signal: Signal,
    },
    /// SIGKILL to the worker's whole process group.
    KillGroup {
        pid: Pid,
    },
    Log(Event),
    WriteStatus(Vec<(u64, Pid)>),
    Notify(Upward),
    Reply {
        request: RequestId,
        outcome: Outcome,
    },
    Exit(i32),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Generation switches.
    pub restarts: u64,
    /// Generations that failed to start.
    pub failures: u64,
    /// Serving workers that died and were started again.
    pub respawns: u64,
}

/// A generation as the status command shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub generation: u64,
    pub phase: &'static str,
    pub pids: Vec<Pid>,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
    pub signalled_at: Option<Instant>,
}

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
        fx.push(Effect::Log(Event::ReceivedHup));
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

    fn ready_message(&mut self, now: Instant, pid: Pid, fx: &mut Vec<Effect>) {
        if self.policy.ready == ReadyMode::Alive || self.stopping.is_some() {
            return;
        }
        if let Some(worker) = self.current.as_mut().and_then(|g| g.worker(pid)) {
            worker.ready = true;
        }
        let Some(worker) = self.candidate.as_mut().and_then(|c| c.worker(pid)) else { return };
        worker.ready = true;
        if self.candidate.as_ref().is_some_and(Generation::all_ready) {
            self.generation_ready(now, true, fx);
        }
    }

    fn generation_ready(&mut self, now: Instant, notified: bool, fx: &mut Vec<Effect>) {
        let Some(mut next) = self.candidate.take() else { return };
        next.ready_at = Some(now);
        let (generation, pids) = (next.number, next.pids());
        fx.push(Effect::Log(Event::Ready { generation, pids, after: now - next.spawned_at, notified }));
        if let Some(prev) = self.current.replace(next) {
            self.counters.restarts += 1;
            self.old.push(prev);
            self.retire_old(now, fx);
        }
        fx.push(self.status());
        if !self.announced || self.reloading {
            self.announced = true;
            self.reloading = false;
            fx.push(Effect::Notify(Upward::Ready));
        }
        fx.push(Effect::Notify(Upward::Status(format!("generation {generation} serving"))));
        self.answer_waiters(now, fx);
        if self.pending_restart {
            self.mark_reloading(fx);
            self.spawn_generation(now, fx);
        }
    }

    /// Tell every old generation not yet told to stop, now or after the delay.
    fn retire_old(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let signal = self.policy.signal_on_hup;
        let delay = self.policy.kill_old_delay;
        let waiting = |g: &&mut Generation| g.signalled_at.is_none() && g.signal_at.is_none();
        let pids: Vec<Pid> = self.old.iter_mut().filter(waiting).flat_map(|g| g.pids()).collect();
        fx.push(Effect::Log(Event::NowRunning { signal, old: pids }));
        if delay.is_zero() {
            fx.push(Effect::Log(Event::KillingOld));
        } else {
            fx.push(Effect::Log(Event::SleepingBeforeKill { secs: delay.as_secs() }));
        }
        for old in self.old.iter_mut().filter(waiting) {
            if delay.is_zero() {
                old.signalled_at = Some(now);
                fx.extend(old.pids().into_iter().map(|pid| Effect::Signal { pid, signal }));
            } else {
                old.signal_at = Some(now + delay);
            }
        }
        if let Some(current) = self.current.as_mut().filter(|_| delay.is_zero()) {
            current.predecessor_signalled_at = Some(now);
        }
    }

    /// Answer the restart requests whose generation serves alone (or was overtaken).
    fn answer_waiters(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(current) = &self.current else { return };
        let older_alive = self.old.iter().any(|g| g.number < current.number);
        let outcome = Outcome::Restarted {
            generation: current.number,
            pids: current.pids(),
            spawn_to_ready: current.ready_at.map_or(Duration::ZERO, |t| t - current.spawned_at),
            signal_to_old_gone: current.predecessor_signalled_at.map(|t| now - t),
        };
        let settled = |g: u64| g < current.number || (g == current.number && !older_alive);
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.waiters.drain(..).partition(|(_, g)| g.is_some_and(settled));
        self.waiters = waiting;
        let replaced = current.predecessor_signalled_at.is_some();
        if !done.is_empty() || (replaced && !older_alive) {
            self.last_outcome = Some(outcome.clone());
        }
        for (request, _) in done {
            fx.push(Effect::Reply { request, outcome: outcome.clone() });
        }
    }

    fn terminate(&mut self, now: Instant, received: Signal, fx: &mut Vec<Effect>) {
        if self.stopping.is_some() {
            fx.push(Effect::Log(Event::IgnoredDuringShutdown { signal: received }));
            return;
        }
        let sending = if received == Signal::SIGINT { Signal::SIGTERM } else { self.policy.signal_on_term };
        let pids = self.live_pids();
        fx.push(Effect::Log(Event::ShutdownReceived { received, sending, pids }));
        self.stop(now, sending, 0, fx);
    }

    /// Stop every worker with `sending`; exit with `code` once all are gone.
    fn stop(&mut self, now: Instant, sending: Signal, code: i32, fx: &mut Vec<Effect>) {
        let pids = self.live_pids();
        fx.push(Effect::Notify(Upward::Stopping));
        if let Some(t) = self.policy.stop_timeout {
            fx.push(Effect::Notify(Upward::ExtendTimeout(t + Duration::from_secs(5))));
        }
        fx.extend(pids.iter().map(|&pid| Effect::Signal { pid, signal: sending }));
        for (request, _) in self.waiters.drain(..) {
            fx.push(Effect::Reply { request, outcome: stopping_outcome() });
        }
        self.stopping = Some(Stopping { since: now, killed: false, code });
        self.next_spawn_at = None;
        self.pending_restart = false;
        let generations = self.candidate.iter_mut().chain(self.current.iter_mut()).chain(self.old.iter_mut());
        for g in generations {
            g.drop_unborn();
            g.signal_at = None;
            g.signalled_at.get_or_insert(now);
        }
        self.finish_if_done(fx);
    }

    /// Remove a worker that has exited from whichever generation held it.
    fn forget(&mut self, pid: Pid) {
        let all = self.candidate.iter_mut().chain(self.current.iter_mut()).chain(self.old.iter_mut());
        for g in all {
            g.workers.retain(|w| w.pid != Some(pid));
        }
        self.candidate.take_if(|g| g.workers.is_empty());
        self.current.take_if(|g| g.workers.is_empty());
        self.old.retain(|g| !g.workers.is_empty());
    }

    fn live_pids(&self) -> Vec<Pid> {
        let all = self.candidate.iter().chain(self.current.iter()).chain(self.old.iter());
        let mut pids: Vec<Pid> = all.flat_map(Generation::pids).collect();
        pids.sort_unstable();
        pids
    }

    fn finish_if_done(&mut self, fx: &mut Vec<Effect>) {
        if let Some(stopping) = &self.stopping
            && self.live_pids().is_empty()
        {
            fx.push(Effect::Log(Event::Exiting));
            fx.push(Effect::Exit(stopping.code));
        }
    }

    fn spawn_failed(
        &mut self,
        now: Instant,
        generation: u64,
        index: usize,
        error: SpawnError,
        fx: &mut Vec<Effect>,
    ) {
        let code = error.exit_code();
        let reason = error.to_string();
        fx.push(Effect::Log(Event::SpawnFailed { generation, error }));
        if self.candidate.as_ref().is_some_and(|c| c.number == generation) {
            if let Some(c) = self.candidate.as_mut() {
                c.workers.retain(|w| w.index != index);
            }
            let first = !self.announced && self.current.is_none();
            self.fail_candidate(now, reason, fx);
            if first && self.stopping.is_none() {
                // The first generation cannot even be executed: a config error.
                self.stop(now, Signal::SIGTERM, code, fx);
            }
        } else if let Some(current) = self.current.as_mut().filter(|g| g.number == generation) {
            let interval = self.policy.interval;
            if let Some(w) = current.workers.iter_mut().find(|w| w.index == index) {
                w.respawn_at = Some(now + interval);
            }
        }
    }

    /// The starting generation failed: stop what runs of it, answer those
    /// waiting for it, try again (unless stopping).
    fn fail_candidate(&mut self, now: Instant, reason: String, fx: &mut Vec<Effect>) {
        let Some(mut failed) = self.candidate.take() else { return };
        self.counters.failures += 1;
        let generation = failed.number;
        let outcome = Outcome::Failed { generation: Some(generation), reason: reason.clone() };
        let (answered, waiting): (Vec<_>, Vec<_>) =
            self.waiters.drain(..).partition(|(_, g)| *g == Some(generation));
        self.waiters = waiting;
        for (request, _) in answered {
            fx.push(Effect::Reply { request, outcome: outcome.clone() });
        }
        self.last_outcome = Some(outcome);
        failed.drop_unborn();
        if !failed.workers.is_empty() {
            fx.extend(failed.pids().into_iter().map(|pid| Effect::Signal { pid, signal: Signal::SIGTERM }));
            failed.signalled_at = Some(now);
            self.old.push(failed);
            fx.push(self.status());
        }
        if self.reloading {
            self.reloading = false;
            let serving = self.current.as_ref().map_or(0, |g| g.number);
            let text = format!(
                "restart to generation {generation} failed ({reason}); generation {serving} still serving"
            );
            fx.push(Effect::Notify(Upward::Status(text)));
            fx.push(Effect::Notify(Upward::Ready));
        }
        if self.stopping.is_some() {
            return;
        }
        if !self.announced {
            self.start_failures += 1;
            if self.policy.max_start_attempts.is_some_and(|max| self.start_failures >= max) {
                let attempts = self.start_failures;
                fx.push(Effect::Log(Event::GaveUp { attempts, reason }));
                return self.stop(now, Signal::SIGTERM, 1, fx);
            }
        }
        self.schedule_spawn(now);
    }

    fn exited(&mut self, now: Instant, pid: Pid, status: ExitStatus, fx: &mut Vec<Effect>) {
        let stopping = self.stopping.is_some();
        let code = status.shell_code();
        let ours = self.candidate.iter().chain(self.current.iter()).any(|g| g.has(pid));
        if ours && !stopping && self.policy.stop_on_exit.contains(&code) {
            fx.push(Effect::Log(Event::StopOnExit { pid, status, code }));
            self.forget(pid);
            fx.push(self.status());
            return self.stop(now, self.policy.signal_on_term, code, fx);
        }
        if let Some(c) = self.candidate.as_mut().filter(|c| c.has(pid)) {
            let (generation, lived) = (c.number, now - c.spawned_at);
            c.workers.retain(|w| w.pid != Some(pid));
            if stopping {
                fx.push(Effect::Log(Event::WorkerDied { pid, status }));
                if c.workers.is_empty() {
                    self.candidate = None;
                }
                return self.finish_if_done(fx);
            }
            fx.push(Effect::Log(Event::FailedToStart { pid, status }));
            let mut reason = format!("worker {pid} {status}");
            if let Some(hint) = diagnose(status, lived, self.policy.interval) {
                fx.push(Effect::Log(Event::Diagnosis { generation, status, hint }));
                reason = format!("{reason}; {hint}");
            }
            self.fail_candidate(now, reason, fx);
        } else if let Some(current) = self.current.as_mut().filter(|g| g.has(pid)) {
            if stopping {
                current.workers.retain(|w| w.pid != Some(pid));
                if current.workers.is_empty() {
                    self.current = None;
                }
                fx.push(Effect::Log(Event::WorkerDied { pid, status }));
                fx.push(self.status());
                return self.finish_if_done(fx);
            }
            fx.push(Effect::Log(Event::DiedUnexpectedly { pid, status }));
            self.counters.respawns += 1;
            if current.any_alive_besides(pid) {
                let interval = self.policy.interval;
                if let Some(w) = current.worker(pid) {
                    w.respawn_at = Some((w.spawned_at + interval).max(now));
                    w.pid = None;
                    w.ready = false;
                }
            } else {
                self.current = None;
                if self.candidate.is_none() {
                    self.schedule_spawn(now);
                }
            }
            fx.push(self.status());
        } else if let Some(at) = self.old.iter().position(|g| g.has(pid)) {
            self.old[at].workers.retain(|w| w.pid != Some(pid));
            if self.old[at].workers.is_empty() {
                self.old.remove(at);
            }
            let event =
                if stopping { Event::WorkerDied { pid, status } } else { Event::OldDied { pid, status } };
            fx.push(Effect::Log(event));
            fx.push(self.status());
            self.answer_waiters(now, fx);
            self.finish_if_done(fx);
        }
    }

    fn tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.next_watchdog.is_some_and(|at| at <= now) {
            fx.push(Effect::Notify(Upward::Watchdog));
            self.next_watchdog = self.policy.watchdog.map(|every| now + every);
        }
        self.tick_old(now, fx);
        if let Some(stopping) = &mut self.stopping {
            let due = self.policy.stop_timeout.filter(|t| stopping.since + *t <= now);
            if let Some(after) = due.filter(|_| !stopping.killed) {
                stopping.killed = true;
                let pids = self.live_pids();
                fx.push(Effect::Log(Event::StopTimeout { pids: pids.clone(), after }));
                fx.extend(pids.into_iter().map(|pid| Effect::KillGroup { pid }));
            }
            return;
        }
        self.tick_probation(now, fx);
        self.tick_respawns(now, fx);
        if self.restart_on_change_at.is_some_and(|at| at <= now) {
            self.restart_on_change_at = None;
            fx.push(Effect::Log(Event::FilesChanged));
            self.restart(now, None, fx);
        }
        if self.next_spawn_at.is_some_and(|at| at <= now) {
            self.spawn_generation(now, fx);
        }
        if self.auto_restart_at().is_some_and(|at| at <= now) {
            let interval = self.policy.auto_restart.unwrap_or_default().as_secs();
            let forced = !self.old.is_empty();
            fx.push(Effect::Log(Event::AutoRestart { interval, forced }));
            self.mark_reloading(fx);
            self.spawn_generation(now, fx);
        }
    }

    /// Alive-readiness for starting workers; the ready timeout in notify mode.
    fn tick_probation(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let interval = self.policy.interval;
        let alive = |g: &mut Generation| {
            for w in g.workers.iter_mut().filter(|w| w.pid.is_some() && w.spawned_at + interval <= now) {
                w.ready = true;
            }
        };
        if self.policy.ready != ReadyMode::Notify {
            self.current.iter_mut().chain(self.candidate.iter_mut()).for_each(alive);
            if self.candidate.as_ref().is_some_and(Generation::all_ready) {
                self.generation_ready(now, false, fx);
            }
        } else if let Some(c) = &self.candidate
            && self.candidate_deadline(c).is_some_and(|at| at <= now)
        {
            let (generation, after) = (c.number, now - c.spawned_at);
            let pids = c.workers.iter().filter(|w| !w.ready).filter_map(|w| w.pid).collect();
            fx.push(Effect::Log(Event::ReadyTimeout { generation, pids, after }));
            let reason = format!("not ready after {}", humantime::format_duration(after));
            self.fail_candidate(now, reason, fx);
        }
    }

    /// Start again, alone, the serving workers whose turn has come.
    fn tick_respawns(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(current) = self.current.as_mut() else { return };
        for w in current.workers.iter_mut().filter(|w| w.respawn_at.is_some_and(|at| at <= now)) {
            w.respawn_at = None;
            w.spawned_at = now;
            fx.push(Effect::Spawn { generation: current.number, index: w.index });
        }
    }

    fn tick_old(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let signal = self.policy.signal_on_hup;
        if self.old.iter().any(|g| g.signal_at.is_some_and(|at| at <= now)) {
            fx.push(Effect::Log(Event::KillingOld));
            if let Some(current) = self.current.as_mut() {
                current.predecessor_signalled_at = Some(now);
            }
        }
        for old in &mut self.old {
            if old.signal_at.is_some_and(|at| at <= now) {
                old.signal_at = None;
                old.signalled_at = Some(now);
                fx.extend(old.pids().into_iter().map(|pid| Effect::Signal { pid, signal }));
            }
            let Some(drain) = self.policy.drain_timeout else { continue };
            if let Some(at) = old.signalled_at.filter(|at| !old.killed && *at + drain <= now) {
                old.killed = true;
                for pid in old.pids() {
                    fx.push(Effect::Log(Event::DrainTimeout { pid, after: now - at }));
                    fx.push(Effect::KillGroup { pid });
                }
            }
        }
    }
}

fn stopping_outcome() -> Outcome {
    Outcome::Failed { generation: None, reason: "the supervisor is stopping".into() }
}

/// A hint for a worker that did not survive its start, where one is clear.
fn diagnose(status: ExitStatus, lived: Duration, interval: Duration) -> Option<&'static str> {
    match status {
        ExitStatus::Code(127) => Some("the shell could not find a command (exit 127)"),
        ExitStatus::Code(126) => Some("a command is not executable (exit 126)"),
        ExitStatus::Signal { signal: libc::SIGKILL, .. } => {
            Some("killed by SIGKILL from outside (out of memory?)")
        }
        ExitStatus::Code(code) if code != 0 && lived < interval => Some(
            "it failed during startup. If its log says \"Address already in use\", it binds the port itself: \
             make it use the inherited socket (SERVER_STARTER_PORT, LISTEN_FDS or fd 3)",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
