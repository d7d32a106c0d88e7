//! What the supervisor says about itself on the control socket: the
//! machine's state and outcomes as `wire::control` messages.
//!
//! Times inside the machine are `Moment`s; here they become wall-clock
//! RFC 3339 stamps (for people and logs) and durations in milliseconds
//! (for scripts).
use std::time::{Instant, SystemTime};

use super::Supervisor;
use super::events::ms;
use crate::machine::{Machine, Moment, Outcome, ReadyMode, Role};
use crate::wire::control::{self, Phase, Readiness, Restart, RestartFailed, Restarted};

/// The wall-clock time of `at`, now being `now`.
fn stamp(now: Moment, at: Moment) -> String {
    let wall = SystemTime::now() - now.saturating_duration_since(at);
    humantime::format_rfc3339_millis(wall).to_string()
}

/// A restart request's answer.
pub fn outcome(outcome: &Outcome) -> Restart {
    match outcome {
        Outcome::Restarted { generation, pids, spawn_to_ready, signal_to_old_gone } => {
            Restart::Done(Restarted {
                ok: true,
                generation: *generation,
                pids: pids.clone(),
                spawn_to_ready_ms: ms(*spawn_to_ready),
                signal_to_old_gone_ms: signal_to_old_gone.map(ms),
                warnings: Vec::new(),
            })
        }
        Outcome::Failed { generation, failure } => Restart::Failed(RestartFailed {
            ok: false,
            generation: *generation,
            error: match generation {
                Some(g) => format!("generation {g} failed: {failure}"),
                None => failure.to_string(),
            },
        }),
    }
}

fn phase(role: Role) -> Phase {
    match role {
        Role::Starting => Phase::Starting,
        Role::Serving => Phase::Serving,
        Role::Draining => Phase::Draining,
    }
}

fn readiness(machine: &Machine) -> Readiness {
    match machine.readiness() {
        (ReadyMode::Auto, false) => Readiness::Auto,
        (ReadyMode::Auto, true) => Readiness::AutoLearnedNotify,
        (ReadyMode::Notify, _) => Readiness::Notify,
        (ReadyMode::Alive, _) => Readiness::Alive,
        (ReadyMode::Accepting, _) => Readiness::Accepting,
    }
}

impl Supervisor {
    /// The `status` answer.
    pub(super) fn status(&mut self) -> control::Status {
        let now = super::moment();
        let (census, contain, observer) = (&mut self.census, &self.contain, &self.observer);
        let generations = (self.machine.views().iter())
            .map(|v| {
                let (members, rss) = census.of(contain, &v.pids, Instant::now());
                let ready_by = observer.evidence_of(v.generation).filter(|_| v.ready_at.is_some());
                control::Generation {
                    generation: v.generation,
                    phase: phase(v.role),
                    pids: v.pids.clone(),
                    started: stamp(now, v.spawned_at),
                    ready: v.ready_at.map(|t| stamp(now, t)),
                    told_to_stop: v.signalled_at.map(|t| stamp(now, t)),
                    members,
                    rss_bytes: Some(rss),
                    ready_by: ready_by.map(str::to_string),
                }
            })
            .collect();
        let listeners = (self.listeners.iter().zip(&self.config.fds))
            .map(|(l, &fd)| control::Listener {
                fd,
                name: l.spec.name.clone(),
                key: l.key.clone(),
                address: l.local.clone(),
                broken: l.repair.broken.clone(),
            })
            .collect();
        let (machine, counters) = (&self.machine, self.machine.counters());
        control::Status {
            ok: true,
            pid: std::process::id(),
            stopping: machine.stopping(),
            ready: Some(readiness(machine)),
            listeners,
            generations,
            last_restart: machine.last_outcome().map(outcome),
            counters: control::Counters {
                restarts: counters.restarts,
                failures: counters.failures,
                respawns: counters.respawns,
                foreign_ready: self.foreign_ready,
            },
            image: Some(self.upgrades.image()),
            containment: Some(self.contain.describe()),
            observation: self.observer.blind.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::event::{ExitStatus, Failure};
    use std::time::Duration;

    #[test]
    fn outcomes_as_messages() {
        let ok = outcome(&Outcome::Restarted {
            generation: 4,
            pids: vec![12, 13],
            spawn_to_ready: Duration::from_micros(35_250),
            signal_to_old_gone: Some(Duration::from_millis(120)),
        });
        let Restart::Done(done) = ok else { panic!("{ok:?}") };
        assert_eq!((done.spawn_to_ready_ms, done.signal_to_old_gone_ms), (35.25, Some(120.0)));
        let failure = Failure::Exited { pid: 9, status: ExitStatus::Code(3), hint: None };
        let failed = outcome(&Outcome::Failed { generation: Some(5), failure });
        assert_eq!(
            control::encode(&failed),
            b"{\"ok\":false,\"generation\":5,\"error\":\"generation 5 failed: worker 9 exited with 3\"}\n"
        );
    }
}
