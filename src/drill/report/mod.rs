//! The drill's report: from every request's sample and every restart's
//! record to the numbers, the verdict and its renderings (a table for
//! people, JSON for scripts, JUnit XML for CI).
//!
//! Definitions:
//! - Latency percentiles are nearest-rank, over successful requests only.
//! - A restart's (or an upgrade's) window is [requested − 100 ms,
//!   answered + 500 ms]; a request belongs to it when its lifetime overlaps
//!   the window. A failed request is attributed (in the verdict) to the
//!   earliest restart or upgrade whose window it overlaps, else to none.
//! - The accept gap is the longest time without a successful completion
//!   while the load ran. The events are the start of the first request,
//!   every successful completion and the end of the last request; a
//!   window's gap is the longest stretch between consecutive events from
//!   the last one at or before the window to the first one at or after it
//!   (closed on the right too, so a stall that begins in the window counts
//!   in full). "Outside restarts" is the longest gap that touches no
//!   window (of a restart or an upgrade): the noise floor of the machine.
//! - The retried share is the retried requests over all requests; above
//!   `--max-retried` (equal passes) it fails the drill, and the verdict
//!   counts the retried requests that overlap a restart's (or an
//!   upgrade's) window.
//! - Upgrades (`upgrade`): took ms is the supervisor's own measure (from
//!   the request to the new image serving), round trip the drill's; their
//!   spreads are over the upgrades that succeeded, the median nearest-rank.
//!
//! Pure: no clock reads, no io; the caller measures. `timeline` puts the
//! samples on one axis and measures windows of it; `upgrade` checks and
//! sums up the upgrades; `verdict` words the reasons a drill failed;
//! `render` draws the table and the JUnit XML.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::load::{Outcome, Sample};

mod gap;
mod render;
mod restart;
mod timeline;
mod upgrade;
mod verdict;
use gap::gap_outside;
pub use restart::{RestartRecord, RestartReport};
use timeline::Timeline;
pub use upgrade::{LogLines, Snapshot, UpgradeRecord, Upgrades};
use verdict::{Case, findings};

/// A restart's window starts this long before the request...
pub const WINDOW_BEFORE: Duration = Duration::from_millis(100);
/// ...and ends this long after the answer.
pub const WINDOW_AFTER: Duration = Duration::from_millis(500);

/// A restart or an upgrade, by its number (each kind counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Restart(usize),
    Upgrade(usize),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Step::Restart(n) => write!(f, "restart {n}"),
            Step::Upgrade(n) => write!(f, "upgrade {n}"),
        }
    }
}

/// `--max-retried`'s default: a keep-alive client retries more than one
/// request in a hundred only when the server closes connections unasked.
pub const DEFAULT_MAX_RETRIED_PERCENT: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub max_failures: u64,
    pub max_p99: Option<Duration>,
    /// Retried requests tolerated, in percent of all requests.
    pub max_retried_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds { max_failures: 0, max_p99: None, max_retried_percent: DEFAULT_MAX_RETRIED_PERCENT }
    }
}

pub struct Inputs<'a> {
    pub samples: &'a [Sample],
    pub restarts: &'a [RestartRecord],
    pub upgrades: &'a [UpgradeRecord],
    /// The supervisor's log lines about upgrades; None: not checked (no
    /// upgrades, or its log does not come to the drill).
    pub upgrade_log: Option<LogLines>,
    /// `--log-line`: its text, and how many lines in the output had it.
    pub request_lines: Option<(String, u64)>,
    pub started: Instant,
    pub ended: Instant,
    /// CPU time the drill itself spent while the load ran.
    pub load_cpu: Option<Duration>,
    /// What was drilled and how it was restarted.
    pub supervisor: String,
    pub peak_rss_kib: Option<u64>,
    /// The supervisor's private memory (anonymous pages) after the load.
    pub private_kib: Option<u64>,
    pub idle: Option<Idle>,
    /// Processes or files left behind.
    pub leftovers: Vec<String>,
    pub thresholds: Thresholds,
}

/// The supervisor at rest, after the load: CPU time and wake-ups
/// (context switches) over `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Idle {
    pub seconds: f64,
    pub cpu_ms: f64,
    pub wakeups: u64,
}

/// Failed requests by kind; `statuses` and `errors` detail `bad_status`
/// (status → count; 0 is a raw reply without the expected prefix) and
/// `other` (error text → count).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Failures {
    pub total: u64,
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub bad_status: u64,
    pub short_read: u64,
    pub other: u64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Failures {
    fn add(&mut self, outcome: &Outcome) {
        let count = match outcome {
            Outcome::Ok => return,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Timeout => &mut self.timeout,
            Outcome::ShortRead => &mut self.short_read,
            Outcome::BadStatus(status) => {
                *self.statuses.entry(status.to_string()).or_default() += 1;
                &mut self.bad_status
            }
            Outcome::Other(text) => {
                *self.errors.entry(text.clone()).or_default() += 1;
                &mut self.other
            }
        };
        *count += 1;
        self.total += 1;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// Of latencies in ns, sorted.
    fn of(sorted: &[u64]) -> Latency {
        let p = |pct| percentile(sorted, pct).map(ms_of);
        Latency {
            p50_ms: p(50.0),
            p90_ms: p(90.0),
            p99_ms: p(99.0),
            max_ms: sorted.last().map(|&ns| ms_of(ns)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AcceptGap {
    pub max_ms: Option<f64>,
    pub outside_restarts_ms: Option<f64>,
}

/// `--log-line`: lines with `text` in the output, against answered requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestLines {
    pub text: String,
    pub seen: u64,
    pub answered: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub passed: bool,
    pub verdicts: Vec<String>,
    pub requests: u64,
    pub ok: u64,
    /// Keep-alive requests sent again on a fresh connection (counted once).
    pub retried: u64,
    /// `retried` in percent of `requests`, to 0.01.
    pub retried_percent: f64,
    pub duration_s: f64,
    pub rate_per_s: f64,
    /// The drill's own CPU time per request: what the load generator costs.
    pub load_cpu_us_per_request: Option<f64>,
    pub failures: Failures,
    pub latency: Latency,
    pub accept_gap: AcceptGap,
    pub restarts: Vec<RestartReport>,
    pub upgrades: Upgrades,
    /// None without `--log-line`.
    pub request_lines: Option<RequestLines>,
    pub supervisor: String,
    pub peak_rss_kib: Option<u64>,
    pub private_kib: Option<u64>,
    pub idle: Option<Idle>,
    pub leftovers: Vec<String>,
    pub max_failures: u64,
    pub max_p99_ms: Option<f64>,
    pub max_retried_percent: f64,
    #[serde(skip)]
    findings: Vec<(Case, String)>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Nanoseconds (since the start of the run) in milliseconds, to the µs.
fn ms_of(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Nearest rank of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// Computes the report. Memory beyond the samples: about 20 bytes per
/// sample (an index sorted by start, completion times, latencies).
pub fn compute(inputs: &Inputs) -> Report {
    let samples = inputs.samples;
    let timeline = Timeline::new(samples, inputs.started);
    let mut failures = Failures::default();
    let mut latencies = Vec::with_capacity(samples.len());
    for s in samples {
        failures.add(&s.outcome);
        if s.outcome == Outcome::Ok {
            latencies.push(s.latency.as_nanos() as u64);
        }
    }
    latencies.sort_unstable();
    let latency = Latency::of(&latencies);

    // Every restart's and upgrade's window, earliest first.
    let mut windows = Vec::new();
    let mut restarts = Vec::new();
    for r in inputs.restarts {
        let (report, (from, to)) = RestartReport::new(r, &timeline);
        windows.push((from, to, Step::Restart(r.number)));
        restarts.push(report);
    }
    let upgrades = Upgrades::compute(inputs.upgrades, inputs.upgrade_log, &timeline, &mut windows);
    windows.sort_by_key(|w| w.0);
    let events = &timeline.events;
    let spans: Vec<(u64, u64)> = windows.iter().map(|w| (w.0, w.1)).collect();
    let accept_gap = AcceptGap {
        max_ms: events.windows(2).map(|w| w[1] - w[0]).max().map(ms_of),
        outside_restarts_ms: gap_outside(events, &spans).map(ms_of),
    };

    // Failed requests by the earliest window they overlap; retried ones by
    // whether they overlap any.
    let mut attributed: Vec<_> = windows.iter().map(|w| (w.2, Failures::default())).collect();
    let mut outside = Failures::default();
    let (mut retried, mut retried_in_restarts) = (0, 0);
    for (i, sample) in samples.iter().enumerate().filter(|(_, s)| s.outcome != Outcome::Ok || s.retried) {
        let (a, b) = (timeline.start(i as u32), timeline.end(i as u32));
        let window = spans.iter().position(|&(from, to)| a <= to && b >= from);
        if sample.retried {
            retried += 1;
            retried_in_restarts += u64::from(window.is_some());
        }
        if sample.outcome != Outcome::Ok {
            match window {
                Some(w) => attributed[w].1.add(&sample.outcome),
                None => outside.add(&sample.outcome),
            }
        }
    }

    let duration = inputs.ended.saturating_duration_since(inputs.started);
    let requests = samples.len() as u64;
    let mut report = Report {
        passed: true,
        verdicts: Vec::new(),
        requests,
        ok: latencies.len() as u64,
        retried,
        retried_percent: if requests == 0 {
            0.0
        } else {
            (retried as f64 * 1e4 / requests as f64).round() / 100.0
        },
        duration_s: (duration.as_secs_f64() * 1e3).round() / 1e3,
        rate_per_s: if duration.is_zero() { 0.0 } else { (requests as f64 / duration.as_secs_f64()).round() },
        load_cpu_us_per_request: inputs
            .load_cpu
            .filter(|_| requests > 0)
            .map(|cpu| (cpu.as_secs_f64() * 1e7 / requests as f64).round() / 10.0),
        failures,
        latency,
        accept_gap,
        restarts,
        upgrades,
        request_lines: (inputs.request_lines.clone()).map(|(text, seen)| RequestLines {
            text,
            seen,
            answered: latencies.len() as u64,
        }),
        supervisor: inputs.supervisor.clone(),
        peak_rss_kib: inputs.peak_rss_kib,
        private_kib: inputs.private_kib,
        idle: inputs.idle.clone(),
        leftovers: inputs.leftovers.clone(),
        max_failures: inputs.thresholds.max_failures,
        max_p99_ms: inputs.thresholds.max_p99.map(ms),
        max_retried_percent: inputs.thresholds.max_retried_percent,
        findings: Vec::new(),
    };
    report.findings = findings(&report, &attributed, &outside, retried_in_restarts);
    report.verdicts = report.findings.iter().map(|f| f.1.clone()).collect();
    report.passed = report.findings.is_empty();
    report
}

impl Report {
    /// No more failures than allowed, every restart and upgrade succeeded,
    /// every upgrade kept the pids and the log lines, p99 and the share of
    /// retried requests within their limits, nothing left behind, and at
    /// least one request made.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// One line per reason the drill failed; empty when it passed.
    pub fn verdicts(&self) -> Vec<String> {
        self.verdicts.clone()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
pub(super) mod tests;
