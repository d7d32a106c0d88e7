//! `handover metrics` and `--metrics-listen`: the page passes Prometheus's
//! own checker, counts restarts, survives `handover upgrade`, and the HTTP
//! side refuses oversized and slow requests without blocking anything.
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::control::Raw;
use crate::harness::*;
use crate::upgrade::{client, controlled, upgrade};

/// `handover metrics`: the page.
fn metrics(s: &Supervisor) -> String {
    let o = client(s, &["metrics"]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    o.stdout
}

/// The value of the sample `name` (with its labels, as written), if there.
fn sample_of(page: &str, name: &str) -> Option<f64> {
    let line = page.lines().find(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name))?;
    line.rsplit_once(' ').unwrap().1.parse().ok()
}

fn sample(page: &str, name: &str) -> f64 {
    sample_of(page, name).unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

fn restart(s: &Supervisor) {
    let reply = Raw::connect(&s.path("ctl")).ask("restart");
    assert_eq!(reply["ok"], true, "{reply}");
}

/// promtool's verdict on the page: its exit status and what it said.
fn promtool(page: &str) -> Option<(bool, String)> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !can_run("promtool (Debian's prometheus package)", found) {
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), said))
}

#[test]
fn the_page_passes_promtool_and_counts_restarts() {
    let s = controlled(&["--workers", "2"], &["--notify"]);
    s.wait_generations(&[1, 1]);
    restart(&s);
    restart(&s);
    // The last old generation's exits are counted as they are reaped.
    let page = wait_for(
        "the old workers' exits counted",
        || s.dossier(),
        || {
            let page = metrics(&s);
            (sample_of(&page, "handover_worker_exits_by_code_total{code=\"0\"}") == Some(4.0)).then_some(page)
        },
    );
    assert_eq!(sample(&page, "handover_generation"), 3.0);
    assert_eq!(sample(&page, "handover_restarts_total"), 2.0);
    assert_eq!(sample(&page, "handover_restart_failures_total"), 0.0);
    assert_eq!(sample(&page, "handover_generations{state=\"serving\"}"), 1.0);
    assert_eq!(sample(&page, "handover_generations{state=\"draining\"}"), 0.0);
    assert_eq!(sample(&page, "handover_readiness_latency_seconds_count"), 3.0);
    assert_eq!(sample(&page, "handover_restart_duration_seconds_count"), 2.0);
    assert_eq!(sample(&page, "handover_last_restart_success"), 1.0);
    assert!(sample(&page, "handover_uptime_seconds") > 0.0);
    if let Some((ok, said)) = promtool(&page) {
        assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}\n{page}");
    }
}

#[test]
fn counters_survive_an_upgrade() {
    let s = controlled(&["--workers", "2"], &["--notify"]);
    s.wait_generations(&[1, 1]);
    restart(&s);
    wait_for(
        "the old workers' exits counted",
        || s.dossier(),
        || {
            let page = metrics(&s);
            (sample_of(&page, "handover_worker_exits_by_code_total{code=\"0\"}") == Some(2.0)).then_some(())
        },
    );
    upgrade(&s);
    let page = metrics(&s);
    assert_eq!(sample(&page, "handover_worker_exits_by_code_total{code=\"0\"}"), 2.0, "{page}");
    assert_eq!(sample(&page, "handover_readiness_latency_seconds_count"), 2.0, "{page}");
    assert_eq!(sample(&page, "handover_restart_duration_seconds_count"), 1.0, "{page}");
    assert_eq!(sample(&page, "handover_restarts_total"), 1.0);
    assert_eq!(sample(&page, "handover_upgrades_total{outcome=\"done\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "handover_last_restart_success"), 1.0);
}

/// An HTTP request on a new connection; the whole answer.
fn http(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn metrics_listen_serves_get_metrics_and_refuses_what_it_should_without_blocking() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let s = controlled(&["--metrics-listen", &addr], &["--notify"]);
    s.wait_generations(&[1]);
    // Slow clients that say nothing fill the table (and more).
    let silent: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let asked = Instant::now();
    let answer = http(&addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let took = asked.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
    assert!(answer.contains("\nhandover_generation 1\n"), "{answer}");
    assert_eq!(Raw::connect(&s.path("ctl")).ask("status")["ok"], true);
    eprintln!("GET /metrics with 12 silent connections open took {took:?}");
    let huge = [&b"GET /metrics HTTP/1.1\r\nX: "[..], &[b'a'; 16 * 1024], b"\r\n\r\n"].concat();
    assert!(http(&addr, &huge).starts_with("HTTP/1.1 431 "));
    assert!(http(&addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(http(&addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    // A silent client is closed at its deadline.
    let mut last = silent.into_iter().last().unwrap();
    last.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 16];
    let read = last.read(&mut buf);
    // Closed: its end (or a reset, should the close race the client's read).
    let closed =
        matches!(&read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionReset);
    assert!(closed, "a silent connection was left open: {read:?}");
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_real_prometheus_scrapes_metrics_listen() {
    let found = Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success());
    if !can_run("prometheus (Debian's prometheus package)", found) {
        return;
    }
    let target = format!("127.0.0.1:{}", free_port());
    let s = controlled(&["--metrics-listen", &target], &["--notify"]);
    s.wait_generations(&[1]);
    restart(&s);
    let config = s.path("prometheus.yml");
    let yml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: handover\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(&config, yml).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(s.path("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", s.path("tsdb").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let dossier = || {
        format!(
            "{}\n--- prometheus:\n{}",
            s.dossier(),
            std::fs::read_to_string(s.path("prometheus.log")).unwrap_or_default()
        )
    };
    // What Prometheus stored from its scrapes, through its own query API.
    let value = wait_for("Prometheus to have scraped handover_restarts_total", dossier, || {
        let mut stream = TcpStream::connect(&web).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let request = "GET /api/v1/query?query=handover_restarts_total HTTP/1.0\r\nHost: x\r\n\r\n";
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n")?.1).ok()?;
        let result = body["data"]["result"].as_array()?.first()?.clone();
        Some(result["value"][1].as_str()?.to_string())
    });
    assert_eq!(value, "1");
}

#[test]
fn a_bad_or_taken_metrics_address_is_one_line_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let bad = crate::errors::run_in(
        dir.path(),
        &["--metrics-listen", "nowhere", "--port", "127.0.0.1:0", "--", "true"],
    );
    assert_eq!(bad.code, Some(2), "{}", bad.dossier());
    assert_eq!(
        bad.stderr_lines(),
        ["handover: --metrics-listen nowhere: not an address such as 127.0.0.1:9100"],
        "{}",
        bad.dossier()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = crate::errors::run_in(
        dir.path(),
        &["--metrics-listen", &addr, "--port", "127.0.0.1:0", "--", "true"],
    );
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    let line = format!("cannot listen for metrics on {addr}: ");
    let lines = o.stderr_lines();
    assert!(
        lines.len() == 1
            && lines[0].contains(&line)
            && lines[0].ends_with("choose another --metrics-listen address"),
        "{}",
        o.dossier()
    );
}

/// The inode of the socket listening on 127.0.0.1:`port` (/proc/net/tcp).
fn listening_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields[9].to_string())
    })
}

#[test]
fn the_metrics_socket_is_carried_across_an_upgrade_not_bound_again() {
    // Bound again, the address was free for anyone while the images changed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let s = controlled(&["--metrics-listen", &addr], &["--notify"]);
    s.wait_generations(&[1]);
    let before = listening_inode(port).expect("a listening socket");
    upgrade(&s);
    assert_eq!(listening_inode(port), Some(before), "{}", s.dossier());
    assert!(http(&addr, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
}
