//! `handover drill`: run a server under handover, load it, restart it N
//! times, stop it, and say whether anything was lost.
//!
//! The supervisor is this same binary, started as a child with the
//! supervisor options the user gave plus a private `--control` socket in a
//! temporary directory; restarts go through that socket, so each one is
//! answered with its outcome and timings. The listeners to load are read
//! from the supervisor's `listening on ...` lines.
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::load::{Load, Mode, Plan, Target};
use super::progress::Progress;
use super::report::{Inputs, RestartRecord, Thresholds, compute};
use crate::control::{self, Command as Request};
use crate::event_loop::Fatal;

/// Options of `handover drill` itself; everything else goes to the supervisor.
#[derive(Clone, Debug)]
pub struct Drill {
    pub restarts: usize,
    pub restart_every: Option<Duration>,
    pub connections: usize,
    pub keepalive: bool,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub get: String,
    pub expect_status: u16,
    pub raw_send: Option<String>,
    pub raw_expect: Option<String>,
    pub request_timeout: Duration,
    pub json: bool,
    pub junit: Option<PathBuf>,
    pub max_failures: u64,
    pub max_p99: Option<Duration>,
}

/// The supervisor under test, with its output collected as it comes.
struct Subject {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    control: PathBuf,
    dir: PathBuf,
}

impl Subject {
    fn start(supervisor_args: &[OsString], dir: &Path) -> Result<Subject, Fatal> {
        let exe = std::env::current_exe()
            .map_err(|e| Fatal::new(1, format!("cannot find handover itself: {e}")))?;
        let control = dir.join("control");
        let mut child = Command::new(exe)
            .arg("--control")
            .arg(&control)
            .args(supervisor_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Fatal::new(1, format!("cannot start the supervisor: {e}")))?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Ok(Subject { child, lines, control, dir: dir.to_path_buf() })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its log, for a failure message.
    fn tail(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(8);
        lines[start..].join("\n")
    }

    /// TCP and unix listeners from `listening on tcp ADDR as fd N (...)`.
    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for line in self.lines() {
            let Some(rest) = line.split("listening on ").nth(1) else { continue };
            let Some((kind, rest)) = rest.split_once(' ') else { continue };
            let Some(address) = rest.split(" as fd ").next() else { continue };
            match kind {
                "tcp" => targets.extend(address.parse().ok().map(Target::Tcp)),
                "unix" => targets.push(Target::Unix(PathBuf::from(address))),
                _ => {}
            }
        }
        targets
    }

    fn worker_pids(&self) -> Vec<i32> {
        let lines = self.lines();
        let pids = lines.iter().filter_map(|l| l.split("starting new worker ").nth(1)?.trim().parse().ok());
        pids.collect()
    }

    /// Wait until the first generation serves (or the supervisor gave up).
    fn wait_serving(&mut self, deadline: Duration) -> Result<(), Fatal> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(Fatal::new(
                    1,
                    format!("the supervisor exited ({status}) before serving:\n{}", self.tail()),
                ));
            }
            if let Ok(reply) = control::call(&self.control, Request::Status, Some(Duration::from_secs(5))) {
                let serving =
                    reply["generations"].as_array().into_iter().flatten().any(|g| g["phase"] == "serving");
                if serving {
                    return Ok(());
                }
            }
            if start.elapsed() > deadline {
                return Err(Fatal::new(
                    1,
                    format!("generation 1 not serving after {deadline:?}:\n{}", self.tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Stop it through the control socket; what it left behind, if anything.
    fn stop(mut self) -> Vec<String> {
        let _ = control::call(&self.control, Request::Stop, Some(Duration::from_secs(60)));
        let start = Instant::now();
        let mut leftovers = Vec::new();
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match status {
            Some(s) if s.success() => {}
            Some(s) => leftovers.push(format!("the supervisor exited with {s}")),
            None => leftovers.push("the supervisor did not stop within 60 s (killed)".into()),
        }
        for pid in self.worker_pids() {
            if is_alive(pid) {
                leftovers.push(format!("worker {pid} still running"));
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if self.control.exists() {
            leftovers.push(format!("control socket {} left behind", self.control.display()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        leftovers
    }
}

fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn ms(value: &Value) -> Option<Duration> {
    value.as_f64().map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

fn restart(subject: &Subject, number: usize) -> RestartRecord {
    let requested_at = Instant::now();
    let reply = control::call(&subject.control, Request::Restart, Some(Duration::from_secs(300)));
    let answered_at = Instant::now();
    match reply {
        Ok(reply) => RestartRecord {
            number,
            requested_at,
            ok: reply["ok"] == true,
            generation: reply["generation"].as_u64(),
            ready_after: ms(&reply["spawn_to_ready_ms"]),
            old_gone_after: ms(&reply["signal_to_old_gone_ms"]),
            answered_at,
            error: reply["error"].as_str().map(str::to_owned),
        },
        Err(e) => RestartRecord {
            number,
            requested_at,
            ok: false,
            generation: None,
            ready_after: None,
            old_gone_after: None,
            answered_at,
            error: Some(e.message),
        },
    }
}

/// Run the drill; the exit code is 0 only when it passed.
pub fn run(drill: Drill, supervisor_args: Vec<OsString>) -> Result<i32, Fatal> {
    let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("handover-drill-XXXXXX"))
        .map_err(|e| Fatal::new(1, format!("cannot create a temporary directory: {e}")))?;
    let mut subject = Subject::start(&supervisor_args, &dir)?;
    if let Err(e) = subject.wait_serving(Duration::from_secs(120)) {
        subject.stop();
        return Err(e);
    }
    let targets = subject.targets();
    if targets.is_empty() {
        subject.stop();
        return Err(Fatal::new(
            2,
            "nothing to load: the supervisor has no TCP or unix stream listener (give --port, --path or --listen)",
        ));
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
    };
    let tty = std::io::stderr().is_terminal() && !drill.json;
    let started = Instant::now();
    let load = match Load::start(plan) {
        Ok(load) => load,
        Err(e) => {
            subject.stop();
            return Err(Fatal::new(1, format!("cannot start the load: {e}")));
        }
    };
    let progress = Progress::new(load.counters(), drill.restarts, tty);
    let mut records = Vec::new();
    // A little load before the first restart, so it has something to disturb.
    std::thread::sleep(Duration::from_millis(200));
    for number in 1..=drill.restarts {
        if load.finished() {
            break;
        }
        let record = restart(&subject, number);
        records.push(record);
        progress.restarted(number);
        std::thread::sleep(drill.restart_every.unwrap_or(Duration::from_millis(100)));
    }
    // Without a bound of its own the load ends half a second after the last restart.
    if drill.duration.is_none() && drill.requests.is_none() {
        std::thread::sleep(Duration::from_millis(500));
    } else {
        while !load.finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    progress.finish();
    let peak_rss_kib = subject.peak_rss_kib();
    let samples = load.stop();
    let ended = Instant::now();
    let leftovers = subject.stop();
    let thresholds = Thresholds { max_failures: drill.max_failures, max_p99: drill.max_p99 };
    let report = compute(&Inputs {
        samples: &samples,
        restarts: &records,
        started,
        ended,
        peak_rss_kib,
        leftovers,
        thresholds,
    });
    if let Some(path) = &drill.junit {
        std::fs::write(path, report.to_junit("handover drill"))
            .map_err(|e| Fatal::new(1, format!("cannot write {}: {e}", path.display())))?;
    }
    if drill.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    for verdict in report.verdicts() {
        eprintln!("handover drill: {verdict}");
    }
    Ok(if report.passed() { 0 } else { 1 })
}
