use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use super::*;

/// An HTTP server on a free port; the first connection (when `close_first`)
/// answers once and closes, every other one answers all its requests.
fn server(close_first: bool) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            thread::spawn(move || serve(stream.unwrap(), close_first && i == 0));
        }
    });
    Target::Tcp(addr)
}

fn serve(mut s: TcpStream, once: bool) {
    let mut buf = [0u8; 4096];
    let mut head = Vec::new();
    while let Ok(n @ 1..) = s.read(&mut buf) {
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.drain(..end + 4);
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n").is_err() || once {
                return;
            }
        }
    }
}

fn plan(targets: Vec<Target>, connections: usize, requests: Option<u64>, duration: Option<Duration>) -> Plan {
    let mode = Mode::Http { path: "/".into(), expect_status: 200, keepalive: true };
    Plan {
        targets,
        mode,
        connections,
        requests,
        duration,
        timeout: Duration::from_secs(5),
        rate: None,
        max_samples: MAX_SAMPLES,
    }
}

/// Polls until every thread has reached its bound (a watchdog: 20 s).
fn until_finished(load: &Load) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !load.finished() {
        assert!(Instant::now() < deadline, "the load did not finish");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn bounded_by_requests_over_every_target() {
    let load = Load::start(plan(vec![server(false), server(false)], 3, Some(50), None)).unwrap();
    until_finished(&load);
    let counters = load.counters();
    assert_eq!((counters.done(), counters.failures(), counters.retried()), (50, 0, 0));
    let samples = load.stop();
    assert_eq!(samples.len(), 50);
    assert_eq!(counters.done(), 50, "the counters outlive the load");
    assert!(samples.iter().all(|s| s.outcome == Outcome::Ok && !s.retried));
    assert!(samples.iter().any(|s| s.target == 0) && samples.iter().any(|s| s.target == 1));
}

#[test]
fn past_the_sample_cap_requests_are_counted_not_kept() {
    let mut plan = plan(vec![server(false)], 2, Some(50), None);
    plan.max_samples = 10;
    let load = Load::start(plan).unwrap();
    until_finished(&load);
    assert_eq!(load.counters().done(), 50);
    let (samples, unsampled) = load.stop_all();
    assert_eq!((samples.len(), unsampled.requests, unsampled.ok, unsampled.retried), (10, 40, 40, 0));
    assert!(!unsampled.beats.is_empty() && unsampled.beats.len() <= 40);
    assert!(unsampled.beats.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn a_paced_load_sends_on_schedule_and_counts_latency_from_it() {
    let target = server(false);
    let mut plan = plan(vec![target], 2, Some(10), None);
    plan.rate = Some(1000);
    let load = Load::start(plan).unwrap();
    until_finished(&load);
    let mut starts: Vec<Instant> = load.stop().iter().map(|s| s.started).collect();
    starts.sort();
    assert_eq!(starts.len(), 10);
    // Two connections, each every 2 ms, half a period apart: one request
    // a millisecond, each counted from when it was due. Which connection
    // takes the last tickets depends on scheduling, so the starts are
    // distinct whole milliseconds from the first, not always 0..10.
    let offsets: Vec<Duration> = starts.iter().map(|&s| s - starts[0]).collect();
    assert!(offsets.iter().all(|d| d.subsec_nanos() % 1_000_000 == 0), "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
}

#[test]
fn bounded_by_duration() {
    let duration = Duration::from_millis(100);
    let load = Load::start(plan(vec![server(false)], 2, None, Some(duration))).unwrap();
    let deadline = Instant::now() + duration;
    until_finished(&load);
    let samples = load.stop();
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| s.started < deadline));
}

#[test]
fn stop_ends_an_unbounded_load() {
    let load = Load::start(plan(vec![server(false)], 2, None, None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.counters().done() < 10 {
        assert!(Instant::now() < deadline, "no request completed");
        thread::yield_now();
    }
    assert!(!load.finished());
    assert!(load.stop().len() >= 10);
}

#[test]
fn failures_and_retries_are_counted() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let load = Load::start(plan(vec![Target::Tcp(closed)], 2, Some(5), None)).unwrap();
    until_finished(&load);
    assert_eq!(load.counters().failures(), 5);
    assert!(load.stop().iter().all(|s| s.outcome == Outcome::Refused));

    let load = Load::start(plan(vec![server(true)], 1, Some(3), None)).unwrap();
    until_finished(&load);
    let counters = load.counters();
    assert_eq!((counters.failures(), counters.retried()), (0, 1));
    let samples = load.stop();
    assert_eq!(samples.iter().filter(|s| s.retried).count(), 1);
}

#[test]
fn no_targets_no_load() {
    let load = Load::start(plan(vec![], 4, Some(10), None)).unwrap();
    assert!(load.finished());
    assert!(load.stop().is_empty());
}
