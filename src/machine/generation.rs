//! A generation: the N workers started together from one `SERVER_STARTER_GENERATION`.
//!
//! It goes through three roles, held by the machine: starting (the
//! candidate), serving (current), draining (old, a `Draining`: what only a
//! generation told to stop has is there). Workers of a draining
//! generation are removed as they are reaped; the generation goes with its
//! last worker.
use serde::{Deserialize, Serialize};

use super::time::Moment;

use crate::machine::event::Pid;

/// One of a generation's N places (`index`, its `SERVER_STARTER_WORKER`),
/// in the state its process is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Worker {
    /// Its spawn is in flight (within one step: the spawn says how it went).
    Starting {
        index: usize,
        spawned_at: Moment,
    },
    Live(Live),
    /// A dead serving worker, started again, alone, at this time.
    Respawning {
        index: usize,
        at: Moment,
    },
}

/// A worker whose process runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub index: usize,
    pub pid: Pid,
    pub spawned_at: Moment,
    #[serde(default)]
    pub ready: bool,
    /// Cannot be watched for accepting: the alive rule holds for it.
    #[serde(default)]
    pub blind: bool,
}

impl Worker {
    pub fn index(&self) -> usize {
        match self {
            Worker::Starting { index, .. } | Worker::Respawning { index, .. } => *index,
            Worker::Live(live) => live.index,
        }
    }

    pub fn live(&self) -> Option<&Live> {
        if let Worker::Live(live) = self { Some(live) } else { None }
    }

    pub fn live_mut(&mut self) -> Option<&mut Live> {
        if let Worker::Live(live) = self { Some(live) } else { None }
    }

    pub fn pid(&self) -> Option<Pid> {
        self.live().map(|w| w.pid)
    }

    pub fn respawn_at(&self) -> Option<Moment> {
        if let Worker::Respawning { at, .. } = self { Some(*at) } else { None }
    }
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
}

/// A generation told to stop, or about to be: replaced and draining, a
/// failed start, or the one starting when the supervisor began to stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draining {
    pub generation: Generation,
    pub stop: Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Stop {
    /// `signal_on_hup` goes at this time (`--kill-old-delay`).
    Due { at: Moment },
    /// Told at this time; `killed`: SIGKILL went to its groups since.
    Told {
        at: Moment,
        #[serde(default)]
        killed: bool,
    },
}

impl Draining {
    pub fn told(generation: Generation, now: Moment) -> Draining {
        Draining { generation, stop: Stop::Told { at: now, killed: false } }
    }

    pub fn told_at(&self) -> Option<Moment> {
        if let Stop::Told { at, .. } = self.stop { Some(at) } else { None }
    }

    pub fn due_at(&self) -> Option<Moment> {
        if let Stop::Due { at } = self.stop { Some(at) } else { None }
    }
}

impl Generation {
    pub fn new(number: u64, workers: usize, now: Moment) -> Generation {
        Generation {
            number,
            workers: (0..workers).map(|index| Worker::Starting { index, spawned_at: now }).collect(),
            spawned_at: now,
            ready_at: None,
            predecessor_signalled_at: None,
        }
    }

    pub fn pids(&self) -> Vec<Pid> {
        self.workers.iter().filter_map(Worker::pid).collect()
    }

    pub fn live(&mut self, pid: Pid) -> Option<&mut Live> {
        self.workers.iter_mut().filter_map(Worker::live_mut).find(|w| w.pid == pid)
    }

    pub fn has(&self, pid: Pid) -> bool {
        self.workers.iter().any(|w| w.pid() == Some(pid))
    }

    pub fn all_ready(&self) -> bool {
        self.workers.iter().all(|w| w.live().is_some_and(|w| w.ready))
    }

    /// Live or about to be: a dead worker here is respawned, not the generation.
    pub fn any_alive_besides(&self, pid: Pid) -> bool {
        self.workers.iter().any(|w| w.pid().is_some_and(|p| p != pid) || w.respawn_at().is_some())
    }

    /// Keep only live workers: for a generation that is being stopped.
    pub fn drop_unborn(&mut self) {
        self.workers.retain(|w| w.live().is_some());
    }

    /// `(generation, pid)` for each live worker: status file lines.
    pub fn lines(&self) -> impl Iterator<Item = (u64, Pid)> + '_ {
        self.workers.iter().filter_map(|w| w.pid().map(|p| (self.number, p)))
    }
}
