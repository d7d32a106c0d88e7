//! A worker that leaves orphans behind, as daemonizing helpers do: the
//! material of handover's reaping tests (subreaper, PID 1).
//!
//! At start the worker runs this same binary as a short-lived middle
//! process (`--role orphan`). The middle starts the grandchildren, each in a
//! new process group of its own (`process_group(0)`; with `--setsid` it
//! calls `setsid()` itself: a new session too, as a real daemon), journals
//! their pids, and exits at once without waiting for them. So they are
//! orphans outside the worker's process group, which no signal to the
//! worker or its group reaches: the kernel re-parents them to the nearest
//! child subreaper (handover) or, failing that, to init (pid 1 of the pid
//! namespace; handover itself when it is a container's entrypoint).
//!
//! - `--grandchildren N` (default 1) lingering grandchildren: each waits
//!   for SIGTERM (then exits 0) or `--linger MS`; with `--stubborn` it
//!   journals SIGTERM and keeps running (only SIGKILL ends it).
//! - `--zombies N` (default 0) short-lived orphans: each exits as soon as it
//!   sees that it has been re-parented. Whoever adopted it must reap it;
//!   nobody doing so leaves N `<defunct>` entries in `ps`, e.g. under a pid-1
//!   handover that did not reap.
//!
//! Once the middle process has exited (so every `spawned` line is written)
//! the worker journals `ready`, sends READY=1 with `--notify`, and serves
//! the inherited stream listeners, answering `orphans pid=P gen=G\n`, until
//! SIGTERM (exit 0). It never stops its orphans: that is the supervisor's
//! job at its shutdown.
//!
//! Journal (`--journal FILE`): one line per event, appended with a single
//! `write(2)` on a file opened `O_APPEND`, by every process involved:
//!
//! ```text
//! start role=R pid=P pgid=G sid=S ppid=Q gen=N    R: worker, orphan, grandchild, zombie
//! spawned role=R pid=C by=P gen=N                 P started C (R: orphan, grandchild, zombie)
//! ready role=worker pid=P ...                     the middle process exited
//! term role=R pid=P ...                           SIGTERM received (worker, grandchild)
//! exit role=R pid=P pgid=G sid=S ppid=Q gen=N code=0 reason=term|linger|orphaned|spawned
//! ```
//!
//! `ppid` is read when the line is written: a grandchild's or zombie's
//! `exit` line names the process that adopted it. Run (as root, in a new pid
//! namespace where handover is pid 1):
//! `unshare --pid --fork --mount-proc target/debug/handover --port 127.0.0.1:0 -- target/debug/examples/orphans --zombies 5 --journal /tmp/j`
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::unistd::{getpgrp, getppid, getsid, setsid};
use signal_hook::consts::signal::SIGTERM;

#[path = "support/mod.rs"]
mod support;
use support::say;
use support::{JournalFile, Listener};

#[derive(Parser)]
#[command(name = "orphans", about = "A worker that leaves orphaned grandchildren (see the source header)")]
struct Opts {
    /// Append one line per event to FILE (every process involved).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Lingering orphans to leave, each in a new process group.
    #[arg(long, value_name = "N", default_value_t = 1)]
    grandchildren: u32,
    /// Short-lived orphans that exit as soon as they are re-parented.
    #[arg(long, value_name = "N", default_value_t = 0)]
    zombies: u32,
    /// A lingering orphan exits by itself after MS (default: only on SIGTERM).
    #[arg(long, value_name = "MS")]
    linger: Option<u64>,
    /// Lingering orphans ignore SIGTERM (journaled): only SIGKILL ends them.
    #[arg(long)]
    stubborn: bool,
    /// Orphans call setsid(): a new session as well as a new group.
    #[arg(long)]
    setsid: bool,
    /// Send READY=1 to $NOTIFY_SOCKET once the orphans exist.
    #[arg(long)]
    notify: bool,
    #[arg(long, value_enum, default_value = "worker", hide = true)]
    role: Role,
    /// For a zombie: the pid of the middle process, whose death it awaits.
    #[arg(long, value_name = "PID", hide = true)]
    parent: Option<i32>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Worker,
    Orphan,
    Grandchild,
    Zombie,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Orphan => "orphan",
            Role::Grandchild => "grandchild",
            Role::Zombie => "zombie",
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
        let file = JournalFile::open(path, "orphans");
        Journal { file, role: role.name(), generation: support::generation() }
    }

    /// `EVENT role=R pid=P pgid=G sid=S ppid=Q gen=N EXTRA`, in one write.
    fn log(&self, event: &str, extra: &str) {
        let sid = getsid(None).map_or_else(|_| "?".to_string(), |s| s.to_string());
        let head = format!(
            "{event} role={} pid={} pgid={} sid={sid} ppid={} gen={}",
            self.role,
            process::id(),
            getpgrp(),
            getppid(),
            self.generation
        );
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
    if opts.setsid && matches!(opts.role, Role::Grandchild | Role::Zombie) {
        // Not a group leader (no process_group() was asked for), so this
        // cannot fail with EPERM.
        if let Err(e) = setsid() {
            say!("orphans: setsid failed: {e}");
        }
    }
    match opts.role {
        Role::Worker => worker(&opts, &journal),
        Role::Orphan => middle(&opts, &journal),
        Role::Grandchild => grandchild(&opts, &journal),
        Role::Zombie => zombie(&opts, &journal),
    }
}

fn signals(journal: &Journal) -> support::SignalPipe {
    let signals = support::signal_pipe(&[SIGTERM]).unwrap_or_else(|e| {
        say!("orphans: cannot install signal handlers: {e}");
        process::exit(1)
    });
    journal.log("start", "");
    signals
}

fn worker(opts: &Opts, journal: &Journal) -> ! {
    let mut signals = signals(journal);
    // Adopt (close-on-exec) the listeners before spawning anything, so that
    // no orphan ever holds a listening socket.
    let listeners: Vec<Listener> =
        support::inherited_fds().into_iter().map(|(_, fd)| Listener::open(support::adopt(fd)).0).collect();

    let mut middle = command(opts, Role::Orphan);
    middle.args(["--grandchildren", &opts.grandchildren.to_string(), "--zombies", &opts.zombies.to_string()]);
    let status = middle.spawn().and_then(|mut child| {
        journal.spawned(Role::Orphan, child.id());
        child.wait()
    });
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => say!("orphans: the middle process ended with {s}"),
        Err(e) => say!("orphans: cannot run the middle process: {e}"),
    }
    if opts.notify {
        support::notify_ready();
    }
    journal.log("ready", "");

    let reply = format!("orphans pid={} gen={}\n", process::id(), support::generation());
    let served: Vec<&Listener> =
        listeners.iter().filter(|l| matches!(l, Listener::Tcp(_) | Listener::Unix(_))).collect();
    loop {
        let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
        fds.extend(served.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
        wait(&mut fds, None);
        let readable: Vec<bool> =
            fds[1..].iter().map(|fd| fd.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if signals.pending().any(|s| s == SIGTERM) {
            journal.log("term", "");
            journal.exit("term")
        }
        for (listener, _) in served.iter().zip(readable).filter(|(_, r)| *r) {
            support::serve_line(listener, reply.as_bytes(), "orphans");
        }
    }
}

/// This binary again, in `role`, with the options the role needs.
fn command(opts: &Opts, role: Role) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        say!("orphans: cannot find my own executable: {e}");
        process::exit(1)
    });
    let mut cmd = Command::new(exe);
    cmd.args(["--role", role.name()]).stdin(Stdio::null());
    if let Some(path) = &opts.journal {
        cmd.arg("--journal").arg(path);
    }
    if let Some(ms) = opts.linger {
        cmd.args(["--linger", &ms.to_string()]);
    }
    for (flag, on) in [("--stubborn", opts.stubborn), ("--setsid", opts.setsid)] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd
}

/// Starts the orphans-to-be and exits without waiting for them.
fn middle(opts: &Opts, journal: &Journal) -> ! {
    journal.log("start", "");
    let me = process::id().to_string();
    let roles =
        (0..opts.grandchildren).map(|_| Role::Grandchild).chain((0..opts.zombies).map(|_| Role::Zombie));
    for role in roles {
        let mut cmd = command(opts, role);
        if role == Role::Zombie {
            cmd.args(["--parent", &me]);
        }
        if !opts.setsid {
            cmd.process_group(0);
        }
        match cmd.spawn() {
            // Dropping a Child neither waits for it nor kills it.
            Ok(child) => journal.spawned(role, child.id()),
            Err(e) => {
                say!("orphans: cannot start a {}: {e}", role.name());
                process::exit(1)
            }
        }
    }
    journal.exit("spawned")
}

/// Waits for SIGTERM (or `--linger`), as a daemon would.
fn grandchild(opts: &Opts, journal: &Journal) -> ! {
    let mut signals = signals(journal);
    let deadline = opts.linger.map(|ms| Instant::now() + Duration::from_millis(ms));
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            journal.exit("linger")
        }
        wait(&mut [PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)], deadline);
        if signals.pending().any(|s| s == SIGTERM) {
            journal.log("term", "");
            if !opts.stubborn {
                journal.exit("term")
            }
        }
    }
}

/// Exits as soon as its parent is no longer the middle process (it has
/// been re-parented), so that it dies an orphan; gives up after 10 s.
fn zombie(opts: &Opts, journal: &Journal) -> ! {
    journal.log("start", "");
    let give_up = Instant::now() + Duration::from_secs(10);
    while opts.parent == Some(getppid().as_raw()) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    journal.exit("orphaned")
}

/// poll(2) until something is readable or `deadline`; EINTR is not an error.
fn wait(fds: &mut [PollFd<'_>], deadline: Option<Instant>) {
    match poll(fds, support::poll_timeout(deadline)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => {
            say!("orphans: poll failed: {e}");
            process::exit(1)
        }
    }
}
