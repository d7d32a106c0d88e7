//! Starting, restarting, respawning and retiring generations.
use super::*;

#[test]
fn first_generation_is_ready_when_alive_after_interval() {
    let mut run = Run::new(policy());
    let fx = run.step(0, Input::Start);
    assert_eq!(spawns(&fx), [1]);
    assert_eq!(events(&fx), [Event::StartingWorker { pid: 101 }]);
    assert_eq!(run.deadline_ms(), Some(SEC));
    assert!(run.tick(SEC - 1).is_empty());
    let fx = run.tick(SEC);
    assert_eq!(status(&fx), Some(vec![(1, 101)]));
    assert_eq!(notes(&fx), [Upward::Ready]);
    assert!(signals(&fx).is_empty());
    assert_eq!(run.deadline_ms(), None, "idle: no wake-ups");
}

#[test]
fn ready_message_ends_probation_at_once_but_not_in_alive_mode() {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    assert!(run.step(10, Input::Ready { pid: 999 }).is_empty(), "stranger ignored");
    let fx = run.step(20, Input::Ready { pid: 101 });
    assert_eq!(status(&fx), Some(vec![(1, 101)]));
    let ready = Event::Ready { generation: 1, pids: vec![101], after: ms(20), how: ReadyBy::Notified };
    let learned = Event::ReadyLearned { pid: 101, timeout: Some(Duration::from_secs(10)) };
    assert_eq!(events(&fx), [learned, ready]);

    let mut run = Run::new(Policy { ready: ReadyMode::Alive, ..policy() });
    run.step(0, Input::Start);
    assert!(run.step(20, Input::Ready { pid: 101 }).is_empty());
    assert_eq!(status(&run.tick(SEC)), Some(vec![(1, 101)]));
}

#[test]
fn hup_switches_generations_after_probation() {
    let mut run = Run::serving();
    let fx = run.step(2 * SEC, Input::Hup);
    assert_eq!(spawns(&fx), [2]);
    assert_eq!(notes(&fx), [Upward::Reloading]);
    assert!(signals(&fx).is_empty());
    let fx = run.tick(3 * SEC);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    assert_eq!(status(&fx), Some(vec![(1, 101), (2, 102)]));
    assert_eq!(notes(&fx), [Upward::Ready]);
    let fx = run.step(3 * SEC + 5, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    assert_eq!(events(&fx), [Event::OldDied { pid: 101, status: ExitStatus::Code(0) }]);
    assert_eq!(status(&fx), Some(vec![(2, 102)]));
}

#[test]
fn hup_never_shortens_probation_and_is_coalesced() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    for ms in [2100, 2200, 2300] {
        let fx = run.step(ms, Input::Hup);
        assert!(spawns(&fx).is_empty() && signals(&fx).is_empty(), "{fx:?}");
    }
    assert_eq!(run.deadline_ms(), Some(3 * SEC), "probation kept");
    let fx = run.tick(3 * SEC);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    assert_eq!(spawns(&fx), [3], "three HUPs, one more restart");
    let fx = run.tick(4 * SEC);
    assert_eq!(signals(&fx), [(102, Signal::SIGTERM)]);
    assert_eq!(run.spawned, [1, 2, 3]);
}

#[test]
fn failed_new_generation_leaves_the_old_one_untouched_and_retries_each_interval() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2300, Input::Exited { pid: 102, status: ExitStatus::Code(3) });
    assert!(signals(&fx).is_empty());
    assert!(status(&fx).is_none());
    let exit3 = ExitStatus::Code(3);
    assert_eq!(
        events(&fx),
        [
            Event::FailedToStart { pid: 102, status: exit3 },
            Event::Diagnosis { generation: 2, status: exit3, hint: Hint::FailedDuringStartup },
        ]
    );
    assert_eq!(run.deadline_ms(), Some(3 * SEC), "one spawn per interval");
    assert_eq!(spawns(&run.tick(3 * SEC)), [3]);
    let fx = run.tick(4 * SEC);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    assert_eq!(status(&fx), Some(vec![(1, 101), (3, 103)]));
}

#[test]
fn hup_while_waiting_to_retry_adds_nothing() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    run.step(2100, Input::Exited { pid: 102, status: ExitStatus::Code(1) });
    let fx = run.step(2200, Input::Hup);
    assert!(spawns(&fx).is_empty());
    assert_eq!(spawns(&run.tick(3 * SEC)), [3]);
    assert!(spawns(&run.tick(4 * SEC)).is_empty(), "no pending restart left");
}

#[test]
fn dead_worker_is_respawned_at_most_once_per_interval() {
    let mut run = Run::serving();
    let fx =
        run.step(1200, Input::Exited { pid: 101, status: ExitStatus::Signal { signal: 9, core: false } });
    let killed = ExitStatus::Signal { signal: 9, core: false };
    assert_eq!(events(&fx), [Event::DiedUnexpectedly { pid: 101, status: killed }]);
    assert_eq!(status(&fx), Some(vec![]));
    assert_eq!(run.deadline_ms(), Some(1200), "last spawn was 1.2 s ago");
    assert_eq!(spawns(&run.tick(1200)), [2]);
    let fx = run.step(1300, Input::Exited { pid: 102, status: ExitStatus::Code(1) });
    assert!(spawns(&fx).is_empty());
    assert_eq!(run.deadline_ms(), Some(2200));
    assert_eq!(spawns(&run.tick(2200)), [3]);
    let fx = run.tick(3200);
    assert!(signals(&fx).is_empty(), "nothing to retire after a respawn");
    assert_eq!(status(&fx), Some(vec![(3, 103)]));
}

#[test]
fn kill_old_delay_cannot_be_shortened_and_reaping_goes_on() {
    let mut run = Run::new(Policy { kill_old_delay: Duration::from_secs(5), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(2 * SEC, Input::Hup);
    let fx = run.tick(3 * SEC);
    assert!(signals(&fx).is_empty());
    assert_eq!(
        events(&fx)[1..],
        [
            Event::NowRunning { signal: Signal::SIGTERM, old: vec![101] },
            Event::SleepingBeforeKill { secs: 5 }
        ]
    );
    for (ms, input) in [(4 * SEC, Input::Hup), (5 * SEC, Input::Tick)] {
        assert!(signals(&run.step(ms, input)).is_empty());
    }
    let fx = run.tick(8 * SEC);
    assert_eq!(events(&fx), [Event::KillingOld]);
    assert!(signals(&fx).contains(&(101, Signal::SIGTERM)));
}

#[test]
fn drain_timeout_kills_the_old_process_group() {
    let mut run = Run::new(Policy { drain_timeout: Some(Duration::from_secs(2)), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(2 * SEC, Input::Hup);
    run.tick(3 * SEC);
    assert_eq!(run.deadline_ms(), Some(5 * SEC));
    let fx = run.tick(5 * SEC);
    assert_eq!(signals(&fx), [(101, Signal::SIGKILL)]);
    assert_eq!(run.deadline_ms(), None, "killed once");
}

#[test]
fn notify_mode_gives_up_on_a_silent_worker() {
    let mut run = Run::new(Policy { ready: ReadyMode::Notify, ..policy() });
    run.step(0, Input::Start);
    run.step(5, Input::Ready { pid: 101 });
    run.step(2 * SEC, Input::Hup);
    assert_eq!(run.deadline_ms(), Some(12 * SEC));
    let fx = run.tick(12 * SEC);
    assert_eq!(signals(&fx), [(102, Signal::SIGTERM)]);
    assert_eq!(spawns(&fx), [3], "retried: the last spawn is an interval ago");
    assert_eq!(status(&fx), Some(vec![(1, 101), (2, 102)]));
    let fx = run.step(12 * SEC + 10, Input::Ready { pid: 103 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
}

#[test]
fn auto_restart_waits_for_old_workers_then_forces() {
    let mut run = Run::new(Policy { auto_restart: Some(Duration::from_secs(10)), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    assert_eq!(run.deadline_ms(), Some(11 * SEC));
    let fx = run.tick(11 * SEC);
    assert_eq!(events(&fx)[0], Event::AutoRestart { interval: 10, forced: false });
    assert_eq!(spawns(&fx), [2]);
    run.tick(12 * SEC);
    // Generation 1 ignores TERM: the next one is forced at twice the interval.
    assert_eq!(run.deadline_ms(), Some(32 * SEC));
    let fx = run.tick(32 * SEC);
    assert_eq!(events(&fx)[0], Event::AutoRestart { interval: 10, forced: true });
}

#[test]
fn old_workers_are_signalled_once_across_quick_restarts() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    run.tick(3 * SEC);
    run.step(3100, Input::Hup);
    let fx = run.tick(4100);
    assert_eq!(signals(&fx), [(102, Signal::SIGTERM)]);
    assert_eq!(status(&fx), Some(vec![(1, 101), (2, 102), (3, 103)]));
}

#[test]
fn watched_changes_restart_once_after_they_settle() {
    let mut run = Run::serving();
    for ms in [2000, 2100, 2250] {
        assert!(spawns(&run.step(ms, Input::Changed)).is_empty());
    }
    assert_eq!(run.deadline_ms(), Some(2550), "pushed back by each change");
    let fx = run.tick(2550);
    assert_eq!(events(&fx)[0], Event::FilesChanged);
    assert_eq!(spawns(&fx), [2]);
    assert!(spawns(&run.tick(3000)).is_empty());
}

#[test]
fn views_show_each_generation_with_its_phase() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let phases: Vec<(u64, Role)> = run.machine.views().iter().map(|v| (v.generation, v.role)).collect();
    assert_eq!(phases, [(1, Role::Serving), (2, Role::Starting)]);
    run.tick(3 * SEC);
    let phases: Vec<(u64, Role)> = run.machine.views().iter().map(|v| (v.generation, v.role)).collect();
    assert_eq!(phases, [(1, Role::Draining), (2, Role::Serving)]);
}
