//! The `--log-file "| COMMAND"` logger that dies, and log reopening: no
//! worker dies of it, no request fails, no line is lost or torn, and the
//! supervisor does not spin while no logger runs.
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::control::Raw;
use crate::harness::*;

/// `GET /` on a new connection: the body, or what went wrong.
fn get(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("not a 200 answer: {answer:?}")),
    }
}

/// The supervisor's CPU time so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // After the name: state is 0, utime 11, stime 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// hello, printing a line at each start, behind a log command that exits
/// after five lines; a control socket at `{dir}/ctl`.
fn behind_head_of_five() -> Supervisor {
    let hello = example("hello").display().to_string();
    handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-file", "| head -n 5 >> {dir}/log", "--status-file", "{dir}/status", "--"])
        .args(["sh", "-c"])
        .arg(format!("echo hi; exec {hello} --quiet"))
        .start()
}

/// A log command that exits after five lines: workers that print at start
/// are not killed by SIGPIPE, and every restart succeeds.
#[test]
fn workers_outlive_a_log_command_that_exits() {
    let s = behind_head_of_five();
    s.wait_generations(&[1]);
    let mut control = Raw::connect(&s.path("ctl"));
    for n in 0..6u64 {
        let reply = control.ask("restart");
        assert_eq!(reply["ok"], true, "restart {n}: {reply}\n{}", s.dossier());
    }
    let status = control.ask("status");
    assert_eq!(status["generations"].as_array().unwrap().len(), 1, "{status}");
}

/// hello logs each request before answering it; the log command takes 20
/// lines and exits: every request is still answered.
#[test]
fn requests_are_answered_while_the_log_command_is_down() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-file", "| head -n 20 >> {dir}/log", "--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .args(["--quiet", "--log-requests"])
        .start();
    let pid = s.wait_generations(&[1])[0].1;
    // head writes its lines only when it exits: the address from `status`.
    let status = Raw::connect(&s.path("ctl")).ask("status");
    let addr = status["listeners"][0]["address"].as_str().unwrap();
    let addr = addr.trim_start_matches("tcp ").to_string();
    for n in 1..=60 {
        let body = get(&addr).unwrap_or_else(|e| panic!("request {n}: {e}\n{}", s.dossier()));
        assert!(body.contains(&format!("pid {pid}")), "request {n}: {body:?}");
    }
    assert!(alive(pid), "the worker died\n{}", s.dossier());
}

/// The `listening on tcp ADDR` line of a log file, once it is there.
fn listening(log: &std::path::Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("listening on tcp "))?;
    Some(line.split("listening on tcp ").nth(1)?.split(' ').next()?.to_string())
}

/// With `--log-capture`, a log command that exits after 1000 lines while
/// the worker prints 3000: every line arrives once, whole, in order.
#[test]
fn captured_lines_wait_for_the_next_log_command() {
    let logger = "| n=0; while IFS= read -r l; do printf '%s\\n' \"$l\" >> {dir}/log; \
                  n=$((n+1)); [ $n -lt 1000 ] || exit 0; done";
    let hello = example("hello").display().to_string();
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--log-capture", "--log-file", logger])
        .args(["--status-file", "{dir}/status", "--", "sh", "-c"])
        .arg(format!("seq 1 3000; exec {hello} --quiet"))
        .start();
    let log = s.path("log");
    let text = wait_for(
        "the last line in the log",
        || format!("{}\n--- log:\n{}", s.dossier(), fs::read_to_string(&log).unwrap_or_default()),
        || fs::read_to_string(&log).ok().filter(|t| t.contains("stdout] 3000\n")),
    );
    let mut numbers = Vec::new();
    for line in text.lines() {
        assert!(
            line.starts_with("handover[") || line.starts_with("[gen 1 pid "),
            "torn line {line:?}\n{text}"
        );
        if let Some(number) = line.split("stdout] ").nth(1) {
            numbers.push(number.parse::<u32>().unwrap_or_else(|_| panic!("torn line {line:?}")));
        }
    }
    assert_eq!(numbers, (1..=3000).collect::<Vec<_>>(), "lost, torn or reordered lines");
}

/// A log command that always fails: the supervisor waits for its next
/// start in poll, using next to no CPU.
#[test]
fn a_log_command_that_keeps_failing_costs_no_cpu() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--log-file", "| exit 3"])
        .args(["--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .arg("--quiet")
        .start();
    let pid = s.wait_generations(&[1])[0].1;
    let before = cpu_ticks(s.pid());
    let start = Instant::now();
    // A measurement over a fixed interval, not a wait: spinning costs
    // about 100 ticks per second.
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(s.pid()) - before;
    assert!(used < 30, "{used} ticks of CPU in {:?}\n{}", start.elapsed(), s.dossier());
    assert!(alive(pid) && s.status_file() == [(1, pid)], "{}", s.dossier());
}

/// USR1 with a log file reopens it and leaves hello (which does not
/// handle USR1) alone.
#[test]
fn usr1_reopens_the_log_file_and_does_not_kill_the_server() {
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--log-file", "{dir}/log"])
        .args(["--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .arg("--quiet")
        .start();
    let pid = s.wait_generations(&[1])[0].1;
    let addr = wait_for("the address in the log", || s.dossier(), || listening(&s.path("log")));
    fs::rename(s.path("log"), s.path("log.1")).unwrap();
    s.signal(Signal::SIGUSR1);
    wait_for("the log file reopened", || s.dossier(), || s.path("log").exists().then_some(()));
    for n in 1..=20 {
        let body = get(&addr).unwrap_or_else(|e| panic!("request {n}: {e}\n{}", s.dossier()));
        assert!(body.contains(&format!("pid {pid}")), "request {n}: {body:?}");
    }
    assert!(alive(pid), "the worker died of USR1\n{}", s.dossier());
    assert_eq!(s.status_file(), [(1, pid)]);
}

/// The README's logrotate recipe under load: the log is renamed and
/// `handover reopen` asked for (or USR1 sent), five times; no request
/// fails and every request's line is in one of the files, once.
#[test]
fn logrotate_under_load_loses_no_request_and_no_line() {
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-capture", "--log-file", "{dir}/log", "--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .args(["--quiet", "--log-requests"])
        .start();
    s.wait_generations(&[1]);
    let addr = wait_for("the address in the log", || s.dossier(), || listening(&s.path("log")));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && ok + (failed.len() as u64) < 20_000
                && start.elapsed() < Duration::from_secs(30)
            {
                match get(&addr) {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        })
    };
    let reopen = || {
        let out = std::process::Command::new(binary())
            .args(["reopen", "--control"])
            .arg(s.path("ctl"))
            .output()
            .unwrap();
        assert!(out.status.success(), "handover reopen: {out:?}");
    };
    for n in 1..=5 {
        let served = requests_logged(&s.path("log"));
        wait_for(
            "requests in the current log",
            || s.dossier(),
            || (requests_logged(&s.path("log")).len() > served.len() + 500).then_some(()),
        );
        fs::rename(s.path("log"), s.path(&format!("log.{n}"))).unwrap();
        if n % 2 == 0 {
            s.signal(Signal::SIGUSR1);
            wait_for("the log file reopened", || s.dossier(), || s.path("log").exists().then_some(()));
        } else {
            reopen();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = client.join().unwrap();
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for name in ["log", "log.1", "log.2", "log.3", "log.4", "log.5"] {
        let requests = requests_logged(&s.path(name));
        assert!(!requests.is_empty() || name == "log", "no request in {name}");
        for number in requests {
            *seen.entry(number).or_default() += 1;
        }
    }
    let numbers: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(numbers, (1..=ok).collect::<Vec<_>>(), "every answered request logged");
    assert!(seen.values().all(|&n| n == 1), "a request logged twice");
    eprintln!("{ok} requests across five reopened logs, none failed, every line kept");
}

/// The request numbers of `hello: request N ...` lines in a log file.
fn requests_logged(path: &std::path::Path) -> Vec<u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split("hello: request ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// The pipe `fd` of process `pid` leads to (`pipe:[INODE]`).
fn pipe_of(pid: i32, fd: i32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap().to_string_lossy().into_owned()
}

/// How many of `pid`'s fds are read ends of `pipe`.
fn read_ends(pid: i32, pipe: &str) -> usize {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten();
    let of_pipe = fds.filter(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == pipe));
    let flags = |name: &std::ffi::OsStr| {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", name.to_string_lossy())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim().to_string();
        u32::from_str_radix(&flags, 8).unwrap()
    };
    of_pipe.filter(|e| flags(&e.file_name()) & 3 == 0).count()
}

/// The log pipe's read end is carried across upgrades and adopted once:
/// the log command, which exits after five lines, is started again on the
/// same pipe after each upgrade, and new workers never get SIGPIPE.
#[test]
fn the_log_pipe_is_carried_across_upgrades() {
    let s = behind_head_of_five();
    s.wait_generations(&[1]);
    let pipe = pipe_of(s.pid(), 1);
    assert!(pipe.starts_with("pipe:"), "{pipe}");
    assert_eq!(read_ends(s.pid(), &pipe), 1, "the supervisor keeps one read end");
    let mut control = Raw::connect(&s.path("ctl"));
    for n in 1..=3 {
        control.send(r#"{"command":"upgrade","wait":true}"#);
        let reply = control.reply();
        assert_eq!(reply["ok"], true, "upgrade {n}: {reply}");
        assert_eq!(pipe_of(s.pid(), 1), pipe, "the same pipe after upgrade {n}");
        assert_eq!(read_ends(s.pid(), &pipe), 1, "one read end after upgrade {n}");
        for _ in 0..2 {
            let reply = control.ask("restart");
            assert_eq!(reply["ok"], true, "restart after upgrade {n}: {reply}\n{}", s.dossier());
        }
    }
}

/// `--daemonize` with a log command: once the foreground process has
/// exited, nothing holds the caller's output open (an ssh session or a
/// `$(...)` would wait for it), and the daemon logs through the command.
#[test]
fn a_daemon_leaves_the_callers_output_to_its_log_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let mut child = std::process::Command::new(binary())
        .args(["--daemonize", "--port", "127.0.0.1:0", "--pid-file"])
        .arg(path("pid"))
        .arg("--log-file")
        .arg(format!("| cat >> {}", path("log").display()))
        .arg("--")
        .arg(example("hello"))
        .arg("--quiet")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = err.read_to_string(&mut text);
        let _ = done.send(text);
    });
    assert!(child.wait().unwrap().success());
    let daemon: i32 = wait_for("the daemon's pid file", String::new, || {
        fs::read_to_string(path("pid")).ok()?.trim().parse().ok()
    });
    let ended = closed.recv_timeout(Duration::from_secs(10));
    let logged = wait_for(
        "the daemon's lines through the log command",
        || fs::read_to_string(path("log")).unwrap_or_default(),
        || fs::read_to_string(path("log")).ok().filter(|t| t.contains("starting new worker")),
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    wait_for("the daemon to exit", || logged.clone(), || (!alive(daemon)).then_some(()));
    assert_eq!(ended.as_deref(), Ok(""), "the caller's output was held open after the foreground exited");
}

/// A log file that cannot be opened again: `handover reopen` fails with
/// one line saying why, and the supervisor goes on writing to the old one.
#[test]
fn a_reopen_that_fails_keeps_the_old_log() {
    let b = handover();
    fs::create_dir(b.dir().join("logs")).unwrap();
    let s = b
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--log-file", "{dir}/logs/app.log", "--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .arg("--quiet")
        .start();
    s.wait_generations(&[1]);
    fs::rename(s.path("logs"), s.path("rotated")).unwrap();
    let out = std::process::Command::new(binary())
        .args(["reopen", "--control"])
        .arg(s.path("ctl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.starts_with("handover: cannot open log file ") && stderr.lines().count() == 1, "{stderr}");
    let before = fs::read_to_string(s.path("rotated/app.log")).unwrap();
    let mut control = Raw::connect(&s.path("ctl"));
    assert_eq!(control.ask("restart")["ok"], true);
    wait_for(
        "more lines in the old log",
        || format!("{}\n--- old log:\n{before}", s.dossier()),
        || fs::read_to_string(s.path("rotated/app.log")).ok().filter(|t| t.len() > before.len()).map(drop),
    );
    assert!(!s.path("logs").exists());
}
