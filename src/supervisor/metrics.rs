//! Metrics in the Prometheus text format (`handover metrics`,
//! `--metrics-listen`): counted from the event records (`Tally::count`),
//! so they say what the log and the event stream say, and carried across
//! `handover upgrade` with them. The machine's own counters (restarts,
//! failures, respawns) are its snapshot's, carried with it.
//!
//! Bounds: exit codes are 0..=255 and signals at most 64, so the labelled
//! series are bounded; histograms have fixed buckets.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::machine::{Counters, Role, View};
use crate::wire::event::{Record, What};

/// Bucket bounds, in seconds, of both histograms.
pub const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    /// Per bucket of `BUCKETS` (not cumulative).
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        self.counts.resize(BUCKETS.len(), 0);
        if let Some(at) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.counts[at] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (at, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts.get(at).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// What is counted from the records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    pub exits_by_code: BTreeMap<i32, u64>,
    pub exits_by_signal: BTreeMap<String, u64>,
    /// SIGKILLs at a deadline, by deadline (drain, ready, stop).
    pub kills: BTreeMap<String, u64>,
    /// Upgrades by outcome (done, refused).
    pub upgrades: BTreeMap<String, u64>,
    /// Log lines dropped, own or captured.
    pub lines_dropped: BTreeMap<String, u64>,
    pub logger_exits: u64,
    pub restart_seconds: Histogram,
    pub ready_seconds: Histogram,
    /// The last restart's outcome and when (Unix seconds).
    pub last_restart: Option<(bool, f64)>,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl Tally {
    pub fn count(&mut self, record: &Record) {
        match &record.what {
            What::Exited { code: Some(code), .. } => *self.exits_by_code.entry(*code).or_default() += 1,
            What::Exited { signal: Some(signal), .. } => {
                *self.exits_by_signal.entry(signal.clone()).or_default() += 1
            }
            What::Killed { deadline, .. } => *self.kills.entry(deadline.clone()).or_default() += 1,
            What::Upgraded { .. } => *self.upgrades.entry("done".into()).or_default() += 1,
            What::UpgradeRefused { .. } => *self.upgrades.entry("refused".into()).or_default() += 1,
            What::LinesDropped { count, of } => *self.lines_dropped.entry(of.clone()).or_default() += count,
            What::LoggerExited { .. } => self.logger_exits += 1,
            What::Ready { after_ms, .. } => self.ready_seconds.observe(after_ms / 1e3),
            What::Restarted { spawn_to_ready_ms, signal_to_old_gone_ms } => {
                let total = spawn_to_ready_ms + signal_to_old_gone_ms.unwrap_or(0.0);
                self.restart_seconds.observe(total / 1e3);
                self.last_restart = Some((true, unix_now()));
            }
            What::RolledBack { .. } => self.last_restart = Some((false, unix_now())),
            _ => {}
        }
    }
}

/// What the metrics are made of besides the tally.
pub struct Sources<'a> {
    pub tally: &'a Tally,
    pub counters: Counters,
    pub views: &'a [View],
    /// Seconds since the supervisor first started (across upgrades).
    pub uptime: f64,
    pub start_time: f64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn series<K: std::fmt::Display>(out: &mut String, name: &str, label: &str, map: &BTreeMap<K, u64>) {
    for (key, value) in map {
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {value}");
    }
}

/// `map` with every key of `keys` present (0 if not counted yet).
fn with_zeros(map: &BTreeMap<String, u64>, keys: &[&str]) -> BTreeMap<String, u64> {
    let mut all = map.clone();
    for key in keys {
        all.entry(key.to_string()).or_default();
    }
    all
}

/// The text format's page.
pub fn render(s: &Sources) -> String {
    let mut out = String::new();
    let serving = s.views.iter().filter(|v| v.role == Role::Serving).map(|v| v.generation).max();
    let help = "The serving generation (0: none).";
    single(&mut out, "handover_generation", "gauge", help, serving.unwrap_or(0));
    family(&mut out, "handover_generations", "gauge", "Generations alive, by state.");
    for role in Role::ALL {
        let n = s.views.iter().filter(|v| v.role == role).count();
        let _ = writeln!(out, "handover_generations{{state=\"{}\"}} {n}", role.name());
    }
    family(&mut out, "handover_workers", "gauge", "Worker processes alive, by state of their generation.");
    for role in Role::ALL {
        let n: usize = s.views.iter().filter(|v| v.role == role).map(|v| v.pids.len()).sum();
        let _ = writeln!(out, "handover_workers{{state=\"{}\"}} {n}", role.name());
    }
    let help = "Whether the last restart succeeded (1) or was rolled back (0); absent before the first.";
    family(&mut out, "handover_last_restart_success", "gauge", help);
    let help = "When the last restart succeeded or was rolled back, in Unix seconds.";
    family(&mut out, "handover_last_restart_timestamp_seconds", "gauge", help);
    if let Some((ok, at)) = s.tally.last_restart {
        let _ = writeln!(out, "handover_last_restart_success {}", u8::from(ok));
        let _ = writeln!(out, "handover_last_restart_timestamp_seconds {at:.3}");
    }
    let help = "From a new generation's spawn until it serves alone (its predecessor gone).";
    s.tally.restart_seconds.render(&mut out, "handover_restart_duration_seconds", help);
    let help = "From a generation's spawn until it was found ready.";
    s.tally.ready_seconds.render(&mut out, "handover_readiness_latency_seconds", help);
    let counters = [
        ("handover_restarts_total", "Generation switches.", s.counters.restarts),
        ("handover_restart_failures_total", "Generations that failed to start.", s.counters.failures),
        ("handover_respawns_total", "Serving workers that died and were started again.", s.counters.respawns),
        ("handover_logger_exits_total", "Exits of the --log-file command.", s.tally.logger_exits),
    ];
    for (name, help, value) in counters {
        single(&mut out, name, "counter", help, value);
    }
    let name = "handover_worker_exits_by_code_total";
    family(&mut out, name, "counter", "Worker exits with a code, by code.");
    series(&mut out, name, "code", &s.tally.exits_by_code);
    let name = "handover_worker_exits_by_signal_total";
    family(&mut out, name, "counter", "Worker deaths by a signal, by signal.");
    series(&mut out, name, "signal", &s.tally.exits_by_signal);
    let name = "handover_deadline_kills_total";
    family(&mut out, name, "counter", "SIGKILLs sent at a deadline: drain, ready (--ready-timeout) or stop.");
    series(&mut out, name, "deadline", &with_zeros(&s.tally.kills, &["drain", "ready", "stop"]));
    let name = "handover_upgrades_total";
    family(&mut out, name, "counter", "Self-upgrades (handover upgrade), by outcome: done or refused.");
    series(&mut out, name, "outcome", &with_zeros(&s.tally.upgrades, &["done", "refused"]));
    let name = "handover_log_lines_dropped_total";
    family(&mut out, name, "counter", "Log lines dropped while the log was not read: own or captured.");
    series(&mut out, name, "of", &with_zeros(&s.tally.lines_dropped, &["own", "captured"]));
    let help = "Seconds since the supervisor first started.";
    single(&mut out, "handover_uptime_seconds", "gauge", help, format!("{:.3}", s.uptime));
    let help = "When the supervisor first started, in Unix seconds.";
    single(&mut out, "handover_start_time_seconds", "gauge", help, format!("{:.3}", s.start_time));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(what: What) -> Record {
        Record {
            seq: 1,
            time: String::new(),
            generation: Some(2),
            pids: vec![7],
            what,
            message: String::new(),
        }
    }

    #[test]
    fn counts_exits_kills_and_latencies() {
        let mut tally = Tally::default();
        let exit = |code, signal: Option<&str>| What::Exited {
            code,
            signal: signal.map(str::to_string),
            core: false,
            role: "draining".into(),
        };
        tally.count(&record(exit(Some(3), None)));
        tally.count(&record(exit(None, Some("TERM"))));
        tally.count(&record(What::Killed { deadline: "drain".into(), after_ms: 10.0 }));
        tally.count(&record(What::Ready { how: "READY=1".into(), after_ms: 20.0 }));
        tally.count(&record(What::Restarted { spawn_to_ready_ms: 20.0, signal_to_old_gone_ms: Some(30.0) }));
        let page = render(&Sources {
            tally: &tally,
            counters: Counters { restarts: 1, failures: 0, respawns: 0 },
            views: &[],
            uptime: 1.5,
            start_time: 1e9,
        });
        for line in [
            "handover_worker_exits_by_code_total{code=\"3\"} 1",
            "handover_worker_exits_by_signal_total{signal=\"TERM\"} 1",
            "handover_deadline_kills_total{deadline=\"drain\"} 1",
            "handover_deadline_kills_total{deadline=\"stop\"} 0",
            "handover_readiness_latency_seconds_bucket{le=\"0.025\"} 1",
            "handover_restart_duration_seconds_bucket{le=\"0.05\"} 1",
            "handover_restart_duration_seconds_count 1",
            "handover_last_restart_success 1",
            "handover_restarts_total 1",
            "handover_uptime_seconds 1.500",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing from\n{page}");
        }
    }
}
