//! The run over time, what `--report DIR`'s picture is drawn from: the
//! requests in buckets of equal time (by when each started: its rate, its
//! failures, the latency percentiles of those that succeeded), every
//! restart and upgrade as a band from its request to its answer (the old
//! generation gone), the longer stretches without a successful completion
//! (accept gaps), and every failed request (up to [`MAX_FAILED`]).
//!
//! Times are in ms since the start of the run (the report's axis).
//! Buckets: at most [`MAX_BUCKETS`], each a round number of milliseconds
//! wide. A gap is drawn when it is at least [`MIN_GAP`] and four times the
//! mean stretch between completions (so a slow paced load is not all
//! gaps); the [`MAX_GAPS`] longest.
use serde::Serialize;

use super::timeline::Timeline;
use super::upgrade::UpgradeReport;
use super::{Latency, RestartReport, ms_of};
use crate::drill::load::{Outcome, Sample};

const MAX_BUCKETS: u64 = 400;
const MAX_FAILED: usize = 5000;
const MAX_GAPS: usize = 50;
const MIN_GAP: u64 = 10_000_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub requests: u64,
    pub failed: u64,
    pub rate_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// A restart or an upgrade, from its request to its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    pub label: String,
    pub ok: bool,
    pub from_ms: f64,
    pub to_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub from_ms: f64,
    pub to_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failed {
    pub at_ms: f64,
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub bucket_ms: f64,
    pub end_ms: f64,
    pub buckets: Vec<Bucket>,
    pub bands: Vec<Band>,
    pub gaps: Vec<Span>,
    pub failed: Vec<Failed>,
    /// Failed requests beyond [`MAX_FAILED`], not in `failed`.
    pub failed_not_shown: u64,
    /// Past the sample cap, from here on only counts were kept.
    pub detail_until_ms: Option<f64>,
}

fn kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Reset => "reset",
        Outcome::Timeout => "timeout",
        Outcome::BadStatus(_) => "bad status",
        Outcome::ShortRead => "short read",
        Outcome::Other(_) => "other",
    }
}

/// A round bucket width (ms) that cuts `total_ms` into at most [`MAX_BUCKETS`].
fn width(total_ns: u64) -> u64 {
    let wanted = total_ns.div_ceil(MAX_BUCKETS * 1_000_000).max(1);
    let mut unit = 1;
    loop {
        for step in [1, 2, 5] {
            if step * unit >= wanted {
                return step * unit;
            }
        }
        unit *= 10;
    }
}

pub(super) fn series(
    samples: &[Sample],
    timeline: &Timeline,
    restarts: &[RestartReport],
    upgrades: &[UpgradeReport],
    capped: bool,
) -> Series {
    let events = &timeline.events;
    let end = events.last().copied().unwrap_or_default();
    let bucket = width(end) * 1_000_000;
    let count = (end / bucket + 1) as usize;
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count];
    let (mut requests, mut failures) = (vec![0u64; count], vec![0u64; count]);
    let (mut failed, mut failed_not_shown) = (Vec::new(), 0);
    for (i, s) in samples.iter().enumerate() {
        let at = timeline.start(i as u32);
        let b = ((at / bucket) as usize).min(count - 1);
        requests[b] += 1;
        if s.outcome == Outcome::Ok {
            latencies[b].push(s.latency.as_nanos() as u64);
            continue;
        }
        failures[b] += 1;
        if failed.len() < MAX_FAILED {
            failed.push(Failed { at_ms: ms_of(at), kind: kind(&s.outcome) });
        } else {
            failed_not_shown += 1;
        }
    }
    let seconds = bucket as f64 / 1e9;
    let buckets = (0..count)
        .map(|b| {
            latencies[b].sort_unstable();
            let latency = Latency::of(&latencies[b]);
            Bucket {
                from_ms: ms_of(b as u64 * bucket),
                requests: requests[b],
                failed: failures[b],
                rate_per_s: (requests[b] as f64 / seconds).round(),
                p50_ms: latency.p50_ms,
                p99_ms: latency.p99_ms,
                max_ms: latency.max_ms,
            }
        })
        .collect();
    let mean = end / (events.len() as u64).max(1);
    let floor = MIN_GAP.max(4 * mean);
    let mut gaps: Vec<(u64, u64)> =
        events.windows(2).map(|w| (w[0], w[1])).filter(|w| w.1 - w.0 >= floor).collect();
    gaps.sort_unstable_by_key(|g| std::cmp::Reverse(g.1 - g.0));
    gaps.truncate(MAX_GAPS);
    gaps.sort_unstable();
    let band =
        |label: String, ok: bool, at: f64, took: f64| Band { label, ok, from_ms: at, to_ms: at + took };
    let bands = (restarts
        .iter()
        .map(|r| band(format!("restart {}", r.number), r.ok, r.requested_at_ms, r.answered_after_ms)))
    .chain(
        upgrades
            .iter()
            .map(|u| band(format!("upgrade {}", u.number), u.ok, u.requested_at_ms, u.round_trip_ms)),
    )
    .collect();
    let last_kept = samples.iter().enumerate().map(|(i, _)| timeline.start(i as u32)).max();
    Series {
        bucket_ms: ms_of(bucket),
        end_ms: ms_of(end),
        buckets,
        bands,
        gaps: gaps.into_iter().map(|(a, b)| Span { from_ms: ms_of(a), to_ms: ms_of(b) }).collect(),
        failed,
        failed_not_shown,
        detail_until_ms: last_kept.filter(|_| capped).map(ms_of),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::compute;
    use super::super::tests::{inputs, restart, sample, steady};
    use super::*;

    #[test]
    fn widths_are_round() {
        assert_eq!(width(0), 1);
        assert_eq!(width(400_000_000), 1);
        assert_eq!(width(401_000_000), 2);
        assert_eq!(width(3_000_000_000), 10);
        assert_eq!(width(90_000_000_000), 500);
    }

    #[test]
    fn the_run_in_buckets_bands_gaps_and_failures() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 400);
        samples.extend(steady(base, 450, 1000));
        samples.push(sample(base, 420, 3, Outcome::Reset));
        let restarts = [restart(base, 1, 400, 460)];
        let mut inputs = inputs(base, &samples, &restarts);
        inputs.series = true;
        let report = compute(&inputs);
        let s = report.series.as_ref().unwrap();
        assert_eq!((s.bucket_ms, s.buckets.len()), (5.0, 201));
        assert_eq!(
            (s.buckets[0].requests, s.buckets[0].rate_per_s, s.buckets[0].p99_ms),
            (5, 1000.0, Some(1.0))
        );
        assert_eq!(s.buckets[84].failed, 1);
        assert_eq!(s.bands, [Band { label: "restart 1".into(), ok: true, from_ms: 400.0, to_ms: 460.0 }]);
        assert_eq!(s.gaps, [Span { from_ms: 400.0, to_ms: 451.0 }]);
        assert_eq!(s.failed, [Failed { at_ms: 420.0, kind: "reset" }]);
        assert_eq!(s.detail_until_ms, None);
        assert!(compute(&super::super::tests::inputs(base, &samples, &[])).series.is_none());
    }
}
