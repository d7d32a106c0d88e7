//! The event stream's records (`handover events`): one JSON object per
//! line, the same values the supervisor's log lines are rendered from.
//!
//! Every record has `seq` (1, 2, ... for the supervisor's life, across
//! `handover upgrade`), `time` (RFC 3339, milliseconds), `generation`
//! (null when it concerns none), `pids` (the workers it concerns, maybe
//! none), `event` (its kind, below) with that kind's own fields, and
//! `message`, the log line it is printed as under handover's name.
//!
//! Kinds: `spawned`, `ready` (`how`, `after_ms`), `switched` (`signal`,
//! `old_pids`), `restarted` (`spawn_to_ready_ms`, `signal_to_old_gone_ms`),
//! `rolled_back` (`reason`), `restart_requested` (`by`), `stop_requested`
//! (`signal`), `exited` (`code` or `signal`, `core`, `role`), `respawned`,
//! `killed` (`deadline`: drain, ready or stop; `after_ms`), `not_ready`
//! (`after_ms`, `awaited`), `spawn_failed` (`error`), `forwarded` (`signal`),
//! `upgrade_asked` (`binary`), `upgrade_refused` (`reason`), `upgrading`
//! (`from`, `to`, `binary`), `upgraded` (`from`, `to`, `generations`), `logger_exited`
//! (`status`), `lines_dropped` (`count`, `of`: own or captured), `exiting`,
//! `note` (`what`: another line of the machine's), and on a follower's
//! stream only, `dropped` (`count`: records it missed for not reading).
use serde::{Deserialize, Serialize};

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub generation: Option<u64>,
    pub pids: Vec<i32>,
    #[serde(flatten)]
    pub what: What,
    pub message: String,
}

/// What happened, with its own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    Spawned,
    Ready {
        /// `READY=1`, `alive`, `waiting in epoll_wait on fd 3`, ...
        how: String,
        after_ms: f64,
    },
    Switched {
        signal: String,
        old_pids: Vec<i32>,
    },
    Restarted {
        spawn_to_ready_ms: f64,
        signal_to_old_gone_ms: Option<f64>,
    },
    RolledBack {
        reason: String,
    },
    RestartRequested {
        /// `hup`, `control`, `watch`, `autorestart`.
        by: String,
    },
    StopRequested {
        signal: String,
    },
    Exited {
        code: Option<i32>,
        signal: Option<String>,
        core: bool,
        /// `starting`, `serving`, `draining`, `stopping`.
        role: String,
    },
    Respawned,
    Killed {
        /// `drain`, `ready` or `stop`: the deadline that ran out.
        deadline: String,
        after_ms: f64,
    },
    NotReady {
        after_ms: f64,
        /// What it was waited for: `notify` (READY=1), `learned` (READY=1,
        /// as an earlier worker sent it), `accepting_or_notify`, `accepting`.
        #[serde(default)]
        awaited: String,
    },
    SpawnFailed {
        error: String,
    },
    Forwarded {
        signal: String,
    },
    UpgradeAsked {
        binary: String,
    },
    UpgradeRefused {
        reason: String,
    },
    Upgrading {
        from: String,
        to: String,
        binary: String,
    },
    Upgraded {
        from: String,
        to: String,
        /// The generations the new image took over.
        #[serde(default)]
        generations: Vec<u64>,
    },
    LoggerExited {
        status: String,
    },
    LinesDropped {
        count: u64,
        /// `own` or `captured`.
        of: String,
    },
    Exiting,
    Note {
        what: String,
    },
    /// A follower's buffer was full: it missed `count` records.
    Dropped {
        count: u64,
    },
}

impl What {
    /// The `event` name.
    pub fn name(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        value.get("event").and_then(|v| v.as_str()).unwrap_or("note").to_string()
    }
}

/// The `events` request's answer: the records retained after `after`,
/// oldest first; with `follow`, records then come one per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retained {
    pub ok: bool,
    pub events: Vec<Record>,
    /// Records older than the first retained one that were asked for
    /// (`after` too old): the ring holds the last `RETAINED` only.
    #[serde(default)]
    pub missed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCHED: &str = r#"{"seq":7,"time":"2026-12-06T03:00:00.123Z","generation":2,"pids":[101],"event":"switched","signal":"TERM","old_pids":[100],"message":"new worker is now running, sending TERM to old workers:100"}"#;
    const EXITED: &str = r#"{"seq":8,"time":"2026-12-06T03:00:00.200Z","generation":1,"pids":[100],"event":"exited","code":null,"signal":"TERM","core":false,"role":"draining","message":"old worker 100 died (killed by SIGTERM)"}"#;
    const SPAWNED: &str = r#"{"seq":1,"time":"2026-12-06T03:00:00.000Z","generation":1,"pids":[100],"event":"spawned","message":"starting new worker 100"}"#;

    #[test]
    fn recorded_records_round_trip() {
        for recorded in [SWITCHED, EXITED, SPAWNED] {
            let record: Record = serde_json::from_str(recorded).unwrap();
            assert_eq!(serde_json::to_string(&record).unwrap(), recorded);
        }
        let record: Record = serde_json::from_str(SWITCHED).unwrap();
        assert_eq!(record.what.name(), "switched");
        assert_eq!(What::Dropped { count: 3 }.name(), "dropped");
    }
}
