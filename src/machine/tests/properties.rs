//! Random runs: after a start, any sequence of signals, exits, READY=1
//! messages, restart requests, file changes and ticks at random times,
//! with spawn feedback through `driver::feed` (fresh pids; some spawns
//! fail). After every step the invariants hold (`invariants.rs`,
//! `machine/check.rs`); a failing run is shrunk to a short one. The
//! snapshot tests (`snapshot.rs`) drive their machines the same way.
use proptest::prelude::*;
use proptest::sample::Index;

use super::invariants::Watch;
use super::*;

/// A pid no worker ever gets: workers get 1000 and up.
const STRANGERS: std::ops::Range<Pid> = 2..50;

#[derive(Clone, Debug)]
pub(super) enum Pick {
    /// One of the live workers, if any.
    Live(Index),
    Stranger(Pid),
}

#[derive(Clone, Debug)]
pub(super) enum Op {
    Hup,
    Restart,
    Ready(Pick),
    Accepting(Pick),
    Unobservable(Pick),
    Exited(Pick, ExitStatus),
    Terminate(Signal),
    Forward(Signal),
    Changed,
    Tick,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![4 => any::<Index>().prop_map(Pick::Live), 1 => STRANGERS.prop_map(Pick::Stranger)]
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        Just(ExitStatus::Code(0)),
        Just(ExitStatus::Code(1)),
        Just(ExitStatus::Code(78)),
        Just(ExitStatus::Code(126)),
        Just(ExitStatus::Code(127)),
        Just(ExitStatus::Signal { signal: 9, core: false }),
        Just(ExitStatus::Signal { signal: 11, core: true }),
        Just(ExitStatus::Signal { signal: 15, core: false }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Hup),
        1 => Just(Op::Restart),
        3 => pick().prop_map(Op::Ready),
        2 => pick().prop_map(Op::Accepting),
        1 => pick().prop_map(Op::Unobservable),
        3 => (pick(), exit_status()).prop_map(|(p, s)| Op::Exited(p, s)),
        1 => prop_oneof![Just(Signal::SIGTERM), Just(Signal::SIGINT)].prop_map(Op::Terminate),
        1 => prop_oneof![Just(Signal::SIGUSR1), Just(Signal::SIGUSR2), Just(Signal::SIGWINCH)]
            .prop_map(Op::Forward),
        1 => Just(Op::Changed),
        5 => Just(Op::Tick),
    ]
}

pub(super) fn policies() -> impl Strategy<Value = Policy> {
    let ready = prop_oneof![
        Just(ReadyMode::Alive),
        Just(ReadyMode::Notify),
        Just(ReadyMode::Auto),
        Just(ReadyMode::Accepting)
    ];
    let secs = |s: u64| prop::option::of(Just(Duration::from_secs(s)));
    (
        (ready, 1..=3usize, prop::bool::ANY, secs(3), secs(5)),
        (secs(20), secs(7), prop::bool::ANY, prop::option::of(Just(3u32)), prop::bool::ANY),
    )
        .prop_map(
            |((ready, workers, delay, drain, stop), (auto, watchdog, stop_on_78, attempts, observe))| {
                Policy {
                    ready,
                    observe,
                    workers,
                    kill_old_delay: if delay { Duration::from_secs(2) } else { Duration::ZERO },
                    drain_timeout: drain,
                    stop_timeout: stop,
                    auto_restart: auto,
                    watchdog,
                    stop_on_exit: if stop_on_78 { vec![78] } else { Vec::new() },
                    max_start_attempts: attempts,
                    ..policy()
                }
            },
        )
}

/// Which spawns fail (cycled).
pub(super) fn fails() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(prop::bool::weighted(0.1), 1..16)
}

/// Up to 60 inputs, each with the milliseconds that pass before it.
pub(super) fn ops() -> impl Strategy<Value = Vec<(Op, u64)>> {
    prop::collection::vec((op(), prop_oneof![3 => 0..300u64, 2 => 300..3000u64]), 0..60)
}

/// The machine with an executor that hands out fresh pids, and fails the
/// spawns that `fails` says (cycled).
pub(super) struct Sim {
    pub machine: Machine,
    fails: Vec<bool>,
    spawns: usize,
    next_pid: Pid,
    watch: Watch,
    out: Vec<Effect>,
    pub now: Moment,
    /// The effects of the last step.
    pub fx: Vec<Effect>,
}

impl Perform for Sim {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn perform(&mut self, effect: Effect) -> Step {
        let step = match effect {
            Effect::Spawn { generation, index } => {
                let fail = self.fails[self.spawns % self.fails.len()];
                self.spawns += 1;
                if fail {
                    let error = SpawnError { what: "exec ./server".into(), errno: libc::EACCES };
                    Step::Then(Input::SpawnFailed { generation, index, error })
                } else {
                    let pid = self.next_pid;
                    self.next_pid += 1;
                    self.watch.spawned(pid, generation, self.now);
                    Step::Then(Input::Spawned { generation, index, pid })
                }
            }
            Effect::Exit(code) => Step::Exit(code),
            _ => Step::Done,
        };
        self.out.push(effect);
        step
    }
}

impl Sim {
    pub fn new(policy: &Policy, fails: Vec<bool>) -> Sim {
        Sim {
            machine: Machine::new(policy.clone()),
            fails,
            spawns: 0,
            next_pid: 1000,
            watch: Watch::default(),
            out: Vec::new(),
            now: Moment::from_nanos(T0),
            fx: Vec::new(),
        }
    }

    /// Another `machine` with this one's executor and clock.
    pub fn twin(&self, machine: Machine) -> Sim {
        Sim {
            machine,
            fails: self.fails.clone(),
            spawns: self.spawns,
            next_pid: self.next_pid,
            watch: self.watch.clone(),
            out: Vec::new(),
            now: self.now,
            fx: Vec::new(),
        }
    }

    fn pid(&self, pick: &Pick) -> Pid {
        let live: Vec<Pid> = self.machine.views().into_iter().flat_map(|v| v.pids).collect();
        match pick {
            Pick::Live(index) if !live.is_empty() => live[index.index(live.len())],
            Pick::Live(_) => STRANGERS.start,
            Pick::Stranger(pid) => *pid,
        }
    }

    pub fn input(&mut self, op: &Op, request: RequestId) -> Input {
        match op {
            Op::Hup => Input::Hup,
            Op::Restart => Input::Restart { request },
            Op::Ready(pick) => Input::Ready { pid: self.pid(pick) },
            Op::Accepting(pick) => {
                let pid = self.pid(pick);
                Input::Accepting { pid, member: pid, sighting: Sighting::Waiting { call: "accept", fd: 3 } }
            }
            Op::Unobservable(pick) => Input::Unobservable { pid: self.pid(pick) },
            Op::Exited(pick, status) => Input::Exited { pid: self.pid(pick), status: *status },
            Op::Terminate(signal) => Input::Terminate(*signal),
            Op::Forward(signal) => Input::Forward(*signal),
            Op::Changed => Input::Changed,
            Op::Tick => Input::Tick,
        }
    }
}

impl Sim {
    /// Feed one input at the current time and check everything; true once the machine exited.
    pub fn step(&mut self, policy: &Policy, n: usize, input: Input) -> Result<bool, TestCaseError> {
        let now = self.now;
        self.watch.input(&input);
        let stopping = self.machine.stopping();
        let exit = driver::feed(self, now, [input.clone()]);
        let fx = std::mem::take(&mut self.out);
        let context = || format!("step {n}: {input:?} -> {fx:#?}");
        let checked = self
            .watch
            .step(policy, now, stopping, &fx)
            .and_then(|()| self.machine.check_invariants().map_err(|e| e.message));
        if let Err(e) = checked {
            return Err(TestCaseError::fail(format!("{e}\n{}", context())));
        }
        let deadline = self.machine.next_deadline();
        prop_assert!(
            input != Input::Tick || deadline.is_none_or(|at| at > now),
            "a tick left something due for later: {deadline:?} at {now:?}\n{}",
            context()
        );
        if exit.is_some() {
            prop_assert!(self.machine.views().iter().all(|v| v.pids.is_empty()), "exit with workers left");
        }
        self.fx = fx;
        Ok(exit.is_some())
    }
}

/// A run, with `after` looking at the machine after each step.
pub(super) fn run(
    policy: Policy,
    fails: Vec<bool>,
    ops: Vec<(Op, u64)>,
    mut after: impl FnMut(&Sim) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(&policy, fails);
    let exited = sim.step(&policy, 0, Input::Start)?;
    after(&sim)?;
    if exited {
        return Ok(());
    }
    for (n, (op, ms)) in (1..).zip(ops) {
        sim.now += Duration::from_millis(ms);
        let input = sim.input(&op, n as RequestId);
        let exited = sim.step(&policy, n, input)?;
        after(&sim)?;
        if exited {
            break;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_keep_the_invariants(policy in policies(), fails in fails(), ops in ops()) {
        run(policy, fails, ops, |_| Ok(()))?;
    }
}
