//! Stopping a generation that never became ready: it serves no one, so it
//! gets `--ready-timeout` to go (unless `--drain-timeout`, or at shutdown
//! `--stop-timeout`, says otherwise), then SIGKILL to its groups.
use super::*;

fn notify() -> Policy {
    Policy { ready: ReadyMode::Notify, ..policy() }
}

fn unready(pid: Pid, generation: u64, after: Duration) -> Event {
    Event::UnreadyStopTimeout { pid, generation, after }
}

#[test]
fn a_stop_before_the_first_generation_is_ready_kills_it_after_the_ready_timeout() {
    // (policy, when SIGKILL goes to the group of 101, with this event)
    let table = [
        (notify(), Some(10_500), Some(unready(101, 1, ms(10_000)))),
        (
            Policy { ready_timeout: Some(ms(2_000)), ..notify() },
            Some(2_500),
            Some(unready(101, 1, ms(2_000))),
        ),
        (Policy { ready_timeout: None, ..notify() }, Some(10_500), Some(unready(101, 1, ms(10_000)))),
        (Policy { stop_timeout: Some(ms(3_000)), ..notify() }, Some(3_500), None),
        (policy(), Some(10_500), Some(unready(101, 1, ms(10_000)))),
    ];
    for (policy, kill_at, event) in table {
        let mut run = Run::new(policy.clone());
        run.step(0, Input::Start);
        let fx = run.step(500, Input::Terminate(Signal::SIGTERM));
        assert_eq!(signals(&fx), [(101, Signal::SIGTERM)], "{policy:?}");
        assert_eq!(run.deadline_ms(), kill_at, "{policy:?}");
        let at = kill_at.unwrap();
        assert!(signals(&run.tick(at - 1)).is_empty(), "{policy:?}");
        let fx = run.tick(at);
        assert_eq!(signals(&fx), [(101, Signal::SIGKILL)], "{policy:?}");
        assert_eq!(events(&fx).into_iter().find(|e| matches!(e, Event::UnreadyStopTimeout { .. })), event);
        assert_eq!(run.deadline_ms(), None, "killed once: {policy:?}");
        let killed = ExitStatus::Signal { signal: libc::SIGKILL, core: false };
        assert_eq!(exit(&run.step(at + 5, Input::Exited { pid: 101, status: killed })), Some(0));
    }
}

#[test]
fn a_ready_generation_is_still_waited_for_without_stop_timeout() {
    let mut run = Run::new(notify());
    run.step(0, Input::Start);
    run.step(100, Input::Ready { pid: 101 });
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2500, Input::Terminate(Signal::SIGTERM));
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (102, Signal::SIGTERM)]);
    assert_eq!(run.deadline_ms(), Some(12_500), "the starting generation only");
    let fx = run.tick(12_500);
    assert_eq!(signals(&fx), [(102, Signal::SIGKILL)], "the serving one is waited for, as start_server");
    assert_eq!(events(&fx), [unready(102, 2, ms(10_000))]);
    assert_eq!(run.deadline_ms(), None);
    let killed = ExitStatus::Signal { signal: libc::SIGKILL, core: false };
    assert_eq!(exit(&run.step(12_600, Input::Exited { pid: 102, status: killed })), None);
}

#[test]
fn a_failed_start_that_ignores_term_is_killed_after_the_ready_timeout_or_the_drain_timeout() {
    for (drain, kill_at) in [(None, 22_000), (Some(ms(3_000)), 15_000)] {
        let mut run = Run::new(Policy { drain_timeout: drain, ..notify() });
        run.step(0, Input::Start);
        run.step(100, Input::Ready { pid: 101 });
        run.step(2 * SEC, Input::Hup);
        let fx = run.tick(12 * SEC);
        assert_eq!(signals(&fx), [(102, Signal::SIGTERM)], "not ready after 10 s");
        assert_eq!(signals(&run.step(13_100, Input::Ready { pid: 103 })), [(101, Signal::SIGTERM)]);
        run.step(13_200, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
        assert_eq!(run.machine.views().len(), 2, "generation 3 serves, 2 drains");
        assert_eq!(run.deadline_ms(), Some(kill_at), "drain: {drain:?}");
        let fx = run.tick(kill_at);
        assert_eq!(signals(&fx), [(102, Signal::SIGKILL)], "drain: {drain:?}");
        let event = events(&fx).pop().unwrap();
        match drain {
            None => assert_eq!(event, unready(102, 2, ms(10_000))),
            Some(after) => assert_eq!(event, Event::DrainTimeout { pid: 102, after }),
        }
        assert_eq!(run.deadline_ms(), None);
    }
}
