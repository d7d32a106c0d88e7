//! The machine's phases as types, so that what must not happen cannot be
//! written down.
//!
//! - Only `Running` holds the means to spawn (`Running::start`,
//!   `Running::spawn`): once the machine is `Stopping`, there is no
//!   `Running` to call them on, so nothing is spawned.
//! - A starting generation lives only in `Slot::Starting`. A generation is
//!   started (or scheduled) only through a `Vacancy`, which
//!   `Running::vacancy` gives only while the slot holds none and which
//!   borrows the `Running` until it is used: there is never a second
//!   candidate. A generation waiting for the rate limit (`Slot::Scheduled`)
//!   and a starting one exclude each other.
//! - What the service manager was told is one `Manager` value: `RELOADING=1`
//!   cannot be said before the first `READY=1`.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::Moment;

use super::generation::{Draining, Generation};
use super::{Effect, Policy, RequestId, Upward};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Phase {
    Running(Running),
    Stopping(Stopping),
}

/// Serving, starting, restarting: the only phase that spawns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Running {
    /// The last `SERVER_STARTER_GENERATION` handed out; failed ones count.
    generation: u64,
    #[serde(default)]
    last_spawn_at: Option<Moment>,
    pub slot: Slot,
    /// Failed starts of the first generation, in a row.
    #[serde(default)]
    pub start_failures: u32,
    /// A watched change restarts at this time (pushed back by each change).
    #[serde(default)]
    pub restart_on_change_at: Option<Moment>,
}

/// Where the next generation is: starting, waiting for its turn, or nowhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Slot {
    #[default]
    Empty,
    /// A new generation waits for the rate limit (a retry, or a replacement
    /// for a serving generation left with no worker).
    Scheduled { at: Moment },
    /// `pending`: a restart was asked for meanwhile; it follows this one.
    Starting {
        candidate: Generation,
        #[serde(default)]
        pending: bool,
    },
}

/// Shutting down: every worker was told to stop; the machine exits with
/// `code` when the last one is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stopping {
    pub since: Moment,
    /// The stop timeout passed: SIGKILL went to every group.
    #[serde(default)]
    pub killed: bool,
    pub code: i32,
    /// The generation that was starting when the stop began: stopped with
    /// the others, never promoted.
    #[serde(default)]
    pub starting: Option<Draining>,
}

/// What the supervisor's own service manager was told last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Manager {
    /// Nothing: the first generation is not ready yet.
    Starting,
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`: a restart is under way.
    Reloading,
}

impl Phase {
    pub fn running(&self) -> Option<&Running> {
        if let Phase::Running(running) = self { Some(running) } else { None }
    }

    pub fn running_mut(&mut self) -> Option<&mut Running> {
        if let Phase::Running(running) = self { Some(running) } else { None }
    }
}

impl Running {
    /// The slot, when no generation is starting in it.
    pub fn vacancy(&mut self) -> Option<Vacancy<'_>> {
        self.slot.candidate().is_none().then_some(Vacancy(self))
    }

    /// The one way to a spawn: there is no `Running` once stopping.
    pub fn spawn(&self, generation: u64, index: usize) -> Effect {
        debug_assert!(generation <= self.generation);
        Effect::Spawn { generation, index }
    }

    /// The last generation number handed out.
    pub fn last_generation(&self) -> u64 {
        self.generation
    }

    pub fn last_spawn_at(&self) -> Option<Moment> {
        self.last_spawn_at
    }
}

/// A `Running` whose slot holds no starting generation, held until a
/// generation is started or scheduled in it.
pub(super) struct Vacancy<'a>(&'a mut Running);

impl Vacancy<'_> {
    /// Whether nothing waits for its turn either.
    pub fn empty(&self) -> bool {
        matches!(self.0.slot, Slot::Empty)
    }

    /// Spawn a new generation into the slot; every request not yet bound
    /// to a generation is answered by this one.
    pub fn start(
        self,
        now: Moment,
        policy: &Policy,
        waiters: &mut [(RequestId, Option<u64>)],
        fx: &mut Vec<Effect>,
    ) {
        let running = self.0;
        running.generation += 1;
        let generation = running.generation;
        let candidate = Generation::new(generation, policy.workers, now);
        running.slot = Slot::Starting { candidate, pending: false };
        running.last_spawn_at = Some(now);
        for waiter in waiters.iter_mut().filter(|(_, g)| g.is_none()) {
            waiter.1 = Some(generation);
        }
        fx.extend((0..policy.workers).map(|index| running.spawn(generation, index)));
    }

    /// A new generation, no sooner than one interval after the last one.
    pub fn schedule(self, now: Moment, interval: Duration) {
        let earliest = self.0.last_spawn_at.map_or(now, |t| t + interval);
        self.0.slot = Slot::Scheduled { at: earliest.max(now) };
    }
}

impl Slot {
    pub fn candidate(&self) -> Option<&Generation> {
        if let Slot::Starting { candidate, .. } = self { Some(candidate) } else { None }
    }

    pub fn candidate_mut(&mut self) -> Option<&mut Generation> {
        if let Slot::Starting { candidate, .. } = self { Some(candidate) } else { None }
    }

    pub fn scheduled_at(&self) -> Option<Moment> {
        if let Slot::Scheduled { at } = self { Some(*at) } else { None }
    }

    /// The starting generation and whether a restart is pending, leaving the slot empty.
    pub fn take(&mut self) -> Option<(Generation, bool)> {
        match std::mem::replace(self, Slot::Empty) {
            Slot::Starting { candidate, pending } => Some((candidate, pending)),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl Manager {
    pub fn announced(self) -> bool {
        self != Manager::Starting
    }

    /// `RELOADING=1`, once per reload, and only to a manager told `READY=1`.
    pub fn reloading(&mut self, fx: &mut Vec<Effect>) {
        if *self == Manager::Ready {
            *self = Manager::Reloading;
            fx.push(Effect::Notify(Upward::Reloading));
        }
    }

    /// `READY=1`: the first generation, or the end of a reload.
    pub fn ready(&mut self, fx: &mut Vec<Effect>) {
        if *self != Manager::Ready {
            *self = Manager::Ready;
            fx.push(Effect::Notify(Upward::Ready));
        }
    }
}
