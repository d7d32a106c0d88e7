//! The machine as data, to carry across a re-exec of the supervisor.
//!
//! Self-upgrade in place: the supervisor execs its new image (same pid,
//! same children) and hands it `Machine::snapshot(now)`; the new image
//! rebuilds the `Policy` from the same command line and goes on with
//! `Machine::restore(policy, snapshot, now)`, which from then on gives the
//! same effects for the same inputs (`tests/snapshot.rs`).
//!
//! Format 1 (`FORMAT`) is `Snapshot` as serde writes it: every field of
//! the machine but the policy, under its name in the code. An `Instant`
//! cannot leave the process: each is a signed offset in nanoseconds from
//! the moment of the snapshot (negative: before it), read against the new
//! image's `now` on the same monotonic clock, the caller having added the
//! time the exec took. Durations are serde's `{"secs", "nanos"}`.
//! `tests/snapshot/v1.json` is a record of this format that a test reads.
//!
//! Compatibility: a newer handover reads this format, and this one reads a
//! newer writer's where it can (a downgrade). A field keeps its name and
//! meaning; a field added later has `#[serde(default)]`, as older records
//! lack it, and so does here every field that a later version may stop
//! writing; unknown fields are ignored (no `deny_unknown_fields`). A change
//! that a reader must not miss bumps `format`; `restore` refuses any other.
//!
//! `restore` trusts nothing it reads. It accepts only a state that a
//! machine could be in (the invariants of `mod.rs`, as `check.rs` states
//! them: pids above 0 held once, generation numbers handed out, ...; and
//! no spawn, readiness or stop dated after the snapshot); otherwise it says
//! in one line what is wrong. It never panics.
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::generation::{Generation, Worker};
use super::state::{Manager, Phase, Running, Slot, Stopping};
use super::{Counters, Machine, Outcome, Policy, RequestId};
use crate::machine::event::Pid;

/// The version written, and the only one `restore` reads.
pub const FORMAT: u32 = 1;

/// A machine but its policy; times as nanoseconds from the snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub phase: SavedPhase,
    /// The serving generation.
    #[serde(default)]
    pub current: Option<SavedGeneration>,
    /// Generations told to stop (or about to be), in the machine's order.
    #[serde(default)]
    pub old: Vec<SavedGeneration>,
    /// Restart requests not answered yet, in the order they came.
    #[serde(default)]
    pub waiters: Vec<SavedWaiter>,
    /// What the supervisor's own service manager was told last.
    pub manager: SavedManager,
    #[serde(default)]
    pub next_watchdog: Option<i64>,
    #[serde(default)]
    pub counters: Counters,
    #[serde(default)]
    pub last_outcome: Option<Outcome>,
    /// Auto mode learned that workers send `READY=1`.
    #[serde(default)]
    pub learned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SavedPhase {
    Running {
        /// The last generation number handed out.
        generation: u64,
        #[serde(default)]
        last_spawn_at: Option<i64>,
        slot: SavedSlot,
        #[serde(default)]
        start_failures: u32,
        #[serde(default)]
        restart_on_change_at: Option<i64>,
    },
    Stopping {
        since: i64,
        #[serde(default)]
        killed: bool,
        code: i32,
        #[serde(default)]
        starting: Option<SavedGeneration>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SavedSlot {
    Empty,
    Scheduled {
        at: i64,
    },
    Starting {
        candidate: SavedGeneration,
        #[serde(default)]
        pending: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedGeneration {
    pub number: u64,
    pub workers: Vec<SavedWorker>,
    pub spawned_at: i64,
    #[serde(default)]
    pub ready_at: Option<i64>,
    #[serde(default)]
    pub predecessor_signalled_at: Option<i64>,
    #[serde(default)]
    pub signal_at: Option<i64>,
    #[serde(default)]
    pub signalled_at: Option<i64>,
    #[serde(default)]
    pub killed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWorker {
    pub index: usize,
    /// None: waits to be respawned.
    #[serde(default)]
    pub pid: Option<Pid>,
    pub spawned_at: i64,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub respawn_at: Option<i64>,
    /// Cannot be watched for accepting (written only when true: format 1
    /// as it was).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blind: bool,
}

/// A restart request and the generation that answers it (None: not spawned yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWaiter {
    pub request: RequestId,
    #[serde(default)]
    pub generation: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedManager {
    Starting,
    Ready,
    Reloading,
}

impl Machine {
    /// Everything but the policy (the new image rebuilds that from its config).
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let at = |t: Instant| offset(t, now);
        let save = |g: &Generation| save(g, now);
        let phase = match &self.phase {
            Phase::Running(running) => SavedPhase::Running {
                generation: running.last_generation(),
                last_spawn_at: running.last_spawn_at().map(at),
                slot: match &running.slot {
                    Slot::Empty => SavedSlot::Empty,
                    Slot::Scheduled { at: t } => SavedSlot::Scheduled { at: at(*t) },
                    Slot::Starting { candidate, pending } => {
                        SavedSlot::Starting { candidate: save(candidate), pending: *pending }
                    }
                },
                start_failures: running.start_failures,
                restart_on_change_at: running.restart_on_change_at.map(at),
            },
            Phase::Stopping(stopping) => SavedPhase::Stopping {
                since: at(stopping.since),
                killed: stopping.killed,
                code: stopping.code,
                starting: stopping.starting.as_ref().map(save),
            },
        };
        Snapshot {
            format: FORMAT,
            phase,
            current: self.current.as_ref().map(save),
            old: self.old.iter().map(save).collect(),
            waiters: (self.waiters.iter())
                .map(|&(request, generation)| SavedWaiter { request, generation })
                .collect(),
            manager: match self.manager {
                Manager::Starting => SavedManager::Starting,
                Manager::Ready => SavedManager::Ready,
                Manager::Reloading => SavedManager::Reloading,
            },
            next_watchdog: self.next_watchdog.map(at),
            counters: self.counters,
            last_outcome: self.last_outcome.clone(),
            learned: self.learned,
        }
    }

    /// The machine as it was at `snapshot`, `now` being the same moment on
    /// the same monotonic clock (the caller accounts for the time the exec
    /// took). Err: one line saying what is inconsistent.
    pub fn restore(policy: Policy, snapshot: Snapshot, now: Instant) -> Result<Machine, String> {
        Machine::rebuild(policy, snapshot, now).map_err(|e| format!("snapshot refused: {e}"))
    }

    fn rebuild(policy: Policy, s: Snapshot, now: Instant) -> Result<Machine, String> {
        if s.format != FORMAT {
            return Err(format!("format {} is not {FORMAT}, the one this handover reads", s.format));
        }
        let load = |g: SavedGeneration| load(g, now);
        let phase = match s.phase {
            SavedPhase::Running { generation, last_spawn_at, slot, start_failures, restart_on_change_at } => {
                let slot = match slot {
                    SavedSlot::Empty => Slot::Empty,
                    SavedSlot::Scheduled { at } => Slot::Scheduled { at: instant(at, now) },
                    SavedSlot::Starting { candidate, pending } => {
                        Slot::Starting { candidate: load(candidate)?, pending }
                    }
                };
                let last_spawn_at = last_spawn_at.map(|t| past(t, now, "last_spawn_at")).transpose()?;
                let restart_on_change_at = restart_on_change_at.map(|t| instant(t, now));
                Phase::Running(Running::resume(
                    generation,
                    last_spawn_at,
                    slot,
                    start_failures,
                    restart_on_change_at,
                ))
            }
            SavedPhase::Stopping { since, killed, code, starting } => Phase::Stopping(Stopping {
                since: past(since, now, "since")?,
                killed,
                code,
                starting: starting.map(load).transpose()?,
            }),
        };
        let machine = Machine {
            policy,
            phase,
            current: s.current.map(load).transpose()?,
            old: s.old.into_iter().map(load).collect::<Result<_, _>>()?,
            waiters: s.waiters.iter().map(|w| (w.request, w.generation)).collect(),
            manager: match s.manager {
                SavedManager::Starting => Manager::Starting,
                SavedManager::Ready => Manager::Ready,
                SavedManager::Reloading => Manager::Reloading,
            },
            next_watchdog: s.next_watchdog.map(|t| instant(t, now)),
            counters: s.counters,
            last_outcome: s.last_outcome,
            learned: s.learned,
        };
        machine.check_invariants()?;
        Ok(machine)
    }

    /// Every worker pid the machine knows (all generations, the starting
    /// one included), in increasing order: to check the state carried over
    /// a re-exec against the processes.
    #[cfg(test)]
    pub fn all_pids(&self) -> Vec<Pid> {
        self.live_pids()
    }
}

fn save(g: &Generation, now: Instant) -> SavedGeneration {
    let at = |t: Instant| offset(t, now);
    let worker = |w: &Worker| SavedWorker {
        index: w.index,
        pid: w.pid,
        spawned_at: at(w.spawned_at),
        ready: w.ready,
        respawn_at: w.respawn_at.map(at),
        blind: w.blind,
    };
    SavedGeneration {
        number: g.number,
        workers: g.workers.iter().map(worker).collect(),
        spawned_at: at(g.spawned_at),
        ready_at: g.ready_at.map(at),
        predecessor_signalled_at: g.predecessor_signalled_at.map(at),
        signal_at: g.signal_at.map(at),
        signalled_at: g.signalled_at.map(at),
        killed: g.killed,
    }
}

fn load(g: SavedGeneration, now: Instant) -> Result<Generation, String> {
    let number = g.number;
    let past = |t: i64, field: &str| past(t, now, &format!("generation {number}: {field}"));
    let past_opt = |t: Option<i64>, field: &str| t.map(|t| past(t, field)).transpose();
    let mut workers = Vec::with_capacity(g.workers.len());
    for w in g.workers {
        workers.push(Worker {
            index: w.index,
            pid: w.pid,
            spawned_at: past(w.spawned_at, "a worker's spawned_at")?,
            ready: w.ready,
            blind: w.blind,
            respawn_at: w.respawn_at.map(|t| instant(t, now)),
        });
    }
    Ok(Generation {
        number,
        workers,
        spawned_at: past(g.spawned_at, "spawned_at")?,
        ready_at: past_opt(g.ready_at, "ready_at")?,
        predecessor_signalled_at: past_opt(g.predecessor_signalled_at, "predecessor_signalled_at")?,
        signal_at: g.signal_at.map(|t| instant(t, now)),
        signalled_at: past_opt(g.signalled_at, "signalled_at")?,
        killed: g.killed,
    })
}

/// The instant of something that had happened when the snapshot was taken.
fn past(off: i64, now: Instant, what: &str) -> Result<Instant, String> {
    if off > 0 {
        return Err(format!("{what} is {off} ns after the snapshot was taken"));
    }
    Ok(instant(off, now))
}

/// `t` as nanoseconds after `now` (negative: before), saturated.
pub fn offset(t: Instant, now: Instant) -> i64 {
    match t.checked_duration_since(now) {
        Some(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        None => i64::try_from((now - t).as_nanos()).map_or(i64::MIN, |before| -before),
    }
}

/// The instant `off` nanoseconds after `now` (before, if negative); `now`
/// if the clock cannot represent it.
pub fn instant(off: i64, now: Instant) -> Instant {
    let span = Duration::from_nanos(off.unsigned_abs());
    let t = if off >= 0 { now.checked_add(span) } else { now.checked_sub(span) };
    t.unwrap_or(now)
}
