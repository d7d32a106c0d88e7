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
                if w.index() >= self.policy.workers || !indices.insert(w.index()) {
                    let n = self.policy.workers;
                    return broken(format!(
                        "generation {}: worker {} is out of 0..{n} or twice",
                        g.number,
                        w.index()
                    ));
                }
                if let Some(pid) = w.pid() {
                    if pid <= 0 {
                        return broken(format!("generation {}: pid {pid} is not a process", g.number));
                    }
                    if !pids.insert(pid) {
                        return broken(format!("pid {pid} held twice"));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_generations(&self) -> Result<()> {
        let mut numbers: HashSet<u64> = HashSet::new();
        for g in self.generations() {
            if g.number == 0 || !numbers.insert(g.number) {
                return broken(format!("generation {} is numbered 0 or held twice", g.number));
            }
        }
        for (n, workers) in self.old.iter().map(|d| (d.generation.number, &d.generation.workers)) {
            if workers.is_empty() || workers.iter().any(|w| w.live().is_none()) {
                return broken(format!("old generation {n} holds a worker that is not alive, or none"));
            }
        }
        if self.candidate().is_some_and(|c| c.workers.iter().any(|w| w.respawn_at().is_some())) {
            return broken("a starting generation waits to respawn a worker");
        }
        if let Some(current) = &self.current {
            if current.ready_at.is_none() {
                return broken(format!("serving generation {} was never ready", current.number));
            }
            if self.manager == Manager::Starting {
                return broken(format!(
                    "generation {} serves, yet the service manager was never told",
                    current.number
                ));
            }
        }
        let Counters { restarts, failures, respawns } = self.counters;
        if [restarts, failures, respawns].contains(&u64::MAX) {
            return broken(format!("a counter is at its limit: {:?}", self.counters));
        }
        Ok(())
    }

    fn check_running(&self) -> Result<()> {
        let Some(running) = self.phase.running() else { return Ok(()) };
        let (last, failures) = (running.last_generation(), running.start_failures);
        if last == u64::MAX || failures == u32::MAX {
            return broken(format!("generation {last} or start failure {failures} is the last"));
        }
        if let Some(g) = self.generations().find(|g| g.number > last) {
            return broken(format!("generation {} was never handed out (last {last})", g.number));
        }
        if let Slot::Starting { candidate, .. } = &running.slot {
            if candidate.number != last {
                return broken(format!("starting generation {} is not the last one", candidate.number));
            }
            if self.current.as_ref().is_some_and(|c| c.number >= candidate.number) {
                return broken("the serving generation is not older than the starting one");
            }
            let spawned = candidate.workers.iter().filter(|w| w.live().is_some()).count();
            if spawned != self.policy.workers {
                return broken(format!("starting generation {} runs {spawned} workers", candidate.number));
            }
            if candidate.ready_at.is_some() {
                return broken(format!("starting generation {} was ready", candidate.number));
            }
        }
        if let Some(current) = &self.current {
            if current.workers.is_empty() {
                return broken(format!("serving generation {} has no worker", current.number));
            }
            if let Some(w) = current.workers.iter().find(|w| matches!(w, Worker::Starting { .. })) {
                let n = current.number;
                return broken(format!("serving generation {n}: worker {} is being spawned", w.index()));
            }
        }
        if let Some((request, g)) = self.waiters.iter().find(|(_, g)| g.is_some_and(|g| g > last)) {
            return broken(format!("request {request} waits for generation {g:?}, not handed out"));
        }
        Ok(())
    }

    fn check_stopping(&self) -> Result<()> {
        if !self.waiters.is_empty() {
            return broken("requests left unanswered while stopping");
        }
        if self.generations().any(|g| g.workers.iter().any(|w| w.live().is_none())) {
            return broken("a worker waits to be spawned while stopping");
        }
        if let Some(d) = self.old.iter().find(|d| d.due_at().is_some()) {
            return broken(format!("generation {} was not told to stop while stopping", d.generation.number));
        }
        Ok(())
    }
}

/// A machine state refused: what does not hold, in one line.
pub(super) fn broken<T>(what: impl Into<String>) -> Result<T> {
    Err(Error::runtime(what))
}
