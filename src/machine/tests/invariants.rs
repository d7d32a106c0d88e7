//! The invariants of `machine/mod.rs`, checked after every step of a run
//! on the effects seen so far (those on the machine's inner state are in
//! `machine/check.rs`).
use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

/// What the effects of a run must show, step after step.
#[derive(Clone, Default)]
pub(super) struct Watch {
    /// The generation of every pid handed out, and when.
    spawned: HashMap<Pid, (u64, Moment)>,
    /// Pids that said `READY=1`.
    said_ready: HashSet<Pid>,
    /// Pids seen accepting before auto mode learned, and pids that cannot be watched.
    seen: HashSet<Pid>,
    blind: HashSet<Pid>,
    requested: BTreeSet<RequestId>,
    answered: BTreeSet<RequestId>,
    last_generation: u64,
    last_ready: u64,
    ready: BTreeSet<u64>,
    /// Auto mode learned that workers send `READY=1`.
    learned: bool,
    /// When it learned.
    learned_at: Option<Moment>,
}

impl Watch {
    pub fn spawned(&mut self, pid: Pid, generation: u64, now: Moment) {
        self.spawned.insert(pid, (generation, now));
    }

    pub fn input(&mut self, input: &Input) {
        match *input {
            Input::Restart { request } => {
                self.requested.insert(request);
            }
            Input::Ready { pid } => {
                self.said_ready.insert(pid);
            }
            Input::Accepting { pid, .. } if !self.learned => {
                self.seen.insert(pid);
            }
            Input::Unobservable { pid } => {
                self.blind.insert(pid);
            }
            _ => {}
        }
    }

    /// A generation is ready only when each of its workers is: it said
    /// `READY=1` (notify and auto modes), was seen accepting (auto mode
    /// until learned, accepting mode) or has lived a whole interval (alive
    /// mode; auto mode until learned and accepting mode, when nothing is
    /// watched or it cannot be).
    fn all_ready(&self, policy: &Policy, pids: &[Pid], now: Moment) -> Result<(), String> {
        if pids.len() != policy.workers {
            return Err(format!("ready with {} of {} workers", pids.len(), policy.workers));
        }
        for pid in pids {
            let Some(&(_, at)) = self.spawned.get(pid) else {
                return Err(format!("pid {pid} never spawned"));
            };
            let said =
                matches!(policy.ready, ReadyMode::Notify | ReadyMode::Auto) && self.said_ready.contains(pid);
            // A worker alive an interval before auto mode learned may have been counted then.
            let watching = matches!(policy.ready, ReadyMode::Auto | ReadyMode::Accepting)
                && self.learned_at.is_none_or(|learned| at + policy.interval <= learned);
            let seen =
                matches!(policy.ready, ReadyMode::Auto | ReadyMode::Accepting) && self.seen.contains(pid);
            let timer = policy.ready == ReadyMode::Alive
                || (watching && (!policy.observe || self.blind.contains(pid)));
            let alive = timer && now - at >= policy.interval;
            if !said && !alive && !seen {
                return Err(format!("worker {pid} counted ready after {:?}", now - at));
            }
        }
        Ok(())
    }

    fn answer(&mut self, request: RequestId) -> Result<(), String> {
        if !self.requested.contains(&request) || !self.answered.insert(request) {
            return Err(format!("request {request} answered twice or never asked"));
        }
        Ok(())
    }

    /// The effects of one step, in order; `stopping`: the machine was stopping before it.
    pub fn step(
        &mut self,
        policy: &Policy,
        now: Moment,
        mut stopping: bool,
        fx: &[Effect],
    ) -> Result<(), String> {
        let mut started: HashMap<u64, usize> = HashMap::new();
        for effect in fx {
            match effect {
                Effect::Notify(Upward::Stopping) => stopping = true,
                Effect::Spawn { generation, index } => {
                    if stopping {
                        return Err(format!("spawn of generation {generation} while stopping"));
                    }
                    if *generation > self.last_generation {
                        if *generation != self.last_generation + 1 || *index != 0 {
                            return Err(format!("generation {generation} after {}", self.last_generation));
                        }
                        self.last_generation = *generation;
                        started.insert(*generation, 1);
                    } else if let Some(n) = started.get_mut(generation) {
                        *n += 1;
                    }
                }
                Effect::Reply { request, .. } => self.answer(*request)?,
                Effect::Log(Event::Ready { generation, pids, after, how }) => {
                    self.all_ready(policy, pids, now)?;
                    if *generation <= self.last_ready {
                        return Err(format!("generation {generation} ready after {}", self.last_ready));
                    }
                    self.last_ready = *generation;
                    self.ready.insert(*generation);
                    let notified = *how == ReadyBy::Notified;
                    if notified && matches!(policy.ready, ReadyMode::Alive | ReadyMode::Accepting) {
                        return Err(format!("READY=1 counted in {:?} mode", policy.ready));
                    }
                    let watching = matches!(policy.ready, ReadyMode::Auto | ReadyMode::Accepting);
                    if matches!(how, ReadyBy::Seen { .. }) && (!watching || self.learned) {
                        return Err(format!(
                            "seen accepting counted in {:?} mode (learned: {})",
                            policy.ready, self.learned
                        ));
                    }
                    if *how == ReadyBy::Alive && (*after < policy.interval || self.learned) {
                        return Err(format!(
                            "generation {generation} alive-ready after {after:?} (learned: {})",
                            self.learned
                        ));
                    }
                }
                Effect::Log(Event::ReadyLearned { pid, .. }) => {
                    if policy.ready != ReadyMode::Auto || self.learned || !self.said_ready.contains(pid) {
                        return Err(format!("learned from pid {pid} in {:?} mode, or twice", policy.ready));
                    }
                    self.learned = true;
                    self.learned_at = Some(now);
                }
                Effect::Log(Event::ReadyTimeout { generation, after, awaited, .. }) => {
                    let timeout = policy.ready_timeout.unwrap_or_default();
                    let watching = matches!(policy.ready, ReadyMode::Auto | ReadyMode::Accepting);
                    let waits =
                        policy.ready == ReadyMode::Notify || self.learned || (watching && policy.observe);
                    let expected = match (policy.ready, self.learned) {
                        (ReadyMode::Auto, true) => Awaited::Learned,
                        (ReadyMode::Auto, false) => Awaited::AcceptingOrNotify,
                        (ReadyMode::Accepting, _) => Awaited::Accepting,
                        _ => Awaited::Notify,
                    };
                    if !waits || *after < timeout || *awaited != expected {
                        return Err(format!("generation {generation} timed out after only {after:?}"));
                    }
                }
                Effect::Log(Event::DrainTimeout { after, .. }) if Some(*after) < policy.drain_timeout => {
                    return Err(format!("drain cut short after {after:?}"));
                }
                Effect::Log(Event::UnreadyStopTimeout { after, .. })
                    if *after < policy.ready_timeout.unwrap_or(Duration::from_secs(10)) =>
                {
                    return Err(format!("a stop that never became ready cut short after {after:?}"));
                }
                Effect::Log(Event::StopTimeout { after, .. }) if Some(*after) < policy.stop_timeout => {
                    return Err(format!("stop cut short after {after:?}"));
                }
                Effect::Signal { pid, signal: Signal::SIGTERM } | Effect::KillGroup { pid } if !stopping => {
                    // Outside a shutdown, a generation is stopped only when a
                    // newer one is ready, or when it failed to start itself.
                    let Some(&(generation, _)) = self.spawned.get(pid) else {
                        return Err(format!("signal to pid {pid}, never spawned"));
                    };
                    let replaced = self.ready.range(generation + 1..).next().is_some();
                    if !replaced && self.ready.contains(&generation) {
                        return Err(format!("generation {generation} stopped before a successor was ready"));
                    }
                }
                _ => {}
            }
        }
        if let Some((generation, n)) = started.into_iter().find(|&(_, n)| n != policy.workers) {
            return Err(format!("generation {generation} started with {n} spawns"));
        }
        if stopping && self.answered != self.requested {
            return Err("stopping with requests unanswered".into());
        }
        Ok(())
    }
}
