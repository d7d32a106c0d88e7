//! Auto mode learns from the workers: once one has sent `READY=1`, new
//! workers count as ready only when they send it too (with the ready
//! timeout), as in notify mode. Until then, start_server's rule.
use super::*;

fn learned_event(pid: Pid) -> Event {
    Event::ReadyLearned { pid, timeout: Some(Duration::from_secs(10)) }
}

fn learned_count(fx: &[Effect]) -> usize {
    events(fx).iter().filter(|e| matches!(e, Event::ReadyLearned { .. })).count()
}

/// Generation 1 started at 0 and said `READY=1` at 20 ms: learned.
fn learned() -> Run {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    run.step(20, Input::Ready { pid: 101 });
    run
}

#[test]
fn the_first_ready_message_is_learned_and_logged_once() {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    assert_eq!(run.machine.readiness(), (ReadyMode::Auto, false));
    let fx = run.step(20, Input::Ready { pid: 101 });
    let ready = Event::Ready { generation: 1, pids: vec![101], after: ms(20), how: ReadyBy::Notified };
    assert_eq!(events(&fx), [learned_event(101), ready]);
    assert_eq!(run.machine.readiness(), (ReadyMode::Auto, true));
    assert!(run.step(30, Input::Ready { pid: 101 }).is_empty(), "said once");
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2100, Input::Ready { pid: 102 });
    assert_eq!(learned_count(&fx), 0);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)], "switched at READY=1");
}

#[test]
fn a_stranger_teaches_nothing_and_neither_alive_nor_notify_mode_learns() {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    assert!(run.step(10, Input::Ready { pid: 999 }).is_empty());
    assert_eq!(run.machine.readiness(), (ReadyMode::Auto, false));
    for mode in [ReadyMode::Alive, ReadyMode::Notify] {
        let mut run = Run::new(Policy { ready: mode, ..policy() });
        run.step(0, Input::Start);
        assert_eq!(learned_count(&run.step(10, Input::Ready { pid: 101 })), 0);
        assert_eq!(run.machine.readiness(), (mode, false));
    }
}

#[test]
fn once_learned_a_generation_is_switched_to_at_ready_not_after_the_interval() {
    let mut run = learned();
    run.step(2 * SEC, Input::Hup);
    assert_eq!(run.deadline_ms(), Some(12 * SEC), "the ready timeout, not the interval");
    let fx = run.tick(3 * SEC);
    assert!(fx.is_empty(), "alive for an interval is not enough: {fx:?}");
    let fx = run.step(3500, Input::Ready { pid: 102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
    let ready = Event::Ready { generation: 2, pids: vec![102], after: ms(1500), how: ReadyBy::Notified };
    assert_eq!(events(&fx)[0], ready);
}

#[test]
fn once_learned_a_silent_generation_fails_at_the_ready_timeout_and_the_old_one_is_untouched() {
    let mut run = learned();
    let fx = run.step(2 * SEC, Input::Restart { request: 4 });
    assert_eq!(spawns(&fx), [2]);
    for ms in [3 * SEC, 5 * SEC, 11 * SEC] {
        assert!(run.tick(ms).is_empty(), "at {ms} ms");
    }
    let fx = run.tick(12 * SEC);
    let timeout = Event::ReadyTimeout {
        generation: 2,
        pids: vec![102],
        after: ms(10_000),
        awaited: Awaited::Learned,
        serving: true,
    };
    assert_eq!(events(&fx)[0], timeout);
    assert_eq!(signals(&fx), [(102, Signal::SIGTERM)], "the new generation only");
    assert_eq!(status(&fx), Some(vec![(1, 101), (2, 102)]));
    let failure = Failure::NotReady { after: ms(10_000) };
    assert_eq!(replies(&fx), [(4, Outcome::Failed { generation: Some(2), failure })]);
    assert_eq!(spawns(&fx), [3], "tried again, as start_server does");
    let fx = run.step(12 * SEC + 5, Input::Exited { pid: 102, status: ExitStatus::Code(0) });
    assert_eq!(status(&fx), Some(vec![(1, 101)]), "generation 1 serves on");
    assert!(signals(&fx).is_empty());
}

#[test]
fn a_slow_starter_is_switched_to_at_its_ready_message_not_at_the_interval() {
    // READY=1 after 1.5 s, --interval 1: the first generation is alive at
    // 1 s, as start_server says; its READY=1 at 1.5 s is learned.
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    let fx = run.tick(SEC);
    let alive = Event::Ready { generation: 1, pids: vec![101], after: ms(1000), how: ReadyBy::Alive };
    assert_eq!(events(&fx), [alive]);
    let fx = run.step(1500, Input::Ready { pid: 101 });
    assert_eq!(fx, [Effect::Log(learned_event(101))]);
    run.step(5 * SEC, Input::Hup);
    let fx = run.tick(6 * SEC);
    assert!(signals(&fx).is_empty(), "not at the interval: {fx:?}");
    let fx = run.step(6500, Input::Ready { pid: 102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)], "at READY=1");
    let ready = Event::Ready { generation: 2, pids: vec![102], after: ms(1500), how: ReadyBy::Notified };
    assert_eq!(events(&fx)[0], ready);
}

#[test]
fn a_generation_starting_when_the_rule_is_learned_waits_for_ready_too() {
    let mut run = Run::new(policy());
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(1200, Input::Hup);
    assert_eq!(run.deadline_ms(), Some(2200), "alive after the interval, so far");
    run.step(1500, Input::Ready { pid: 101 });
    assert_eq!(run.deadline_ms(), Some(11_200), "now the ready timeout");
    assert!(signals(&run.tick(2200)).is_empty());
    let fx = run.step(2700, Input::Ready { pid: 102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)]);
}

#[test]
fn without_any_ready_message_nothing_changes_from_start_server() {
    let mut run = Run::serving();
    let mut fx = run.step(2 * SEC, Input::Hup);
    assert_eq!(run.deadline_ms(), Some(3 * SEC));
    fx.extend(run.tick(3 * SEC));
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM)], "alive after --interval");
    fx.extend(run.step(3500, Input::Exited { pid: 101, status: ExitStatus::Code(0) }));
    fx.extend(run.step(4 * SEC, Input::Hup));
    fx.extend(run.tick(5 * SEC));
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (102, Signal::SIGTERM)]);
    assert_eq!(learned_count(&fx), 0);
    assert_eq!(run.machine.readiness(), (ReadyMode::Auto, false));
    assert_eq!(run.spawned, [1, 2, 3]);
}

#[test]
fn siblings_of_the_first_worker_to_say_ready_are_waited_for() {
    let mut run = Run::new(Policy { workers: 2, ..policy() });
    run.step(0, Input::Start);
    let fx = run.step(300, Input::Ready { pid: 101 });
    assert_eq!(events(&fx), [learned_event(101)]);
    assert!(status(&run.tick(SEC)).is_none(), "worker 1101 has not said it");
    let fx = run.step(1400, Input::Ready { pid: 1101 });
    assert_eq!(status(&fx), Some(vec![(1, 101), (1, 1101)]));
}

/// Whether worker `index` of the serving generation counts as ready.
fn serving_ready(run: &Run, index: usize) -> bool {
    let current = run.machine.current.as_ref().expect("a serving generation");
    current.workers.iter().any(|w| w.live().is_some_and(|w| w.index == index && w.ready))
}

#[test]
fn a_worker_respawned_in_the_serving_generation_is_ready_only_at_its_ready_message() {
    for learn in [false, true] {
        let mut run = Run::new(Policy { workers: 2, ..policy() });
        run.step(0, Input::Start);
        run.tick(SEC);
        if learn {
            run.step(1100, Input::Ready { pid: 101 });
        }
        run.step(1200, Input::Exited { pid: 1101, status: ExitStatus::Code(1) });
        assert_eq!(spawns(&run.tick(1200)), [1], "respawned alone");
        assert!(!serving_ready(&run, 1));
        // Unlearned: alive an interval after the respawn; learned: no such deadline.
        assert_eq!(run.deadline_ms(), (!learn).then_some(2200));
        run.tick(2200);
        assert_eq!(serving_ready(&run, 1), !learn);
        run.step(2500, Input::Ready { pid: 1101 });
        assert!(serving_ready(&run, 1));
    }
}
