//! The report's numbers: failed requests by kind, latency percentiles.
use std::collections::BTreeMap;

use serde::Serialize;

use super::{ms_of, percentile};
use crate::drill::load::Outcome;

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
    pub(super) fn add(&mut self, outcome: &Outcome) {
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
    pub(super) fn of(sorted: &[u64]) -> Latency {
        let p = |pct| percentile(sorted, pct).map(ms_of);
        Latency {
            p50_ms: p(50.0),
            p90_ms: p(90.0),
            p99_ms: p(99.0),
            max_ms: sorted.last().map(|&ns| ms_of(ns)),
        }
    }
}
