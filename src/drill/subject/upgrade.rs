//! Upgrades of handover in place, through its control socket: the request
//! names the binary and asks to be answered once the new image serves.
//! `status` just before the request and just after the answer records the
//! supervisor's and the workers' pids, for the report to compare, and the
//! process the drill started must still be running after.
//!
//! The supervisor's own lines about upgrades are counted in its output
//! (`Output::log_lines`) when that output has them: when no `--log-file`
//! sends its log elsewhere (`log_here`).
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;

use super::{Driver, Subject};
use crate::cli::HandoverCli;
use crate::client;
use crate::drill::report::{Snapshot, UpgradeRecord};
use crate::wire::control::{Command, Phase, Request, Upgraded};

impl Subject {
    /// The binary the supervisor was started from, when it is this
    /// handover: what it is upgraded to by default.
    pub fn binary(&self) -> Option<&Path> {
        match &self.driver {
            Driver::Control { exe, .. } => Some(exe),
            Driver::Signal { .. } => None,
        }
    }

    /// Upgrade `number`, to `binary` (an absolute path), given up after
    /// `timeout`.
    pub fn upgrade(&mut self, number: usize, binary: &Path, timeout: Duration) -> UpgradeRecord {
        let before = self.snapshot();
        let binary = binary.to_string_lossy().into_owned();
        let requested_at = Instant::now();
        let reply = match &self.driver {
            Driver::Control { socket, .. } => {
                let request = Request { command: Command::Upgrade, binary: Some(binary.clone()), wait: true };
                let socket = socket.clone();
                crate::drill::unless_interrupted(move || {
                    client::control::request::<Upgraded>(&socket, &request, Some(timeout))
                        .map_err(|e| e.message)
                })
                .unwrap_or_else(|| Err("interrupted".into()))
            }
            Driver::Signal { program, .. } => Err(format!(
                "{program} cannot be upgraded in place: only handover, through its control socket"
            )),
        };
        let answered_at = Instant::now();
        let ms = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1000.0);
        UpgradeRecord {
            number,
            binary,
            requested_at,
            answered_at,
            ok: reply.is_ok(),
            took: reply.as_ref().ok().and_then(|done| done.took_ms.map(ms)),
            error: reply.as_ref().err().cloned(),
            versions: reply.ok().map(|done| (done.from, done.to)),
            before,
            after: self.snapshot(),
            child: self.child.id(),
            child_alive: self.exited().is_none(),
        }
    }

    /// The pids in a `status` reply, remembering them (for what is left
    /// behind at the end).
    fn snapshot(&mut self) -> Option<Snapshot> {
        let status = self.control_status()?;
        let workers = (status.generations.iter())
            .flat_map(|g| g.pids.iter().map(move |&pid| (g.generation, pid, g.phase == Phase::Draining)))
            .collect();
        Some(Snapshot { pid: status.pid, workers })
    }
}

/// Whether the supervisor's own log comes to the drill: its options, read
/// as handover reads them (abbreviated, one dash...), have no `--log-file`
/// (`--daemonize` needs one). Options it will refuse count as none.
pub fn log_here(args: &[OsString]) -> bool {
    let argv = std::iter::once(OsString::from("handover")).chain(args.iter().cloned()).collect();
    let parsed = HandoverCli::try_parse_from(crate::cli::normalize_args(argv));
    parsed.map_or(true, |cli| cli.opts.log_file.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_comes_to_the_drill_unless_a_log_file_takes_it() {
        let here = |args: &[&str]| log_here(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(here(&["--port", "0", "--log-capture", "--", "server", "--log-file", "x"]));
        assert!(!here(&["--log-file", "/tmp/log", "--", "server"]));
        assert!(!here(&["--log-capture", "--log-file=| logger", "--", "server"]));
        assert!(!here(&["-log-fi", "/tmp/log", "server", "--log-capture"]));
        assert!(here(&[]));
    }
}
