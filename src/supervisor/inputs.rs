//! What the loop hears, as inputs for the machine: children reaped,
//! READY=1 and acks credited to their workers, control requests.
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Supervisor, reaper};
use crate::machine::Input;
use crate::wire::control::{Command, Reopened, Stopping, Verdict};

impl Supervisor {
    /// Children reaped, as inputs: the log command's exit is handled here,
    /// and a worker told to stop whose group lives on waits in `lingering`.
    pub(super) fn child_exits(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        for exit in reaper::reap() {
            let Input::Exited { pid, status } = exit else {
                inputs.push(exit);
                continue;
            };
            self.contain.reaped(pid);
            if self.logger_exited(pid, status, Instant::now()) || self.upgrade_child_exited(pid, status) {
                continue;
            }
            if self.is_worker(pid) {
                self.adopt_orphans(pid);
            }
            if self.machine.told_to_stop(pid) && self.contain.alive(pid) {
                self.lingering.push((pid, status));
            } else {
                inputs.push(Input::Exited { pid, status });
            }
        }
        inputs
    }

    /// READY=1 and acks, each credited to the worker whose processes sent
    /// it (decided now, by cgroup or session); the others are counted, and
    /// said once per `FOREIGN_READY_SAID` of them.
    pub(super) fn credit(&mut self, senders: Vec<i32>) -> Vec<Input> {
        let mut inputs = Vec::new();
        for sender in senders {
            match self.contain.worker_of(sender).filter(|&pid| self.is_worker(pid)) {
                Some(pid) => inputs.push(Input::Ready { pid }),
                None => {
                    if self.foreign_ready.is_power_of_two() || self.foreign_ready == 0 {
                        self.log.line(&format!(
                            "ignored READY=1 or ack from pid {sender}, a process of no current worker ({} so far)",
                            self.foreign_ready + 1
                        ));
                    }
                    self.foreign_ready += 1;
                }
            }
        }
        inputs
    }

    /// A worker was reaped: in session mode, what it left re-parented to
    /// us is its own (killed at its deadline), named once in the log.
    fn adopt_orphans(&mut self, pid: i32) {
        let mut known: Vec<i32> = self.machine.views().iter().flat_map(|v| v.pids.clone()).collect();
        known.extend(self.logger.iter().filter_map(|l| l.pid));
        known.extend(self.upgrades.verify_pid());
        let orphans = self.contain.exited(pid, &known);
        if !orphans.is_empty() {
            let pids: Vec<String> = orphans.iter().map(i32::to_string).collect();
            self.log.line(&format!(
                "worker {pid} left processes {} running outside its session; they count as its own until they exit",
                pids.join(",")
            ));
        }
    }

    pub(super) fn is_worker(&self, pid: i32) -> bool {
        self.machine.views().iter().any(|v| v.pids.contains(&pid))
    }

    /// Answer what can be answered at once; the rest become inputs.
    pub(super) fn control_requests(&mut self) -> Vec<Input> {
        let Some(control) = self.control.as_mut() else { return Vec::new() };
        let (requests, lines) = control.service(Instant::now());
        lines.iter().for_each(|line| self.log.line(line));
        let mut inputs = Vec::new();
        let (mut upgrades, mut reopens, mut watching, mut statuses) = (vec![], vec![], vec![], vec![]);
        for (id, request) in requests {
            match request.command {
                Command::Reopen => reopens.push(id),
                Command::Events | Command::Follow | Command::Metrics => watching.push((id, request.command)),
                Command::Upgrade => upgrades.push((id, request.binary, request.wait)),
                Command::Restart => inputs.push(Input::Restart { request: id.0 }),
                Command::Stop => {
                    control.reply(id, &Stopping { ok: true, pid: std::process::id() });
                    inputs.push(Input::Terminate(Signal::SIGTERM));
                }
                Command::Status => statuses.push(id),
            }
        }
        for id in statuses {
            let status = self.status();
            if let Some(control) = self.control.as_mut() {
                control.reply(id, &status);
            }
        }
        for (id, command) in watching {
            self.answer_watching(id, command);
        }
        for (id, binary, wait) in upgrades {
            self.upgrade_requested(id, binary, wait);
        }
        for id in reopens {
            let (reopened, forward) = self.on_usr1();
            let reply =
                reopened.map(|log_file| Reopened { ok: true, log_file, forwarded: forward.is_some() });
            if let Some(control) = self.control.as_mut() {
                match reply {
                    Ok(reopened) => control.reply(id, &reopened),
                    Err(error) => control.reply(id, &Verdict::refused(error.message)),
                }
            }
            inputs.extend(forward);
        }
        inputs
    }
}
