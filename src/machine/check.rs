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

impl Machine {
    /// What must hold between any two inputs; Err names the first thing that does not.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        self.check_workers()?;
        self.check_generations()?;
        match &self.phase {
            Phase::Running(_) => self.check_running(),
            Phase::Stopping(_) => self.check_stopping(),
        }
    }

    /// Every worker: a process of its own, one place in its generation.
    fn check_workers(&self) -> Result<(), String> {
        let mut pids: HashSet<Pid> = HashSet::new();
        for g in self.generations() {
            let mut indices: HashSet<usize> = HashSet::new();
            for w in &g.workers {
                if w.index() >= self.policy.workers || !indices.insert(w.index()) {
                    let n = self.policy.workers;
                    return Err(format!(
                        "generation {}: worker {} is out of 0..{n} or twice",
                        g.number,
                        w.index()
                    ));
                }
                if let Some(pid) = w.pid() {
                    if pid <= 0 {
                        return Err(format!("generation {}: pid {pid} is not a process", g.number));
                    }
                    if !pids.insert(pid) {
                        return Err(format!("pid {pid} held twice"));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_generations(&self) -> Result<(), String> {
        let mut numbers: HashSet<u64> = HashSet::new();
        for g in self.generations() {
            if g.number == 0 || !numbers.insert(g.number) {
                return Err(format!("generation {} is numbered 0 or held twice", g.number));
            }
        }
        for g in self.old.iter().map(|d| &d.generation) {
            if g.workers.is_empty() || g.workers.iter().any(|w| w.live().is_none()) {
                return Err(format!("old generation {} holds a worker that is not alive, or none", g.number));
            }
        }
        if self.candidate().is_some_and(|c| c.workers.iter().any(|w| w.respawn_at().is_some())) {
            return Err("a starting generation waits to respawn a worker".into());
        }
        if let Some(current) = &self.current {
            if current.ready_at.is_none() {
                return Err(format!("serving generation {} was never ready", current.number));
            }
            if self.manager == Manager::Starting {
                return Err(format!(
                    "generation {} serves, yet the service manager was never told",
                    current.number
                ));
            }
        }
        let Counters { restarts, failures, respawns } = self.counters;
        if [restarts, failures, respawns].contains(&u64::MAX) {
            return Err(format!("a counter is at its limit: {:?}", self.counters));
        }
        Ok(())
    }

    fn check_running(&self) -> Result<(), String> {
        let Some(running) = self.phase.running() else { return Ok(()) };
        let last = running.last_generation();
        if last == u64::MAX || running.start_failures == u32::MAX {
            return Err(format!("generation {last} or start failure {} is the last", running.start_failures));
        }
        if let Some(g) = self.generations().find(|g| g.number > last) {
            return Err(format!("generation {} was never handed out (last {last})", g.number));
        }
        if let Slot::Starting { candidate, .. } = &running.slot {
            if candidate.number != last {
                return Err(format!("starting generation {} is not the last one", candidate.number));
            }
            if self.current.as_ref().is_some_and(|c| c.number >= candidate.number) {
                return Err("the serving generation is not older than the starting one".into());
            }
            let spawned = candidate.workers.iter().filter(|w| w.live().is_some()).count();
            if spawned != self.policy.workers {
                return Err(format!("starting generation {} runs {spawned} workers", candidate.number));
            }
            if candidate.ready_at.is_some() {
                return Err(format!("starting generation {} was ready", candidate.number));
            }
        }
        if let Some(current) = &self.current {
            if current.workers.is_empty() {
                return Err(format!("serving generation {} has no worker", current.number));
            }
            if let Some(w) = current.workers.iter().find(|w| matches!(w, Worker::Starting { .. })) {
                let n = current.number;
                return Err(format!("serving generation {n}: worker {} is being spawned", w.index()));
            }
        }
        if let Some((request, g)) = self.waiters.iter().find(|(_, g)| g.is_some_and(|g| g > last)) {
            return Err(format!("request {request} waits for generation {g:?}, not handed out"));
        }
        Ok(())
    }

    fn check_stopping(&self) -> Result<(), String> {
        if !self.waiters.is_empty() {
            return Err("requests left unanswered while stopping".into());
        }
        if self.generations().any(|g| g.workers.iter().any(|w| w.live().is_none())) {
            return Err("a worker waits to be spawned while stopping".into());
        }
        if let Some(d) = self.old.iter().find(|d| d.due_at().is_some()) {
            return Err(format!("generation {} was not told to stop while stopping", d.generation.number));
        }
        Ok(())
    }
}
