//! The `respawns` counter counts workers started again, nothing else.
use super::*;

fn died(run: &mut Run, ms: u64, pid: Pid) {
    run.step(ms, Input::Exited { pid, status: ExitStatus::Code(1) });
}

#[test]
fn respawns_count_only_the_workers_started_again() {
    let one = || Run::serving();
    let two = || Run::serving_two();
    type Scenario = fn(&mut Run);
    let table: [(&str, Run, Scenario, u64); 6] = [
        (
            "the last worker dies: a new generation",
            one(),
            |run| {
                died(run, 2 * SEC, 101);
                run.tick(2 * SEC);
            },
            1,
        ),
        (
            "it dies while its successor starts",
            one(),
            |run| {
                run.step(2 * SEC, Input::Hup);
                died(run, 2100, 101);
                run.tick(3 * SEC);
            },
            0,
        ),
        (
            "it dies while a failed restart waits for its retry",
            one(),
            |run| {
                run.step(2 * SEC, Input::Hup);
                died(run, 2100, 102);
                died(run, 2200, 101);
                run.tick(3 * SEC);
                run.tick(4 * SEC);
            },
            0,
        ),
        (
            "one of two dies: respawned alone",
            two(),
            |run| {
                died(run, 500, 1101);
                run.tick(SEC);
            },
            1,
        ),
        (
            "one of two dies, its generation replaced before its turn",
            two(),
            |run| {
                run.step(100, Input::Restart { request: 7 });
                died(run, 200, 1101);
                run.step(300, Input::Ready { pid: 102 });
                run.step(300, Input::Ready { pid: 1102 });
                run.tick(SEC);
            },
            0,
        ),
        (
            "the last worker dies during a stop",
            one(),
            |run| {
                run.step(2 * SEC, Input::Terminate(Signal::SIGTERM));
                died(run, 2100, 101);
            },
            0,
        ),
    ];
    for (scenario, mut run, steps, respawns) in table {
        steps(&mut run);
        assert_eq!(run.machine.counters().respawns, respawns, "{scenario}");
    }
}
