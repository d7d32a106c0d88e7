//! `Machine::restore` on what a broken or hostile writer could hand it:
//! arbitrary snapshots (written as format 1, read through `from_v1`), the
//! records' fields set to odd values or dropped, their text mangled.
//! Reading and restoring never panic, and a machine restored keeps its
//! invariants through the inputs that follow.
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

use super::*;
use crate::fuzz_tests::{config, mutated};

const SEEDS: &[&str] = &[RECORDED, RECORDED_V1];

/// Spawns get fresh pids, far from the snapshots' own.
struct Exec {
    machine: Machine,
    next_pid: Pid,
}

impl Perform for Exec {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn perform(&mut self, effect: Effect) -> Step {
        match effect {
            Effect::Spawn { generation, index } => {
                self.next_pid += 1;
                Step::Then(Input::Spawned { generation, index, pid: self.next_pid })
            }
            Effect::Exit(code) => Step::Exit(code),
            _ => Step::Done,
        }
    }
}

/// Restore `snapshot`; if accepted, it is what it snapshots to, and lives
/// on: readiness, a restart, the workers' exits, a stop, with time passing;
/// the invariants hold after each.
fn restore_and_live(policy: &Policy, snapshot: Snapshot) -> Result<(), TestCaseError> {
    let now = taken();
    let Ok(machine) = Machine::restore(policy.clone(), snapshot.clone(), now) else { return Ok(()) };
    prop_assert_eq!(machine.snapshot(), snapshot);
    let pids = machine.live_pids();
    let mut inputs = vec![(0, Input::Tick)];
    inputs.extend(pids.iter().map(|&pid| (10, Input::Ready { pid })));
    inputs.extend([(20, Input::Restart { request: 99 }), (1500, Input::Tick), (1500, Input::Hup)]);
    let status = ExitStatus::Code(1);
    inputs.extend(pids.iter().map(|&pid| (2000, Input::Exited { pid, status })));
    inputs.extend([(4000, Input::Tick), (4000, Input::Terminate(Signal::SIGTERM)), (60_000, Input::Tick)]);
    let mut exec = Exec { machine, next_pid: 1 << 20 };
    for (ms, input) in inputs {
        let exited = driver::feed(&mut exec, now + Duration::from_millis(ms), [input.clone()]).is_some();
        if let Err(e) = exec.machine.check_invariants() {
            return Err(TestCaseError::fail(format!("after {input:?}: {e}")));
        }
        if exited {
            break;
        }
    }
    Ok(())
}

/// Offsets near the snapshot, mostly before it (as most of a machine's
/// times are), and the extremes.
fn at() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -5_000_000_000i64..0,
        2 => 0..5_000_000_000i64,
        1 => Just(0i64),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn maybe_at() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(at())
}

fn worker() -> BoxedStrategy<Value> {
    (0..4usize, prop::option::weighted(0.8, -1..8 as Pid), at(), any::<bool>(), maybe_at(), any::<bool>())
        .prop_map(|(index, pid, spawned_at, ready, respawn_at, blind)| {
            json!({"index": index, "pid": pid, "spawned_at": spawned_at, "ready": ready,
                   "respawn_at": respawn_at, "blind": blind})
        })
        .boxed()
}

fn generation() -> BoxedStrategy<Value> {
    let times = (maybe_at(), maybe_at(), maybe_at(), maybe_at());
    (0..5u64, prop::collection::vec(worker(), 0..4), at(), times, any::<bool>())
        .prop_map(|(number, workers, spawned_at, (ready, predecessor, signal, signalled), killed)| {
            json!({"number": number, "workers": workers, "spawned_at": spawned_at, "ready_at": ready,
                   "predecessor_signalled_at": predecessor, "signal_at": signal,
                   "signalled_at": signalled, "killed": killed})
        })
        .boxed()
}

fn phase() -> BoxedStrategy<Value> {
    let slot = prop_oneof![
        Just(json!({"state": "empty"})),
        at().prop_map(|at| json!({"state": "scheduled", "at": at})),
        (generation(), any::<bool>()).prop_map(|(candidate, pending)| {
            json!({"state": "starting", "candidate": candidate, "pending": pending})
        }),
    ];
    let generations = prop_oneof![4 => 0..6u64, 1 => Just(u64::MAX)];
    let failures = prop_oneof![4 => 0..4u32, 1 => Just(u32::MAX)];
    prop_oneof![
        (generations, maybe_at(), slot, failures, maybe_at()).prop_map(
            |(generation, last_spawn_at, slot, start_failures, restart_on_change_at)| json!({
                "state": "running", "generation": generation, "last_spawn_at": last_spawn_at,
                "slot": slot, "start_failures": start_failures,
                "restart_on_change_at": restart_on_change_at,
            })
        ),
        (at(), any::<bool>(), -1..256i32, prop::option::of(generation())).prop_map(
            |(since, killed, code, starting)| json!({
                "state": "stopping", "since": since, "killed": killed, "code": code, "starting": starting,
            })
        ),
    ]
    .boxed()
}

/// A snapshot as format 1 wrote it.
fn snapshot() -> BoxedStrategy<Value> {
    let waiter = (0..4u64, prop::option::of(0..6u64))
        .prop_map(|(request, generation)| json!({"request": request, "generation": generation}));
    let manager = select(&["starting", "ready", "reloading"][..]);
    let count = prop_oneof![4 => 0..3u64, 1 => Just(u64::MAX)];
    let counters = (count.clone(), count.clone(), count)
        .prop_map(|(restarts, failures, respawns)| Counters { restarts, failures, respawns });
    let outcome = prop::option::of(Just(Outcome::Failed { generation: Some(1), failure: Failure::Stopping }));
    (
        (prop_oneof![9 => Just(1u32), 1 => any::<u32>()], phase(), prop::option::of(generation())),
        (prop::collection::vec(generation(), 0..3), prop::collection::vec(waiter, 0..3), manager),
        (maybe_at(), counters, outcome, any::<bool>()),
    )
        .prop_map(
            |(
                (format, phase, current),
                (old, waiters, manager),
                (next_watchdog, counters, last_outcome, learned),
            )| {
                json!({"format": format, "phase": phase, "current": current, "old": old,
                       "waiters": waiters, "manager": manager, "next_watchdog": next_watchdog,
                       "counters": counters, "last_outcome": last_outcome, "learned": learned})
            },
        )
        .boxed()
}

/// A record of either format, read.
fn read(record: Value, v1: bool) -> Option<Snapshot> {
    match v1 {
        true => from_v1(record, taken()).ok(),
        false => serde_json::from_value(record).ok(),
    }
}

/// One change to the record's JSON: a node set to an odd value, or dropped.
#[derive(Clone, Debug)]
enum Edit {
    Set(Index, Value),
    Remove(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let odd = [
        json!(null),
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(3),
        json!(101),
        json!(102),
        json!(103),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1.5),
        json!(true),
        json!("x"),
        json!([]),
        json!({}),
        json!("stopping"),
        json!({"state": "starting"}),
    ];
    prop_oneof![
        3 => (any::<Index>(), select(odd.to_vec())).prop_map(|(at, value)| Edit::Set(at, value)),
        1 => any::<Index>().prop_map(Edit::Remove),
    ]
}

/// The JSON pointer of every node under `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out))
        }
        _ => {}
    }
    out.push(at);
}

fn apply(record: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(record, String::new(), &mut all);
    let (Edit::Set(at, _) | Edit::Remove(at)) = edit;
    let pointer = &all[at.index(all.len())];
    match edit {
        Edit::Set(_, value) => *record.pointer_mut(pointer).expect("a pointer just listed") = value.clone(),
        Edit::Remove(_) => {
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", ""));
            if let Some(Value::Object(map)) = record.pointer_mut(parent) {
                map.remove(key);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn fuzz_snapshot_restore_arbitrary(policy in policies(), snapshot in snapshot()) {
        if let Some(snapshot) = read(snapshot, true) {
            restore_and_live(&policy, snapshot)?;
        }
    }

    #[test]
    fn fuzz_snapshot_restore_edited_fields(v1: bool, edits in prop::collection::vec(edit(), 1..4)) {
        let mut record: Value = serde_json::from_str(if v1 { RECORDED_V1 } else { RECORDED }).unwrap();
        edits.iter().for_each(|edit| apply(&mut record, edit));
        if let Some(snapshot) = read(record, v1) {
            restore_and_live(&recorded_policy(), snapshot)?;
        }
    }

    #[test]
    fn fuzz_snapshot_restore_mutated_json(text in mutated(SEEDS)) {
        if let Ok(record) = serde_json::from_slice::<Value>(&text) {
            for snapshot in [read(record.clone(), true), read(record, false)].into_iter().flatten() {
                restore_and_live(&recorded_policy(), snapshot)?;
            }
        }
    }
}
