//! `handover drill`: run a server under handover, drive load at its
//! listeners through hot restarts, and report whether any client noticed.
//!
//! `args` splits the command line between the drill and the supervisor;
//! `run` orders the steps; `subject` starts the supervisor (handover, or a
//! start_server-compatible `--supervisor`), restarts it, measures it at
//! rest and checks what it leaves behind; `load` generates the requests
//! and records every one; `progress` shows how far it has got while it
//! runs; `report` turns the samples and the restarts' records into
//! numbers, a verdict and the table, JSON and JUnit renderings.
pub mod args;
pub mod load;
pub mod progress;
pub mod report;
pub mod run;
pub mod subject;

use std::ffi::OsString;

use crate::event_loop::Fatal;

/// `handover drill ARGS...` (the arguments after the word `drill`).
pub fn main(args: Vec<OsString>) -> Result<i32, Fatal> {
    let (own, supervisor) = args::split(args);
    let drill = match args::parse(own) {
        Ok(drill) => drill,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            let _ = e.print();
            return Ok(0);
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            return Err(Fatal::new(2, format!("drill: {first} (see handover drill --help)")));
        }
    };
    if !supervisor.iter().any(|a| a == "--")
        && supervisor.iter().all(|a| a.to_string_lossy().starts_with('-'))
    {
        return Err(Fatal::new(
            2,
            "drill: no server command given; usage: handover drill [OPTIONS] -- COMMAND",
        ));
    }
    run::run(drill, supervisor)
}
