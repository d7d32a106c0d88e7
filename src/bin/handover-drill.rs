//! handover-drill: the restart drill (README, "Restart drill"), its own
//! executable so that the supervisor's carries neither the load generator
//! nor the progress bars. `handover drill ARGS...` executes the
//! `handover-drill` next to it with the same ARGS; the drill runs the
//! `handover` next to itself.
fn main() -> std::process::ExitCode {
    handover::drill_main()
}
