//! Feeding the machine: one order, shared by the event loop and the tests.
//!
//! A batch of inputs is handled first in, first out. Performing an effect
//! may produce an input (a spawn reports the worker's pid, or why it could
//! not start); those are handled right after the input whose effects made
//! them, in the order of those effects, before the rest of the batch. Once
//! an effect says to exit, nothing more is performed or handled.
use super::time::Moment;
use std::collections::VecDeque;

use super::{Effect, Input, Machine};

/// What performing one effect gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Done,
    /// An input that the effect produced: `Spawned` or `SpawnFailed` for a `Spawn`.
    Then(Input),
    /// Stop feeding: the supervisor exits with this code.
    Exit(i32),
}

/// Whoever owns the machine and performs its effects.
pub trait Perform {
    fn machine(&mut self) -> &mut Machine;
    fn perform(&mut self, effect: Effect) -> Step;
}

/// Hand `inputs` to the machine at `now` and perform every effect,
/// including those of the inputs that effects produce. Returns the exit
/// code once an effect says to exit.
pub fn feed(owner: &mut impl Perform, now: Moment, inputs: impl IntoIterator<Item = Input>) -> Option<i32> {
    let mut queue: VecDeque<Input> = inputs.into_iter().collect();
    while let Some(input) = queue.pop_front() {
        let mut produced = Vec::new();
        for effect in owner.machine().handle(now, input) {
            match owner.perform(effect) {
                Step::Done => {}
                Step::Then(input) => produced.push(input),
                Step::Exit(code) => return Some(code),
            }
        }
        for input in produced.into_iter().rev() {
            queue.push_front(input);
        }
    }
    None
}
