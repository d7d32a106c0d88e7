//! A worker that ends the way you ask: with an exit code, or killed by a
//! signal, after a delay; to show what the supervisor does with each end.
//!
//! It serves the inherited stream listeners (answering every connection
//! with `exit_codes pid=P gen=G\n`) and, `--after` ms after it started,
//! exits with `--code N` (default 0) or kills itself with `--signal NAME`
//! (`SEGV`, `SIGABRT`, `kill`, `9`...: the default disposition is restored
//! first, and `RLIMIT_CORE` set to 0 so that no core file is left behind).
//! With `--only-generation G` (repeatable) it does so only when
//! `SERVER_STARTER_GENERATION` is one of those; in any other generation it
//! is a well-behaved worker that serves until SIGTERM, then exits 0.
//! SIGTERM during the delay is a clean exit 0 too.
//!
//! What to see with it:
//! - a worker that dies is respawned (as start_server does), at most once
//!   per `--interval`, with the next generation number, whatever its exit
//!   code: `handover --port 0 -- exit_codes --code 3 --after 200
//!   --only-generation 1` ends up serving generation 2;
//! - `--stop-on-exit 78` turns an exit code into a stop instead of endless
//!   respawns (78 is `EX_CONFIG` from sysexits.h: a configuration error that
//!   a restart will not fix): `handover --stop-on-exit 78 --port 0 --
//!   exit_codes --code 78` stops and exits with 78;
//! - a worker killed by signal N counts as exit code 128+N, the shell's
//!   convention (SIGSEGV 11 -> 139, SIGABRT 6 -> 134, SIGKILL 9 -> 137,
//!   SIGTERM 15 -> 143), both in `--stop-on-exit` lists and in the exit code
//!   handover passes on: `--stop-on-exit 139 -- exit_codes --signal SEGV`
//!   exits 139. (handover's own exit code follows the same rule when it
//!   ends because of signal N.)
//!
//! Journal (`--journal FILE`): one line per event, appended with a single
//! `write(2)` on a file opened `O_APPEND`, so generations can share it:
//!
//! ```text
//! start pid=P gen=G            handlers installed
//! ready pid=P gen=G            listeners adopted; READY=1 sent if --notify
//! exit pid=P gen=G code=N      just before exiting with N (--code, or 0 after TERM)
//! kill pid=P gen=G signal=SEGV just before killing itself (name without SIG)
//! term pid=P gen=G             SIGTERM received
//! ```
//!
//! Run: `handover --port 127.0.0.1:0 -- target/debug/examples/exit_codes --code 3 --after 500 --journal /tmp/j`
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;
use signal_hook::consts::signal::SIGTERM;

#[path = "support/mod.rs"]
mod support;
use support::say;
use support::{JournalFile, Listener};

#[derive(Parser)]
#[command(
    name = "exit_codes",
    about = "A worker that exits with a chosen code or signal (see the source header)"
)]
struct Opts {
    /// Append one line per event to FILE.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Exit with N after --after ms [default: 0].
    #[arg(long, value_name = "N", conflicts_with = "signal")]
    code: Option<u8>,
    /// Kill itself with this signal after --after ms (SEGV, SIGABRT, kill, 9...).
    #[arg(long, value_name = "NAME", value_parser = parse_signal)]
    signal: Option<Signal>,
    /// Serve this long before exiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    after: u64,
    /// Exit (or die) only in generation G (repeatable); serve until SIGTERM in others.
    #[arg(long, value_name = "G")]
    only_generation: Vec<u64>,
    /// Send READY=1 to $NOTIFY_SOCKET before the delay.
    #[arg(long)]
    notify: bool,
}

/// Accepts `SEGV`, `SIGSEGV`, `segv` or a number, for signals whose default
/// action ends the process (not STOP, TSTP, CHLD, WINCH...).
fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.to_ascii_uppercase();
    let signal = match upper.parse::<i32>() {
        Ok(n) => Signal::try_from(n).map_err(|_| format!("no signal number {n}"))?,
        Err(_) if upper.starts_with("SIG") => upper.parse().map_err(|_| format!("unknown signal {s:?}"))?,
        Err(_) => format!("SIG{upper}").parse().map_err(|_| format!("unknown signal {s:?}"))?,
    };
    use Signal::*;
    match signal {
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU | SIGCONT | SIGCHLD | SIGURG | SIGWINCH => {
            Err(format!("{signal} does not end a process by default"))
        }
        _ => Ok(signal),
    }
}

struct Journal {
    file: JournalFile,
    head: String,
}

impl Journal {
    /// `EVENT pid=P gen=N EXTRA`.
    fn log(&self, event: &str, extra: &str) {
        self.file.line(&format!("{event} {}", self.head), extra);
    }

    fn exit(&self, code: u8) -> ! {
        self.log("exit", &format!("code={code}"));
        process::exit(code.into())
    }
}

fn main() {
    let opts = Opts::parse();
    let generation = support::generation();
    let file = JournalFile::open(opts.journal.as_deref(), "exit_codes");
    let journal = Journal { file, head: format!("pid={} gen={generation}", process::id()) };

    let mut signals = support::signal_pipe(&[SIGTERM]).unwrap_or_else(|e| {
        say!("exit_codes: cannot install signal handlers: {e}");
        process::exit(1)
    });
    journal.log("start", "");
    let listeners: Vec<Listener> =
        support::inherited_fds().into_iter().map(|(_, fd)| Listener::open(support::adopt(fd)).0).collect();
    if opts.notify {
        support::notify_ready();
    }
    journal.log("ready", "");

    let chosen = opts.only_generation.is_empty() || opts.only_generation.contains(&generation);
    let deadline = chosen.then(|| Instant::now() + Duration::from_millis(opts.after));
    let reply = format!("exit_codes pid={} gen={generation}\n", process::id());
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            end(&opts, &journal);
        }
        let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
        let served: Vec<&Listener> =
            listeners.iter().filter(|l| matches!(l, Listener::Tcp(_) | Listener::Unix(_))).collect();
        fds.extend(served.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
        match poll(&mut fds, support::poll_timeout(deadline)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                say!("exit_codes: poll failed: {e}");
                process::exit(1)
            }
        }
        let readable: Vec<bool> =
            fds[1..].iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if signals.pending().any(|s| s == SIGTERM) {
            journal.log("term", "");
            journal.exit(0);
        }
        for (listener, _) in served.iter().zip(readable).filter(|(_, r)| *r) {
            support::serve_line(listener, reply.as_bytes(), "exit_codes");
        }
    }
}

/// Exits with `--code`, or dies of `--signal`.
fn end(opts: &Opts, journal: &Journal) -> ! {
    let Some(signal) = opts.signal else {
        journal.exit(opts.code.unwrap_or(0));
    };
    journal.log("kill", &format!("signal={}", signal.as_str().trim_start_matches("SIG")));
    // No core file in the test's directory (a piped core_pattern may still
    // be told, with a zero limit).
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // Restores the default disposition (std installs a SIGSEGV handler of
    // its own, signal-hook one for SIGTERM), unblocks and raises it; falls
    // back to abort() if the process somehow survives.
    let _ = signal_hook::low_level::emulate_default_handler(signal as i32);
    say!("exit_codes: still alive after raising {signal}");
    process::abort()
}
