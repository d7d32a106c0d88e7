//! Readiness seen from outside: a starting worker seen waiting for
//! connections on a listener (or holding one it accepted) is ready in auto
//! mode (until learned) and accepting mode; where the supervisor watches,
//! the alive rule holds only for workers it cannot see, and a worker never
//! seen fails at the ready timeout.
use super::*;

fn watching(mode: ReadyMode) -> Policy {
    Policy { ready: mode, observe: true, ..policy() }
}

fn seen(pid: Pid) -> Input {
    Input::Accepting { pid, member: pid + 1, sighting: Sighting::Waiting { call: "epoll_wait", fd: 3 } }
}

/// Generation 1 seen accepting at 5 ms.
fn serving(mode: ReadyMode) -> Run {
    let mut run = Run::new(watching(mode));
    run.step(0, Input::Start);
    run.step(5, seen(101));
    run
}

#[test]
fn a_worker_seen_accepting_is_ready_at_once_with_the_evidence() {
    for mode in [ReadyMode::Auto, ReadyMode::Accepting] {
        let mut run = Run::new(watching(mode));
        run.step(0, Input::Start);
        assert_eq!(run.deadline_ms(), Some(10 * SEC), "{mode:?}: the ready timeout, not the interval");
        let fx = run.step(12, seen(101));
        let how = ReadyBy::Seen { member: 102, sighting: Sighting::Waiting { call: "epoll_wait", fd: 3 } };
        assert_eq!(events(&fx), [Event::Ready { generation: 1, pids: vec![101], after: ms(12), how }]);
        assert_eq!(status(&fx), Some(vec![(1, 101)]));
    }
}

#[test]
fn a_restart_switches_when_the_new_generation_is_seen_not_after_the_interval() {
    let mut run = serving(ReadyMode::Auto);
    run.step(2 * SEC, Input::Hup);
    assert!(run.tick(3 * SEC).is_empty(), "alive an interval is not enough where it is watched");
    let fx =
        run.step(3500, Input::Accepting { pid: 102, member: 102, sighting: Sighting::Accepted { fd: 3 } });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    let how = ReadyBy::Seen { member: 102, sighting: Sighting::Accepted { fd: 3 } };
    assert_eq!(events(&fx)[0], Event::Ready { generation: 2, pids: vec![102], after: ms(1500), how });
}

#[test]
fn a_worker_never_seen_fails_at_the_ready_timeout_and_is_named() {
    for (mode, awaited) in
        [(ReadyMode::Auto, Awaited::AcceptingOrNotify), (ReadyMode::Accepting, Awaited::Accepting)]
    {
        let mut run = serving(mode);
        run.step(2 * SEC, Input::Hup);
        let fx = run.tick(12 * SEC);
        let timeout =
            Event::ReadyTimeout { generation: 2, pids: vec![102], after: ms(10_000), awaited, serving: true };
        assert_eq!(events(&fx)[0], timeout, "{mode:?}");
        assert_eq!(signals(&fx), [(102, Signal::SIGTERM)], "the new generation only");
    }
}

#[test]
fn a_worker_that_cannot_be_watched_is_ready_alive_after_the_interval() {
    let mut run = serving(ReadyMode::Auto);
    run.step(2 * SEC, Input::Hup);
    run.step(2001, Input::Unobservable { pid: 102 });
    assert_eq!(run.deadline_ms(), Some(3 * SEC));
    let fx = run.tick(3 * SEC);
    let ready = Event::Ready { generation: 2, pids: vec![102], after: ms(1000), how: ReadyBy::Alive };
    assert_eq!(events(&fx)[0], ready);
}

#[test]
fn ready_messages_count_in_auto_mode_but_not_in_accepting_mode() {
    let mut run = Run::new(watching(ReadyMode::Accepting));
    run.step(0, Input::Start);
    assert!(run.step(5, Input::Ready { pid: 101 }).is_empty());
    assert_eq!(run.machine.readiness(), (ReadyMode::Accepting, false), "nothing learned");
    let mut run = Run::new(watching(ReadyMode::Auto));
    run.step(0, Input::Start);
    let fx = run.step(5, Input::Ready { pid: 101 });
    assert!(events(&fx).contains(&Event::Ready {
        generation: 1,
        pids: vec![101],
        after: ms(5),
        how: ReadyBy::Notified
    }));
}

#[test]
fn once_learned_being_seen_accepting_is_not_enough() {
    let mut run = Run::new(watching(ReadyMode::Auto));
    run.step(0, Input::Start);
    run.step(5, Input::Ready { pid: 101 });
    run.step(2 * SEC, Input::Hup);
    assert!(run.step(2010, seen(102)).is_empty(), "a worker that sent READY=1 once is waited for");
    let fx = run.step(2500, Input::Ready { pid: 102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
}

#[test]
fn with_nothing_to_watch_auto_mode_keeps_the_alive_rule() {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    assert_eq!(run.deadline_ms(), Some(SEC));
    let fx = run.tick(SEC);
    assert_eq!(
        events(&fx)[0],
        Event::Ready { generation: 1, pids: vec![101], after: ms(1000), how: ReadyBy::Alive }
    );
}

#[test]
fn a_sighting_of_a_stranger_or_of_a_serving_worker_changes_nothing() {
    let mut run = serving(ReadyMode::Auto);
    assert!(run.step(10, seen(999)).is_empty());
    assert!(run.step(20, seen(101)).is_empty());
    run.step(2 * SEC, Input::Hup);
    assert!(run.step(2010, seen(101)).is_empty(), "the serving generation is not the one starting");
}
