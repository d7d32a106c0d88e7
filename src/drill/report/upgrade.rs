//! The supervisor's upgrades in place (`--upgrades`): each as the drill
//! saw it (`UpgradeRecord`, filled in by `subject`), whether it kept the
//! pids and the log lines, and the summary the report shows.
//!
//! Pids kept: the supervisor's pid in `status` is the same just before the
//! request and just after the answer, the process the drill started still
//! runs, and every worker of a starting or serving generation before is
//! there after, in the same generation, with no worker new. Workers of a
//! draining generation may exit meanwhile: they were told to stop before.
//! A refused upgrade must keep them too.
//!
//! Log lines: the supervisor writes `upgraded from handover ...` once per
//! upgrade, and `dropped N of its own log lines ...` when its log lost
//! some. When its output comes to the drill, fewer of the first than
//! upgrades done, or any of the second, fails the drill. Workers' lines
//! are not counted: the drill cannot know how many a server wrote.
use std::time::{Duration, Instant};

use serde::Serialize;

use super::render::{show, table};
use super::timeline::{Timeline, WindowReport};
use super::verdict::Case;
use super::{Step, ms, ms_of};

/// What a `status` reply says about pids.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The supervisor's.
    pub pid: u32,
    /// (generation, worker pid, whether the generation was draining).
    pub workers: Vec<(u64, i32, bool)>,
}

#[derive(Debug, Clone)]
pub struct UpgradeRecord {
    pub number: usize,
    /// The binary asked for.
    pub binary: String,
    pub requested_at: Instant,
    pub answered_at: Instant,
    pub ok: bool,
    /// From the request to the new image serving, from the reply.
    pub took: Option<Duration>,
    /// The version before and the new one, from the reply.
    pub versions: Option<(String, String)>,
    /// The refusal, or why there was no answer.
    pub error: Option<String>,
    /// `status` just before the request, and just after the answer.
    pub before: Option<Snapshot>,
    pub after: Option<Snapshot>,
    /// The process the drill started, and whether it still ran after.
    pub child: u32,
    pub child_alive: bool,
}

/// The supervisor's own lines about upgrades in its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogLines {
    /// `upgraded from handover ...` lines.
    pub upgraded: u64,
    /// Own lines it says it dropped (`dropped N of its own log lines`).
    pub dropped: u64,
    /// Lines with the text of `--log-line`, from anyone.
    #[serde(skip)]
    pub matched: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradeReport {
    pub number: usize,
    pub ok: bool,
    pub binary: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub error: Option<String>,
    /// Since the load started.
    pub requested_at_ms: f64,
    /// The drill's: from sending the request to reading the answer.
    pub round_trip_ms: f64,
    /// The supervisor's: from the request to the new image serving.
    pub took_ms: Option<f64>,
    /// As `status` said after the upgrade (before, when there was no after).
    pub supervisor_pid: Option<u32>,
    pub pids_preserved: bool,
    /// What changed, when the pids were not kept.
    pub changes: Vec<String>,
    #[serde(flatten)]
    pub window: WindowReport,
}

/// The smallest, median (nearest-rank) and largest of some values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let median = values.len().div_ceil(2).checked_sub(1).map(|i| values[i]);
        Spread { min: values.first().copied(), median, max: values.last().copied() }
    }

    fn text(&self) -> String {
        format!("min {}  median {}  max {}", show(self.min), show(self.median), show(self.max))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upgrades {
    /// Upgrades asked for (and answered, or given up on).
    pub count: usize,
    pub failed: usize,
    /// Over the upgrades that succeeded.
    pub took_ms: Spread,
    pub round_trip_ms: Spread,
    /// Every upgrade kept the supervisor's and the workers' pids.
    pub pids_preserved: bool,
    /// None: not checked (the supervisor's log does not come to the drill).
    pub log_lines: Option<LogLines>,
    pub each: Vec<UpgradeReport>,
}

/// `1 upgrade`, `2 upgrades`.
fn upgrades(n: usize) -> String {
    format!("{n} upgrade{}", if n == 1 { "" } else { "s" })
}

/// What changed across upgrade `r`, in words; empty when nothing did.
fn changes(r: &UpgradeRecord) -> Vec<String> {
    let mut out = Vec::new();
    if !r.child_alive {
        out.push(format!("the supervisor the drill started (pid {}) exited", r.child));
    }
    let (Some(before), Some(after)) = (&r.before, &r.after) else {
        let missing = if r.before.is_none() { "before" } else { "after" };
        out.push(format!("no status reply {missing} it to compare"));
        return out;
    };
    if before.pid != after.pid {
        out.push(format!("the supervisor's pid went from {} to {}", before.pid, after.pid));
    }
    let has = |s: &Snapshot, g: u64, p: i32| s.workers.iter().any(|w| (w.0, w.1) == (g, p));
    for &(g, p, _) in before.workers.iter().filter(|w| !w.2 && !has(after, w.0, w.1)) {
        out.push(format!("worker {p} (generation {g}) gone"));
    }
    for &(g, p, _) in after.workers.iter().filter(|w| !has(before, w.0, w.1)) {
        out.push(format!("worker {p} (generation {g}) new"));
    }
    out
}

impl Upgrades {
    /// The upgrades `records`, each with the requests of its window of
    /// `timeline`, which is added to `windows`.
    pub(super) fn compute(
        records: &[UpgradeRecord],
        log_lines: Option<LogLines>,
        timeline: &Timeline,
        windows: &mut Vec<(u64, u64, Step)>,
    ) -> Upgrades {
        let mut each = Vec::new();
        for r in records {
            let (window, (from, to)) = timeline.window(r.requested_at, r.answered_at);
            windows.push((from, to, Step::Upgrade(r.number)));
            let changes = changes(r);
            each.push(UpgradeReport {
                number: r.number,
                ok: r.ok,
                binary: r.binary.clone(),
                from: r.versions.as_ref().map(|v| v.0.clone()),
                to: r.versions.as_ref().map(|v| v.1.clone()),
                error: r.error.clone(),
                requested_at_ms: ms_of(timeline.at(r.requested_at)),
                round_trip_ms: ms(r.answered_at.saturating_duration_since(r.requested_at)),
                took_ms: r.took.map(ms),
                supervisor_pid: r.after.as_ref().or(r.before.as_ref()).map(|s| s.pid),
                pids_preserved: changes.is_empty(),
                changes,
                window,
            });
        }
        let done = || each.iter().filter(|u| u.ok);
        Upgrades {
            count: each.len(),
            failed: each.iter().filter(|u| !u.ok).count(),
            took_ms: Spread::of(done().filter_map(|u| u.took_ms).collect()),
            round_trip_ms: Spread::of(done().map(|u| u.round_trip_ms).collect()),
            pids_preserved: each.iter().all(|u| u.pids_preserved),
            log_lines,
            each,
        }
    }

    /// Why the upgrades fail the drill (the failed requests of their
    /// windows aside), each with its JUnit case.
    pub(super) fn findings(&self) -> Vec<(Case, String)> {
        let mut out = Vec::new();
        for u in &self.each {
            let case = Case::Step(Step::Upgrade(u.number));
            if !u.ok {
                let error = u.error.as_deref().unwrap_or("no reason given");
                out.push((case, format!("upgrade {} failed: {error}", u.number)));
            }
            if !u.changes.is_empty() {
                out.push((
                    case,
                    format!("upgrade {} did not keep the pids: {}", u.number, u.changes.join(", ")),
                ));
            }
        }
        let Some(lines) = self.log_lines.filter(|_| self.count > 0) else { return out };
        let done = self.count - self.failed;
        if lines.upgraded < done as u64 {
            out.push((
                Case::UpgradeLog,
                format!(
                    "the supervisor's output has {} `upgraded from handover` lines for {}: \
                     its log lost lines across an upgrade",
                    lines.upgraded,
                    upgrades(done)
                ),
            ));
        }
        if lines.dropped > 0 {
            out.push((
                Case::UpgradeLog,
                format!(
                    "the supervisor dropped {} of its own log lines, though the drill read its output \
                     all along (see its output)",
                    lines.dropped
                ),
            ));
        }
        out
    }

    /// The report's lines about the upgrades; empty without any.
    pub(super) fn text(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let mut binaries: Vec<&str> = Vec::new();
        for u in &self.each {
            if !binaries.contains(&u.binary.as_str()) {
                binaries.push(&u.binary);
            }
        }
        let to = match binaries.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} and {last} in turn", rest.join(", ")),
            None => String::new(),
        };
        let pids = if self.pids_preserved { "pids kept" } else { "pids CHANGED" };
        let log = match self.log_lines {
            None => "not checked: the supervisor's log does not come to the drill (--log-file)".into(),
            Some(l) => format!(
                "{} `upgraded from handover` lines for {}, {} of its own lines dropped",
                l.upgraded,
                upgrades(self.count - self.failed),
                l.dropped
            ),
        };
        format!(
            "upgrades     {} to {to}, {} failed, {pids}\n\
             upgrade ms   took {}, round trip {}\n\
             upgrade log  {log}\n",
            self.count,
            self.failed,
            self.took_ms.text(),
            self.round_trip_ms.text()
        )
    }

    /// One row per upgrade, under a heading; empty without any.
    pub(super) fn table(&self) -> String {
        if self.each.is_empty() {
            return String::new();
        }
        let rows = self.each.iter().map(|u| {
            let row = vec![
                u.number.to_string(),
                if u.ok { "ok" } else { "FAILED" }.into(),
                show(u.took_ms),
                show(Some(u.round_trip_ms)),
                if u.pids_preserved { "kept" } else { "CHANGED" }.into(),
            ];
            (row, &u.window)
        });
        table("upgrade result took_ms round_trip_ms pids", rows)
    }
}

#[cfg(test)]
mod tests;
