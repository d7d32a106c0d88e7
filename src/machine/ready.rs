//! Becoming ready, retiring the old generation, answering restart
//! requests, and the timers (probation, respawns, drains, auto-restart).
use std::time::Duration;

use super::time::Moment;

use super::generation::{Draining, Generation, Live, Stop, Worker};
use super::state::Stopping;
use super::*;
use crate::machine::event::{Awaited, Event, Failure, Pid, ReadyBy, Sighting};

impl Machine {
    pub(super) fn ready_message(&mut self, now: Moment, pid: Pid, fx: &mut Vec<Effect>) {
        if matches!(self.policy.ready, ReadyMode::Alive | ReadyMode::Accepting) || self.stopping() {
            return;
        }
        if self.policy.ready == ReadyMode::Auto && !self.learned && self.generations().any(|g| g.has(pid)) {
            self.learned = true;
            fx.push(Effect::Log(Event::ReadyLearned { pid, timeout: self.policy.ready_timeout }));
        }
        if let Some(worker) = self.current.as_mut().and_then(|g| g.live(pid)) {
            worker.ready = true;
        }
        self.candidate_ready(now, pid, ReadyBy::Notified, fx);
    }

    /// Process `member` of starting worker `pid` was seen accepting: ready
    /// in auto mode (not learned) and accepting mode.
    pub(super) fn accepting(
        &mut self,
        now: Moment,
        pid: Pid,
        member: Pid,
        sighting: Sighting,
        fx: &mut Vec<Effect>,
    ) {
        if !matches!(self.rule(), ReadyMode::Auto | ReadyMode::Accepting) {
            return;
        }
        self.candidate_ready(now, pid, ReadyBy::Seen { member, sighting }, fx);
    }

    /// Worker `pid` of the starting generation is ready (`how`), and so is
    /// the generation once all of its workers are.
    fn candidate_ready(&mut self, now: Moment, pid: Pid, how: ReadyBy, fx: &mut Vec<Effect>) {
        let Some(candidate) = self.phase.running_mut().and_then(|r| r.slot.candidate_mut()) else { return };
        let Some(worker) = candidate.live(pid) else { return };
        worker.ready = true;
        if candidate.all_ready() {
            self.generation_ready(now, how, fx);
        }
    }

    pub(super) fn generation_ready(&mut self, now: Moment, how: ReadyBy, fx: &mut Vec<Effect>) {
        let Some((mut next, pending)) = self.phase.running_mut().and_then(|r| r.slot.take()) else { return };
        next.ready_at = Some(now);
        let (generation, pids) = (next.number, next.pids());
        fx.push(Effect::Log(Event::Ready { generation, pids, after: now - next.spawned_at, how }));
        if let Some(mut prev) = self.current.replace(next) {
            self.counters.restarts += 1;
            // A worker waiting to be respawned is not: its generation is replaced.
            prev.drop_unborn();
            self.retire(now, Some(prev).filter(|g| !g.workers.is_empty()), fx);
        }
        fx.push(self.status());
        self.manager.ready(fx);
        fx.push(Effect::Notify(Upward::Status(StatusLine::Serving { generation })));
        self.answer_waiters(now, fx);
        if pending && let Some(vacancy) = self.phase.running_mut().and_then(Running::vacancy) {
            self.manager.reloading(fx);
            vacancy.start(now, &self.policy, &mut self.waiters, fx);
        }
    }

    /// The replaced generation (None: none of its workers is left) drains:
    /// told to stop now or after the delay.
    pub(super) fn retire(&mut self, now: Moment, prev: Option<Generation>, fx: &mut Vec<Effect>) {
        let signal = self.policy.signal_on_hup;
        let delay = self.policy.kill_old_delay;
        let pids: Vec<Pid> = prev.iter().flat_map(Generation::pids).collect();
        fx.push(Effect::Log(Event::NowRunning { signal, old: pids.clone() }));
        let stop = if delay.is_zero() {
            fx.push(Effect::Log(Event::KillingOld));
            fx.extend(pids.into_iter().map(|pid| Effect::Signal { pid, signal }));
            if let Some(current) = self.current.as_mut() {
                current.predecessor_signalled_at = Some(now);
            }
            Stop::Told { at: now, killed: false }
        } else {
            fx.push(Effect::Log(Event::SleepingBeforeKill { secs: delay.as_secs() }));
            Stop::Due { at: now + delay }
        };
        self.old.extend(prev.map(|generation| Draining { generation, stop }));
    }

    /// Answer the restart requests whose generation serves alone (or was overtaken).
    pub(super) fn answer_waiters(&mut self, now: Moment, fx: &mut Vec<Effect>) {
        let Some(current) = &self.current else { return };
        let older_alive = self.old.iter().any(|d| d.generation.number < current.number);
        let outcome = Outcome::Restarted {
            generation: current.number,
            pids: current.pids(),
            spawn_to_ready: current.ready_at.map_or(Duration::ZERO, |t| t - current.spawned_at),
            signal_to_old_gone: current.predecessor_signalled_at.map(|t| now - t),
        };
        let settled = |g: u64| g < current.number || (g == current.number && !older_alive);
        let done: Vec<_> = self.waiters.extract_if(.., |(_, g)| g.is_some_and(settled)).collect();
        let replaced = current.predecessor_signalled_at.is_some();
        if !done.is_empty() || (replaced && !older_alive) {
            self.last_outcome = Some(outcome.clone());
        }
        for (request, _) in done {
            fx.push(Effect::Reply { request, outcome: outcome.clone() });
        }
    }

    pub(super) fn tick(&mut self, now: Moment, fx: &mut Vec<Effect>) {
        if self.next_watchdog.is_some_and(|at| at <= now) {
            fx.push(Effect::Notify(Upward::Watchdog));
            self.next_watchdog = self.policy.watchdog.map(|every| now + every);
        }
        self.tick_old(now, fx);
        if let Phase::Stopping(stopping) = &mut self.phase {
            let due = self.policy.stop_timeout.filter(|t| stopping.since + *t <= now);
            if let Some(after) = due.filter(|_| !stopping.killed) {
                stopping.killed = true;
                let pids = self.live_pids();
                fx.push(Effect::Log(Event::StopTimeout { pids: pids.clone(), after }));
                fx.extend(pids.into_iter().map(|pid| Effect::KillGroup { pid }));
            }
            return;
        }
        // A first generation that never gets ready may stop the machine here.
        self.tick_probation(now, fx);
        self.tick_respawns(now, fx);
        let changed = self.phase.running_mut().and_then(|r| r.restart_on_change_at.take_if(|at| *at <= now));
        if changed.is_some() {
            fx.push(Effect::Log(Event::FilesChanged));
            self.restart(now, None, fx);
        }
        let auto_restart = self.auto_restart_at().is_some_and(|at| at <= now);
        let Some(running) = self.phase.running_mut() else { return };
        let scheduled = running.slot.scheduled_at().is_some_and(|at| at <= now);
        let Some(vacancy) = running.vacancy().filter(|_| scheduled || auto_restart) else { return };
        if !scheduled {
            let interval = self.policy.auto_restart.unwrap_or_default().as_secs();
            let forced = !self.old.is_empty();
            fx.push(Effect::Log(Event::AutoRestart { interval, forced }));
            self.manager.reloading(fx);
        }
        vacancy.start(now, &self.policy, &mut self.waiters, fx);
    }

    /// Alive-readiness for the workers the alive rule holds for; the
    /// ready timeout for a candidate that waits for evidence.
    pub(super) fn tick_probation(&mut self, now: Moment, fx: &mut Vec<Effect>) {
        let (interval, rule, observe) = (self.policy.interval, self.rule(), self.policy.observe);
        let Phase::Running(running) = &mut self.phase else { return };
        let starting = running.slot.candidate_mut().map(|g| (g, true));
        for (g, candidate) in self.current.iter_mut().map(|g| (g, false)).chain(starting) {
            let due = |w: &&mut Live| {
                w.spawned_at + interval <= now && alive_counts(rule, observe, w.blind, candidate)
            };
            g.workers.iter_mut().filter_map(Worker::live_mut).filter(due).for_each(|w| w.ready = true);
        }
        if self.candidate().is_some_and(Generation::all_ready) {
            self.generation_ready(now, ReadyBy::Alive, fx);
        } else if let Some(c) = self.candidate()
            && self.awaits_evidence(c)
            && self.policy.ready_timeout.is_some_and(|t| c.spawned_at + t <= now)
        {
            let (generation, after) = (c.number, now - c.spawned_at);
            let pids =
                c.workers.iter().filter_map(Worker::live).filter(|w| !w.ready).map(|w| w.pid).collect();
            let awaited = match (self.policy.ready, self.learned) {
                (ReadyMode::Auto, true) => Awaited::Learned,
                (ReadyMode::Auto, false) => Awaited::AcceptingOrNotify,
                (ReadyMode::Accepting, _) => Awaited::Accepting,
                _ => Awaited::Notify,
            };
            let serving = self.current.is_some();
            fx.push(Effect::Log(Event::ReadyTimeout { generation, pids, after, awaited, serving }));
            self.fail_candidate(now, Failure::NotReady { after }, fx);
        }
    }

    /// Start again, alone, the serving workers whose turn has come.
    pub(super) fn tick_respawns(&mut self, now: Moment, fx: &mut Vec<Effect>) {
        let Some(running) = self.phase.running() else { return };
        let Some(current) = self.current.as_mut() else { return };
        for w in current.workers.iter_mut().filter(|w| w.respawn_at().is_some_and(|at| at <= now)) {
            *w = Worker::Starting { index: w.index(), spawned_at: now };
            fx.push(running.spawn(current.number, w.index()));
            self.counters.respawns += 1;
        }
    }

    pub(super) fn tick_old(&mut self, now: Moment, fx: &mut Vec<Effect>) {
        let stopping = self.stopping();
        if let Phase::Stopping(Stopping { starting: Some(g), .. }) = &mut self.phase {
            kill_if_due(&self.policy, stopping, Told::Starting, g, now, fx);
        }
        let signal = self.policy.signal_on_hup;
        if self.old.iter().any(|d| d.due_at().is_some_and(|at| at <= now)) {
            fx.push(Effect::Log(Event::KillingOld));
            if let Some(current) = self.current.as_mut() {
                current.predecessor_signalled_at = Some(now);
            }
        }
        for old in &mut self.old {
            if old.due_at().is_some_and(|at| at <= now) {
                old.stop = Stop::Told { at: now, killed: false };
                fx.extend(old.generation.pids().into_iter().map(|pid| Effect::Signal { pid, signal }));
            }
            kill_if_due(&self.policy, stopping, Told::Old, old, now, fx);
        }
    }
}

/// A generation told to stop: draining, or the one starting when the stop came.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Told {
    Old,
    Starting,
}

/// How long a generation that never became ready is given to stop when
/// there is no `--ready-timeout` to go by.
const UNREADY_GRACE: Duration = Duration::from_secs(10);

/// When SIGKILL goes to the process groups of `g`, told to stop and not
/// killed yet, and whether for want of readiness: an old generation
/// `--drain-timeout` after it was told; one that never became ready (a
/// failed start, or the one starting when the stop came) serves no one
/// and has nothing to drain, so without `--drain-timeout` it gets
/// `--ready-timeout`, as long as it had to start, unless `--stop-timeout`
/// bounds the stop under way.
pub(super) fn kill_at(policy: &Policy, stopping: bool, told: Told, g: &Draining) -> Option<(Moment, bool)> {
    let Stop::Told { at, killed: false } = g.stop else { return None };
    match policy.drain_timeout.filter(|_| told == Told::Old) {
        Some(drain) => Some((at + drain, false)),
        None if g.generation.ready_at.is_none() && !(stopping && policy.stop_timeout.is_some()) => {
            Some((at + policy.ready_timeout.unwrap_or(UNREADY_GRACE), true))
        }
        None => None,
    }
}

fn kill_if_due(
    policy: &Policy,
    stopping: bool,
    told: Told,
    g: &mut Draining,
    now: Moment,
    fx: &mut Vec<Effect>,
) {
    let Some((_, unready)) = kill_at(policy, stopping, told, g).filter(|(due, _)| *due <= now) else {
        return;
    };
    let Stop::Told { at, killed } = &mut g.stop else { return };
    let after = now - *at;
    *killed = true;
    for pid in g.generation.pids() {
        let event = if unready {
            Event::UnreadyStopTimeout { pid, generation: g.generation.number, after }
        } else {
            Event::DrainTimeout { pid, after }
        };
        fx.push(Effect::Log(event));
        fx.push(Effect::KillGroup { pid });
    }
}
