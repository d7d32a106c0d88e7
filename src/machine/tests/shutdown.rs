//! Stopping: signals, timeouts, exit codes; and what passes through.
use super::*;

#[test]
fn term_stops_everyone_and_spawns_nothing_more() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2500, Input::Terminate(Signal::SIGTERM));
    let (received, sending) = (Signal::SIGTERM, Signal::SIGTERM);
    assert_eq!(events(&fx), [Event::ShutdownReceived { received, sending, pids: vec![101, 102] }]);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (102, Signal::SIGTERM)]);
    assert_eq!(notes(&fx), [Upward::Stopping]);
    assert_eq!(run.deadline_ms(), Some(12_500), "only for 102, which never became ready (--ready-timeout)");
    let fx = run.step(2600, Input::Exited { pid: 102, status: ExitStatus::Code(0) });
    assert_eq!(events(&fx), [Event::WorkerDied { pid: 102, status: ExitStatus::Code(0) }]);
    assert!(spawns(&run.step(2700, Input::Hup)).is_empty());
    let fx = run.step(2800, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    assert_eq!(events(&fx), [Event::WorkerDied { pid: 101, status: ExitStatus::Code(0) }, Event::Exiting]);
    assert_eq!(status(&fx), Some(vec![]));
    assert_eq!(exit(&fx), Some(0));
}

#[test]
fn int_always_sends_term_and_term_sends_signal_on_term() {
    let custom = Policy { signal_on_term: Signal::SIGUSR1, ..policy() };
    for (received, sent) in [(Signal::SIGINT, Signal::SIGTERM), (Signal::SIGTERM, Signal::SIGUSR1)] {
        let mut run = Run::new(custom.clone());
        run.step(0, Input::Start);
        run.tick(SEC);
        assert_eq!(signals(&run.step(2 * SEC, Input::Terminate(received))), [(101, sent)]);
    }
}

#[test]
fn term_while_the_worker_is_dead_spawns_nothing() {
    let mut run = Run::serving();
    run.step(1100, Input::Exited { pid: 101, status: ExitStatus::Code(1) });
    run.tick(1100);
    run.step(1150, Input::Exited { pid: 102, status: ExitStatus::Code(1) });
    let fx = run.step(1200, Input::Terminate(Signal::SIGTERM));
    assert_eq!(exit(&fx), Some(0));
    assert_eq!(run.spawned, [1, 2]);
}

#[test]
fn stop_timeout_kills_every_group_once() {
    let mut run = Run::new(Policy { stop_timeout: Some(Duration::from_secs(3)), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(2 * SEC, Input::Terminate(Signal::SIGTERM));
    assert_eq!(run.deadline_ms(), Some(5 * SEC));
    assert_eq!(signals(&run.tick(5 * SEC)), [(101, Signal::SIGKILL)]);
    assert_eq!(run.deadline_ms(), None);
}

#[test]
fn first_generation_that_cannot_exec_ends_the_supervisor() {
    let mut run = Run::new(policy());
    let fx = run.machine.handle(run.at(0), Input::Start);
    assert_eq!(spawns(&fx), [1]);
    let error = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
    let fx =
        run.machine.handle(run.at(1), Input::SpawnFailed { generation: 1, index: 0, error: error.clone() });
    assert_eq!(exit(&fx), Some(127));

    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.machine.handle(run.at(2001), Input::SpawnFailed { generation: 2, index: 0, error });
    assert_eq!(exit(&fx), None, "later generations are retried");
    assert_eq!(run.deadline_ms(), Some(3 * SEC));
}

#[test]
fn an_exit_code_listed_in_stop_on_exit_stops_with_that_code() {
    let mut run = Run::new(Policy { stop_on_exit: vec![78, 139], ..policy() });
    run.step(0, Input::Start);
    let fx = run.step(50, Input::Exited { pid: 101, status: ExitStatus::Code(78) });
    assert_eq!(events(&fx)[0], Event::StopOnExit { pid: 101, status: ExitStatus::Code(78), code: 78 });
    assert_eq!(exit(&fx), Some(78));
    assert!(spawns(&fx).is_empty());

    let mut run = Run::new(Policy { stop_on_exit: vec![139], workers: 2, ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    let segv = ExitStatus::Signal { signal: 11, core: true };
    let fx = run.step(2 * SEC, Input::Exited { pid: 101, status: segv });
    assert_eq!(signals(&fx), [(1101, Signal::SIGTERM)], "the sibling is stopped");
    let fx = run.step(2100, Input::Exited { pid: 1101, status: ExitStatus::Code(0) });
    assert_eq!(exit(&fx), Some(139), "128 + SIGSEGV");
}

#[test]
fn other_exit_codes_are_respawned_as_before() {
    let mut run = Run::new(Policy { stop_on_exit: vec![78], ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    let fx = run.step(2 * SEC, Input::Exited { pid: 101, status: ExitStatus::Code(1) });
    assert_eq!(exit(&fx), None);
    assert_eq!(spawns(&run.tick(2 * SEC)), [2]);
}

#[test]
fn max_start_attempts_gives_up_on_a_first_generation_that_never_starts() {
    let mut run = Run::new(Policy { max_start_attempts: Some(3), ..policy() });
    run.step(0, Input::Start);
    for (n, ms) in [(1, 100), (2, 1100)] {
        let fx = run.step(ms, Input::Exited { pid: 100 + n, status: ExitStatus::Code(1) });
        assert_eq!(exit(&fx), None);
        run.tick(n as u64 * SEC);
    }
    let fx = run.step(2100, Input::Exited { pid: 103, status: ExitStatus::Code(1) });
    let last =
        Failure::Exited { pid: 103, status: ExitStatus::Code(1), hint: Some(Hint::FailedDuringStartup) };
    assert!(events(&fx).contains(&Event::GaveUp { attempts: 3, last }), "{fx:?}");
    assert_eq!(exit(&fx), Some(1));
}

#[test]
fn max_start_attempts_does_not_apply_once_serving() {
    let mut run = Run::new(Policy { max_start_attempts: Some(1), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2100, Input::Exited { pid: 102, status: ExitStatus::Code(1) });
    assert_eq!(exit(&fx), None, "a failed restart leaves the old generation serving");
}

#[test]
fn other_signals_go_to_the_serving_generation_only() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2100, Input::Forward(Signal::SIGUSR1));
    assert_eq!(signals(&fx), [(101, Signal::SIGUSR1)]);
    assert_eq!(events(&fx), [Event::Forwarded { signal: Signal::SIGUSR1, pids: vec![101] }]);
    let fx = run.step(2200, Input::Forward(Signal::SIGUSR2));
    assert_eq!(signals(&fx), [(101, Signal::SIGUSR2)]);
}

#[test]
fn watchdog_pings_at_its_interval_even_when_idle() {
    let mut run = Run::new(Policy { watchdog: Some(Duration::from_secs(15)), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    assert_eq!(run.deadline_ms(), Some(15 * SEC));
    assert!(run.tick(15 * SEC).contains(&Effect::Notify(Upward::Watchdog)));
    assert_eq!(run.deadline_ms(), Some(30 * SEC));
}
