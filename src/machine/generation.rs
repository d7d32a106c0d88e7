//! A generation: the N workers started together from one `SERVER_STARTER_GENERATION`.
//!
//! It goes through three roles, held by the machine: starting (the
//! candidate), serving (current), draining (old). Workers of a draining
//! generation are removed as they are reaped; the generation goes with its
//! last worker.
use serde::{Deserialize, Serialize};

use super::time::Moment;

use crate::machine::event::Pid;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub index: usize,
    /// None while its spawn is in flight or it waits to be respawned.
    #[serde(default)]
    pub pid: Option<Pid>,
    pub spawned_at: Moment,
    #[serde(default)]
    pub ready: bool,
    /// Cannot be watched for accepting: the alive rule holds for it.
    #[serde(default)]
    pub blind: bool,
    /// A dead serving worker is started again, alone, at this time.
    #[serde(default)]
    pub respawn_at: Option<Moment>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub number: u64,
    pub workers: Vec<Worker>,
    pub spawned_at: Moment,
    #[serde(default)]
    pub ready_at: Option<Moment>,
    /// When the generation it replaced was told to stop.
    #[serde(default)]
    pub predecessor_signalled_at: Option<Moment>,
    /// Draining: when to send `signal_on_hup` (kill-old-delay).
    #[serde(default)]
    pub signal_at: Option<Moment>,
    /// Draining: when it was told to stop.
    #[serde(default)]
    pub signalled_at: Option<Moment>,
    /// Draining: SIGKILL went to its groups.
    #[serde(default)]
    pub killed: bool,
}

impl Generation {
    pub fn new(number: u64, workers: usize, now: Moment) -> Generation {
        let worker = |index| Worker {
            index,
            pid: None,
            spawned_at: now,
            ready: false,
            blind: false,
            respawn_at: None,
        };
        Generation {
            number,
            workers: (0..workers).map(worker).collect(),
            spawned_at: now,
            ready_at: None,
            predecessor_signalled_at: None,
            signal_at: None,
            signalled_at: None,
            killed: false,
        }
    }

    pub fn pids(&self) -> Vec<Pid> {
        self.workers.iter().filter_map(|w| w.pid).collect()
    }

    pub fn worker(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.pid == Some(pid))
    }

    pub fn has(&self, pid: Pid) -> bool {
        self.workers.iter().any(|w| w.pid == Some(pid))
    }

    pub fn all_ready(&self) -> bool {
        self.workers.iter().all(|w| w.ready && w.pid.is_some())
    }

    /// Live or about to be: a dead worker here is respawned, not the generation.
    pub fn any_alive_besides(&self, pid: Pid) -> bool {
        self.workers.iter().any(|w| (w.pid.is_some() && w.pid != Some(pid)) || w.respawn_at.is_some())
    }

    /// Keep only live workers: for a generation that is being stopped.
    pub fn drop_unborn(&mut self) {
        self.workers.retain(|w| w.pid.is_some());
    }

    /// `(generation, pid)` for each live worker: status file lines.
    pub fn lines(&self) -> impl Iterator<Item = (u64, Pid)> + '_ {
        self.workers.iter().filter_map(|w| w.pid.map(|p| (self.number, p)))
    }
}
