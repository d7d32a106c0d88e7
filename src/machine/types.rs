//! What goes in and out of the state machine.
use std::time::Duration;

use super::time::Moment;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::machine::event::{Event, ExitStatus, Failure, Pid, Sighting, SpawnError};

/// When a new worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// start_server: still alive `interval` after the spawn.
    Alive,
    /// `READY=1` on the notify socket (or einhorn's ack).
    Notify,
    /// `READY=1`, an einhorn ack or the worker seen accepting, whichever
    /// comes first (alive after `interval` for a worker that cannot be
    /// seen, or when `Policy::observe` is off); once a worker has sent
    /// `READY=1`, as `Notify` for every worker not ready yet.
    Auto,
    /// Seen accepting only (alive after `interval` for a worker that
    /// cannot be seen, or when `Policy::observe` is off).
    Accepting,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    pub ready: ReadyMode,
    /// Starting workers are watched for accepting (there are listeners and
    /// this is not start_server's name): in auto and accepting modes the
    /// alive rule then holds only for a worker said to be unobservable.
    pub observe: bool,
    /// Give up on a generation not ready by then, where it waits for
    /// evidence (`READY=1`, seen accepting) rather than for time.
    pub ready_timeout: Option<Duration>,
    pub kill_old_delay: Duration,
    pub drain_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub signal_on_hup: Signal,
    pub signal_on_term: Signal,
    pub auto_restart: Option<Duration>,
    /// Workers per generation.
    pub workers: usize,
    /// Send `WATCHDOG=1` this often.
    pub watchdog: Option<Duration>,
    /// A worker exiting with one of these codes (128+N for signal N) stops
    /// the supervisor with that code instead of being respawned.
    pub stop_on_exit: Vec<i32>,
    /// Give up (exit 1) when the first generation failed to start this many times in a row.
    pub max_start_attempts: Option<u32>,
    /// `--watch`: restart this long after the last change.
    pub watch_debounce: Duration,
    /// At exit, processes the workers left behind get SIGTERM, then SIGKILL
    /// this long after.
    pub orphan_grace: Duration,
}

/// Identifies a control request awaiting its answer.
pub type RequestId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Start,
    Spawned {
        generation: u64,
        index: usize,
        pid: Pid,
    },
    SpawnFailed {
        generation: u64,
        index: usize,
        error: SpawnError,
    },
    Exited {
        pid: Pid,
        status: ExitStatus,
    },
    /// `READY=1` from this worker (or a process in its group).
    Ready {
        pid: Pid,
    },
    /// Process `member` of worker `pid` was seen waiting for connections
    /// on a listener, or holding one it accepted.
    Accepting {
        pid: Pid,
        member: Pid,
        sighting: Sighting,
    },
    /// Worker `pid` cannot be watched (the supervisor says why): the alive
    /// rule holds for it.
    Unobservable {
        pid: Pid,
    },
    Hup,
    /// A restart asked for on the control socket: answered with its outcome.
    Restart {
        request: RequestId,
    },
    /// TERM or INT: graceful shutdown.
    Terminate(Signal),
    /// Any other catchable signal: passed on to the serving generation.
    Forward(Signal),
    /// A watched file changed (`--watch`).
    Changed,
    /// A deadline may have passed.
    Tick,
}

/// Messages for the supervisor's own service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upward {
    Ready,
    Reloading,
    Stopping,
    Status(StatusLine),
    Watchdog,
    ExtendTimeout(Duration),
}

/// A `STATUS=` line for the service manager, as a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusLine {
    Serving {
        generation: u64,
    },
    /// A restart failed; the generation serving before it goes on.
    RestartFailed {
        generation: u64,
        failure: Failure,
        /// None: no worker of it is left meanwhile.
        serving: Option<u64>,
    },
}

/// What became of a restart that was asked for. Part of the snapshot
/// format (`snapshot.rs`), as `Counters` is: keep the serde names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Restarted {
        generation: u64,
        pids: Vec<Pid>,
        spawn_to_ready: Duration,
        /// From telling the old generation to stop until its last worker exited.
        #[serde(default)]
        signal_to_old_gone: Option<Duration>,
    },
    Failed {
        /// None: no generation was started for it (`Failure::Stopping`).
        generation: Option<u64>,
        failure: Failure,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Spawn {
        generation: u64,
        index: usize,
    },
    Signal {
        pid: Pid,
        signal: Signal,
    },
    /// SIGKILL to the worker's whole process group.
    KillGroup {
        pid: Pid,
    },
    Log(Event),
    WriteStatus(Vec<(u64, Pid)>),
    Notify(Upward),
    Reply {
        request: RequestId,
        outcome: Outcome,
    },
    Exit(i32),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Generation switches.
    pub restarts: u64,
    /// Generations that failed to start.
    pub failures: u64,
    /// Serving workers that died and were started again: alone, in their
    /// generation, or as a new generation when none was left (not when a
    /// generation already starting or retried replaces theirs).
    pub respawns: u64,
}

/// A generation as the status command shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub generation: u64,
    pub role: Role,
    pub pids: Vec<Pid>,
    pub spawned_at: Moment,
    pub ready_at: Option<Moment>,
    pub signalled_at: Option<Moment>,
}

/// What a generation of `views()` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Starting,
    Serving,
    Draining,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Starting, Role::Serving, Role::Draining];

    /// As the metrics and the event records say it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Serving => "serving",
            Role::Draining => "draining",
        }
    }
}
