//! The control protocol's messages, shared by the supervisor (which writes
//! replies), `handover restart|stop|status` and the drill (which read them).
//!
//! One JSON object per line each way. Requests: `{"command":"status"}`,
//! `{"command":"restart"}`, `{"command":"stop"}`, `{"command":"upgrade"}`,
//! `{"command":"reopen"}`, `{"command":"events"}`, `{"command":"follow"}`
//! (`wire::event`), `{"command":"metrics"}`; other fields are ignored. Every reply carries `"ok"`; when it is false, `"error"` says
//! why. The shapes below are the README's "Control protocol" section, and
//! `tests::recorded_exchange` holds them on the wire.
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Status,
    Restart,
    Stop,
    Upgrade,
    /// What SIGUSR1 does (`--on-usr1`): reopen `--log-file`, forward USR1.
    Reopen,
    /// The retained event records (`wire::event::Retained`).
    Events,
    /// The retained event records, then every new one, one per line.
    Follow,
    /// The metrics page (`Metrics`).
    Metrics,
}

/// The name a unit variant has on the wire: `status`, `serving`,
/// `auto, learned notify`.
pub fn name_of(value: &impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub command: Command,
    /// `upgrade`: the new binary, an absolute path (default: the one the
    /// running supervisor was executed from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// `upgrade`: answer once the new image serves, not when it is about
    /// to be executed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
}

impl Request {
    pub fn new(command: Command) -> Request {
        Request { command, binary: None, wait: false }
    }
}

/// Who may be at the other end of the control socket, either way: root
/// and the user we run as (effective uid). The supervisor closes other
/// clients; the clients refuse a socket that another user serves, whose
/// replies could say anything (both by `SO_PEERCRED`).
pub fn peer_allowed(peer_uid: u32, our_euid: u32) -> bool {
    peer_uid == 0 || peer_uid == our_euid
}

/// The request a line holds, or the error to answer it with. Checked by
/// hand, not derived, so that each refusal says what was wrong.
pub fn parse_request(line: &[u8]) -> Result<Request> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| Error::usage(format!("request is not JSON: {e}")))?;
    let name = (value.get("command").and_then(Value::as_str))
        .ok_or_else(|| Error::usage("request has no \"command\" string"))?;
    let command = serde_json::from_value(Value::String(name.to_owned())).map_err(|_| {
        Error::usage(format!(
            "unknown command {name:?}: expected status, restart, stop, upgrade, reopen, events, follow or metrics"
        ))
    })?;
    if command != Command::Upgrade {
        // Other fields of other requests are ignored.
        return Ok(Request::new(command));
    }
    let binary = match value.get("binary") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.starts_with('/') => Some(path.clone()),
        Some(_) => return Err(Error::usage("\"binary\" must be an absolute path, as a string")),
    };
    let wait = match value.get("wait") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(wait)) => *wait,
        Some(_) => return Err(Error::usage("\"wait\" must be true or false")),
    };
    Ok(Request { command, binary, wait })
}

/// What every reply says first: whether it worked, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Verdict {
    /// `{"ok":false,"error":TEXT}`: a request refused.
    pub fn refused(error: impl Into<String>) -> Verdict {
        Verdict { ok: false, error: Some(error.into()) }
    }
}

/// The answer to `stop`, sent when the stop has begun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub ok: bool,
    /// The supervisor's pid: the client waits for it to be gone.
    pub pid: u32,
}

/// The answer to `upgrade`: sent by the old image just before it executes
/// the new binary, or with `"wait":true` by the new image once it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upgraded {
    pub ok: bool,
    /// The supervisor's pid: the same before and after.
    pub pid: u32,
    pub binary: String,
    /// The version running before, and the one the new binary reported.
    pub from: String,
    pub to: String,
    /// From the request to the new image serving (`"wait":true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<f64>,
}

/// The answer to `reopen`, once done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reopened {
    pub ok: bool,
    /// The `--log-file` opened again, if `--on-usr1` says to.
    pub log_file: Option<String>,
    /// Whether USR1 went to the serving generation (`--on-usr1`).
    pub forwarded: bool,
}

/// The answer to `metrics`: the page in the Prometheus text format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub ok: bool,
    pub text: String,
}

/// The answer to `restart`, and the status's `last_restart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Restart {
    Done(Restarted),
    Failed(RestartFailed),
}

/// The new generation serves alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restarted {
    pub ok: bool,
    pub generation: u64,
    pub pids: Vec<i32>,
    pub spawn_to_ready_ms: f64,
    /// From telling the old generation to stop until its last worker exited.
    pub signal_to_old_gone_ms: Option<f64>,
    /// What is wrong although the generation serves (a broken listener).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The new generation failed (or the supervisor is stopping: no generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartFailed {
    pub ok: bool,
    pub generation: Option<u64>,
    pub error: String,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub ok: bool,
    pub pid: u32,
    pub stopping: bool,
    /// How a new worker counts as ready. None: a supervisor older than the field.
    #[serde(default)]
    pub ready: Option<Readiness>,
    pub listeners: Vec<Listener>,
    /// Oldest first.
    pub generations: Vec<Generation>,
    pub last_restart: Option<Restart>,
    pub counters: Counters,
    /// The running image. None: a supervisor older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// How workers are contained: `cgroup PATH` or `session`. None: a
    /// supervisor older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containment: Option<String>,
    /// Why starting workers could not be watched for accepting (the last
    /// reason), so that alive after `--interval` held for them. None: they
    /// could, or nothing was watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
}

/// The supervisor's program as it runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub version: String,
    /// The binary it was executed from.
    pub binary: String,
    /// RFC 3339: when this image started (the last upgrade, or the start).
    pub started: String,
    /// RFC 3339: when the supervisor first started.
    pub supervisor_started: String,
    /// Upgrades since the supervisor first started.
    pub upgrades: u64,
}

/// The `--ready` rule in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    Auto,
    /// `--ready auto` after a worker sent `READY=1`: new workers must too.
    #[serde(rename = "auto, learned notify")]
    AutoLearnedNotify,
    Notify,
    Alive,
    Accepting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Its fd in the workers.
    pub fd: i32,
    pub name: Option<String>,
    /// Its `SERVER_STARTER_PORT` key.
    pub key: String,
    /// `tcp 127.0.0.1:8080`, `udp [::1]:53`, `unix /run/app.sock`.
    pub address: String,
    /// Why it no longer accepts anything, when a worker broke it beyond
    /// repair (absent while it works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub generation: u64,
    pub phase: Phase,
    pub pids: Vec<i32>,
    /// RFC 3339 wall-clock times.
    pub started: String,
    pub ready: Option<String>,
    pub told_to_stop: Option<String>,
    /// Every process of the generation's workers (their cgroups; in
    /// session mode the workers), looked at when asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<i32>,
    /// The members' resident memory, summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// How it was found ready: `READY=1`, `alive`, `waiting in epoll_wait
    /// on fd 3`, `accepted a connection on fd 3`. None: not known (not
    /// ready, or ready under an earlier image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Serving,
    Draining,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Generation switches.
    pub restarts: u64,
    /// Generations that failed to start.
    pub failures: u64,
    /// Serving workers that died and were started again.
    pub respawns: u64,
    /// READY=1 and acks from processes of no current worker, ignored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub foreign_ready: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A message as one line, `\n` included.
pub fn encode(message: &impl Serialize) -> Vec<u8> {
    // Serializing these types cannot fail: string keys, finite numbers.
    let mut line = serde_json::to_vec(message).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    line
}

/// A reply line as `T`, or the refusal it carries (`"ok":false`) as `Err`.
/// A reply that is not JSON, or not a `T`, is an `Err` saying so.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T> {
    let invalid = |e: serde_json::Error| Error::runtime(format!("the supervisor sent an invalid reply: {e}"));
    let verdict: Verdict = serde_json::from_slice(line).map_err(invalid)?;
    if !verdict.ok {
        let text = String::from_utf8_lossy(line);
        let refusal = verdict.error.unwrap_or_else(|| format!("the supervisor refused: {}", text.trim_end()));
        return Err(Error::runtime(refusal));
    }
    serde_json::from_slice(line).map_err(invalid)
}

#[cfg(test)]
mod tests;
