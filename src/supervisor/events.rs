//! The supervisor's events as records (`wire::event`): what the log lines
//! say, as values, kept for `handover events` and counted for `handover
//! metrics`.
//!
//! One source: the machine's `Event`s and the supervisor's own lines that
//! are events (upgrades, the log command, dropped lines) become a `Record`
//! in the same call that prints their line (`Log::event`, `Log::said`);
//! the metrics are counted from the records (`metrics::Tally::count`).
//!
//! Bounds: the last `RETAINED` records are kept (what `events` without
//! `--follow` prints, and what a follower that reconnects after `after`
//! gets); records not yet handed to followers are at most `MAX_FRESH` (the
//! loop hands them over every turn, so only a turn with thousands of
//! events reaches it: the excess counts as dropped for every follower);
//! the pid-to-generation map holds `MAX_PIDS` workers.
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::carry::{Carry, Resuming, Written};
use super::metrics::Tally;
use super::words;
use crate::config::Config;
use crate::machine::event::{Awaited, Event, ExitStatus, Pid};
use crate::wire::event::{Record, What};

/// Records kept for `events` without `--follow` and for reconnecting followers.
pub const RETAINED: usize = 1000;
/// Records waiting to be handed to followers.
const MAX_FRESH: usize = 8 * RETAINED;
/// Workers whose generation is remembered (for the record of their exit).
const MAX_PIDS: usize = 4096;

/// The records, their numbers and what is counted from them.
#[derive(Default)]
pub struct Events {
    ring: VecDeque<Record>,
    seq: u64,
    fresh: Vec<Record>,
    /// Records that did not fit in `fresh`, since it was last taken.
    lost: u64,
    generations: VecDeque<(Pid, u64)>,
    pub tally: Tally,
    /// The last restart outcome recorded: success or not, its generation.
    pub outcome_seen: Option<(bool, u64)>,
}

/// What a self-upgrade carries of the events: the numbering, the retained
/// records and the counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsRecord {
    pub seq: u64,
    pub retained: Vec<Record>,
    pub tally: Tally,
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| signal.to_string(), short)
}

fn exited(status: ExitStatus, role: &str) -> What {
    let (code, signal, core) = match status {
        ExitStatus::Code(code) => (Some(code), None, false),
        ExitStatus::Signal { signal, core } => (None, Some(signal_name(signal)), core),
    };
    What::Exited { code, signal, core, role: role.to_string() }
}

fn killed(deadline: &str, after: &Duration) -> What {
    What::Killed { deadline: deadline.into(), after_ms: ms(*after) }
}

/// `TERM` for SIGTERM.
fn short(signal: Signal) -> String {
    signal.as_str().trim_start_matches("SIG").to_string()
}

fn note(what: &str) -> What {
    What::Note { what: what.to_string() }
}

impl Events {
    /// The generation worker `pid` was started in, if it is remembered.
    pub fn generation_of(&self, pid: Pid) -> Option<u64> {
        self.generations.iter().rev().find(|(p, _)| *p == pid).map(|&(_, g)| g)
    }

    /// Numbers, stamps, counts and keeps a record.
    pub fn push(&mut self, what: What, generation: Option<u64>, pids: Vec<Pid>, message: String) {
        if let (What::Spawned, Some(generation), [pid]) = (&what, generation, pids.as_slice()) {
            if self.generations.len() >= MAX_PIDS {
                self.generations.pop_front();
            }
            self.generations.push_back((*pid, generation));
        }
        if matches!(what, What::Exited { .. }) {
            self.generations.retain(|(p, _)| !pids.contains(p));
        }
        self.seq += 1;
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let record = Record { seq: self.seq, time, generation, pids, what, message };
        self.tally.count(&record);
        if self.ring.len() >= RETAINED {
            self.ring.pop_front();
        }
        self.ring.push_back(record.clone());
        if self.fresh.len() < MAX_FRESH {
            self.fresh.push(record);
        } else {
            self.lost += 1;
        }
    }

    /// The newest record.
    pub fn last(&self) -> Option<&Record> {
        self.ring.back()
    }

    /// The records not yet handed to followers, and how many did not fit.
    pub fn take_fresh(&mut self) -> (Vec<Record>, u64) {
        (std::mem::take(&mut self.fresh), std::mem::take(&mut self.lost))
    }

    /// The retained records numbered after `after`, and how many asked
    /// for are no longer retained.
    pub fn retained_after(&self, after: u64) -> (Vec<Record>, u64) {
        let records: Vec<Record> = self.ring.iter().filter(|r| r.seq > after).cloned().collect();
        let first = records.first().map_or(self.seq + 1, |r| r.seq);
        (records, first.saturating_sub(after + 1))
    }
}

/// A machine event as a record's kind, generation and pids.
/// `generation_of`: a worker's generation; `serving`: the serving
/// generation and its workers (for a switch).
pub fn describe(
    event: &Event,
    generation_of: impl Fn(Pid) -> Option<u64>,
    serving: Option<(u64, Vec<Pid>)>,
) -> (What, Option<u64>, Vec<Pid>) {
    let of = |pid: Pid| (generation_of(pid), vec![pid]);
    let (what, (generation, pids)) = match event {
        Event::StartingWorker { pid } => (What::Spawned, of(*pid)),
        Event::FailedToStart { pid, status } => (exited(*status, "starting"), of(*pid)),
        Event::DiedUnexpectedly { pid, status } => (exited(*status, "serving"), of(*pid)),
        Event::OldDied { pid, status } => (exited(*status, "draining"), of(*pid)),
        Event::WorkerDied { pid, status } => (exited(*status, "stopping"), of(*pid)),
        Event::StopOnExit { pid, .. } => (note("stop_on_exit"), of(*pid)),
        Event::ReceivedHup => (What::RestartRequested { by: "hup".into() }, (None, vec![])),
        Event::RestartRequested => (What::RestartRequested { by: "control".into() }, (None, vec![])),
        Event::FilesChanged => (What::RestartRequested { by: "watch".into() }, (None, vec![])),
        Event::AutoRestart { .. } => (What::RestartRequested { by: "autorestart".into() }, (None, vec![])),
        Event::NowRunning { signal, old } => {
            let (generation, pids) = serving.map_or((None, vec![]), |(g, pids)| (Some(g), pids));
            (What::Switched { signal: short(*signal), old_pids: old.clone() }, (generation, pids))
        }
        Event::ShutdownReceived { received, pids, .. } => {
            (What::StopRequested { signal: short(*received) }, (None, pids.clone()))
        }
        Event::Exiting => (What::Exiting, (None, vec![])),
        Event::Ready { generation, pids, after, how } => {
            let how = words::ready_by(*how, pids);
            (What::Ready { how, after_ms: ms(*after) }, (Some(*generation), pids.clone()))
        }
        Event::SpawnFailed { generation, error } => {
            (What::SpawnFailed { error: error.to_string() }, (Some(*generation), vec![]))
        }
        Event::ReadyTimeout { generation, pids, after, awaited, .. } => {
            let awaited = match awaited {
                Awaited::Notify => "notify",
                Awaited::Learned => "learned",
                Awaited::AcceptingOrNotify => "accepting_or_notify",
                Awaited::Accepting => "accepting",
            };
            let what = What::NotReady { after_ms: ms(*after), awaited: awaited.into() };
            (what, (Some(*generation), pids.clone()))
        }
        Event::DrainTimeout { pid, after } => (killed("drain", after), of(*pid)),
        Event::UnreadyStopTimeout { pid, generation, after } => {
            (killed("ready", after), (Some(*generation), vec![*pid]))
        }
        Event::StopTimeout { pids, after } => (killed("stop", after), (None, pids.clone())),
        Event::Forwarded { signal, pids } => {
            (What::Forwarded { signal: short(*signal) }, (None, pids.clone()))
        }
        Event::Diagnosis { generation, .. } => (note("diagnosis"), (Some(*generation), vec![])),
        Event::HupCoalesced { generation } => (note("hup_coalesced"), (Some(*generation), vec![])),
        Event::ReadyLearned { pid, .. } => (note("ready_learned"), of(*pid)),
        Event::SleepingBeforeKill { .. } => (note("sleeping_before_kill"), (None, vec![])),
        Event::KillingOld => (note("killing_old"), (None, vec![])),
        Event::IgnoredDuringShutdown { .. } => (note("ignored_during_shutdown"), (None, vec![])),
        Event::GaveUp { .. } => (note("gave_up"), (None, vec![])),
    };
    (what, generation, pids)
}

impl Carry for Events {
    type Record = EventsRecord;

    fn carry(&self, _: Written) -> EventsRecord {
        EventsRecord {
            seq: self.seq,
            retained: self.ring.iter().cloned().collect(),
            tally: self.tally.clone(),
        }
    }

    fn fds(_: &EventsRecord) -> Vec<RawFd> {
        Vec::new()
    }

    fn resume(record: EventsRecord, _: &mut Resuming, _: &Config) -> std::io::Result<Events> {
        Ok(Events::of(record))
    }
}

impl Events {
    /// The events as the record has them, the last `RETAINED` kept.
    fn of(record: EventsRecord) -> Events {
        let ring = record.retained.into_iter().rev().take(RETAINED).rev().collect();
        Events { ring, seq: record.seq, tally: record.tally, ..Events::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_records_and_says_what_it_lost() {
        let mut events = Events::default();
        for n in 0..(RETAINED as u64 + 5) {
            events.push(What::Spawned, Some(1), vec![n as i32 + 100], format!("starting new worker {n}"));
        }
        let (all, missed) = events.retained_after(0);
        assert_eq!((all.len(), missed), (RETAINED, 5));
        assert_eq!(all[0].seq, 6);
        let (last, missed) = events.retained_after(RETAINED as u64 + 3);
        assert_eq!((last.len(), missed, last[0].seq), (2, 0, RETAINED as u64 + 4));
        assert_eq!(events.retained_after(RETAINED as u64 + 5), (vec![], 0));
        assert_eq!(events.generation_of(104), Some(1));
        let (fresh, lost) = events.take_fresh();
        assert_eq!((fresh.len(), lost), (RETAINED + 5, 0));
        let carried = Events::of(events.carry(Written::now().0));
        assert_eq!((carried.seq, carried.ring.len()), (RETAINED as u64 + 5, RETAINED));
    }

    #[test]
    fn exits_name_the_signal_and_the_generation() {
        let mut events = Events::default();
        events.push(What::Spawned, Some(3), vec![42], "starting new worker 42".into());
        let died = Event::OldDied { pid: 42, status: ExitStatus::Signal { signal: 15, core: false } };
        let (what, generation, pids) = describe(&died, |p| events.generation_of(p), None);
        let expected =
            What::Exited { code: None, signal: Some("TERM".into()), core: false, role: "draining".into() };
        assert_eq!((what, generation, pids), (expected, Some(3), vec![42]));
    }
}
