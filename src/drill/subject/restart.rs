//! Hot restarts: a request on handover's control socket, answered with
//! the outcome and the supervisor's own timings; or SIGHUP to a
//! start_server-compatible program, timed by watching its status file.
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

use super::{Driver, STATUS_POLL, Subject, proc, stuck};
use crate::client;
use crate::drill::report::RestartRecord;
use crate::wire::control::{self, Command as Request};

impl Subject {
    /// One hot restart, given up after `timeout`.
    pub fn restart(&mut self, number: usize, timeout: Duration) -> RestartRecord {
        let mut record = self.restart_by_driver(number, timeout);
        record.error = record.error.map(|e| self.explain(&e));
        if let (true, Some(generation)) = (record.ok, record.generation) {
            record.findings.extend(self.unused_socket(generation));
        }
        record
    }

    /// Why generation `generation` serves the drill nothing, if it does
    /// not: none of its workers (nor their children) holds a socket the
    /// supervisor holds, the listeners it passed down. None when it
    /// does, or when that cannot be told (no pids, /proc unreadable).
    pub fn unused_socket(&mut self, generation: u64) -> Option<String> {
        let pids: Vec<i32> = match &self.driver {
            Driver::Control { .. } => (self.control_status()?.generations.into_iter())
                .find(|g| g.generation == generation)
                .map(|g| g.pids)
                .unwrap_or_default(),
            Driver::Signal { .. } => {
                self.status().into_iter().filter(|g| g.0 == generation).map(|g| g.1 as i32).collect()
            }
        };
        let supervisor = proc::sockets(self.live_pid()?.as_raw()).filter(|s| !s.is_empty())?;
        let family = proc::with_descendants(&pids);
        let held: Vec<_> = family.iter().filter_map(|&pid| proc::sockets(pid)).collect();
        if pids.is_empty() || held.is_empty() || held.iter().any(|s| !s.is_disjoint(&supervisor)) {
            return None;
        }
        let list: Vec<String> = pids.iter().map(i32::to_string).collect();
        Some(format!(
            "generation {generation} (pid {}) does not hold the listening socket the supervisor passed: it \
             closed it, and serves a socket of its own or none; make it serve the inherited one \
             (LISTEN_FDS, SERVER_STARTER_PORT or fd 3)",
            list.join(", ")
        ))
    }

    fn restart_by_driver(&mut self, number: usize, timeout: Duration) -> RestartRecord {
        match &self.driver {
            Driver::Control { socket, .. } => {
                let mut record = restart_by_control(socket, number, timeout);
                let timed_out = !record.ok && record.answered_at - record.requested_at >= timeout;
                if let (true, Some(status)) = (timed_out, self.control_status()) {
                    record.generation = status.generations.iter().map(|g| g.generation).max();
                    let said = record.error.take().unwrap_or_default();
                    record.error =
                        Some(stuck::from_status(&status, timeout, &self.stop_signal).unwrap_or_else(|| {
                            format!("{said}, though its status shows no generation starting or draining")
                        }));
                }
                record
            }
            Driver::Signal { .. } => self.restart_by_signal(number, timeout),
        }
    }

    fn restart_by_signal(&mut self, number: usize, timeout: Duration) -> RestartRecord {
        let newest = self.status().iter().map(|g| g.0).max().unwrap_or(0);
        let requested_at = Instant::now();
        let mut record = RestartRecord::pending(number, requested_at);
        let sent = match self.live_pid() {
            Some(pid) => kill(pid, Signal::SIGHUP).map_err(|e| e.to_string()),
            None => Err("it has exited".to_string()),
        };
        if let Err(e) = sent {
            record.error = Some(format!("cannot signal the supervisor: {e}"));
            return record;
        }
        let mut ready_at = None;
        record.error = loop {
            let generations = self.status();
            let now = Instant::now();
            record.answered_at = now;
            if ready_at.is_none() && generations.iter().any(|g| g.0 > newest) {
                ready_at = Some(now);
                record.ready_after = Some(now - requested_at);
            }
            if let (Some(ready), false) = (ready_at, generations.is_empty())
                && generations.iter().all(|g| g.0 > newest)
            {
                record.old_gone_after = Some(now - ready);
                record.generation = generations.iter().map(|g| g.0).max();
                record.ok = true;
                break None;
            }
            if let Some(status) = self.exited() {
                break Some(format!("the supervisor exited ({status})"));
            }
            if crate::drill::interrupted().is_some() {
                break Some("interrupted".into());
            }
            if now - requested_at > timeout {
                let after = stuck::seconds(timeout);
                record.generation = generations.iter().map(|g| g.0).max().filter(|&g| g > newest);
                break Some(match ready_at {
                    None => format!("no new generation after {after}: still starting, or failing to start?"),
                    Some(_) => stuck::from_status_file(&generations, newest, timeout, &self.stop_signal)
                        .unwrap_or_else(|| format!("the old generation still listed after {after}")),
                });
            }
            std::thread::sleep(STATUS_POLL);
        };
        record
    }
}

fn restart_by_control(socket: &Path, number: usize, timeout: Duration) -> RestartRecord {
    let mut record = RestartRecord::pending(number, Instant::now());
    let socket = socket.to_path_buf();
    let reply = crate::drill::unless_interrupted(move || {
        client::control::call::<control::Restarted>(&socket, Request::Restart, Some(timeout))
    })
    .unwrap_or_else(|| Err(crate::error::Error::runtime("interrupted")));
    record.answered_at = Instant::now();
    let ms = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    match reply {
        Ok(done) => {
            record.ok = true;
            record.generation = Some(done.generation);
            record.ready_after = Some(ms(done.spawn_to_ready_ms));
            record.old_gone_after = done.signal_to_old_gone_ms.map(ms);
        }
        Err(e) => record.error = Some(e.message),
    }
    record
}
