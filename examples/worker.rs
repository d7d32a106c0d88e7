//! The test worker: a tiny server with knobs, driven by handover's
//! integration tests (it is an independent binary, as a real worker is).
//!
//! It takes its sockets from any protocol handover speaks (see
//! `support::inherited_fds`), waits `--startup-delay`, optionally crashes,
//! reports ready (`--notify`: `READY=1` on `$NOTIFY_SOCKET`; `--einhorn-ack`:
//! einhorn's `worker:ack` on `$EINHORN_SOCK_PATH`), then answers
//! every connection on a stream listener (TCP or unix) with the line
//! `gen=G pid=P\n` and closes it (it never reads a request), and every UDP
//! datagram with the same line.
//!
//! Journal (`--journal FILE`): one line per event, each appended with a
//! single `write(2)` on a file opened `O_APPEND`, so several generations can
//! share one file:
//!
//! ```text
//! start pid=P gen=G fds=3,4 index=I einhorn_index=E
//!                                first thing (fds as decoded, maybe empty;
//!                                I: HANDOVER_WORKER_INDEX, E:
//!                                EINHORN_CHILD_INDEX, empty when unset)
//! ready pid=P gen=G              handlers installed, delay over; written
//!                                just BEFORE READY=1 and the einhorn ack
//!                                go out, so it precedes in the journal
//!                                anything the supervisor does because of them
//! ack pid=P gen=G result=R       --einhorn-ack, after the attempt; R: sent,
//!                                not-our-master (EINHORN_MASTER_PID is not
//!                                the parent), no-socket (EINHORN_SOCK_PATH
//!                                unset) or failed (see stderr)
//! signal pid=P gen=G name=USR1   HUP USR1 USR2 QUIT WINCH TTIN TTOU
//! term pid=P gen=G               every SIGTERM received, ignored or not
//! exit pid=P gen=G code=N        just before every deliberate exit
//! listener pid=P gen=G fd=N nonblocking=B
//!                                --journal-listeners: each inherited fd
//!                                as found at start (B: 0 or 1)
//! sabotage pid=P gen=G what=W    --sabotage, once applied to every fd
//! ```
//!
//! G is `SERVER_STARTER_GENERATION` (0 when absent). Signals that arrive
//! together are journaled once each, in signal-number order. SIGINT keeps
//! its default action (the worker dies without an `exit` line).
//!
//! Run: `handover --port 0 -- target/debug/examples/worker --journal j.txt --notify`
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use signal_hook::consts::signal::{SIGHUP, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH};

#[path = "support/hostile.rs"]
mod hostile;
#[path = "support/sabotage.rs"]
mod sabotage;
#[path = "support/mod.rs"]
mod support;
use support::say;
use support::{JournalFile, Listener};

#[derive(Parser)]
#[command(name = "worker", about = "handover's test worker (see the source header)")]
struct Opts {
    /// Append one line per event to FILE.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Wait this long after installing signal handlers before becoming ready.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    startup_delay: u64,
    /// Exit with CODE after the startup delay, before ready (with
    /// --crash-if-generation-at-least: only in those generations).
    #[arg(long, value_name = "CODE")]
    crash_before_ready: Option<u8>,
    /// Crash before ready when SERVER_STARTER_GENERATION >= N (exit code
    /// from --crash-before-ready, else 1).
    #[arg(long, value_name = "N")]
    crash_if_generation_at_least: Option<u64>,
    /// Exit this long after becoming ready, with --exit-code.
    #[arg(long, value_name = "MS")]
    exit_after: Option<u64>,
    /// The exit code of --exit-after.
    #[arg(long, value_name = "N", default_value_t = 0)]
    exit_code: u8,
    /// On SIGTERM keep serving MS more, then exit 0; `forever`: never exit on TERM.
    #[arg(long, value_name = "MS|forever", value_parser = parse_grace)]
    ignore_term: Option<Grace>,
    /// Send READY=1 to $NOTIFY_SOCKET when ready (without it, nothing is sent).
    #[arg(long)]
    notify: bool,
    /// When ready, ack as einhorn workers do: connect to $EINHORN_SOCK_PATH,
    /// send `{"command":"worker:ack","pid":P}` + `\n` and close; only if
    /// $EINHORN_MASTER_PID is our parent's pid. Independent of --notify.
    #[arg(long)]
    einhorn_ack: bool,
    /// Bind this TCP address itself at startup, like a misconfigured server;
    /// exit 1 when that fails (EADDRINUSE under a supervisor).
    #[arg(long, value_name = "ADDR")]
    bind_itself: Option<String>,
    // Hostile listener knobs (listener repair tests).
    /// In generation 1 only, once serving: do WHAT to every inherited fd
    /// (shutdown-rd, nonblock, backlog1, filter, locked-filter).
    #[arg(long, value_name = "WHAT")]
    sabotage: Option<String>,
    /// Journal each inherited fd's O_NONBLOCK as found at start.
    #[arg(long)]
    journal_listeners: bool,
    /// Exit 3 at start when an inherited fd is O_NONBLOCK, as a server
    /// with blocking accept(2) fails (BlockingIOError).
    #[arg(long)]
    require_blocking: bool,
    // Hostile worker knobs (pid file squatting, forged output).
    /// At startup, start a child (this program with --squat-lock) that opens
    /// PATH read-only and blocks in flock(LOCK_EX) on it, journaling
    /// `squat pid=P gen=G open=ok|ERROR` and, once it has the lock,
    /// `squat-locked pid=P gen=G`; it then sleeps until killed.
    #[arg(long, value_name = "PATH")]
    flock_pid_file: Option<PathBuf>,
    /// Be that child: squat on PATH as described above, nothing else.
    #[arg(long, value_name = "PATH", hide = true)]
    squat_lock: Option<PathBuf>,
    /// At startup write TEXT to stdout, with `\e`, `\r`, `\n`, `\t` and
    /// `\xNN` decoded (control characters that could forge log lines).
    #[arg(long, value_name = "TEXT")]
    print: Option<String>,
    #[command(flatten)]
    hostile: hostile::Hostile,
}

#[derive(Clone, Copy)]
enum Grace {
    For(Duration),
    Forever,
}

fn parse_grace(s: &str) -> Result<Grace, String> {
    match s {
        "forever" => Ok(Grace::Forever),
        ms => ms
            .parse()
            .map(|ms| Grace::For(Duration::from_millis(ms)))
            .map_err(|_| format!("expected milliseconds or `forever`, got {s:?}")),
    }
}

/// What the loop acts on, once the signal numbers are decoded.
enum Sig {
    Term,
    Journaled(&'static str),
}

const SIGNALS: [(i32, &str); 8] = [
    (SIGTERM, "TERM"),
    (SIGHUP, "HUP"),
    (SIGUSR1, "USR1"),
    (SIGUSR2, "USR2"),
    (SIGQUIT, "QUIT"),
    (SIGWINCH, "WINCH"),
    (SIGTTIN, "TTIN"),
    (SIGTTOU, "TTOU"),
];

fn decode(signal: i32) -> Option<Sig> {
    match SIGNALS.iter().find(|(n, _)| *n == signal)? {
        (SIGTERM, _) => Some(Sig::Term),
        (_, name) => Some(Sig::Journaled(name)),
    }
}

struct Journal {
    file: JournalFile,
    pid: u32,
    generation: u64,
}

impl Journal {
    /// `EVENT pid=P gen=N KEY=VALUE...`.
    fn log(&self, event: &str, fields: &[(&str, &str)]) {
        let mut line = format!("{event} pid={} gen={}", self.pid, self.generation);
        for (key, value) in fields {
            let _ = write!(line, " {key}={value}");
        }
        self.file.line(&line, "");
    }

    fn exit(&self, code: u8) -> ! {
        self.log("exit", &[("code", &code.to_string())]);
        process::exit(code.into())
    }
}

fn main() {
    let opts = Opts::parse();
    let pid = process::id();
    let generation = support::generation();
    let file = JournalFile::open(opts.journal.as_deref(), "worker");
    let journal = Journal { file, pid, generation };

    opts.hostile.start(&journal, generation);
    let inherited = support::inherited_fds();
    let fds: Vec<String> = inherited.iter().map(|(_, fd)| fd.to_string()).collect();
    let index = std::env::var("HANDOVER_WORKER_INDEX").unwrap_or_default();
    let einhorn_index = std::env::var("EINHORN_CHILD_INDEX").unwrap_or_default();
    let fields = [("fds", &fds.join(",")), ("index", &index), ("einhorn_index", &einhorn_index)];
    if let Some(path) = &opts.squat_lock {
        squat(path, &journal);
    }
    journal.log("start", &fields.map(|(k, v)| (k, v.as_str())));
    hostile(&opts);
    say!("worker: pid {pid} gen {generation} fds [{}]", fds.join(","));

    let numbers: Vec<i32> = SIGNALS.iter().map(|(n, _)| *n).collect();
    let mut signals = support::signal_pipe(&numbers).unwrap_or_else(|e| {
        say!("worker: cannot install signal handlers: {e}");
        journal.exit(1)
    });

    // Hostile listener knobs, before the listeners are made non-blocking.
    for (_, fd) in &inherited {
        let nonblocking = sabotage::nonblocking(sabotage::borrow(*fd));
        if opts.journal_listeners {
            journal.log(
                "listener",
                &[("fd", &fd.to_string()), ("nonblocking", if nonblocking { "1" } else { "0" })],
            );
        }
        if opts.require_blocking && nonblocking {
            say!("worker: fd {fd} is non-blocking; blocking accept fails (BlockingIOError)");
            journal.exit(3);
        }
    }
    let sabotage_fds: Vec<i32> = inherited.iter().map(|(_, fd)| *fd).collect();

    let mut listeners: Vec<Listener> = Vec::new();
    for (name, fd) in inherited {
        let (listener, what) = Listener::open(support::adopt(fd));
        if let Listener::Other(_) = listener {
            say!("worker: not serving fd {fd} ({name}): {what}");
        }
        listeners.push(listener);
    }
    if let Some(addr) = &opts.bind_itself {
        match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(l) => listeners.push(Listener::Tcp(l)),
            Err(e) => {
                say!("worker: cannot bind {addr}: {e}");
                journal.exit(1)
            }
        }
    }

    let reply = format!("gen={generation} pid={pid}\n");
    let mut ready_at = Some(Instant::now() + Duration::from_millis(opts.startup_delay));
    if opts.hostile.never_ready_from_generation.is_some_and(|n| generation >= n) {
        ready_at = Some(Instant::now() + Duration::from_secs(3600));
    }
    let mut exit_at: Option<Instant> = None;
    let mut term_exit_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if ready_at.is_some_and(|t| now >= t) {
            ready_at = None;
            become_ready(&opts, generation, &journal);
            sabotage_listeners(&opts, generation, &sabotage_fds, &journal);
            exit_at = opts.exit_after.map(|ms| Instant::now() + Duration::from_millis(ms));
        }
        if exit_at.is_some_and(|t| now >= t) {
            journal.exit(opts.exit_code);
        }
        if term_exit_at.is_some_and(|t| now >= t) {
            journal.exit(0);
        }

        let serving = ready_at.is_none();
        let deadline = [ready_at, exit_at, term_exit_at].into_iter().flatten().min();
        let readable = wait(&signals, &listeners, serving, deadline);

        for signal in signals.pending() {
            match decode(signal) {
                Some(Sig::Term) => {
                    journal.log("term", &[]);
                    match opts.ignore_term {
                        None => {
                            drop(listeners);
                            journal.exit(0);
                        }
                        Some(Grace::Forever) => {}
                        Some(Grace::For(d)) => {
                            term_exit_at.get_or_insert(Instant::now() + d);
                        }
                    }
                }
                Some(Sig::Journaled(name)) => journal.log("signal", &[("name", name)]),
                None => {}
            }
        }
        for i in readable {
            serve(&listeners[i], reply.as_bytes());
        }
    }
}

/// `--sabotage`, in generation 1.
fn sabotage_listeners(opts: &Opts, generation: u64, fds: &[i32], journal: &Journal) {
    let Some(what) = opts.sabotage.as_deref().filter(|_| generation == 1) else { return };
    for &fd in fds {
        if let Err(e) = sabotage::apply(sabotage::borrow(fd), what) {
            say!("worker: cannot sabotage fd {fd} ({what}): {e}");
            journal.exit(1);
        }
    }
    journal.log("sabotage", &[("what", what)]);
}

fn become_ready(opts: &Opts, generation: u64, journal: &Journal) {
    let crash = match opts.crash_if_generation_at_least {
        Some(n) if generation >= n => Some(opts.crash_before_ready.unwrap_or(1)),
        Some(_) => None,
        None => opts.crash_before_ready,
    };
    if let Some(code) = crash {
        say!("worker: crashing before ready with exit code {code} (as asked)");
        journal.exit(code);
    }
    journal.log("ready", &[]);
    if opts.notify {
        support::notify_ready();
    }
    if opts.einhorn_ack {
        journal.log("ack", &[("result", einhorn_ack())]);
    }
}

/// einhorn's `worker:ack`, as its clients send it (see `--einhorn-ack`).
fn einhorn_ack() -> &'static str {
    let master = std::env::var("EINHORN_MASTER_PID").ok();
    if master.as_deref().map(str::trim) != Some(nix::unistd::getppid().to_string().as_str()) {
        return "not-our-master";
    }
    let Some(path) = std::env::var_os("EINHORN_SOCK_PATH") else {
        return "no-socket";
    };
    let line = format!("{{\"command\":\"worker:ack\",\"pid\":{}}}\n", process::id());
    match UnixStream::connect(&path).and_then(|mut s| s.write_all(line.as_bytes())) {
        Ok(()) => "sent",
        Err(e) => {
            say!("worker: cannot ack on {}: {e}", PathBuf::from(path).display());
            "failed"
        }
    }
}

/// Polls the signal pipe and, when serving, the listeners; returns the
/// indices of the readable listeners.
fn wait(
    signals: &support::SignalPipe,
    listeners: &[Listener],
    serving: bool,
    deadline: Option<Instant>,
) -> Vec<usize> {
    let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
    let mut index = Vec::new();
    if serving {
        for (i, l) in listeners.iter().enumerate() {
            if !matches!(l, Listener::Other(_)) {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                index.push(i);
            }
        }
    }
    match poll(&mut fds, support::poll_timeout(deadline)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => {
            say!("worker: poll failed: {e}");
            process::exit(1)
        }
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    index.into_iter().zip(&fds[1..]).filter(|(_, fd)| ready(fd)).map(|(i, _)| i).collect()
}

/// Answers everything queued on one listener, without blocking.
fn serve(listener: &Listener, reply: &[u8]) {
    loop {
        let result = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| support::answer(s.into(), reply)),
            Listener::Unix(l) => l.accept().map(|(s, _)| support::answer(s.into(), reply)),
            Listener::Udp(s) => {
                let mut buf = [0u8; 2048];
                s.recv_from(&mut buf).map(|(_, peer)| {
                    let _ = s.send_to(reply, peer);
                })
            }
            Listener::Other(_) => return,
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                say!("worker: accept on fd {} failed: {e}", listener.raw_fd());
                return;
            }
        }
    }
}

// Hostile worker knobs: --flock-pid-file, --squat-lock, --print.

fn hostile(opts: &Opts) {
    if let Some(path) = &opts.flock_pid_file {
        let exe = std::env::current_exe().expect("own path");
        let mut child = process::Command::new(exe);
        child.arg("--squat-lock").arg(path);
        if let Some(journal) = &opts.journal {
            child.arg("--journal").arg(journal);
        }
        if let Err(e) = child.spawn() {
            say!("worker: cannot start the squatter: {e}");
        }
    }
    if let Some(text) = &opts.print {
        let mut out = io::stdout().lock();
        let _ = out.write_all(&decode_escapes(text));
        let _ = out.flush();
    }
}

/// Opens `path` read-only, blocks in flock(LOCK_EX), then sleeps until killed.
fn squat(path: &std::path::Path, journal: &Journal) -> ! {
    match std::fs::File::open(path) {
        Ok(file) => {
            journal.log("squat", &[("open", "ok")]);
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
                Ok(_held) => {
                    journal.log("squat-locked", &[]);
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                Err((_, e)) => journal.log("squat", &[("flock", e.desc())]),
            }
        }
        Err(e) => journal
            .log("squat", &[("open", &format!("{:?}", Errno::from_raw(e.raw_os_error().unwrap_or(0))))]),
    }
    process::exit(0)
}

/// `\e`, `\r`, `\n`, `\t`, `\\` and `\xNN` as bytes; anything else as is.
fn decode_escapes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = |c| match c {
            b'e' => Some((0x1b, 2)),
            b'r' => Some((b'\r', 2)),
            b'n' => Some((b'\n', 2)),
            b't' => Some((b'\t', 2)),
            b'\\' => Some((b'\\', 2)),
            b'x' => std::str::from_utf8(bytes.get(i + 2..i + 4)?)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| (b, 4)),
            _ => None,
        };
        match (bytes[i], bytes.get(i + 1).and_then(|&c| escaped(c))) {
            (b'\\', Some((byte, len))) => {
                out.push(byte);
                i += len;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}
