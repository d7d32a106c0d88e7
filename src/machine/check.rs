//! The invariants of `mod.rs` as a check of the machine's inner state.
//!
//! Two users: the random runs of `tests/properties.rs` check it after every
//! step, and `snapshot.rs` runs it on every restored machine, which is
//! trusted only if a machine could be in that state. So every rule here
//! holds between any two inputs of a real run (the random runs say so),
//! and together they keep `handle` from misbehaving on restored state: no
//! signal to pid 0 or a negative pid, no counter about to overflow, no
//! generation that can never be ready or never be gone.
use std::collections::HashSet;

use super::generation::Worker;
use super::state::{Manager, Phase, Slot};
use super::*;
use crate::error::{Error, Result};

impl Machine {
    /// What must hold between any two inputs; Err names the first thing that does not.
    pub(super) fn check_invariants(&self) -> Result<()> {
        self.check_workers()?;
        self.check_generations()?;
        match &self.phase {
            Phase::Running(_) => self.check_running(),
            Phase::Stopping(_) => self.check_stopping(),
        }
    }

    /// Every worker: a process of its own, one place in its generation.
    fn check_workers(&self) -> Result<()> {
        let mut pids: HashSet<Pid> = HashSet::new();
        for g in self.generations() {
            let mut indices: HashSet<usize> = HashSet::new();
            for w in &g.workers {
                let (n, index) = (self.policy.workers, w.index());
                let what = || format!("generation {}: worker {index} is out of 0..{n} or twice", g.number);
                ensure(index < n && indices.insert(index), what)?;
                if let Some(pid) = w.pid() {
                    ensure(pid > 0, || format!("generation {}: pid {pid} is not a process", g.number))?;
                    ensure(pids.insert(pid), || format!("pid {pid} held twice"))?;
                }
            }
        }
        Ok(())
    }

    fn check_generations(&self) -> Result<()> {
        let mut numbers: HashSet<u64> = HashSet::new();
        for n in self.generations().map(|g| g.number) {
            ensure(n != 0 && numbers.insert(n), || format!("generation {n} is numbered 0 or held twice"))?;
        }
        for (n, workers) in self.old.iter().map(|d| (d.generation.number, &d.generation.workers)) {
            let alive = !workers.is_empty() && workers.iter().all(|w| w.live().is_some());
            ensure(alive, || format!("old generation {n} holds a worker that is not alive, or none"))?;
        }
        let respawning = self.candidate().is_some_and(|c| c.workers.iter().any(|w| w.respawn_at().is_some()));
        ensure(!respawning, || "a starting generation waits to respawn a worker".into())?;
        if let Some(n) = self.current.as_ref().map(|c| c.number) {
            let ready = self.current.as_ref().is_some_and(|c| c.ready_at.is_some());
            ensure(ready, || format!("serving generation {n} was never ready"))?;
            let told = self.manager != Manager::Starting;
            ensure(told, || format!("generation {n} serves, yet the service manager was never told"))?;
        }
        let Counters { restarts, failures, respawns } = self.counters;
        let at_limit = [restarts, failures, respawns].contains(&u64::MAX);
        ensure(!at_limit, || format!("a counter is at its limit: {:?}", self.counters))
    }

    fn check_running(&self) -> Result<()> {
        let Some(running) = self.phase.running() else { return Ok(()) };
        let (last, failures) = (running.last_generation(), running.start_failures);
        let what = || format!("generation {last} or start failure {failures} is the last");
        ensure(last != u64::MAX && failures != u32::MAX, what)?;
        if let Some(g) = self.generations().find(|g| g.number > last) {
            return broken(format!("generation {} was never handed out (last {last})", g.number));
        }
        if let Slot::Starting { candidate, .. } = &running.slot {
            let n = candidate.number;
            ensure(n == last, || format!("starting generation {n} is not the last one"))?;
            let older = self.current.as_ref().is_none_or(|c| c.number < n);
            ensure(older, || "the serving generation is not older than the starting one".into())?;
            let spawned = candidate.workers.iter().filter(|w| w.live().is_some()).count();
            ensure(spawned == self.policy.workers, || {
                format!("starting generation {n} runs {spawned} workers")
            })?;
            ensure(candidate.ready_at.is_none(), || format!("starting generation {n} was ready"))?;
        }
        if let Some(current) = &self.current {
            let n = current.number;
            ensure(!current.workers.is_empty(), || format!("serving generation {n} has no worker"))?;
            if let Some(w) = current.workers.iter().find(|w| matches!(w, Worker::Starting { .. })) {
                return broken(format!("serving generation {n}: worker {} is being spawned", w.index()));
            }
        }
        if let Some((request, g)) = self.waiters.iter().find(|(_, g)| g.is_some_and(|g| g > last)) {
            return broken(format!("request {request} waits for generation {g:?}, not handed out"));
        }
        Ok(())
    }

    fn check_stopping(&self) -> Result<()> {
        ensure(self.waiters.is_empty(), || "requests left unanswered while stopping".into())?;
        let unborn = self.generations().any(|g| g.workers.iter().any(|w| w.live().is_none()));
        ensure(!unborn, || "a worker waits to be spawned while stopping".into())?;
        match self.old.iter().find(|d| d.due_at().is_some()) {
            Some(d) => {
                broken(format!("generation {} was not told to stop while stopping", d.generation.number))
            }
            None => Ok(()),
        }
    }
}

/// A machine state refused: what does not hold, in one line.
pub(super) fn broken<T>(what: impl Into<String>) -> Result<T> {
    Err(Error::runtime(what))
}

/// `what` refused unless `holds`.
fn ensure(holds: bool, what: impl FnOnce() -> String) -> Result<()> {
    if holds { Ok(()) } else { broken(what()) }
}
