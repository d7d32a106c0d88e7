//! The order in which `driver::feed` hands inputs to the machine.
use super::*;

#[test]
fn spawn_feedback_comes_next_in_spawn_order_before_the_rest_of_the_batch() {
    let mut run = Run::new(workers(3));
    let now = run.at(0);
    driver::feed(&mut run, now, [Input::Start, Input::Hup]);
    let fx = std::mem::take(&mut run.out);
    assert_eq!(
        events(&fx),
        [
            Event::StartingWorker { pid: 101 },
            Event::StartingWorker { pid: 1101 },
            Event::StartingWorker { pid: 2101 },
            Event::HupCoalesced { generation: 1 },
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
    let code = driver::feed(&mut failing, Moment::from_nanos(T0), [Input::Start, Input::Hup]);
    assert_eq!(code, Some(127));
    assert_eq!(failing.1.last(), Some(&Effect::Exit(127)));
    assert!(!failing.1.iter().any(|e| matches!(e, Effect::Log(Event::IgnoredDuringShutdown { .. }))));
}
