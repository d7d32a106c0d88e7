//! Generations of N workers.
use super::*;

#[test]
fn a_generation_of_n_workers_is_ready_when_all_are() {
    let mut run = Run::new(workers(3));
    let fx = run.step(0, Input::Start);
    assert_eq!(spawns(&fx), [1, 1, 1]);
    run.step(10, Input::Ready { pid: pid_of(1, 0) });
    assert!(status(&run.step(20, Input::Ready { pid: pid_of(1, 2) })).is_none());
    let fx = run.step(30, Input::Ready { pid: pid_of(1, 1) });
    assert_eq!(status(&fx), Some(vec![(1, 101), (1, 1101), (1, 2101)]));
    let pids = vec![101, 1101, 2101];
    assert_eq!(events(&fx), [Event::Ready { generation: 1, pids, after: ms(30), how: ReadyBy::Notified }]);
}

#[test]
fn a_crashed_worker_is_respawned_alone_in_its_generation() {
    let mut run = Run::serving_two();
    let fx = run.step(500, Input::Exited { pid: 1101, status: ExitStatus::Code(1) });
    assert_eq!(status(&fx), Some(vec![(1, 101)]));
    assert_eq!(run.deadline_ms(), Some(SEC), "rate limit: one interval after its last spawn");
    let fx = run.tick(SEC);
    assert_eq!(fx[0], Effect::Spawn { generation: 1, index: 1 });
    assert!(signals(&fx).is_empty(), "no generation switch");
    assert_eq!(run.machine.counters().respawns, 1);
    run.step(1010, Input::Ready { pid: 1101 });
    assert!(spawns(&run.step(1020, Input::Hup)) == [2, 2]);
}

#[test]
fn a_restart_replaces_every_worker_only_after_all_new_ones_are_ready() {
    let mut run = Run::serving_two();
    run.step(SEC, Input::Hup);
    assert!(signals(&run.step(1010, Input::Ready { pid: 102 })).is_empty());
    let fx = run.step(1020, Input::Ready { pid: 1102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (1101, Signal::SIGTERM)]);
}

#[test]
fn one_failing_worker_fails_its_generation_and_stops_its_siblings() {
    let mut run = Run::serving_two();
    run.step(SEC, Input::Hup);
    let fx = run.step(1100, Input::Exited { pid: 1102, status: ExitStatus::Code(2) });
    assert_eq!(signals(&fx), [(102, Signal::SIGTERM)], "the sibling, not the serving generation");
    assert_eq!(status(&fx), Some(vec![(1, 101), (1, 1101), (2, 102)]));
    assert_eq!(run.machine.counters().failures, 1);
    assert_eq!(run.deadline_ms(), Some(2 * SEC));
}

#[test]
fn a_late_spawn_for_a_failed_generation_is_killed() {
    let mut run = Run::new(workers(2));
    let fx = run.machine.handle(run.at(0), Input::Start);
    assert_eq!(spawns(&fx), [1, 1]);
    let error = SpawnError { what: "exec x".into(), errno: libc::ENOENT };
    run.machine.handle(run.at(1), Input::SpawnFailed { generation: 1, index: 0, error });
    let fx = run.machine.handle(run.at(2), Input::Spawned { generation: 1, index: 1, pid: 77 });
    assert_eq!(signals(&fx), [(77, Signal::SIGKILL)]);
}

#[test]
fn a_generation_whose_forks_all_fail_is_reported_once() {
    let mut run = Run::new(workers(3));
    run.machine.handle(run.at(0), Input::Start);
    let error = SpawnError { what: "fork".into(), errno: libc::EAGAIN };
    let logged: Vec<Effect> = (0..3)
        .flat_map(|index| {
            let input = Input::SpawnFailed { generation: 1, index, error: error.clone() };
            run.machine.handle(run.at(1), input)
        })
        .filter(|e| matches!(e, Effect::Log(Event::SpawnFailed { .. })))
        .collect();
    assert_eq!(logged, [Effect::Log(Event::SpawnFailed { generation: 1, error })]);
}

#[test]
fn a_generation_replaced_while_a_worker_waits_for_its_respawn_goes_with_its_last_live_worker() {
    let mut run = Run::serving_two();
    run.step(100, Input::Restart { request: 7 });
    run.step(200, Input::Exited { pid: 1101, status: ExitStatus::Code(1) });
    assert_eq!(run.deadline_ms(), Some(SEC), "respawned an interval after its spawn");
    run.step(300, Input::Ready { pid: 102 });
    let fx = run.step(300, Input::Ready { pid: 1102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    let fx = run.step(400, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    assert!(matches!(replies(&fx)[..], [(7, Outcome::Restarted { generation: 2, .. })]), "{fx:?}");
    let phases: Vec<(u64, Role)> = run.machine.views().iter().map(|v| (v.generation, v.role)).collect();
    assert_eq!(phases, [(2, Role::Serving)]);
    assert!(spawns(&run.tick(SEC)).is_empty(), "no respawn for a replaced generation");
}
