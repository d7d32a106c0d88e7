//! The lifecycle policy as a pure state machine.
//!
//! `Machine::handle(now, input)` returns the effects to perform; it makes no
//! syscalls and reads no clock (`now` is a `Moment` of `time.rs`, read by
//! the supervisor through `sys`), so every rule below is tested by tables and
//! by random runs (`machine/tests/`). The event loop feeds it inputs
//! (signals, exits, READY=1, control requests, timer ticks) through
//! `driver::feed`, which the tests use too, performs the effects, and
//! sleeps until `next_deadline()`.
//!
//! Invariants (the types of `state.rs` hold the first two; `check.rs`
//! checks the machine's state against them, after every step of the random
//! runs of `tests/properties.rs` and on every snapshot restored by
//! `snapshot.rs`; the runs check the effects too, all but the rate limit):
//! - At most one generation is starting (`Slot::Starting`) at a time. A
//!   restart asked for during a start is coalesced into one pending
//!   restart, taken as soon as the start ends; any spawn satisfies every
//!   request before it. Every restart request is answered once, at the
//!   latest when stopping begins.
//! - Once stopping, nothing is spawned: only `Running` can spawn.
//! - Generation numbers strictly increase, failed generations included.
//! - A probation window is never shortened by a signal: alive-readiness is
//!   `spawned_at + interval`, whatever else arrives meanwhile; in notify
//!   mode a generation gets its whole ready timeout.
//! - Auto mode learns: once a worker has sent `READY=1`, every worker not
//!   yet ready (those of a generation starting then included, and workers
//!   respawned later) is ready only on its own `READY=1`, as in notify
//!   mode, for the rest of the supervisor's life. Learning adds a
//!   condition; it never makes a probation shorter.
//! - Seen accepting (`Input::Accepting`, a process of a starting worker
//!   waiting for connections on a listener) makes the worker ready in auto
//!   mode until learned and in accepting mode. Where the supervisor
//!   watches (`Policy::observe`), alive after `interval` holds in those
//!   modes only for a worker it cannot see (`Input::Unobservable`); the
//!   others wait for evidence, within the ready timeout.
//! - The serving generation is told to stop only after all N workers of
//!   its successor are ready; a successor that fails is stopped and the
//!   serving one is untouched.
//! - A dead serving worker with live siblings is respawned alone, in its
//!   generation; a generation left with no worker is replaced by a new one
//!   (start_server's numbering). Spawns of a slot or a generation happen at
//!   most once per `interval`, except restarts asked for, which start at
//!   once unless a generation waits for its turn (a retry, a replacement):
//!   they wait with it, as it runs the newest code.
//! - A draining generation holds live workers only and goes with the last.
//! - Nothing told to stop is waited for without bound unless it served:
//!   a generation that never became ready is killed `--ready-timeout`
//!   after it was told (or as `--drain-timeout`/`--stop-timeout` say).
//! - After a `Tick` at `now`, `next_deadline()` is later than `now`: nothing
//!   due is left for later.
pub use time::Moment;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use event::{Event, Pid};

mod check;
pub mod driver;
pub mod event;
mod exits;
mod generation;
mod ready;
pub mod snapshot;
mod state;
pub mod time;
mod types;

use exits::stopping_outcome;

use generation::{Draining, Generation, Live, Worker};
use ready::Told;
use state::{Manager, Phase, Running, Slot, Vacancy};
pub use types::*;

/// The machine's state derives serde: it is what a self-upgrade carries
/// (`snapshot.rs`), every field but the policy, which the new image
/// rebuilds from its command line. A field added later needs
/// `#[serde(default)]`: records written before it lack it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    #[serde(skip, default = "snapshot::unset_policy")]
    policy: Policy,
    phase: Phase,
    /// The serving generation.
    #[serde(default)]
    current: Option<Generation>,
    /// Generations told to stop (or about to be): replaced ones draining,
    /// failed starts being stopped.
    #[serde(default)]
    old: Vec<Draining>,
    /// Control requests and the generation that answers them (None: not spawned yet).
    #[serde(default)]
    waiters: Vec<(RequestId, Option<u64>)>,
    manager: Manager,
    #[serde(default)]
    next_watchdog: Option<Moment>,
    #[serde(default)]
    counters: Counters,
    #[serde(default)]
    last_outcome: Option<Outcome>,
    /// Auto mode: a worker sent `READY=1`, so new workers must too.
    #[serde(default)]
    learned: bool,
}

impl Machine {
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            phase: Phase::Running(Running::default()),
            current: None,
            old: Vec::new(),
            waiters: Vec::new(),
            manager: Manager::Starting,
            next_watchdog: None,
            counters: Counters::default(),
            last_outcome: None,
            learned: false,
        }
    }

    pub fn handle(&mut self, now: Moment, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start => {
                self.next_watchdog = self.policy.watchdog.map(|every| now + every);
                if let Some(vacancy) = self.phase.running_mut().and_then(Running::vacancy) {
                    vacancy.start(now, &self.policy, &mut self.waiters, &mut fx);
                }
            }
            Input::Spawned { generation, index, pid } => {
                let slot = self
                    .generation_mut(generation)
                    .and_then(|g| g.workers.iter_mut().find(|w| w.index() == index));
                if let Some(worker) = slot
                    && let Worker::Starting { spawned_at, .. } = *worker
                {
                    *worker = Worker::Live(Live { index, pid, spawned_at, ready: false, blind: false });
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
            Input::Accepting { pid, member, sighting } => self.accepting(now, pid, member, sighting, &mut fx),
            Input::Unobservable { pid } => {
                self.generations_mut().filter_map(|g| g.live(pid)).for_each(|w| w.blind = true);
            }
            Input::Hup => self.restart(now, None, &mut fx),
            Input::Restart { request } => self.restart(now, Some(request), &mut fx),
            Input::Terminate(signal) => self.terminate(now, signal, &mut fx),
            Input::Forward(signal) => {
                let pids = self.current.as_ref().map(Generation::pids).unwrap_or_default();
                fx.extend(pids.iter().map(|&pid| Effect::Signal { pid, signal }));
                fx.push(Effect::Log(Event::Forwarded { signal, pids }));
            }
            Input::Changed => {
                if let Some(running) = self.phase.running_mut() {
                    running.restart_on_change_at = Some(now + self.policy.watch_debounce);
                }
            }
            Input::Tick => self.tick(now, &mut fx),
        }
        fx
    }

    /// The earliest instant at which a `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Moment> {
        let mut deadlines: Vec<Moment> = Vec::new();
        deadlines.extend(self.next_watchdog);
        match &self.phase {
            Phase::Stopping(stopping) => {
                deadlines.extend(
                    self.policy.stop_timeout.filter(|_| !stopping.killed).map(|t| stopping.since + t),
                );
                if let Some(g) = &stopping.starting {
                    deadlines.extend(ready::kill_at(&self.policy, true, Told::Starting, g).map(|(at, _)| at));
                }
            }
            Phase::Running(running) => {
                deadlines.extend(running.slot.scheduled_at());
                deadlines.extend(running.restart_on_change_at);
                if let Some(c) = running.slot.candidate() {
                    deadlines.extend(self.candidate_deadline(c));
                }
                if let Some(current) = &self.current {
                    deadlines.extend(current.workers.iter().filter_map(Worker::respawn_at));
                    deadlines.extend(self.probation_ends(current, false));
                }
                deadlines.extend(self.auto_restart_at());
            }
        }
        for old in &self.old {
            deadlines.extend(old.due_at());
            deadlines.extend(ready::kill_at(&self.policy, self.stopping(), Told::Old, old).map(|(at, _)| at));
        }
        deadlines.into_iter().min()
    }

    pub fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping(_))
    }

    /// Whether `pid` is a worker that was told to stop and whose exit
    /// counts only once its whole process group is gone: draining, or a
    /// failed start being stopped; once stopping, every worker when
    /// `--stop-timeout` bounds the wait (without it, group members left
    /// behind are the orphans' business, with their grace).
    pub fn told_to_stop(&self, pid: Pid) -> bool {
        match self.phase {
            Phase::Stopping(_) => self.policy.stop_timeout.is_some(),
            Phase::Running(_) => self.old.iter().any(|g| g.generation.has(pid)),
        }
    }

    /// Whether the service manager was told `READY=1` last (not starting,
    /// not in a reload): a self-upgrade then says `RELOADING=1` and
    /// `READY=1` around itself.
    pub fn manager_ready(&self) -> bool {
        self.manager == Manager::Ready
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn last_outcome(&self) -> Option<&Outcome> {
        self.last_outcome.as_ref()
    }

    /// The `--ready` mode given, and whether auto mode has learned that
    /// workers send `READY=1`.
    pub fn readiness(&self) -> (ReadyMode, bool) {
        (self.policy.ready, self.learned)
    }

    /// Whether starting workers are watched for accepting (`Policy::observe`).
    pub fn observes(&self) -> bool {
        self.policy.observe && !self.stopping()
    }

    /// The rule for workers not ready yet: auto mode turns into notify mode
    /// once it has learned.
    fn rule(&self) -> ReadyMode {
        match self.policy.ready {
            ReadyMode::Auto if self.learned => ReadyMode::Notify,
            mode => mode,
        }
    }

    /// Every generation with a live or starting worker, oldest first.
    pub fn views(&self) -> Vec<View> {
        let view = |g: &Generation, role, signalled_at| View {
            generation: g.number,
            role,
            pids: g.pids(),
            spawned_at: g.spawned_at,
            ready_at: g.ready_at,
            signalled_at,
        };
        let mut views: Vec<View> =
            self.old.iter().map(|d| view(&d.generation, Role::Draining, d.told_at())).collect();
        // Once stopping, every generation was told when it began.
        let since = if let Phase::Stopping(stopping) = &self.phase { Some(stopping.since) } else { None };
        views.extend(self.current.iter().map(|g| view(g, Role::Serving, since)));
        views.extend(self.candidate().map(|g| view(g, Role::Starting, since)));
        views.sort_by_key(|v| v.generation);
        views
    }

    /// The starting generation (or, once stopping, the one that was).
    fn candidate(&self) -> Option<&Generation> {
        match &self.phase {
            Phase::Running(running) => running.slot.candidate(),
            Phase::Stopping(stopping) => stopping.starting.as_ref().map(|d| &d.generation),
        }
    }

    fn generations_mut(&mut self) -> impl Iterator<Item = &mut Generation> {
        let candidate = match &mut self.phase {
            Phase::Running(running) => running.slot.candidate_mut(),
            Phase::Stopping(stopping) => stopping.starting.as_mut().map(|d| &mut d.generation),
        };
        let old = self.old.iter_mut().map(|d| &mut d.generation);
        candidate.into_iter().chain(self.current.iter_mut()).chain(old)
    }

    fn generations(&self) -> impl Iterator<Item = &Generation> {
        let old = self.old.iter().map(|d| &d.generation);
        self.candidate().into_iter().chain(self.current.iter()).chain(old)
    }

    fn generation_mut(&mut self, number: u64) -> Option<&mut Generation> {
        self.generations_mut().find(|g| g.number == number)
    }

    /// Live generations for the status file: serving and draining.
    fn status(&self) -> Effect {
        let mut lines: Vec<(u64, Pid)> = self.current.iter().flat_map(Generation::lines).collect();
        lines.extend(self.old.iter().flat_map(|d| d.generation.lines()));
        lines.sort_unstable();
        Effect::WriteStatus(lines)
    }

    fn restart(&mut self, now: Moment, request: Option<RequestId>, fx: &mut Vec<Effect>) {
        let Some(running) = self.phase.running_mut() else {
            match request {
                Some(request) => fx.push(Effect::Reply { request, outcome: stopping_outcome() }),
                None => fx.push(Effect::Log(Event::IgnoredDuringShutdown { signal: Signal::SIGHUP })),
            }
            return;
        };
        if let Some(request) = request {
            self.waiters.push((request, None));
        }
        if let Slot::Starting { candidate, pending } = &mut running.slot {
            *pending = true;
            fx.push(Effect::Log(Event::HupCoalesced { generation: candidate.number }));
            self.manager.reloading(fx);
            return;
        }
        fx.push(Effect::Log(if request.is_some() { Event::RestartRequested } else { Event::ReceivedHup }));
        self.manager.reloading(fx);
        // A generation waiting for its slot will run the newest code anyway.
        if let Some(vacancy) = running.vacancy().filter(Vacancy::empty) {
            vacancy.start(now, &self.policy, &mut self.waiters, fx);
        }
    }

    /// When the candidate's probation ends for a worker, or it misses the
    /// ready timeout, whichever is first.
    fn candidate_deadline(&self, c: &Generation) -> Option<Moment> {
        let timeout = self.policy.ready_timeout.filter(|_| self.awaits_evidence(c)).map(|t| c.spawned_at + t);
        self.probation_ends(c, true).into_iter().chain(timeout).min()
    }

    /// Whether a worker of the candidate `c` not ready yet waits for
    /// evidence (`READY=1`, seen accepting) rather than for time.
    fn awaits_evidence(&self, c: &Generation) -> bool {
        let waits = |blind| !alive_counts(self.rule(), self.policy.observe, blind, true);
        c.workers.iter().any(|w| w.live().map_or(waits(false), |w| !w.ready && waits(w.blind)))
    }

    /// When the next worker of `g` that is not ready yet and that the alive
    /// rule holds for has been alive an interval.
    fn probation_ends(&self, g: &Generation, candidate: bool) -> Option<Moment> {
        let live = g.workers.iter().filter_map(Worker::live);
        let waiting =
            live.filter(|w| !w.ready && alive_counts(self.rule(), self.policy.observe, w.blind, candidate));
        waiting.map(|w| w.spawned_at + self.policy.interval).min()
    }

    fn auto_restart_at(&self) -> Option<Moment> {
        let interval = self.policy.auto_restart?;
        let idle = matches!(self.phase.running()?.slot, Slot::Empty);
        let since = self.current.as_ref().filter(|_| idle)?.ready_at?;
        Some(if self.old.is_empty() { since + interval } else { since + 2 * interval })
    }
}

/// Whether a worker not ready yet becomes ready by being alive an
/// interval under `rule`: in alive mode; in auto and accepting modes when
/// it cannot be watched (`blind`, or nothing is: not `observe`), and always
/// for a serving generation's respawned workers (not `candidate`: the
/// generation serves already).
fn alive_counts(rule: ReadyMode, observe: bool, blind: bool, candidate: bool) -> bool {
    match rule {
        ReadyMode::Alive => true,
        ReadyMode::Notify => false,
        ReadyMode::Auto | ReadyMode::Accepting => !candidate || !observe || blind,
    }
}

#[cfg(test)]
mod tests;
