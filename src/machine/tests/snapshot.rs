//! Snapshots (`machine/snapshot.rs`): a machine carried through JSON is the
//! same machine, at once and for every input after, however long the exec
//! took; the record of format 2 is what this version writes and the one of
//! format 1 still reads; what no machine could be is refused in one line,
//! and garbage never panics (`snapshot/fuzz.rs`).
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use super::properties::{Sim, fails, ops, policies, run};
use super::*;
use crate::machine::snapshot::{Snapshot, from_v1};

mod fuzz;

/// A format 1 snapshot, as `recorded_machine` wrote it at 5.5 s.
const RECORDED_V1: &str = include_str!("snapshot/v1.json");
/// The same machine as this version writes it (format 2).
const RECORDED: &str = include_str!("snapshot/v2.json");

/// `snapshot` through JSON text and back.
fn through_json(snapshot: &Snapshot) -> Snapshot {
    let text = serde_json::to_string(snapshot).expect("a snapshot serializes");
    serde_json::from_str(&text).expect("a written snapshot parses")
}

/// `machine` as a new image gets it, restored at `now`.
fn carried(policy: &Policy, machine: &Machine, now: Moment) -> Result<Machine, TestCaseError> {
    let snapshot = through_json(&machine.snapshot());
    Machine::restore(policy.clone(), snapshot, now)
        .map_err(|e| TestCaseError::fail(format!("a real machine refused: {e}")))
}

/// A random run; before each step of `splits`, a copy of the machine
/// restored `exec` later joins it, and from then on gets the same inputs
/// and must give the same effects.
fn split_run(
    policy: Policy,
    fails: Vec<bool>,
    ops: Vec<(properties::Op, u64)>,
    splits: &[(usize, Duration)],
) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(&policy, fails);
    if sim.step(&policy, 0, Input::Start)? {
        return Ok(());
    }
    let mut twins: Vec<Sim> = Vec::new();
    for (n, (op, ms)) in (1..).zip(ops) {
        for &(_, exec) in splits.iter().filter(|(at, _)| *at == n) {
            let restored = carried(&policy, &sim.machine, sim.now + exec)?;
            prop_assert_eq!(restored.next_deadline(), sim.machine.next_deadline());
            twins.push(sim.twin(restored));
        }
        let pause = Duration::from_millis(ms);
        sim.now += pause;
        let input = sim.input(&op, n as RequestId);
        let exited = sim.step(&policy, n, input.clone())?;
        for twin in &mut twins {
            twin.now += pause;
            prop_assert_eq!(&twin.input(&op, n as RequestId), &input);
            prop_assert_eq!(twin.step(&policy, n, input.clone())?, exited);
            prop_assert_eq!(&twin.fx, &sim.fx, "step {}: {:?}", n, input);
            prop_assert_eq!(twin.machine.next_deadline(), sim.machine.next_deadline());
            prop_assert_eq!(twin.machine.snapshot(), sim.machine.snapshot());
        }
        if exited {
            break;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_survive_json_at_every_step(policy in policies(), fails in fails(), ops in ops()) {
        run(policy.clone(), fails, ops, |sim| {
            let restored = carried(&policy, &sim.machine, sim.now)?;
            prop_assert_eq!(restored.snapshot(), sim.machine.snapshot());
            prop_assert_eq!(restored.live_pids(), sim.machine.live_pids());
            prop_assert_eq!(restored.views(), sim.machine.views());
            prop_assert_eq!(restored.next_deadline(), sim.machine.next_deadline());
            Ok(())
        })?;
    }

    #[test]
    fn restored_machines_behave_as_the_original(
        policy in policies(),
        fails in fails(),
        ops in ops(),
        splits in prop::collection::vec((any::<Index>(), prop_oneof![Just(0u64), 1..5000u64]), 1..4),
    ) {
        // Most runs stop before their end: splits early on see more steps.
        let splits: Vec<(usize, Duration)> = (splits.iter())
            .map(|(at, exec)| (at.index(ops.len() / 2 + 1) + 1, Duration::from_millis(*exec)))
            .collect();
        split_run(policy, fails, ops, &splits)?;
    }
}

fn recorded_policy() -> Policy {
    Policy { drain_timeout: Some(Duration::from_secs(30)), ..policy() }
}

/// Generation 1 replaced by 2 at 3 s for request 1, gone at 3.5 s (the last
/// outcome); generation 2 replaced by 3 at 5 s for request 2, which waits
/// for 2 to drain.
fn recorded_machine() -> Run {
    let mut run = Run::new(recorded_policy());
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(2 * SEC, Input::Restart { request: 1 });
    run.tick(3 * SEC);
    run.step(3500, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    run.step(4 * SEC, Input::Restart { request: 2 });
    run.tick(5 * SEC);
    run
}

fn recorded() -> Snapshot {
    serde_json::from_str(RECORDED).expect("the format 2 record parses")
}

/// The moment the records were taken: 5.5 s into `recorded_machine`.
fn taken() -> Moment {
    Moment::from_nanos(T0) + ms(5500)
}

/// The format 1 record, read as it was taken at `taken()`.
fn recorded_v1() -> crate::error::Result<Snapshot> {
    from_v1(serde_json::from_str(RECORDED_V1).expect("the format 1 record parses"), taken())
}

#[test]
fn the_format_2_record_restores_to_the_machine_it_was() {
    let now = taken();
    let mut machine = Machine::restore(recorded_policy(), recorded(), now).expect("the record restores");
    let s = Duration::from_secs;
    let view = |generation, role, pids, spawned, ready, signalled: Option<u64>| View {
        generation,
        role,
        pids,
        spawned_at: now - ms(spawned),
        ready_at: Some(now - ms(ready)),
        signalled_at: signalled.map(|t| now - ms(t)),
    };
    let draining = view(2, Role::Draining, vec![102], 3500, 2500, Some(500));
    assert_eq!(machine.views(), [draining, view(3, Role::Serving, vec![103], 1500, 500, None)]);
    assert_eq!(machine.live_pids(), [102, 103]);
    assert_eq!(machine.counters(), Counters { restarts: 2, failures: 0, respawns: 0 });
    let first = Outcome::Restarted {
        generation: 2,
        pids: vec![102],
        spawn_to_ready: s(1),
        signal_to_old_gone: Some(ms(500)),
    };
    assert_eq!(machine.last_outcome(), Some(&first));
    assert_eq!(machine.next_deadline(), Some(now + ms(29_500)), "generation 2's drain timeout");
    assert_eq!(machine.snapshot(), recorded(), "nothing lost");
    let fx = machine.handle(now + s(1), Input::Exited { pid: 102, status: ExitStatus::Code(0) });
    let second = Outcome::Restarted {
        generation: 3,
        pids: vec![103],
        spawn_to_ready: s(1),
        signal_to_old_gone: Some(ms(1500)),
    };
    assert_eq!(replies(&fx), [(2, second)]);
}

/// If the machine's shape changes, this fails: a change that an older
/// handover could not read needs a new record format (and a file for it).
#[test]
fn the_format_2_record_is_what_this_version_writes() {
    let run = recorded_machine();
    assert_eq!(run.at(5500), taken());
    let written = serde_json::to_string_pretty(&run.machine.snapshot()).unwrap();
    if std::env::var_os("UPDATE_RECORD").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/machine/tests/snapshot/v2.json");
        std::fs::write(path, format!("{written}\n")).unwrap();
    }
    assert_eq!(run.machine.snapshot(), recorded(), "UPDATE_RECORD=1 rewrites v2.json");
    assert_eq!(written.trim_end(), RECORDED.trim_end());
}

/// A handover before format 2 wrote this: it reads as the same machine.
#[test]
fn the_format_1_record_reads_as_the_same_machine() {
    assert_eq!(recorded_v1(), Ok(recorded()));
    let restored = Machine::restore(recorded_policy(), recorded_v1().unwrap(), taken());
    assert_eq!(restored.map(|m| m.snapshot()), Ok(recorded()));
}

/// A newer writer's fields are skipped; fields that a newer one may drop take their default.
#[test]
fn unknown_fields_are_ignored_and_missing_ones_default() {
    for text in [RECORDED, RECORDED_V1] {
        let read = |value: Value| match text == RECORDED {
            true => serde_json::from_value::<Snapshot>(value).map_err(|e| e.to_string()),
            false => from_v1(value, taken()).map_err(|e| e.message),
        };
        let mut newer: Value = serde_json::from_str(text).unwrap();
        newer["cgroup"] = json!({"path": "/sys/fs/cgroup/x"});
        newer["phase"]["budget"] = json!(3);
        newer["current"]["workers"][0]["rss"] = json!(1 << 20);
        assert_eq!(read(newer.clone()), Ok(recorded()));
        for dropped in ["learned", "counters", "last_outcome", "next_watchdog", "waiters"] {
            newer.as_object_mut().unwrap().remove(dropped);
        }
        let json = serde_json::to_value(read(newer).unwrap()).unwrap();
        let fields = ["learned", "counters", "last_outcome", "waiters"].map(|f| json[f].clone());
        assert_eq!(fields, [json!(false), json!(Counters::default()), json!(null), json!([])]);
    }
}

/// The format 1 record with `edit` made, restored.
fn edited(edit: impl FnOnce(&mut Value)) -> crate::error::Result<Machine> {
    let mut record: Value = serde_json::from_str(RECORDED_V1).unwrap();
    edit(&mut record);
    Machine::restore(recorded_policy(), from_v1(record, taken())?, taken())
}

/// A change to the record, as a table entry.
type Change = fn(&mut Value);

#[test]
fn a_snapshot_no_machine_could_be_in_is_refused_in_one_line() {
    let cases: [(Change, &str); 9] = [
        (|r| r["format"] = json!(2), "format 2 is not 1"),
        (
            |r| r["current"]["workers"][0]["pid"] = json!(0),
            "snapshot refused: generation 3: pid 0 is not a process",
        ),
        (
            |r| r["current"]["workers"][0]["pid"] = json!(-1),
            "snapshot refused: generation 3: pid -1 is not a process",
        ),
        (|r| r["current"]["workers"][0]["pid"] = json!(102), "snapshot refused: pid 102 held twice"),
        (
            |r| r["current"]["workers"][0]["index"] = json!(1),
            "snapshot refused: generation 3: worker 1 is out of 0..1 or twice",
        ),
        (
            |r| r["phase"]["generation"] = json!(2),
            "snapshot refused: generation 3 was never handed out (last 2)",
        ),
        (|r| r["current"]["number"] = json!(2), "snapshot refused: generation 2 is numbered 0 or held twice"),
        (|r| r["old"][0]["signal_at"] = json!(-1), "old generation 2 is either to be told to stop or told"),
        (
            |r| r["old"][0]["spawned_at"] = json!(1),
            "snapshot refused: generation 2: spawned_at is 1 ns after now",
        ),
    ];
    for (edit, why) in cases {
        assert_eq!(edited(edit).expect_err(why).message, why);
    }
}
