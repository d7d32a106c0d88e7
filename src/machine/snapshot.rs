//! The machine as data, to carry across a re-exec of the supervisor.
//!
//! Self-upgrade in place: the supervisor execs its new image (same pid,
//! same children) and hands it `Machine::snapshot()`; the new image
//! rebuilds the `Policy` from the same command line and goes on with
//! `Machine::restore(policy, snapshot, now)`, which from then on gives the
//! same effects for the same inputs (`tests/snapshot.rs`).
//!
//! A snapshot is the machine itself as serde writes it (the record's
//! format 2): every field but the policy, under its name in the code.
//! Times are `Moment`s, readings of `CLOCK_MONOTONIC` in nanoseconds, the
//! same clock in both images, so nothing is converted and a field added to
//! the machine is carried without more code. Durations are serde's
//! `{"secs", "nanos"}`. `tests/snapshot/v2.json` is a record of it.
//!
//! Format 1, written by older handovers, had each time as a signed offset
//! in nanoseconds from the moment of the snapshot and a shape of its own:
//! `from_v1` reads it (`tests/snapshot/v1.json`). Compatibility from here
//! on: a field keeps its name and meaning; a field added later has
//! `#[serde(default)]`; unknown fields are ignored. A change that a
//! reader must not miss bumps the record's format.
//!
//! `restore` trusts nothing it reads. It accepts only a state that a
//! machine could be in (the invariants of `mod.rs`, as `check.rs` states
//! them: pids above 0 held once, generation numbers handed out, ...; and
//! no spawn, readiness or stop dated after `now`); otherwise it says in
//! one line what is wrong. It never panics.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::check::broken;
use super::generation::{Live, Worker};
use super::state::Phase;
use super::time::Moment;
use super::{Machine, Policy, ReadyMode};
use crate::error::{Error, Result};

/// A machine but its policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Snapshot(Machine);

/// The policy of a machine read from a snapshot, until `restore` gives it
/// the real one: a snapshot never carries it.
pub(super) fn unset_policy() -> Policy {
    Policy {
        interval: Duration::ZERO,
        ready: ReadyMode::Alive,
        observe: false,
        ready_timeout: None,
        kill_old_delay: Duration::ZERO,
        drain_timeout: None,
        stop_timeout: None,
        signal_on_hup: nix::sys::signal::Signal::SIGTERM,
        signal_on_term: nix::sys::signal::Signal::SIGTERM,
        auto_restart: None,
        workers: 0,
        watchdog: None,
        stop_on_exit: Vec::new(),
        max_start_attempts: None,
        watch_debounce: Duration::ZERO,
        orphan_grace: Duration::ZERO,
    }
}

impl Machine {
    /// Everything but the policy (the new image rebuilds that from its config).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(Machine { policy: unset_policy(), ..self.clone() })
    }

    /// The machine of `snapshot`, at `now` on the same monotonic clock.
    /// Err: one line saying what is inconsistent.
    pub fn restore(policy: Policy, snapshot: Snapshot, now: Moment) -> Result<Machine> {
        let machine = Machine { policy, ..snapshot.0 };
        machine
            .check_invariants()
            .and_then(|()| machine.check_past(now))
            .map_err(|e| Error::runtime(format!("snapshot refused: {e}")))?;
        Ok(machine)
    }

    /// Nothing that has happened is dated after `now`.
    fn check_past(&self, now: Moment) -> Result<()> {
        let late = |t: Option<Moment>, what: &str| match t.filter(|t| *t > now) {
            Some(t) => broken(format!("{what} is {} ns after now", (t - now).as_nanos())),
            None => Ok(()),
        };
        let starting = match &self.phase {
            Phase::Running(running) => {
                late(running.last_spawn_at(), "last_spawn_at")?;
                None
            }
            Phase::Stopping(stopping) => {
                late(Some(stopping.since), "since")?;
                stopping.starting.as_ref()
            }
        };
        for d in self.old.iter().chain(starting) {
            late(d.told_at(), &format!("generation {}: told to stop", d.generation.number))?;
        }
        for g in self.generations() {
            let what = |field: &str| format!("generation {}: {field}", g.number);
            late(Some(g.spawned_at), &what("spawned_at"))?;
            late(g.ready_at, &what("ready_at"))?;
            late(g.predecessor_signalled_at, &what("predecessor_signalled_at"))?;
            for w in &g.workers {
                if let Worker::Starting { spawned_at, .. } | Worker::Live(Live { spawned_at, .. }) = w {
                    late(Some(*spawned_at), &what("a worker's spawned_at"))?;
                }
            }
        }
        Ok(())
    }
}

/// The fields of format 1 that held times, as offsets from the snapshot.
const V1_TIMES: [&str; 11] = [
    "spawned_at",
    "ready_at",
    "predecessor_signalled_at",
    "signal_at",
    "signalled_at",
    "respawn_at",
    "last_spawn_at",
    "restart_on_change_at",
    "at",
    "since",
    "next_watchdog",
];

/// A snapshot of format 1 taken at `taken`, as this format says it.
pub fn from_v1(mut v1: Value, taken: Moment) -> Result<Snapshot> {
    let format = v1.get("format").and_then(Value::as_u64);
    if format != Some(1) {
        return broken(format!("format {} is not 1", v1.get("format").unwrap_or(&Value::Null)));
    }
    moments(&mut v1, taken);
    workers(&mut v1);
    if let Some(old) = v1.get_mut("old").and_then(Value::as_array_mut) {
        old.iter_mut().try_for_each(draining)?;
    }
    if let Some(phase) = v1.get_mut("phase").filter(|p| p.get("state") == Some(&"stopping".into()))
        && let Some(starting) = phase.get_mut("starting").filter(|s| !s.is_null())
    {
        draining(starting)?;
    }
    if let Some(waiters) = v1.get_mut("waiters").and_then(Value::as_array_mut) {
        for w in waiters {
            let mut field = |name| w.get_mut(name).map(Value::take).unwrap_or_default();
            *w = Value::Array(vec![field("request"), field("generation")]);
        }
    }
    serde_json::from_value(v1).map_err(|e| Error::runtime(format!("format 1 snapshot: {e}")))
}

/// Every offset of format 1 made a moment.
fn moments(v: &mut Value, taken: Moment) {
    match v {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut().filter(|(name, _)| *name != "last_outcome") {
                match field.as_i64().filter(|_| V1_TIMES.contains(&name.as_str())) {
                    Some(offset) => *field = taken.nanos().saturating_add_signed(offset).into(),
                    None => moments(field, taken),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| moments(item, taken)),
        _ => {}
    }
}

/// Every worker of format 1 (`pid`, `respawn_at`: either, or neither while
/// spawned) in the state it was in.
fn workers(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            if let Some(Value::Array(workers)) = fields.get_mut("workers") {
                workers.iter_mut().filter_map(Value::as_object_mut).for_each(worker);
            }
            fields.iter_mut().filter(|(name, _)| *name != "workers").for_each(|(_, field)| workers(field));
        }
        Value::Array(items) => items.iter_mut().for_each(workers),
        _ => {}
    }
}

fn worker(w: &mut serde_json::Map<String, Value>) {
    let state = match (w.get("pid").is_some_and(|p| !p.is_null()), w.remove("respawn_at")) {
        (true, _) => "live",
        (false, Some(at)) if !at.is_null() => {
            w.insert("at".into(), at);
            "respawning"
        }
        _ => "starting",
    };
    w.insert("state".into(), state.into());
}

/// A generation told to stop (`signalled_at`, `killed`) or to be
/// (`signal_at`) as a `Draining`.
fn draining(g: &mut Value) -> Result<()> {
    let Some(fields) = g.as_object_mut() else { return Ok(()) };
    let mut take = |name| fields.remove(name).filter(|v: &Value| !v.is_null());
    let stop = match (take("signal_at"), take("signalled_at"), take("killed")) {
        (Some(at), None, _) => json!({"state": "due", "at": at}),
        (None, Some(at), killed) => {
            json!({"state": "told", "at": at, "killed": killed.unwrap_or(false.into())})
        }
        _ => {
            let number = fields.get("number").unwrap_or(&Value::Null);
            return broken(format!("old generation {number} is either to be told to stop or told"));
        }
    };
    *g = json!({"generation": g.take(), "stop": stop});
    Ok(())
}
