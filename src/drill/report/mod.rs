//! The drill's report: from every request's sample and every restart's
//! record to the numbers, the verdict and its renderings (a table for
//! people, JSON for scripts, JUnit XML for CI).
//!
//! Definitions:
//! - Latency percentiles are nearest-rank, over successful requests only.
//! - A restart's (or an upgrade's) window is [requested − 100 ms,
//!   answered + 500 ms], cut where it would overlap the next one's (or
//!   the previous one's): two windows meet halfway between the one's
//!   answer and the next one's request, so windows never overlap. A
//!   request belongs to a window when its lifetime overlaps it. A failed
//!   request is attributed (in the verdict) to the earliest restart or
//!   upgrade whose window it overlaps, else to none.
//! - Past the load's sample cap, requests that succeeded first time are
//!   only counted (`unsampled`): they count in the totals and their
//!   completions (to the millisecond) in the accept gap, not in the
//!   latencies or a window's requests.
//! - The accept gap is the longest time without a successful completion
//!   while the load ran. The events are the start of the first request,
//!   every successful completion and the end of the last request; a
//!   window's gap is the longest stretch between consecutive events from
//!   the last one at or before the window to the first one at or after it
//!   (closed on the right too, so a stall that begins in the window counts
//!   in full). "Outside restarts" is the longest gap that touches no
//!   window (of a restart or an upgrade): the noise floor of the machine.
//! - Retries are measured per connection and restart: the retried requests
//!   over the connections times the restarts done (at least one); the
//!   retried share is the retried requests over all requests. Above
//!   `--max-retried` (N: per connection and restart; N%: the share; equal
//!   passes) they fail the drill, and the verdict counts the retried
//!   requests that overlap a restart's (or an upgrade's) window.
//! - Findings first name what stopped the drill (a failed start, restarts
//!   not run), then each restart and upgrade that failed or whose old
//!   generation had to be killed, then the requests.
//! - Upgrades (`upgrade`): took ms is the supervisor's own measure (from
//!   the request to the new image serving), round trip the drill's; their
//!   spreads are over the upgrades that succeeded, the median nearest-rank.
//!
//! Pure: no clock reads, no io; the caller measures. `timeline` puts the
//! samples on one axis and measures windows of it; `upgrade` checks and
//! sums up the upgrades; `verdict` words the reasons a drill failed;
//! `render` draws the table and the JUnit XML.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::load::{Outcome, Sample, Unsampled};

mod gap;
mod html;
mod kill;
mod numbers;
mod render;
mod restart;
mod series;
mod timeline;
mod upgrade;
mod verdict;
use gap::gap_outside;
pub use kill::{Kill, parse as parse_kill, pids};
pub use numbers::{Failures, Latency};
pub use restart::{RestartRecord, RestartReport};
pub use series::Series;
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

/// `--max-retried`: keep-alive requests retried on a fresh connection
/// tolerated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryLimit {
    /// Per client connection and restart.
    PerConnectionRestart(f64),
    /// In percent of all requests.
    Percent(f64),
}

/// `--max-retried`'s default: a server that closes its idle keep-alive
/// connections when told to stop costs each connection one retry per
/// restart, at any rate.
pub const DEFAULT_MAX_RETRIED: RetryLimit = RetryLimit::PerConnectionRestart(1.0);

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub max_failures: u64,
    pub max_p99: Option<Duration>,
    pub max_retried: RetryLimit,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds { max_failures: 0, max_p99: None, max_retried: DEFAULT_MAX_RETRIED }
    }
}

#[derive(Default)]
pub struct Inputs {
    pub samples: Vec<Sample>,
    /// What the load counted past its sample cap.
    pub unsampled: Unsampled,
    /// The load's client connections.
    pub connections: usize,
    /// The restarts and upgrades asked for.
    pub asked: (usize, usize),
    /// Why not all of them ran, when they did not.
    pub cut_short: Option<String>,
    /// Why the first generation never served, when it did not.
    pub startup: Option<String>,
    /// What is wrong with the first generation, though it serves.
    pub first_generation: Option<String>,
    /// Workers the supervisor had to KILL.
    pub kills: Vec<Kill>,
    /// The signal an old generation is told to stop with (`TERM`).
    pub stop_signal: String,
    /// Whether to compute the run over time (`Report::series`).
    pub series: bool,
    pub restarts: Vec<RestartRecord>,
    pub upgrades: Vec<UpgradeRecord>,
    /// The supervisor's log lines about upgrades; None: not checked (no
    /// upgrades, or its log does not come to the drill).
    pub upgrade_log: Option<LogLines>,
    /// `--log-line`: its text, and how many lines in the output had it.
    pub request_lines: Option<(String, u64)>,
    /// When the load started and ended; `None` when it did not run.
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
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
    /// No more failures than allowed, every restart and upgrade succeeded,
    /// every upgrade kept the pids and the log lines, p99 and the share of
    /// retried requests within their limits, nothing left behind, and at
    /// least one request made.
    pub passed: bool,
    /// One line per reason the drill failed; empty when it passed.
    pub verdicts: Vec<String>,
    /// Why the first generation never served (then nothing else ran).
    pub startup_error: Option<String>,
    pub restarts_asked: usize,
    pub upgrades_asked: usize,
    pub requests: u64,
    pub ok: u64,
    /// Requests counted past the sample cap, without their detail.
    pub unsampled: u64,
    pub connections: usize,
    /// Keep-alive requests sent again on a fresh connection (counted once).
    pub retried: u64,
    /// `retried` in percent of `requests`, to 0.01.
    pub retried_percent: f64,
    /// `retried` per connection and restart done (at least one), to 0.001.
    pub retried_per_connection_restart: f64,
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
    /// Workers the supervisor had to KILL at the stop (`--stop-timeout`).
    pub killed_at_stop: Vec<i32>,
    pub max_failures: u64,
    pub max_p99_ms: Option<f64>,
    /// `--max-retried N%`.
    pub max_retried_percent: Option<f64>,
    /// `--max-retried N`.
    pub max_retried_per_connection_restart: Option<f64>,
    /// The run over time, for `--report DIR`'s picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
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
    let samples = &inputs.samples;
    let mut steps: Vec<(Instant, Instant)> =
        (inputs.restarts.iter().map(|r| (r.requested_at, r.answered_at)))
            .chain(inputs.upgrades.iter().map(|u| (u.requested_at, u.answered_at)))
            .collect();
    steps.sort_unstable();
    let timeline = Timeline::new(samples, inputs.started, &inputs.unsampled.beats, &steps);
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
    for r in &inputs.restarts {
        let (report, (from, to)) = RestartReport::new(r, &timeline);
        windows.push((from, to, Step::Restart(r.number)));
        restarts.push(report);
    }
    let (early, killed_at_stop) =
        kill::findings(&inputs.kills, &inputs.restarts, &mut restarts, &inputs.stop_signal);
    let upgrades = Upgrades::compute(&inputs.upgrades, inputs.upgrade_log, &timeline, &mut windows);
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

    let duration =
        (inputs.started.zip(inputs.ended)).map_or(Duration::ZERO, |(a, b)| b.saturating_duration_since(a));
    let unsampled = &inputs.unsampled;
    let requests = samples.len() as u64 + unsampled.requests;
    retried += unsampled.retried;
    if unsampled.requests > unsampled.ok {
        let lost = "failed past the sample cap (not kept)".to_string();
        *failures.errors.entry(lost).or_default() += unsampled.requests - unsampled.ok;
        failures.other += unsampled.requests - unsampled.ok;
        failures.total += unsampled.requests - unsampled.ok;
    }
    let per_connection_restart = inputs.connections.max(1) * inputs.restarts.len().max(1);
    let (max_retried_percent, max_retried_per_connection_restart) = match inputs.thresholds.max_retried {
        RetryLimit::Percent(p) => (Some(p), None),
        RetryLimit::PerConnectionRestart(n) => (None, Some(n)),
    };
    let capped = unsampled.requests > 0;
    let series = inputs.series.then(|| series::series(samples, &timeline, &restarts, &upgrades.each, capped));
    let mut report = Report {
        series,
        passed: true,
        verdicts: Vec::new(),
        startup_error: inputs.startup.clone(),
        restarts_asked: inputs.asked.0,
        upgrades_asked: inputs.asked.1,
        requests,
        ok: latencies.len() as u64 + unsampled.ok,
        unsampled: unsampled.requests,
        connections: inputs.connections,
        retried,
        retried_percent: if requests == 0 {
            0.0
        } else {
            (retried as f64 * 1e4 / requests as f64).round() / 100.0
        },
        retried_per_connection_restart: (retried as f64 * 1e3 / per_connection_restart as f64).round() / 1e3,
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
        killed_at_stop,
        max_failures: inputs.thresholds.max_failures,
        max_p99_ms: inputs.thresholds.max_p99.map(ms),
        max_retried_percent,
        max_retried_per_connection_restart,
        findings: Vec::new(),
    };
    let first = [
        inputs.startup.as_ref().map(|why| (Case::Startup, format!("startup failed: {why}"))),
        inputs.first_generation.as_ref().map(|what| (Case::Startup, format!("startup: {what}"))),
        inputs.cut_short.clone().map(|why| (Case::Requests, why)),
    ];
    let first = first.into_iter().flatten().chain(early).collect();
    report.findings = findings(&report, first, &attributed, &outside, retried_in_restarts);
    report.verdicts = report.findings.iter().map(|f| f.1.clone()).collect();
    report.passed = report.findings.is_empty();
    report
}

impl Report {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
pub(super) mod tests;
