//! The supervisor's side of `events`, `follow` and `metrics`: the restart
//! outcomes recorded as events, new records handed to followers once a
//! turn, and the answers to the requests.
use std::time::{SystemTime, UNIX_EPOCH};

use super::Supervisor;
use super::control::RequestId;
use super::events::ms;
use super::metrics::{self, Sources};
use crate::machine::Outcome;
use crate::machine::event::Event;
use crate::wire::control::{Command, Metrics};
use crate::wire::event::{Retained, What};

/// A restart outcome as recorded once: success or not, its generation.
fn outcome_key(outcome: &Outcome) -> Option<(bool, u64)> {
    match outcome {
        Outcome::Restarted { generation, .. } => Some((true, *generation)),
        Outcome::Failed { generation, .. } => generation.map(|g| (false, g)),
    }
}

impl Supervisor {
    /// The new image of an upgrade (its events resumed): the restart
    /// outcome the old one had recorded is not recorded again.
    pub(in crate::supervisor) fn resume_events(&mut self) {
        let mut events = self.log.events.borrow_mut();
        events.outcome_seen = self.machine.last_outcome().and_then(outcome_key);
    }

    /// A machine event, recorded and printed, with the generations now.
    pub(super) fn log_event(&self, event: &Event) {
        self.log.event(event, &self.machine.views());
    }

    /// After the machine has handled a batch: a restart that has come to
    /// an end since the last batch (its new generation serving alone, or
    /// failed) is recorded, once per generation.
    pub(super) fn note_outcome(&mut self) {
        let Some(outcome) = self.machine.last_outcome() else { return };
        let Some(key) = outcome_key(outcome) else { return };
        if self.log.events.borrow_mut().outcome_seen.replace(key) == Some(key) {
            return;
        }
        match outcome.clone() {
            Outcome::Restarted { generation, pids, spawn_to_ready, signal_to_old_gone } => {
                let (spawn_to_ready_ms, signal_to_old_gone_ms) =
                    (ms(spawn_to_ready), signal_to_old_gone.map(ms));
                let text = format!(
                    "generation {generation} serves alone ({spawn_to_ready_ms} ms from spawn to ready{})",
                    signal_to_old_gone_ms
                        .map_or(String::new(), |g| format!(", the old one gone {g} ms after"))
                );
                let what = What::Restarted { spawn_to_ready_ms, signal_to_old_gone_ms };
                self.log.record(what, Some(generation), pids, &text);
            }
            Outcome::Failed { generation, failure } => {
                let reason = failure.to_string();
                let text = format!("generation {} failed: {reason}", generation.unwrap_or(0));
                self.log.record(What::RolledBack { reason }, generation, Vec::new(), &text);
            }
        }
    }

    /// Hands the records made since the last call to the followers.
    pub(in crate::supervisor) fn publish(&mut self) {
        let (records, lost) = self.log.events.borrow_mut().take_fresh();
        if let Some(control) = self.control.as_mut() {
            control.broadcast(&records, lost);
        }
    }

    /// At exit: the last records (`exiting`) to the followers, written as
    /// far as they take them now.
    pub(super) fn publish_last(&mut self) {
        self.publish();
        if let Some(control) = self.control.as_mut() {
            control.flush();
        }
    }

    /// Answers `events` (the retained records), `follow` (the same, then
    /// every new record) or `metrics`.
    pub(super) fn answer_watching(&mut self, id: RequestId, command: Command) {
        if command == Command::Metrics {
            let reply = Metrics { ok: true, text: self.metrics_text() };
            if let Some(control) = self.control.as_mut() {
                control.reply(id, &reply);
            }
            return;
        }
        self.publish();
        let (events, missed) = self.log.events.borrow().retained_after(0);
        let retained = Retained { ok: true, events, missed };
        match self.control.as_mut() {
            Some(control) if command == Command::Follow => control.follow(id, &retained),
            Some(control) => control.reply(id, &retained),
            None => {}
        }
    }

    /// The metrics page.
    pub(super) fn metrics_text(&self) -> String {
        let started = self.upgrades.supervisor_started;
        metrics::render(&Sources {
            tally: &self.log.events.borrow().tally,
            counters: self.machine.counters(),
            views: &self.machine.views(),
            uptime: SystemTime::now().duration_since(started).map_or(0.0, |d| d.as_secs_f64()),
            start_time: started.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        })
    }

    /// `--metrics-listen`: serves what is ready, the page once per turn
    /// at most (only when asked for).
    pub(super) fn serve_metrics(&mut self) {
        let wanted = self.scrape.as_mut().is_some_and(|s| s.service(std::time::Instant::now()));
        if wanted {
            let page = self.metrics_text();
            if let Some(scrape) = self.scrape.as_mut() {
                scrape.answer(&page);
            }
        }
    }
}
