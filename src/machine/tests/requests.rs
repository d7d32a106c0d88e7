//! Restart requests on the control socket and their answers.
use super::*;

#[test]
fn a_restart_request_is_answered_once_the_old_generation_is_gone() {
    let mut run = Run::serving();
    let fx = run.step(2 * SEC, Input::Restart { request: 7 });
    assert_eq!(spawns(&fx), [2]);
    run.step(2100, Input::Restart { request: 8 });
    assert!(replies(&run.tick(3 * SEC)).is_empty(), "old generation still draining");
    let fx = run.step(3 * SEC + 40, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    let expected = Outcome::Restarted {
        generation: 2,
        pids: vec![102],
        spawn_to_ready: Duration::from_secs(1),
        signal_to_old_gone: Some(Duration::from_millis(40)),
    };
    assert_eq!(replies(&fx), [(7, expected)], "request 8 waits for the coalesced generation 3");
    run.tick(4 * SEC);
    let fx = run.step(4 * SEC + 5, Input::Exited { pid: 102, status: ExitStatus::Code(0) });
    assert!(matches!(replies(&fx)[..], [(8, Outcome::Restarted { generation: 3, .. })]));
}

#[test]
fn a_failed_restart_is_answered_with_the_reason_and_rolled_back_upward() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Restart { request: 1 });
    let fx = run.step(2300, Input::Exited { pid: 102, status: ExitStatus::Code(3) });
    let [(1, Outcome::Failed { generation: Some(2), failure })] = &replies(&fx)[..] else { panic!("{fx:?}") };
    let hint = Some(Hint::FailedDuringStartup);
    assert_eq!(failure, &Failure::Exited { pid: 102, status: ExitStatus::Code(3), hint });
    assert!(fx.contains(&Effect::Notify(Upward::Ready)), "the reload is over: still serving");
    let line = StatusLine::RestartFailed { generation: 2, failure: failure.clone(), serving: Some(1) };
    assert!(fx.contains(&Effect::Notify(Upward::Status(line))));
    assert_eq!(spawns(&run.tick(3 * SEC)), [3], "retried as start_server does");
    assert!(notes(&run.tick(4 * SEC)).is_empty(), "no second READY=1 for the retry");
}

#[test]
fn requests_during_shutdown_fail_and_pending_ones_are_released() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Restart { request: 1 });
    let fx = run.step(2100, Input::Terminate(Signal::SIGTERM));
    assert!(matches!(replies(&fx)[..], [(1, Outcome::Failed { generation: None, .. })]));
    let fx = run.step(2200, Input::Restart { request: 2 });
    assert!(matches!(replies(&fx)[..], [(2, Outcome::Failed { generation: None, .. })]));
}
