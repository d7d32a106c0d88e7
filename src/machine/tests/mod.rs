//! Table tests for the lifecycle: given these inputs at these times, these
//! effects, as values (their text is tested in `supervisor/words`). No
//! processes, no sleeps, no clock.
use std::time::Duration;

use nix::sys::signal::Signal;

use super::driver::{self, Perform, Step};
use super::*;
use crate::machine::event::{Awaited, ExitStatus, Failure, Hint, Pid, ReadyBy, Sighting, SpawnError};

const SEC: u64 = 1000;
/// The machine clock's reading at the start of a test: an hour after boot.
const T0: u64 = 3600 * 1_000_000_000;

fn policy() -> Policy {
    Policy {
        interval: Duration::from_secs(1),
        ready: ReadyMode::Auto,
        observe: false,
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
    t0: Moment,
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
        Run {
            machine: Machine::new(policy),
            t0: Moment::from_nanos(T0),
            spawned: Vec::new(),
            out: Vec::new(),
        }
    }

    fn at(&self, ms: u64) -> Moment {
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

    /// Two workers (`workers(2)`), both of generation 1 ready.
    fn serving_two() -> Run {
        let mut run = Run::new(workers(2));
        run.step(0, Input::Start);
        run.step(10, Input::Ready { pid: 101 });
        run.step(10, Input::Ready { pid: 1101 });
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

fn events(fx: &[Effect]) -> Vec<Event> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Log(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

mod counters;
mod feed;
mod invariants;
mod learned;
mod observed;
mod properties;
mod requests;
mod restarts;
mod shutdown;
mod snapshot;
mod time;
mod unready;
mod workers;
