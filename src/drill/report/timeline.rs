//! The samples on one time axis, in nanoseconds since the first request
//! started (or the load did, when that was earlier), and what a restart's
//! or an upgrade's window of it holds: the requests whose lifetime overlaps
//! it, their failures, latencies and accept gap (the definitions are in the
//! parent module's header).
use std::time::Instant;

use serde::Serialize;

use super::gap::gap_in;
use super::render::show;
use super::{Failures, Latency, WINDOW_AFTER, WINDOW_BEFORE, ms_of};
use crate::drill::load::{Outcome, Sample};

pub(super) struct Timeline<'a> {
    samples: &'a [Sample],
    origin: Option<Instant>,
    /// Sample indices, by start.
    order: Vec<u32>,
    /// The longest latency, in ns.
    longest: u64,
    /// The start of the first request, every successful completion (those
    /// past the sample cap to the millisecond) and the end of the last
    /// request, sorted.
    pub events: Vec<u64>,
    /// Every restart's and upgrade's request and answer, on the axis, by request.
    steps: Vec<(u64, u64)>,
}

/// A window as a restart's or an upgrade's report shows it (its fields
/// flattened into theirs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    pub window_from_ms: f64,
    pub window_to_ms: f64,
    pub requests: u64,
    pub failures: Failures,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub accept_gap_ms: Option<f64>,
}

impl WindowReport {
    /// Its cells in a table: requests, failed, p50, p90, p99, max, gap.
    pub(super) fn cells(&self) -> [String; 7] {
        [
            self.requests.to_string(),
            self.failures.total.to_string(),
            show(self.latency_p50_ms),
            show(self.latency_p90_ms),
            show(self.latency_p99_ms),
            show(self.latency_max_ms),
            show(self.accept_gap_ms),
        ]
    }
}

impl<'a> Timeline<'a> {
    /// The samples of a load that started at `started`, with the
    /// successful completions past the sample cap (`beats`) and the
    /// restarts' and upgrades' (request, answer) `steps`, whose windows it
    /// keeps apart.
    pub fn new(
        samples: &'a [Sample],
        started: Option<Instant>,
        beats: &[Instant],
        steps: &[(Instant, Instant)],
    ) -> Timeline<'a> {
        let origin = samples.iter().map(|s| s.started).chain(started).min();
        let mut order: Vec<u32> = (0..samples.len() as u32).collect();
        order.sort_unstable_by_key(|&i| samples[i as usize].started);
        let longest = samples.iter().map(|s| s.latency.as_nanos() as u64).max().unwrap_or_default();
        let mut timeline =
            Timeline { samples, origin, order, longest, events: Vec::new(), steps: Vec::new() };
        let mut events = Vec::with_capacity(samples.len() + beats.len() + 2);
        events.extend((0..samples.len() as u32).filter(|&i| timeline.ok(i)).map(|i| timeline.end(i)));
        events.extend(beats.iter().map(|&b| timeline.at(b)));
        events.extend(timeline.order.first().map(|&i| timeline.start(i)));
        let last = timeline.order.iter().map(|&i| timeline.end(i)).max();
        events.extend(last.into_iter().chain(beats.last().map(|&b| timeline.at(b))).max());
        events.sort_unstable();
        timeline.events = events;
        timeline.steps = steps.iter().map(|&(r, a)| (timeline.at(r), timeline.at(a))).collect();
        timeline.steps.sort_unstable();
        timeline
    }

    /// Where the window of a step answered at `answered` meets the next
    /// one's, requested at `next`, when they would overlap.
    fn meet(answered: u64, next: u64) -> Option<u64> {
        let (before, after) = (WINDOW_BEFORE.as_nanos() as u64, WINDOW_AFTER.as_nanos() as u64);
        (next.saturating_sub(before) < answered + after).then(|| answered.midpoint(next.max(answered)))
    }

    /// `t` on the axis.
    pub fn at(&self, t: Instant) -> u64 {
        self.origin.map_or(0, |origin| t.saturating_duration_since(origin).as_nanos() as u64)
    }

    /// When sample `i` started.
    pub fn start(&self, i: u32) -> u64 {
        self.at(self.samples[i as usize].started)
    }

    /// When sample `i` ended.
    pub fn end(&self, i: u32) -> u64 {
        self.start(i) + self.samples[i as usize].latency.as_nanos() as u64
    }

    fn ok(&self, i: u32) -> bool {
        self.samples[i as usize].outcome == Outcome::Ok
    }

    /// The window of something requested at `requested` and answered at
    /// `answered`: from [`WINDOW_BEFORE`] before the one to
    /// [`WINDOW_AFTER`] after the other, cut where it meets the previous
    /// or the next step's (`meet`); and where it is on the axis.
    pub fn window(&self, requested: Instant, answered: Instant) -> (WindowReport, (u64, u64)) {
        let (r, a) = (self.at(requested), self.at(answered));
        let mut from = r.saturating_sub(WINDOW_BEFORE.as_nanos() as u64);
        let mut to = a + WINDOW_AFTER.as_nanos() as u64;
        for &(r2, a2) in &self.steps {
            if r2 < r
                && let Some(at) = Self::meet(a2, r)
            {
                from = from.max(at);
            }
            if r2 > r
                && let Some(at) = Self::meet(a, r2)
            {
                to = to.min(at);
            }
        }
        let to = to.max(from);
        // The requests whose lifetime overlaps [from, to].
        let first = self.order.partition_point(|&i| self.start(i) + self.longest < from);
        let last = self.order.partition_point(|&i| self.start(i) <= to).max(first);
        let mut failures = Failures::default();
        let mut latencies = Vec::new();
        for &i in self.order[first..last].iter().filter(|&&i| self.end(i) >= from) {
            failures.add(&self.samples[i as usize].outcome);
            if self.ok(i) {
                latencies.push(self.samples[i as usize].latency.as_nanos() as u64);
            }
        }
        latencies.sort_unstable();
        let latency = Latency::of(&latencies);
        let report = WindowReport {
            window_from_ms: ms_of(from),
            window_to_ms: ms_of(to),
            requests: failures.total + latencies.len() as u64,
            failures,
            latency_p50_ms: latency.p50_ms,
            latency_p90_ms: latency.p90_ms,
            latency_p99_ms: latency.p99_ms,
            latency_max_ms: latency.max_ms,
            accept_gap_ms: gap_in(&self.events, from, to).map(ms_of),
        };
        (report, (from, to))
    }
}
