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
pub mod dest;
pub mod load;
pub mod progress;
pub mod report;
pub mod run;
pub mod subject;

use std::ffi::OsString;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// The first SIGINT or SIGTERM: the drill stops the load, stops the
/// supervisor (killing what it started if it does not stop in a few
/// seconds), removes its directory and exits 128 + the signal.
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// SIGINTs and SIGTERMs so far: from the second on, the drill kills what
/// it started at once instead of waiting for it to stop.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Catches SIGINT and SIGTERM on a thread of its own (signal-hook's
/// self-pipe): they only set the flags above, which the drill looks at.
fn catch_interrupts() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let _ = FIRST_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
            SIGNALS.fetch_add(1, Ordering::SeqCst);
        }
    });
}

/// The signal that interrupted the drill, if one did.
pub fn interrupted() -> Option<i32> {
    Some(FIRST_SIGNAL.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
}

/// Whether a second signal came: what the drill started is killed now.
pub fn hurried() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 2
}

/// The error an interrupted drill ends with; `stopped` says how the
/// supervisor and its workers ended.
pub fn interruption(signal: i32, stopped: &str) -> Error {
    let name = match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    };
    Error::new((128 + signal) as u8, format!("interrupted by {name}; {stopped}"))
}

/// `call`'s outcome, made on a thread of its own; `None` as soon as the
/// drill is interrupted (the thread is left to end when its connection
/// does: the supervisor is stopped, or killed, next).
pub fn unless_interrupted<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(outcome) => return Some(outcome),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if interrupted().is_none() => {}
            Err(_) => return None,
        }
    }
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

/// `handover drill ARGS...` (the arguments after the word `drill`). Every
/// line the drill says about itself starts `handover drill: `, its errors
/// too (printed here; the exit code is the error's).
pub fn main(args: Vec<OsString>) -> Result<u8> {
    Ok(drill(args).unwrap_or_else(|e| {
        let text = e.message.strip_prefix("drill: ").unwrap_or(&e.message);
        eprintln!("handover drill: {}", crate::error::printable(text));
        e.code
    }))
}

fn drill(args: Vec<OsString>) -> Result<u8> {
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
            let help = if first.contains("(see handover drill --help)") {
                ""
            } else {
                " (see handover drill --help)"
            };
            return Err(Error::usage(format!("{first}{help}")));
        }
    };
    if let Some(line) = args::unknown(&supervisor, drill.supervisor.is_some()) {
        return Err(Error::usage(line));
    }
    if !supervisor.iter().any(|a| a == "--")
        && supervisor.iter().all(|a| a.to_string_lossy().starts_with('-'))
    {
        return Err(Error::usage("no server command given; usage: handover drill [OPTIONS] -- COMMAND"));
    }
    catch_interrupts();
    run::run(drill, supervisor)
}
