//! `Machine::restore` on what a broken or hostile writer could hand it:
//! arbitrary snapshots, the record's fields set to odd values or dropped,
//! the record's text mangled. Restoring never panics, and a machine it
//! accepts keeps its invariants through the inputs that follow.
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

use super::*;
use crate::fuzz_tests::{config, mutated};
use crate::machine::snapshot::{
    SavedGeneration, SavedManager, SavedPhase, SavedSlot, SavedWaiter, SavedWorker,
};

const SEEDS: &[&str] = &[RECORDED];

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
    let now = Instant::now();
    let Ok(machine) = Machine::restore(policy.clone(), snapshot.clone(), now) else { return Ok(()) };
    prop_assert_eq!(machine.snapshot(now), snapshot);
    let pids = machine.all_pids();
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

fn worker() -> BoxedStrategy<SavedWorker> {
    (0..4usize, prop::option::weighted(0.8, -1..8 as Pid), at(), any::<bool>(), maybe_at(), any::<bool>())
        .prop_map(|(index, pid, spawned_at, ready, respawn_at, blind)| SavedWorker {
            index,
            pid,
            spawned_at,
            ready,
            respawn_at,
            blind,
        })
        .boxed()
}

fn generation() -> BoxedStrategy<SavedGeneration> {
    let times = (maybe_at(), maybe_at(), maybe_at(), maybe_at());
    (0..5u64, prop::collection::vec(worker(), 0..4), at(), times, any::<bool>())
        .prop_map(
            |(
                number,
                workers,
                spawned_at,
                (ready_at, predecessor_signalled_at, signal_at, signalled_at),
                killed,
            )| {
                SavedGeneration {
                    number,
                    workers,
                    spawned_at,
                    ready_at,
                    predecessor_signalled_at,
                    signal_at,
                    signalled_at,
                    killed,
                }
            },
        )
        .boxed()
}

fn phase() -> BoxedStrategy<SavedPhase> {
    let slot = prop_oneof![
        Just(SavedSlot::Empty),
        at().prop_map(|at| SavedSlot::Scheduled { at }),
        (generation(), any::<bool>())
            .prop_map(|(candidate, pending)| SavedSlot::Starting { candidate, pending }),
    ];
    let generations = prop_oneof![4 => 0..6u64, 1 => Just(u64::MAX)];
    let failures = prop_oneof![4 => 0..4u32, 1 => Just(u32::MAX)];
    prop_oneof![
        (generations, maybe_at(), slot, failures, maybe_at()).prop_map(
            |(generation, last_spawn_at, slot, start_failures, restart_on_change_at)| SavedPhase::Running {
                generation,
                last_spawn_at,
                slot,
                start_failures,
                restart_on_change_at,
            }
        ),
        (at(), any::<bool>(), -1..256i32, prop::option::of(generation())).prop_map(
            |(since, killed, code, starting)| SavedPhase::Stopping { since, killed, code, starting }
        ),
    ]
    .boxed()
}

fn snapshot() -> BoxedStrategy<Snapshot> {
    let waiter = (0..4u64, prop::option::of(0..6u64))
        .prop_map(|(request, generation)| SavedWaiter { request, generation });
    let manager = select(&[SavedManager::Starting, SavedManager::Ready, SavedManager::Reloading][..]);
    let count = prop_oneof![4 => 0..3u64, 1 => Just(u64::MAX)];
    let counters = (count.clone(), count.clone(), count)
        .prop_map(|(restarts, failures, respawns)| Counters { restarts, failures, respawns });
    let outcome = prop::option::of(Just(Outcome::Failed { generation: Some(1), failure: Failure::Stopping }));
    (
        (prop_oneof![9 => Just(FORMAT), 1 => any::<u32>()], phase(), prop::option::of(generation())),
        (prop::collection::vec(generation(), 0..3), prop::collection::vec(waiter, 0..3), manager),
        (maybe_at(), counters, outcome, any::<bool>()),
    )
        .prop_map(
            |(
                (format, phase, current),
                (old, waiters, manager),
                (next_watchdog, counters, last_outcome, learned),
            )| {
                Snapshot {
                    format,
                    phase,
                    current,
                    old,
                    waiters,
                    manager,
                    next_watchdog,
                    counters,
                    last_outcome,
                    learned,
                }
            },
        )
        .boxed()
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
        restore_and_live(&policy, snapshot)?;
    }

    #[test]
    fn fuzz_snapshot_restore_edited_fields(edits in prop::collection::vec(edit(), 1..4)) {
        let mut record: Value = serde_json::from_str(RECORDED).unwrap();
        edits.iter().for_each(|edit| apply(&mut record, edit));
        if let Ok(snapshot) = serde_json::from_value::<Snapshot>(record) {
            restore_and_live(&recorded_policy(), snapshot)?;
        }
    }

    #[test]
    fn fuzz_snapshot_restore_mutated_json(text in mutated(SEEDS)) {
        if let Ok(snapshot) = serde_json::from_slice::<Snapshot>(&text) {
            restore_and_live(&recorded_policy(), snapshot)?;
        }
    }
}
