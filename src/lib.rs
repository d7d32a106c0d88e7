//! handover's code, shared by its two executables: `handover`
//! (src/main.rs: the supervisor, its client commands and start_server's
//! mode) and `handover-drill` (src/bin/handover-drill.rs: the restart
//! drill, which `handover drill` executes). The drill is reached only from
//! `drill_main`, so the supervisor's binary carries neither the load
//! generator nor the progress bars.
//!
//! Exit codes: 0 clean stop; 1 runtime failure; 2 usage or configuration
//! error; 126/127 the worker (or the drill's executable) cannot be executed
//! / found; 128+N ended by signal N.
mod cli;
mod client;
mod config;
mod drill;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod listen;
mod machine;
mod state;
mod supervisor;
mod sys;
mod wire;

use std::process::ExitCode;

/// `handover` and `start_server`: the name it runs under (`start_server`
/// gives the compatible mode), the command line to `cli`, and the outcome
/// to an exit code with at most one line on stderr.
pub fn supervisor_main() -> ExitCode {
    // A self-upgrade's state record: taken out of the environment before
    // anything else runs, so that nothing started from here sees it.
    let handed = supervisor::upgrade::Handed::take();
    let args = cli::normalize_args(std::env::args_os().collect());
    let compat = cli::invoked_as_start_server(&args);
    let outcome = match args.get(1) {
        Some(word) if word == supervisor::upgrade::VERIFY_FLAG => cli::commands::verify_upgrade(),
        _ if handed.as_ref().is_some_and(supervisor::upgrade::Handed::verifying) => {
            cli::commands::verify_upgrade()
        }
        // Its lines start `handover drill:`, as the drill's own do.
        Some(word) if word == "drill" && !compat => {
            return exit(cli::drill::exec(args.into_iter().skip(2).collect()), "handover drill");
        }
        _ => cli::commands::run(compat, args, handed),
    };
    exit(outcome, if compat { "start_server" } else { "handover" })
}

/// `handover-drill ARGS...`, as `handover drill ARGS...` executes it.
pub fn drill_main() -> ExitCode {
    let args = cli::normalize_args(std::env::args_os().collect());
    exit(drill::main(args.into_iter().skip(1).collect()), "handover")
}

fn exit(outcome: error::Result<u8>, name: &str) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // One line, whatever a value quoted in the message holds.
            eprintln!("{name}: {}", error::printable(&error.message));
            ExitCode::from(error.code)
        }
    }
}
