//! A restart as the drill saw it (`RestartRecord`, filled in by
//! `subject`) and as the report shows it, with the requests of its window.
use std::time::{Duration, Instant};

use serde::Serialize;

use super::timeline::{Timeline, WindowReport};
use super::{ms, ms_of};

#[derive(Debug, Clone)]
pub struct RestartRecord {
    pub number: usize,
    pub requested_at: Instant,
    pub ok: bool,
    pub generation: Option<u64>,
    /// Spawn to ready, from the control reply.
    pub ready_after: Option<Duration>,
    /// Old generation told to stop to gone, from the control reply.
    pub old_gone_after: Option<Duration>,
    pub answered_at: Instant,
    /// The control reply's error text, passed through.
    pub error: Option<String>,
    /// What is wrong though it succeeded (its generation does not hold
    /// the inherited socket), each fails the drill.
    pub findings: Vec<String>,
}

impl RestartRecord {
    /// Restart `number`, requested at `requested_at`, not (yet) done.
    pub fn pending(number: usize, requested_at: Instant) -> RestartRecord {
        RestartRecord {
            number,
            requested_at,
            ok: false,
            generation: None,
            ready_after: None,
            old_gone_after: None,
            answered_at: requested_at,
            error: None,
            findings: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartReport {
    pub number: usize,
    pub ok: bool,
    pub generation: Option<u64>,
    pub error: Option<String>,
    /// What is wrong though it succeeded.
    pub findings: Vec<String>,
    /// Since the load started.
    pub requested_at_ms: f64,
    pub answered_after_ms: f64,
    pub ready_after_ms: Option<f64>,
    pub old_gone_after_ms: Option<f64>,
    /// Workers of its old generation the supervisor had to KILL.
    pub killed: Vec<i32>,
    #[serde(flatten)]
    pub window: WindowReport,
}

impl RestartReport {
    /// The restart `r` recorded, with the requests of its window of
    /// `timeline`; and that window, `(from, to)`.
    pub(super) fn new(r: &RestartRecord, timeline: &Timeline) -> (RestartReport, (u64, u64)) {
        let (window, span) = timeline.window(r.requested_at, r.answered_at);
        let report = RestartReport {
            number: r.number,
            ok: r.ok,
            generation: r.generation,
            error: r.error.clone(),
            findings: r.findings.clone(),
            requested_at_ms: ms_of(timeline.at(r.requested_at)),
            answered_after_ms: ms(r.answered_at.saturating_duration_since(r.requested_at)),
            ready_after_ms: r.ready_after.map(ms),
            old_gone_after_ms: r.old_gone_after.map(ms),
            killed: Vec::new(),
            window,
        };
        (report, span)
    }
}
