//! Table tests for the lifecycle: given these inputs at these times, these
//! effects. No processes, no sleeps, no clock.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::driver::{self, Perform, Step};
use super::*;
use crate::machine::event::{ExitStatus, Failure, Hint, Pid, SpawnError};

const SEC: u64 = 1000;

fn policy() -> Policy {
    Policy {
        interval: Duration::from_secs(1),
        ready: ReadyMode::Auto,
        ready_timeout: Some(Duration::from_secs(10)),
        kill_old_delay: Duration::ZERO,
        drain_timeout: None,
        stop_timeout: None,
        signal_on_hup: Signal::SIGTERM,
        signal_on_term: Signal::SIGTERM,
        auto_restart: None,
        workers: 1,
        watchdog: None,
        stop_on_exit: Vec::new(),
        max_start_attempts: None,
        watch_debounce: Duration::from_millis(300),
        orphan_grace: Duration::from_secs(10),
    }
}

struct Run {
    machine: Machine,
    t0: Instant,
    /// The generation of every spawn, in order.
    spawned: Vec<u64>,
    /// The effects of the step under way.
    out: Vec<Effect>,
}

/// Spawns succeed at once, with pid `pid_of(generation, index)`.
impl Perform for Run {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn perform(&mut self, effect: Effect) -> Step {
        let step = match effect {
            Effect::Spawn { generation, index } => {
                self.spawned.push(generation);
                Step::Then(Input::Spawned { generation, index, pid: pid_of(generation, index) })
            }
            Effect::Exit(code) => Step::Exit(code),
            _ => Step::Done,
        };
        self.out.push(effect);
        step
    }
}

/// Pid handed out for worker `index` of generation N: 100 + N + 1000 * index.
fn pid_of(generation: u64, index: usize) -> Pid {
    100 + generation as Pid + 1000 * index as Pid
}

impl Run {
    fn new(policy: Policy) -> Run {
        Run { machine: Machine::new(policy), t0: Instant::now(), spawned: Vec::new(), out: Vec::new() }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feed one input as the event loop does; the effects of the `Spawned`
    /// inputs that its spawns produce are folded into the result.
    fn step(&mut self, ms: u64, input: Input) -> Vec<Effect> {
        driver::feed(self, self.at(ms), [input]);
        std::mem::take(&mut self.out)
    }

    fn tick(&mut self, ms: u64) -> Vec<Effect> {
        self.step(ms, Input::Tick)
    }

    fn deadline_ms(&self) -> Option<u64> {
        self.machine.next_deadline().map(|d| (d - self.t0).as_millis() as u64)
    }

    /// Generation 1 started at 0 and ready (alive) at 1 s.
    fn serving() -> Run {
        let mut run = Run::new(policy());
        run.step(0, Input::Start);
        run.tick(SEC);
        run
    }
}

fn spawns(fx: &[Effect]) -> Vec<u64> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Spawn { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect()
}

fn signals(fx: &[Effect]) -> Vec<(Pid, Signal)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Signal { pid, signal } => Some((*pid, *signal)),
            Effect::KillGroup { pid } => Some((*pid, Signal::SIGKILL)),
            _ => None,
        })
        .collect()
}

fn lines(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Log(event) => Some(event.to_string()),
            _ => None,
        })
        .collect()
}

fn status(fx: &[Effect]) -> Option<Vec<(u64, Pid)>> {
    fx.iter().rev().find_map(|e| match e {
        Effect::WriteStatus(gens) => Some(gens.clone()),
        _ => None,
    })
}

fn notes(fx: &[Effect]) -> Vec<Upward> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Notify(Upward::Status(_)) => None,
            Effect::Notify(up) => Some(up.clone()),
            _ => None,
        })
        .collect()
}

fn exit(fx: &[Effect]) -> Option<i32> {
    fx.iter().find_map(|e| match e {
        Effect::Exit(code) => Some(*code),
        _ => None,
    })
}

#[test]
fn first_generation_is_ready_when_alive_after_interval() {
    let mut run = Run::new(policy());
    let fx = run.step(0, Input::Start);
    assert_eq!(spawns(&fx), [1]);
    assert_eq!(lines(&fx), ["starting new worker 101"]);
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
    assert_eq!(lines(&fx), ["generation 1 (pid 101) is ready (READY=1 after 20ms)"]);

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
    assert_eq!(lines(&fx), ["old worker 101 died, status:0"]);
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
    let text = lines(&fx);
    assert_eq!(text[0], "new worker 102 seems to have failed to start, exit status:768");
    assert!(text[1].starts_with("generation 2 exited with 3: it failed during startup"), "{text:?}");
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
    assert_eq!(lines(&fx), ["worker 101 died unexpectedly with status:9, restarting"]);
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
        lines(&fx)[1..],
        [
            "new worker is now running, sending TERM to old workers:101",
            "sleeping 5 secs before killing old workers"
        ]
    );
    for (ms, input) in [(4 * SEC, Input::Hup), (5 * SEC, Input::Tick)] {
        assert!(signals(&run.step(ms, input)).is_empty());
    }
    let fx = run.tick(8 * SEC);
    assert_eq!(lines(&fx), ["killing old workers"]);
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
fn term_stops_everyone_and_spawns_nothing_more() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2500, Input::Terminate(Signal::SIGTERM));
    assert_eq!(lines(&fx), ["received TERM, sending TERM to all workers:101,102"]);
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (102, Signal::SIGTERM)]);
    assert_eq!(notes(&fx), [Upward::Stopping]);
    assert_eq!(run.deadline_ms(), None);
    let fx = run.step(2600, Input::Exited { pid: 102, status: ExitStatus::Code(0) });
    assert_eq!(lines(&fx), ["worker 102 died, status:0"]);
    assert!(spawns(&run.step(2700, Input::Hup)).is_empty());
    let fx = run.step(2800, Input::Exited { pid: 101, status: ExitStatus::Code(0) });
    assert_eq!(lines(&fx), ["worker 101 died, status:0", "exiting"]);
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
fn other_signals_go_to_the_serving_generation_only() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let fx = run.step(2100, Input::Forward(Signal::SIGUSR1));
    assert_eq!(fx[0], Effect::ReopenLog, "USR1 reopens the log file first");
    assert_eq!(signals(&fx), [(101, Signal::SIGUSR1)]);
    assert_eq!(lines(&fx), ["received USR1, forwarding it to workers:101"]);
    let fx = run.step(2200, Input::Forward(Signal::SIGUSR2));
    assert_eq!(signals(&fx), [(101, Signal::SIGUSR2)]);
    assert!(!fx.contains(&Effect::ReopenLog));
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
    assert_eq!(lines(&fx)[0], "autorestart triggered (interval=10)");
    assert_eq!(spawns(&fx), [2]);
    run.tick(12 * SEC);
    // Generation 1 ignores TERM: the next one is forced at twice the interval.
    assert_eq!(run.deadline_ms(), Some(32 * SEC));
    let fx = run.tick(32 * SEC);
    assert_eq!(lines(&fx)[0], "autorestart triggered (forced, interval=10)");
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

fn replies(fx: &[Effect]) -> Vec<(RequestId, Outcome)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Reply { request, outcome } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn workers(n: usize) -> Policy {
    Policy { workers: n, ready: ReadyMode::Notify, ..policy() }
}

#[test]
fn a_generation_of_n_workers_is_ready_when_all_are() {
    let mut run = Run::new(workers(3));
    let fx = run.step(0, Input::Start);
    assert_eq!(spawns(&fx), [1, 1, 1]);
    run.step(10, Input::Ready { pid: pid_of(1, 0) });
    assert!(status(&run.step(20, Input::Ready { pid: pid_of(1, 2) })).is_none());
    let fx = run.step(30, Input::Ready { pid: pid_of(1, 1) });
    assert_eq!(status(&fx), Some(vec![(1, 101), (1, 1101), (1, 2101)]));
    assert_eq!(lines(&fx), ["generation 1 (pids 101,1101,2101) is ready (READY=1 after 30ms)"]);
}

#[test]
fn a_crashed_worker_is_respawned_alone_in_its_generation() {
    let mut run = Run::new(workers(2));
    run.step(0, Input::Start);
    run.step(10, Input::Ready { pid: 101 });
    run.step(10, Input::Ready { pid: 1101 });
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
    let mut run = Run::new(workers(2));
    run.step(0, Input::Start);
    run.step(10, Input::Ready { pid: 101 });
    run.step(10, Input::Ready { pid: 1101 });
    run.step(SEC, Input::Hup);
    assert!(signals(&run.step(1010, Input::Ready { pid: 102 })).is_empty());
    let fx = run.step(1020, Input::Ready { pid: 1102 });
    assert_eq!(signals(&fx), [(101, Signal::SIGTERM), (1101, Signal::SIGTERM)]);
}

#[test]
fn one_failing_worker_fails_its_generation_and_stops_its_siblings() {
    let mut run = Run::new(workers(2));
    run.step(0, Input::Start);
    run.step(10, Input::Ready { pid: 101 });
    run.step(10, Input::Ready { pid: 1101 });
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

#[test]
fn watchdog_pings_at_its_interval_even_when_idle() {
    let mut run = Run::new(Policy { watchdog: Some(Duration::from_secs(15)), ..policy() });
    run.step(0, Input::Start);
    run.tick(SEC);
    assert_eq!(run.deadline_ms(), Some(15 * SEC));
    assert!(run.tick(15 * SEC).contains(&Effect::Notify(Upward::Watchdog)));
    assert_eq!(run.deadline_ms(), Some(30 * SEC));
}

#[test]
fn views_show_each_generation_with_its_phase() {
    let mut run = Run::serving();
    run.step(2 * SEC, Input::Hup);
    let phases: Vec<(u64, &str)> = run.machine.views().iter().map(|v| (v.generation, v.phase)).collect();
    assert_eq!(phases, [(1, "serving"), (2, "starting")]);
    run.tick(3 * SEC);
    let phases: Vec<(u64, &str)> = run.machine.views().iter().map(|v| (v.generation, v.phase)).collect();
    assert_eq!(phases, [(1, "draining"), (2, "serving")]);
}

#[test]
fn an_exit_code_listed_in_stop_on_exit_stops_with_that_code() {
    let mut run = Run::new(Policy { stop_on_exit: vec![78, 139], ..policy() });
    run.step(0, Input::Start);
    let fx = run.step(50, Input::Exited { pid: 101, status: ExitStatus::Code(78) });
    assert!(lines(&fx)[0].contains("--stop-on-exit"), "{fx:?}");
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
    assert!(lines(&fx).iter().any(|l| l.contains("failed to start 3 times in a row")), "{fx:?}");
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
fn watched_changes_restart_once_after_they_settle() {
    let mut run = Run::serving();
    for ms in [2000, 2100, 2250] {
        assert!(spawns(&run.step(ms, Input::Changed)).is_empty());
    }
    assert_eq!(run.deadline_ms(), Some(2550), "pushed back by each change");
    let fx = run.tick(2550);
    assert_eq!(lines(&fx)[0], "watched files changed, restarting");
    assert_eq!(spawns(&fx), [2]);
    assert!(spawns(&run.tick(3000)).is_empty());
}

#[test]
fn spawn_feedback_comes_next_in_spawn_order_before_the_rest_of_the_batch() {
    let mut run = Run::new(workers(3));
    let now = run.at(0);
    driver::feed(&mut run, now, [Input::Start, Input::Hup]);
    let fx = std::mem::take(&mut run.out);
    let order: Vec<&Event> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Log(event) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            &Event::StartingWorker { pid: 101 },
            &Event::StartingWorker { pid: 1101 },
            &Event::StartingWorker { pid: 2101 },
            &Event::HupCoalesced { generation: 1 },
        ]
    );
}

#[test]
fn nothing_is_fed_after_an_exit() {
    struct Failing(Machine, Vec<Effect>);
    impl Perform for Failing {
        fn machine(&mut self) -> &mut Machine {
            &mut self.0
        }
        fn perform(&mut self, effect: Effect) -> Step {
            let step = match &effect {
                Effect::Spawn { generation, index } => {
                    let error = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
                    Step::Then(Input::SpawnFailed { generation: *generation, index: *index, error })
                }
                Effect::Exit(code) => Step::Exit(*code),
                _ => Step::Done,
            };
            self.1.push(effect);
            step
        }
    }
    let mut failing = Failing(Machine::new(policy()), Vec::new());
    let code = driver::feed(&mut failing, Instant::now(), [Input::Start, Input::Hup]);
    assert_eq!(code, Some(127));
    assert_eq!(failing.1.last(), Some(&Effect::Exit(127)));
    assert!(!failing.1.iter().any(|e| matches!(e, Effect::Log(Event::IgnoredDuringShutdown { .. }))));
}
