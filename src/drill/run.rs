//! `handover drill`: run a server under a supervisor, load it, restart it
//! N times (and upgrade it M times, in turns: `schedule`), stop it, and
//! say whether anything was lost. How the supervisor is started, restarted,
//! upgraded and stopped is `subject`'s business.
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::load::{Load, Mode, Plan};
use super::progress::Progress;
use super::report::{Inputs, Step, Thresholds, compute};
use super::subject::Subject;
use super::{interrupted, interruption, pause};
use crate::error::{Context, Error, Result};

/// Options of `handover drill` itself; everything else goes to the supervisor.
#[derive(Clone, Debug)]
pub struct Drill {
    pub restarts: usize,
    /// Upgrades of handover in place, in turns with the restarts.
    pub upgrades: usize,
    /// The binaries to upgrade to, in turn (absolute); empty: the one the
    /// supervisor was started from.
    pub upgrade_binaries: Vec<PathBuf>,
    /// Every answered request leaves a line with this text in the output.
    pub log_line: Option<String>,
    pub restart_every: Option<Duration>,
    pub connections: usize,
    pub keepalive: bool,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Requests per second in all; `None`: as fast as they are answered.
    pub rate: Option<u64>,
    pub get: String,
    pub expect_status: u16,
    pub raw_send: Option<String>,
    pub raw_expect: Option<String>,
    pub request_timeout: Duration,
    pub json: bool,
    pub junit: Option<PathBuf>,
    pub max_failures: u64,
    pub max_p99: Option<Duration>,
    /// Retried keep-alive requests tolerated, in percent of all requests.
    pub max_retried: f64,
    pub restart_timeout: Duration,
    pub idle: Option<Duration>,
    /// A start_server-compatible program to drill instead of handover.
    pub supervisor: Option<PathBuf>,
    /// The directory for the drill's files, kept afterwards (`--keep`);
    /// `None`: a temporary one, removed.
    pub keep: Option<PathBuf>,
}

/// Run the drill; the exit code is 0 only when it passed.
pub fn run(drill: Drill, supervisor_args: Vec<OsString>) -> Result<u8> {
    let dir = directory(drill.keep.as_deref())?;
    let keep = drill.keep.is_some();
    let program = drill.supervisor.as_deref().map(|p| p.as_os_str());
    if drill.log_line.is_some() && !super::subject::log_here(&supervisor_args) {
        let text = "--log-line needs the supervisor's output, which --log-file sends elsewhere";
        return Err(Error::usage(format!("drill: {text}")));
    }
    let mut subject = match Subject::start(program, &supervisor_args, &dir, keep, drill.log_line.as_deref()) {
        Ok(subject) => subject,
        Err(e) => {
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    };
    if let Err(e) = subject.wait_serving(Duration::from_secs(120)) {
        let (_, output) = subject.stop();
        return Err(match interrupted() {
            Some(_) => e,
            None => Error::new(e.code, format!("{}\n{}", e.message, output.tail())),
        });
    }
    let targets = subject.targets();
    if targets.is_empty() {
        let _ = subject.stop();
        let options =
            if drill.supervisor.is_some() { "--port or --path" } else { "--port, --path or --listen" };
        return Err(Error::usage(format!(
            "nothing to load: the supervisor has no TCP or unix stream listener (give {options})"
        )));
    }
    let mode = match &drill.raw_send {
        Some(send) => Mode::Raw {
            send: send.clone().into_bytes(),
            expect: drill.raw_expect.clone().unwrap_or_default().into_bytes(),
        },
        None => Mode::Http {
            path: drill.get.clone(),
            expect_status: drill.expect_status,
            keepalive: drill.keepalive,
        },
    };
    let plan = Plan {
        targets,
        mode,
        connections: drill.connections,
        requests: drill.requests,
        duration: drill.duration,
        timeout: drill.request_timeout,
        rate: drill.rate,
    };
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let cpu_before = own_cpu();
    let load = match Load::start(plan) {
        Ok(load) => load,
        Err(e) => {
            let _ = subject.stop();
            return Err(Error::runtime(format!("cannot start the load: {e}")));
        }
    };
    let progress = Progress::new(load.counters(), drill.restarts, drill.upgrades, tty);
    let (mut records, mut upgrades) = (Vec::new(), Vec::new());
    let binaries = match (drill.upgrade_binaries.as_slice(), subject.binary()) {
        ([], Some(own)) => vec![own.to_path_buf()],
        (given, _) => given.to_vec(),
    };
    // A little load before the first restart, so it has something to disturb.
    pause(Duration::from_millis(200));
    for step in schedule(drill.restarts, drill.upgrades) {
        if load.finished() || interrupted().is_some() {
            break;
        }
        match step {
            Step::Restart(number) => {
                records.push(subject.restart(number, drill.restart_timeout));
                progress.restarted(number);
            }
            Step::Upgrade(number) => {
                // None only without handover, where `upgrade` says it cannot be done.
                let binary = binaries.iter().cycle().nth(number - 1).map_or(Path::new(""), PathBuf::as_path);
                upgrades.push(subject.upgrade(number, binary, drill.restart_timeout));
                progress.upgraded(number);
            }
        }
        if let Some(every) = drill.restart_every {
            pause(every);
        }
    }
    // Without a bound of its own the load ends half a second after the last restart.
    if drill.duration.is_none() && drill.requests.is_none() {
        pause(Duration::from_millis(500));
    } else {
        while !load.finished() && pause(Duration::from_millis(20)) {}
    }
    progress.finish();
    let (peak_rss_kib, private_kib) = subject.memory();
    let samples = load.stop();
    let ended = Instant::now();
    let load_cpu = own_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let idle = drill.idle.and_then(|period| subject.idle(period));
    if let Some(signal) = interrupted() {
        let _ = subject.stop();
        return Err(interruption(signal));
    }
    let supervisor = subject.describe();
    let log_here = subject.log_here();
    let (leftovers, output) = subject.stop();
    let upgrade_log = (log_here && !upgrades.is_empty()).then(|| output.log_lines());
    let request_lines = drill.log_line.clone().map(|text| (text, output.log_lines().matched));
    let thresholds = Thresholds {
        max_failures: drill.max_failures,
        max_p99: drill.max_p99,
        max_retried_percent: drill.max_retried,
    };
    let report = compute(&Inputs {
        samples: &samples,
        restarts: &records,
        upgrades: &upgrades,
        upgrade_log,
        request_lines,
        started,
        ended,
        supervisor,
        load_cpu,
        peak_rss_kib,
        private_kib,
        idle,
        leftovers,
        thresholds,
    });
    if let Some(path) = &drill.junit {
        std::fs::write(path, report.to_junit("handover drill"))
            .context(|| format!("cannot write {}", path.display()))?;
    }
    if drill.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    for verdict in report.verdicts() {
        eprintln!("handover drill: {verdict}");
    }
    if !report.passed() {
        eprintln!("handover drill: {}", output.tail());
    }
    Ok(if report.passed() { 0 } else { 1 })
}

/// The restarts and upgrades in the order they are done: in turns, a
/// restart first, then the rest of whichever kind is left.
pub fn schedule(restarts: usize, upgrades: usize) -> Vec<Step> {
    let mut steps = Vec::with_capacity(restarts + upgrades);
    for i in 1..=restarts.max(upgrades) {
        steps.extend((i <= restarts).then_some(Step::Restart(i)));
        steps.extend((i <= upgrades).then_some(Step::Upgrade(i)));
    }
    steps
}

/// The drill's directory: `keep` (created if missing, made absolute so the
/// supervisor finds its files wherever it runs), or a new temporary one.
fn directory(keep: Option<&Path>) -> Result<PathBuf> {
    let Some(dir) = keep else {
        return nix::unistd::mkdtemp(&std::env::temp_dir().join("handover-drill-XXXXXX"))
            .context(|| "cannot create a temporary directory".into());
    };
    std::fs::create_dir_all(dir).context(|| format!("cannot create --keep directory {}", dir.display()))?;
    std::fs::canonicalize(dir).context(|| format!("cannot find --keep directory {}", dir.display()))
}

/// CPU time (user + system) of this process so far: the load's threads and
/// the drill's own work, not the supervisor's or the server's.
fn own_cpu() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let micros =
        |t: nix::sys::time::TimeVal| Duration::from_micros((t.tv_sec() * 1_000_000 + t.tv_usec()) as u64);
    Some(micros(usage.user_time()) + micros(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_and_upgrades_take_turns() {
        use Step::{Restart as R, Upgrade as U};
        assert_eq!(schedule(2, 4), [R(1), U(1), R(2), U(2), U(3), U(4)]);
        assert_eq!(schedule(3, 1), [R(1), U(1), R(2), R(3)]);
        assert_eq!(schedule(0, 2), [U(1), U(2)]);
        assert_eq!(schedule(2, 0), [R(1), R(2)]);
        assert_eq!(schedule(0, 0), []);
    }
}
