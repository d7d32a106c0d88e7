//! A worker that runs a shell-like pipeline, to show what process groups do.
//!
//! The worker (the *leader*: handover made it the leader of its own process
//! group) starts two children, `producer | consumer`, joined by a pipe. Both
//! are this same binary re-run with a hidden `--role`, so no shell is
//! needed, and both stay in the leader's process group (nothing sets
//! `process_group`). The producer writes `line N pid=P gen=G` every
//! `--every` ms; the consumer appends each line it reads to `--output` with
//! one write. Once the first line has gone through, the consumer tells the
//! leader, which journals `ready` (and sends `READY=1` with `--notify`). The
//! leader also answers every connection on the inherited stream listeners
//! with `pipeline pid=P gen=G\n`; it never exits by itself.
//!
//! On SIGTERM the leader behaves like a naive shell: it exits at once and
//! leaves its children running. The children exit on SIGTERM. Hence:
//! - `--signal-target group`: the signal reaches the whole group, and all
//!   three processes journal `term` and exit.
//! - `--signal-target pid` (the default, as start_server): only the leader
//!   gets it. The producer and the consumer live on as orphans, still in the
//!   old group, re-parented to handover (a child subreaper), which stops and
//!   reaps them at its shutdown; SIGKILL escalation (`--drain-timeout`,
//!   `--stop-timeout`) takes the whole group anyway.
//!
//! With `--forward-term` the leader is a careful shell instead: it sends
//! SIGTERM to both children and waits for them before it exits.
//!
//! Journal (`--journal FILE`): one line per event, appended with a single
//! `write(2)` on a file opened `O_APPEND`, by all three processes:
//!
//! ```text
//! start role=R pid=P pgid=G ppid=Q gen=N           R: leader, producer, consumer
//! spawned role=R pid=C by=P gen=N                  the leader started child C
//! ready role=leader pid=P pgid=G ppid=Q gen=N      the first line went through
//! term role=R pid=P pgid=G ppid=Q gen=N            SIGTERM received
//! reaped role=leader pid=P ... child=R child_pid=C code=X | signal=NAME
//! exit role=R pid=P pgid=G ppid=Q gen=N code=0 reason=term|eof|epipe
//! ```
//!
//! `ppid` is read when the line is written, so a child's `exit` line shows
//! who adopted it after the leader died. Run:
//! `handover --port 127.0.0.1:0 -- target/debug/examples/pipeline --journal /tmp/j --notify`,
//! then `kill -TERM` the handover pid and read the journal.
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getpgrp, getppid};
use signal_hook::consts::signal::{SIGCHLD, SIGTERM};

#[path = "support/mod.rs"]
mod support;
use support::say;
use support::{JournalFile, Listener};

#[derive(Parser)]
#[command(name = "pipeline", about = "A worker running `producer | consumer` in its process group")]
struct Opts {
    /// Append one line per event to FILE (all three processes).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// The consumer appends every line it reads to FILE.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The producer writes one line every MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    every: u64,
    /// On SIGTERM, stop both children and wait for them before exiting
    /// (without it the leader exits at once and orphans them).
    #[arg(long)]
    forward_term: bool,
    /// Send READY=1 to $NOTIFY_SOCKET once the first line went through.
    #[arg(long)]
    notify: bool,
    #[arg(long, value_enum, default_value = "leader", hide = true)]
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Leader,
    Producer,
    Consumer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

struct Journal {
    file: JournalFile,
    role: &'static str,
    generation: u64,
}

impl Journal {
    fn open(path: Option<&Path>, role: Role) -> Journal {
        let file = JournalFile::open(path, "pipeline");
        Journal { file, role: role.name(), generation: support::generation() }
    }

    /// `EVENT role=R pid=P pgid=G ppid=Q gen=N EXTRA`, in one write.
    fn log(&self, event: &str, extra: &str) {
        let (pid, pgid, ppid) = (process::id(), getpgrp(), getppid());
        let head =
            format!("{event} role={} pid={pid} pgid={pgid} ppid={ppid} gen={}", self.role, self.generation);
        self.file.line(&head, extra);
    }

    fn spawned(&self, role: Role, pid: u32) {
        let head =
            format!("spawned role={} pid={pid} by={} gen={}", role.name(), process::id(), self.generation);
        self.file.line(&head, "");
    }

    fn exit(&self, reason: &str) -> ! {
        self.log("exit", &format!("code=0 reason={reason}"));
        process::exit(0)
    }
}

fn main() {
    let opts = Opts::parse();
    let journal = Journal::open(opts.journal.as_deref(), opts.role);
    // Handlers first: once `start` is journaled, SIGTERM is handled.
    let wanted: &[i32] = if opts.role == Role::Leader { &[SIGTERM, SIGCHLD] } else { &[SIGTERM] };
    let signals = support::signal_pipe(wanted).unwrap_or_else(|e| {
        say!("pipeline: cannot install signal handlers: {e}");
        process::exit(1)
    });
    journal.log("start", "");
    match opts.role {
        Role::Leader => leader(&opts, &journal, signals),
        Role::Producer => producer(&opts, &journal, signals),
        Role::Consumer => consumer(&opts, &journal, signals),
    }
}

fn leader(opts: &Opts, journal: &Journal, mut signals: support::SignalPipe) -> ! {
    // Adopt (close-on-exec) the listeners before spawning, so that the
    // children, which may outlive us, never hold the listening sockets.
    let listeners: Vec<Listener> =
        support::inherited_fds().into_iter().map(|(_, fd)| Listener::open(support::adopt(fd)).0).collect();

    let mut producer = spawn(opts, Role::Producer, Stdio::null(), journal);
    let pipe = producer.stdout.take().expect("the producer's stdout is piped");
    let mut consumer = spawn(opts, Role::Consumer, pipe.into(), journal);
    let mut from_consumer = consumer.stdout.take();
    let mut children = vec![(Role::Producer, producer), (Role::Consumer, consumer)];

    let reply = format!("pipeline pid={} gen={}\n", process::id(), support::generation());
    let mut ready = false;
    loop {
        let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
        if let Some(out) = &from_consumer {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        let first_listener = fds.len();
        for l in listeners.iter().filter(|l| matches!(l, Listener::Tcp(_) | Listener::Unix(_))) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        wait(&mut fds, None);
        let readable: Vec<bool> = fds.iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);

        for signal in signals.pending() {
            match signal {
                SIGTERM => {
                    journal.log("term", "");
                    drop(listeners);
                    if opts.forward_term {
                        for (_, child) in &children {
                            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                        }
                        for (role, mut child) in children {
                            let status = child.wait();
                            journal_reaped(journal, role, child.id(), status);
                        }
                    }
                    journal.exit("term")
                }
                SIGCHLD => children.retain_mut(|(role, child)| {
                    let status = match child.try_wait() {
                        Ok(None) => return true,
                        Ok(Some(status)) => Ok(status),
                        Err(e) => Err(e),
                    };
                    journal_reaped(journal, *role, child.id(), status);
                    false
                }),
                _ => {}
            }
        }
        if let Some(out) = from_consumer.as_mut().filter(|_| readable.get(1).copied().unwrap_or(false)) {
            let mut buf = [0u8; 64];
            match out.read(&mut buf) {
                Ok(0) | Err(_) => from_consumer = None,
                Ok(_) if !ready => {
                    ready = true;
                    if opts.notify {
                        support::notify_ready();
                    }
                    journal.log("ready", "");
                }
                Ok(_) => {}
            }
        }
        let serving = listeners.iter().filter(|l| matches!(l, Listener::Tcp(_) | Listener::Unix(_)));
        for (listener, _) in serving.zip(&readable[first_listener..]).filter(|(_, r)| **r) {
            support::serve_line(listener, reply.as_bytes(), "pipeline");
        }
    }
}

fn spawn(opts: &Opts, role: Role, stdin: Stdio, journal: &Journal) -> Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        say!("pipeline: cannot find my own executable: {e}");
        process::exit(1)
    });
    let mut cmd = Command::new(exe);
    cmd.args(["--role", role.name(), "--every", &opts.every.to_string()]);
    if let Some(path) = &opts.journal {
        cmd.arg("--journal").arg(path);
    }
    if let Some(path) = &opts.output {
        cmd.arg("--output").arg(path);
    }
    // Deliberately no process_group(): the children stay in our group.
    match cmd.stdin(stdin).stdout(Stdio::piped()).spawn() {
        Ok(child) => {
            journal.spawned(role, child.id());
            child
        }
        Err(e) => {
            say!("pipeline: cannot start the {}: {e}", role.name());
            process::exit(1)
        }
    }
}

fn journal_reaped(journal: &Journal, role: Role, pid: u32, status: io::Result<process::ExitStatus>) {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("code={code}"),
            (None, Some(n)) => format!("signal={}", signal_name(n)),
            _ => "code=?".to_string(),
        },
        Err(e) => format!("error={}", e.kind()),
    };
    journal.log("reaped", &format!("child={} child_pid={pid} {how}", role.name()));
}

fn signal_name(n: i32) -> String {
    Signal::try_from(n).map_or_else(|_| n.to_string(), |s| s.as_str().trim_start_matches("SIG").to_string())
}

/// Writes `line N pid=P gen=G` to stdout (the pipe) every `--every` ms.
fn producer(opts: &Opts, journal: &Journal, mut signals: support::SignalPipe) -> ! {
    let every = Duration::from_millis(opts.every);
    let mut stdout = io::stdout().lock();
    for n in 1.. {
        let line = format!("line {n} pid={} gen={}\n", process::id(), journal.generation);
        if stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            journal.exit("epipe"); // the consumer is gone
        }
        let deadline = Instant::now() + every;
        while Instant::now() < deadline {
            wait(&mut [PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)], Some(deadline));
            if signals.pending().any(|s| s == SIGTERM) {
                journal.log("term", "");
                journal.exit("term")
            }
        }
    }
    unreachable!()
}

/// Appends every line read on stdin to `--output`; tells the leader (on
/// stdout) once the first line arrived.
fn consumer(opts: &Opts, journal: &Journal, mut signals: support::SignalPipe) -> ! {
    let output = opts.output.as_ref().map(|path| {
        OpenOptions::new().append(true).create(true).open(path).unwrap_or_else(|e| {
            say!("pipeline: cannot open output {}: {e}", path.display());
            process::exit(1)
        })
    });
    let stdin = io::stdin();
    let mut pending: Vec<u8> = Vec::new();
    let mut told_leader = false;
    loop {
        let mut fds = [
            PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN),
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        ];
        wait(&mut fds, None);
        let input_ready = fds[1].revents().is_some_and(|r| !r.is_empty());
        if signals.pending().any(|s| s == SIGTERM) {
            journal.log("term", "");
            journal.exit("term")
        }
        if !input_ready {
            continue;
        }
        let mut buf = [0u8; 4096];
        // A raw read(2): a buffered reader could hold data poll cannot see.
        let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => journal.exit("eof"),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                say!("pipeline: consumer cannot read: {e}");
                journal.exit("eof")
            }
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(mut file) = output.as_ref() {
                let _ = file.write_all(&line);
            }
            if !told_leader {
                told_leader = true;
                // The leader may be gone already: ignore errors (SIGPIPE is
                // ignored by the Rust runtime, so this is EPIPE at worst).
                let _ = io::stdout().write_all(b"flowing\n").and_then(|()| io::stdout().flush());
            }
        }
    }
}

/// poll(2) until something is readable or `deadline`; EINTR is not an error.
fn wait(fds: &mut [PollFd<'_>], deadline: Option<Instant>) {
    match poll(fds, support::poll_timeout(deadline)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => {
            say!("pipeline: poll failed: {e}");
            process::exit(1)
        }
    }
}
