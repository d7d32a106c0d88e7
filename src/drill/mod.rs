//! `handover drill`: run a server under handover, drive load at its
//! listeners through hot restarts, and report whether any client noticed.
//!
//! `args` splits the command line between the drill and the supervisor;
//! `run` orders the steps; `subject` starts the supervisor (handover, or a
//! start_server-compatible `--supervisor`), restarts it, upgrades it in
//! place (handover only, `--upgrades`), measures it at rest and checks
//! what it leaves behind; `load` generates the requests and records every
//! one; `progress` shows how far it has got while it runs; `report` turns
//! the samples and the restarts' and upgrades' records into numbers, a
//! verdict and the table, JSON and JUnit renderings.
pub mod args;
pub mod load;
pub mod progress;
pub mod report;
pub mod run;
pub mod subject;

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// Set by SIGINT and SIGTERM: the drill stops what it is doing, stops the
/// supervisor and exits 128 + the signal. A second one exits at once.
static SIGNALLED: OnceLock<[(i32, Arc<AtomicBool>); 2]> = OnceLock::new();

fn catch_interrupts() {
    let flags = SIGNALLED.get_or_init(|| [(SIGINT, Arc::default()), (SIGTERM, Arc::default())]);
    for (signal, flag) in flags {
        let any = flags.iter().map(|(_, f)| Arc::clone(f));
        for other in any {
            let _ = signal_hook::flag::register_conditional_shutdown(*signal, 128 + signal, other);
        }
        let _ = signal_hook::flag::register(*signal, Arc::clone(flag));
    }
}

/// The signal that interrupted the drill, if one did.
pub fn interrupted() -> Option<i32> {
    let flags = SIGNALLED.get()?;
    flags.iter().find(|(_, flag)| flag.load(Ordering::Relaxed)).map(|(signal, _)| *signal)
}

/// The error an interrupted drill ends with.
pub fn interruption(signal: i32) -> Error {
    Error::new((128 + signal) as u8, "drill: interrupted; the supervisor and its workers are stopped")
}

/// Sleeps for `period`, or less when the drill is interrupted; whether it
/// slept it all.
pub fn pause(period: Duration) -> bool {
    let end = Instant::now() + period;
    loop {
        let now = Instant::now();
        if interrupted().is_some() {
            return false;
        }
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// `handover drill ARGS...` (the arguments after the word `drill`).
pub fn main(args: Vec<OsString>) -> Result<u8> {
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
            return Err(Error::usage(format!("drill: {first} (see handover drill --help)")));
        }
    };
    if let Some(line) = args::unknown(&supervisor, drill.supervisor.is_some()) {
        return Err(Error::usage(line));
    }
    if !supervisor.iter().any(|a| a == "--")
        && supervisor.iter().all(|a| a.to_string_lossy().starts_with('-'))
    {
        return Err(Error::usage(
            "drill: no server command given; usage: handover drill [OPTIONS] -- COMMAND",
        ));
    }
    catch_interrupts();
    run::run(drill, supervisor)
}
