//! `handover drill`: run a server under a supervisor, load it, restart it
//! N times (and upgrade it M times, in turns: `schedule`), stop it, and
//! say whether anything was lost. How the supervisor is started, restarted,
//! upgraded and stopped is `subject`'s business.
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressDrawTarget;

pub use super::args::Drill;
use super::dest::Outputs;
use super::load::{Load, Mode, Plan};
use super::progress::Progress;
use super::report::{Inputs, Step, Thresholds, WINDOW_AFTER, WINDOW_BEFORE, compute};
use super::subject::{Output, Subject};
use super::{interrupted, interruption, pause};
use crate::error::{Context, Error, Result};

/// The default pause between restarts (and upgrades): enough to keep one's
/// window (answer + 500 ms) from the next one's (request − 100 ms).
pub const SPACING: Duration = WINDOW_BEFORE.saturating_add(WINDOW_AFTER);
/// The drill waits this long at most for the supervisor to stop (less
/// with a shorter `--restart-timeout`, more with a longer `--stop-timeout`
/// of the supervisor's), then kills it.
const STOP_BOUND: Duration = Duration::from_secs(60);

/// Run the drill; the exit code is 0 only when it passed.
pub fn run(drill: Drill, supervisor_args: Vec<OsString>) -> Result<u8> {
    // Whether the supervisor's own log comes to the drill (no `--log-file`).
    let log_here = super::subject::log_here(&supervisor_args);
    if drill.log_line.is_some() && !log_here {
        let text = "--log-line needs the supervisor's output, which --log-file sends elsewhere";
        return Err(Error::usage(text));
    }
    // Every place written to is checked before anything starts.
    let outputs = Outputs::check(&drill)?;
    let dir = directory(drill.keep.as_deref())?;
    let keep = drill.keep.is_some();
    let program = drill.supervisor.as_deref().map(|p| p.as_os_str());
    let mut subject = match Subject::start(program, &supervisor_args, &dir, keep, drill.log_line.as_deref()) {
        Ok(subject) => subject,
        Err(e) => {
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    };
    let stop_bound = subject.stop_bound(drill.restart_timeout().min(STOP_BOUND));
    // What the drill measured, for the report.
    let mut inputs = Inputs {
        connections: drill.connections,
        asked: (drill.restarts, drill.upgrades),
        stop_signal: subject.stop_signal().to_owned(),
        series: drill.report.is_some(),
        supervisor: subject.describe(),
        thresholds: Thresholds {
            max_failures: drill.max_failures,
            max_p99: drill.max_p99,
            max_retried: drill.max_retried,
        },
        ..Inputs::default()
    };
    let mut refused = None;
    match subject.wait_serving(drill.startup_timeout()) {
        Ok(()) => {
            if let Err(e) = measure(&drill, &mut subject, &mut inputs) {
                let _ = subject.stop(stop_bound);
                return Err(e);
            }
        }
        Err(e) if e.code == 2 => refused = Some(e.message),
        Err(e) => inputs.startup = Some(e.message),
    }
    let stopped = subject.stop(stop_bound);
    if let Some(signal) = interrupted() {
        let how = stopped.killed.unwrap_or_else(|| "the supervisor and its workers stopped".into());
        return Err(interruption(signal, &how));
    }
    if let Some(why) = refused {
        eprintln!("handover drill: {}", stopped.output.tail());
        return Err(Error::usage(format!("the supervisor refused its options: {why}")));
    }
    inputs.leftovers = stopped.leftovers;
    Ok(conclude(&drill, &outputs, inputs, &stopped.output, log_here))
}

/// Loads the supervisor, serving, through the restarts and upgrades,
/// and records what happened into `inputs`.
fn measure(drill: &Drill, subject: &mut Subject, inputs: &mut Inputs) -> Result<()> {
    inputs.first_generation = subject.unused_socket(1);
    let targets = subject.targets();
    if targets.is_empty() {
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
        max_samples: drill.max_samples,
    };
    inputs.started = Some(Instant::now());
    let cpu_before = own_cpu();
    let load = Load::start(plan).map_err(|e| Error::runtime(format!("cannot start the load: {e}")))?;
    let tty = std::io::stderr().is_terminal().then(ProgressDrawTarget::stderr);
    let progress = Progress::new(load.counters(), (drill.restarts, drill.upgrades), tty);
    let binaries = match (drill.upgrade_binary.as_slice(), subject.binary()) {
        ([], Some(own)) => vec![own.to_path_buf()],
        (given, _) => given.to_vec(),
    };
    // A little load before the first restart, so it has something to disturb.
    pause(Duration::from_millis(200));
    for (i, step) in schedule(drill.restarts, drill.upgrades).into_iter().enumerate() {
        if i > 0 {
            pause(drill.restart_every.unwrap_or(SPACING));
        }
        if interrupted().is_some() {
            break;
        }
        if load.finished() {
            inputs.cut_short = Some(not_run(drill, inputs.restarts.len(), inputs.upgrades.len()));
            break;
        }
        match step {
            Step::Restart(number) => inputs.restarts.push(subject.restart(number, drill.restart_timeout())),
            Step::Upgrade(number) => {
                // None only without handover, where `upgrade` says it cannot be done.
                let binary = binaries.iter().cycle().nth(number - 1).map_or(Path::new(""), PathBuf::as_path);
                inputs.upgrades.push(subject.upgrade(number, binary, drill.restart_timeout()));
            }
        }
        progress.done(step);
    }
    // Without a bound of its own the load ends half a second after the last restart.
    if drill.duration.is_none() && drill.requests.is_none() {
        pause(Duration::from_millis(500));
    } else {
        while !load.finished() && pause(Duration::from_millis(20)) {}
    }
    drop(progress);
    (inputs.peak_rss_kib, inputs.private_kib) = subject.memory();
    (inputs.samples, inputs.unsampled) = load.stop_all();
    inputs.ended = Some(Instant::now());
    inputs.load_cpu = own_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    inputs.idle = drill.idle.and_then(|period| subject.idle(period));
    Ok(())
}

/// Why not every restart and upgrade asked for ran: the load ended first.
fn not_run(drill: &Drill, restarts: usize, upgrades: usize) -> String {
    let mut ran = format!("only {restarts} of {} restarts", drill.restarts);
    if drill.upgrades > 0 {
        ran += &format!(" and {upgrades} of {} upgrades", drill.upgrades);
    }
    let bound = match (drill.requests, drill.duration) {
        (Some(n), _) => format!("--requests {n}"),
        (None, Some(d)) => format!("--duration {}", humantime::format_duration(d)),
        (None, None) => "its bound".into(),
    };
    format!("{ran} ran: the load ended first ({bound}); give more --requests or a longer --duration")
}

/// The report of `run`: JUnit, JSON or the table, the verdicts and, when
/// it failed, the output's last lines; the exit code.
fn conclude(drill: &Drill, outputs: &Outputs, mut inputs: Inputs, output: &Output, log_here: bool) -> u8 {
    inputs.upgrade_log = (log_here && !inputs.upgrades.is_empty()).then(|| output.log_lines());
    inputs.request_lines = (drill.log_line.clone())
        .filter(|_| inputs.startup.is_none())
        .map(|text| (text, output.log_lines().matched));
    inputs.kills = output.kills();
    let report = compute(&inputs);
    let mut code = if report.passed { 0 } else { 1 };
    if let Some(junit) = &outputs.junit
        && let Err(e) = junit.write(report.to_junit("handover drill").as_bytes())
    {
        eprintln!("handover drill: {}", e.message);
        code = 1;
    }
    if let Some((html, json)) = &outputs.report
        && let Err(e) = (html.write(report.to_html("handover drill").as_bytes()))
            .and_then(|()| json.write(format!("{:#}\n", report.to_json()).as_bytes()))
    {
        eprintln!("handover drill: {}", e.message);
        code = 1;
    }
    if drill.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    for verdict in &report.verdicts {
        eprintln!("handover drill: {verdict}");
    }
    if !report.passed {
        eprintln!("handover drill: {}", output.tail());
    }
    code
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

/// The drill's directory: `keep` (created and checked by
/// [`Outputs::check`], made absolute so the supervisor finds its files
/// wherever it runs), or a new temporary one.
fn directory(keep: Option<&Path>) -> Result<PathBuf> {
    let Some(dir) = keep else {
        return nix::unistd::mkdtemp(&std::env::temp_dir().join("handover-drill-XXXXXX"))
            .context(|| "cannot create a temporary directory".into());
    };
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
