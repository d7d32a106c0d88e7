//! Running the real binary in a per-test temp dir, waiting on facts.
//!
//! Every wait has a deadline and, when it passes, panics with a dossier:
//! the command, its stderr so far, the journal and the status file. A
//! `Supervisor` is stopped on drop (TERM, then KILL of it and of every
//! worker group it logged), so no process outlives its test.
//!
//! What the supervisor did is waited on as its event records (run it with
//! `--log-format json`; `wait_event`, `count_events`), not as the wording
//! of its lines: `wait_line` is for the lines no event carries and for
//! tests of the text itself (start_server's lines, `--log-capture`'s).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Generous: a loaded CI machine is slow, and a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_handover"))
}

/// An example program, built by `cargo test` next to the binary.
pub fn example(name: &str) -> PathBuf {
    let path = binary().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} missing: run the tests with `cargo test`", path.display());
    path
}

/// Poll `fact` until it holds; panic with `what` and `dossier()` after DEADLINE.
pub fn wait_for<T>(what: &str, dossier: impl Fn() -> String, mut fact: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = fact() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}\n{}", dossier());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    /// Streams (stdout, stderr) that reached end-of-file.
    closed: usize,
}

pub struct Supervisor {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    stderr: Arc<(Mutex<Lines>, Condvar)>,
    status: Option<ExitStatus>,
    /// The pids in its output are ours (not those of another pid namespace).
    own_pids: bool,
}

pub struct Builder {
    program: PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    own_pids: bool,
    /// The supervisor's working directory; the temp dir unless set.
    cwd: Option<PathBuf>,
}

impl Builder {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// `{dir}` in any later argument is replaced by the temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Pids it prints belong to another pid namespace: never signal them.
    pub fn in_pid_namespace(mut self) -> Self {
        self.own_pids = false;
        self
    }

    /// Start the supervisor in `dir` instead of the temp dir (`{dir}` still
    /// names the temp dir).
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Run under another name (start_server compatibility).
    pub fn program(mut self, program: PathBuf) -> Self {
        self.program = program;
        self
    }

    pub fn start(self) -> Supervisor {
        let dir_text = self.dir.path().to_string_lossy().into_owned();
        let args: Vec<String> = self.args.iter().map(|a| a.replace("{dir}", &dir_text)).collect();
        let mut command = Command::new(&self.program);
        command
            .args(&args)
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn handover");
        let stderr: Arc<(Mutex<Lines>, Condvar)> = Arc::default();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let shared = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (lock, cond) = &*shared;
                    lock.lock().unwrap().lines.push(line);
                    cond.notify_all();
                }
                let (lock, cond) = &*shared;
                lock.lock().unwrap().closed += 1;
                cond.notify_all();
            });
        }
        let mut shown = vec![self.program.display().to_string()];
        shown.extend(args);
        Supervisor {
            dir: self.dir,
            child: Some(child),
            args: shown,
            stderr,
            status: None,
            own_pids: self.own_pids,
        }
    }
}

/// Whether a test that needs `what` can run here; it cannot is a skip,
/// except under CI, where it fails: CI must provide what its tests need.
pub fn can_run(what: &str, ok: bool) -> bool {
    assert!(ok || std::env::var_os("CI").is_none(), "this test needs {what}, and CI must provide it");
    if !ok {
        eprintln!("skipped: needs {what}");
    }
    ok
}

/// Root and unshare(1), for the tests in their own namespaces.
pub fn root_and_unshare() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let unshare = std::process::Command::new("unshare").arg("--help").output().is_ok();
    can_run("root and unshare(1)", root && unshare)
}

/// `systemd-socket-activate`, a real socket-activation peer, or `None`
/// where it is not installed (a failure under CI).
pub fn socket_activate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-socket-activate"))
        .find(|candidate| candidate.is_file());
    can_run("systemd-socket-activate (apt-get install systemd)", found.is_some());
    found
}

/// A handover command line in a fresh temp dir.
pub fn handover() -> Builder {
    Builder {
        program: binary(),
        args: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
        env: Vec::new(),
        own_pids: true,
        cwd: None,
    }
}

/// handover running `worker` with `worker_args`, journal at `{dir}/journal`.
pub fn with_worker(options: &[&str], worker_args: &[&str]) -> Supervisor {
    handover()
        .args(options)
        .args(["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal"])
        .args(worker_args)
        .start()
}

impl Supervisor {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn lines(&self) -> Vec<String> {
        self.stderr.0.lock().unwrap().lines.clone()
    }

    pub fn journal(&self) -> Vec<String> {
        read_lines(&self.path("journal"))
    }

    pub fn status_file(&self) -> Vec<(u64, i32)> {
        std::fs::read_to_string(self.path("status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(g, p)| (g.parse().unwrap(), p.parse().unwrap()))
            .collect()
    }

    pub fn dossier(&self) -> String {
        format!(
            "--- command: {}\n--- exit: {:?}\n--- output:\n{}\n--- journal:\n{}\n--- status file:\n{:?}",
            self.args.join(" "),
            self.status,
            self.lines().join("\n"),
            self.journal().join("\n"),
            std::fs::read_to_string(self.path("status")).ok()
        )
    }

    /// Wait for an output line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_line_after(0, needle)
    }

    /// Like `wait_line`, ignoring the first `skip` lines; returns the line.
    pub fn wait_line_after(&self, skip: usize, needle: &str) -> String {
        let what = format!("an output line with {needle:?}");
        self.wait_output(&what, |lines| lines.iter().skip(skip).find(|l| l.contains(needle)).cloned())
    }

    /// Wait until `fact` holds of the output lines so far (woken by every
    /// new line); panic with `what` once the output ended or at DEADLINE.
    fn wait_output<T>(&self, what: &str, mut fact: impl FnMut(&[String]) -> Option<T>) -> T {
        let (lock, cond) = &*self.stderr;
        let start = Instant::now();
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(value) = fact(&lines.lines) {
                return value;
            }
            let left = DEADLINE.checked_sub(start.elapsed());
            if lines.closed == 2 || left.is_none() {
                drop(lines);
                panic!("timed out waiting for {what}\n{}", self.dossier());
            }
            lines = cond.wait_timeout(lines, left.unwrap()).unwrap().0;
        }
    }

    /// The supervisor's event records so far, read from its
    /// `--log-format json` lines (start it with that option): each as
    /// the stream's record (`handover events`), `event`, `seq`,
    /// `generation`, `pids`, the kind's fields and `message`. Lines that
    /// are no event (`"event":"line"`) are not records.
    pub fn events(&self) -> Vec<serde_json::Value> {
        records(&self.stderr.0.lock().unwrap().lines)
    }

    /// Wait for an event record of `kind` for which `fact` holds; returns it.
    pub fn wait_event(&self, kind: &str, fact: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let what = format!("a {kind:?} event record (is the supervisor run with --log-format json?)");
        self.wait_output(&what, |lines| records(lines).into_iter().find(|r| r["event"] == kind && fact(r)))
    }

    /// How many event records of `kind` so far `fact` holds for.
    pub fn count_events(&self, kind: &str, fact: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.events().iter().filter(|r| r["event"] == kind && fact(r)).count()
    }

    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Wait for a journal line with all `parts`; returns it.
    pub fn wait_journal(&self, parts: &[&str]) -> String {
        wait_for(
            &format!("journal line with {parts:?}"),
            || self.dossier(),
            || self.journal().into_iter().find(|l| parts.iter().all(|p| l.split(' ').any(|w| w == *p))),
        )
    }

    /// Wait until the status file lists exactly these generations.
    pub fn wait_generations(&self, generations: &[u64]) -> Vec<(u64, i32)> {
        wait_for(
            &format!("status file with generations {generations:?}"),
            || self.dossier(),
            || {
                let status = self.status_file();
                let gens: Vec<u64> = status.iter().map(|(g, _)| *g).collect();
                (gens == generations).then_some(status)
            },
        )
    }

    /// The first listener's real address, from `listening on tcp ADDR as fd N`.
    pub fn tcp_addr(&self) -> String {
        let line = self.wait_line("listening on tcp ");
        line.split("listening on tcp ").nth(1).unwrap().split(' ').next().unwrap().to_string()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Wait for the supervisor to exit; returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for the supervisor to exit\n{}", self.dossier());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.status = Some(status);
        self.wait_output_closed();
        status
    }

    /// Its last lines are read: both pipes at end of file (bounded, for a
    /// process that left a child holding them; the test checks for those).
    fn wait_output_closed(&self) {
        let (lock, cond) = &*self.stderr;
        let start = Instant::now();
        let mut lines = lock.lock().unwrap();
        while lines.closed < 2 {
            let Some(left) = DEADLINE.checked_sub(start.elapsed()) else { return };
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Pids of every worker the supervisor said it started (its `spawned`
    /// records under `--log-format json`, its text lines otherwise).
    pub fn worker_pids(&self) -> Vec<i32> {
        let lines = self.lines();
        let said = (lines.iter())
            .filter_map(|l| l.split("starting new worker ").nth(1))
            .filter_map(|p| p.trim().parse().ok());
        let spawned = records(&lines).into_iter().filter(|r| r["event"] == "spawned");
        let recorded = spawned.flat_map(|r| pids_of(&r, "pids"));
        said.chain(recorded).collect()
    }

    /// Ask for the worker's line over TCP: `gen=G pid=P`.
    pub fn ask(&self, addr: &str) -> std::io::Result<String> {
        ask(addr)
    }
}

/// The event records among `--log-format json` output lines (see
/// `Supervisor::events`).
fn records(lines: &[String]) -> Vec<serde_json::Value> {
    let parsed = lines.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let ours = parsed.filter(|r| r["source"] == "handover" && r["event"] != "line");
    ours.map(|line| {
        let mut record = line["fields"].clone();
        if let Some(map) = record.as_object_mut() {
            map.insert("event".into(), line["event"].clone());
            map.insert("message".into(), line["message"].clone());
        }
        record
    })
    .collect()
}

/// A record's list of pids `field` (`pids`, `old_pids`).
pub fn pids_of(record: &serde_json::Value, field: &str) -> Vec<i32> {
    let pids = record[field].as_array().map(Vec::as_slice).unwrap_or_default();
    pids.iter().filter_map(|p| p.as_i64()).map(|p| p as i32).collect()
}

/// Bounded client loop: connects, reads the worker's line, until told to
/// stop, 50,000 requests or 60 s. Returns (generation seen per request, errors).
pub fn load(
    addr: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> JoinHandle<(Vec<u64>, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut seen, mut errors) = (Vec::new(), Vec::new());
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst)
            && seen.len() + errors.len() < 50_000
            && start.elapsed() < Duration::from_secs(60)
        {
            match ask(&addr) {
                Ok(answer) => match generation_of(&answer) {
                    Some(g) => seen.push(g),
                    None => errors.push(format!("short answer {answer:?}")),
                },
                Err(e) => errors.push(format!("{:?}: {e}", e.kind())),
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
        (seen, errors)
    })
}

/// The probe example's report (`--out {dir}/probe.json`) of generation
/// `generation`; each generation replaces the file.
pub fn probe_report(s: &Supervisor, generation: u64) -> serde_json::Value {
    wait_for(
        &format!("the probe report of generation {generation}"),
        || s.dossier(),
        || {
            let text = std::fs::read_to_string(s.path("probe.json")).ok()?;
            let report: serde_json::Value = serde_json::from_str(&text).ok()?;
            (report["generation"] == generation.to_string().as_str()).then_some(report)
        },
    )
}

pub fn ask(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let _ = stream.flush();
    Ok(answer.trim().to_string())
}

/// `gen=G` out of a worker's answer.
pub fn generation_of(answer: &str) -> Option<u64> {
    answer.split(' ').find_map(|w| w.strip_prefix("gen=")).and_then(|g| g.parse().ok())
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

pub fn alive(pid: i32) -> bool {
    // A zombie is gone for our purposes; `kill 0` would still succeed on it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let workers = if self.own_pids { self.worker_pids() } else { Vec::new() };
        if let Some(mut child) = self.child.take()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in &workers {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        // Every process this test knows of (the supervisor's workers, and any
        // pid a journal names) must be gone: nothing outlives its test.
        let mut known = workers;
        if self.own_pids {
            let journal = self.journal();
            let words = journal.iter().flat_map(|l| l.split(' '));
            known.extend(words.filter_map(|w| w.strip_prefix("pid=")?.parse::<i32>().ok()));
        }
        let start = Instant::now();
        let left = loop {
            let left: Vec<i32> = known.iter().copied().filter(|&p| alive(p)).collect();
            if left.is_empty() || start.elapsed() > DEADLINE {
                break left;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Ended either way (a failed test leaves nothing behind either).
        for &pid in &left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("processes outlived the test: {left:?}\n{}", self.dossier());
        }
    }
}

/// Every pid in /proc now.
pub fn all_pids() -> Vec<i32> {
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    entries.filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// A process's parent pid, from `/proc/PID/stat`.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat_field(pid, 1)
}

/// A process's group, from `/proc/PID/stat`.
pub fn group_of(pid: i32) -> Option<i32> {
    stat_field(pid, 2)
}

/// Field `index` after the command name (0: state) of `/proc/PID/stat`.
fn stat_field(pid: i32, index: usize) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().nth(index)?.parse().ok()
}

/// A process's command line, arguments separated by spaces.
pub fn cmdline_of(pid: i32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}
