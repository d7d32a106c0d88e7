//! The control socket's replies: what the supervisor says about itself
//! (JSON built from the state machine) and how the client shows it.
//!
//! Times inside the machine are `Instant`s; here they become wall-clock
//! RFC 3339 stamps (for people and logs) and durations in milliseconds
//! (for scripts).
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::listen::Listener;
use crate::machine::{Counters, Machine, Outcome};

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The wall-clock time of `at`, now being `now`.
fn stamp(now: Instant, at: Instant) -> String {
    let wall = SystemTime::now() - now.saturating_duration_since(at);
    humantime::format_rfc3339_millis(wall).to_string()
}

/// A restart request's answer.
pub fn outcome(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Restarted { generation, pids, spawn_to_ready, signal_to_old_gone } => json!({
            "ok": true,
            "generation": generation,
            "pids": pids,
            "spawn_to_ready_ms": ms(*spawn_to_ready),
            "signal_to_old_gone_ms": signal_to_old_gone.map(ms),
        }),
        Outcome::Failed { generation, failure } => json!({
            "ok": false,
            "generation": generation,
            "error": match generation {
                Some(g) => format!("generation {g} failed: {failure}"),
                None => failure.to_string(),
            },
        }),
    }
}

/// The `status` answer.
pub fn status(machine: &Machine, listeners: &[(&Listener, i32)], now: Instant) -> Value {
    let generations: Vec<Value> = machine
        .views()
        .iter()
        .map(|v| {
            json!({
                "generation": v.generation,
                "phase": v.phase,
                "pids": v.pids,
                "started": stamp(now, v.spawned_at),
                "ready": v.ready_at.map(|t| stamp(now, t)),
                "told_to_stop": v.signalled_at.map(|t| stamp(now, t)),
            })
        })
        .collect();
    let listeners: Vec<Value> = listeners
        .iter()
        .map(|(l, fd)| json!({"fd": fd, "name": l.spec.name, "key": l.key, "address": l.local}))
        .collect();
    let Counters { restarts, failures, respawns } = machine.counters();
    json!({
        "ok": true,
        "pid": std::process::id(),
        "stopping": machine.stopping(),
        "listeners": listeners,
        "generations": generations,
        "last_restart": machine.last_outcome().map(outcome),
        "counters": {"restarts": restarts, "failures": failures, "respawns": respawns},
    })
}

/// `generation 4 is serving (pids 12,13): ready 35 ms after spawn, old generation gone 120 ms after it was told to stop`
pub fn outcome_text(reply: &Value) -> String {
    let pids = join(&reply["pids"]);
    let mut text = format!("generation {} is serving (pids {pids})", reply["generation"]);
    if let Some(ready) = reply["spawn_to_ready_ms"].as_f64() {
        text += &format!(": ready {ready} ms after spawn");
    }
    if let Some(gone) = reply["signal_to_old_gone_ms"].as_f64() {
        text += &format!(", old generation gone {gone} ms after it was told to stop");
    }
    text
}

fn join(list: &Value) -> String {
    let items: Vec<String> = list.as_array().into_iter().flatten().map(|v| v.to_string()).collect();
    items.join(",")
}

/// The `status` answer for people.
pub fn status_text(reply: &Value) -> String {
    let mut out = format!("supervisor pid {}", reply["pid"]);
    if reply["stopping"] == true {
        out += " (stopping)";
    }
    out.push('\n');
    for l in reply["listeners"].as_array().into_iter().flatten() {
        let name = l["name"].as_str().map(|n| format!(" name {n}")).unwrap_or_default();
        out += &format!("listener fd {}  {}{name}\n", l["fd"], l["address"].as_str().unwrap_or("?"));
    }
    for g in reply["generations"].as_array().into_iter().flatten() {
        out += &format!(
            "generation {}  {:<8}  pids {}  started {}\n",
            g["generation"],
            g["phase"].as_str().unwrap_or("?"),
            join(&g["pids"]),
            g["started"].as_str().unwrap_or("?"),
        );
    }
    let last = &reply["last_restart"];
    if last["ok"] == true {
        out += &format!("last restart: {}\n", outcome_text(last));
    } else if let Some(error) = last["error"].as_str() {
        out += &format!("last restart failed: {error}\n");
    }
    let c = &reply["counters"];
    out += &format!("restarts {}, failures {}, respawns {}\n", c["restarts"], c["failures"], c["respawns"]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::event::{ExitStatus, Failure};

    #[test]
    fn outcomes_as_json_and_text() {
        let ok = outcome(&Outcome::Restarted {
            generation: 4,
            pids: vec![12, 13],
            spawn_to_ready: Duration::from_micros(35_250),
            signal_to_old_gone: Some(Duration::from_millis(120)),
        });
        assert_eq!(ok["spawn_to_ready_ms"], 35.25);
        assert_eq!(
            outcome_text(&ok),
            "generation 4 is serving (pids 12,13): ready 35.25 ms after spawn, \
             old generation gone 120 ms after it was told to stop"
        );
        let failure = Failure::Exited { pid: 9, status: ExitStatus::Code(3), hint: None };
        let failed = outcome(&Outcome::Failed { generation: Some(5), failure });
        assert_eq!(
            failed,
            json!({"ok": false, "generation": 5, "error": "generation 5 failed: worker 9 exited with 3"})
        );
    }
}
