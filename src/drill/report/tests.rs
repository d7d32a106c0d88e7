use super::*;

pub(super) fn t(base: Instant, ms: u64) -> Instant {
    base + Duration::from_millis(ms)
}

pub(super) fn sample(base: Instant, start_ms: u64, latency_ms: u64, outcome: Outcome) -> Sample {
    let latency = Duration::from_millis(latency_ms);
    Sample { started: t(base, start_ms), latency, outcome, target: 0, retried: false }
}

pub(super) fn restart(base: Instant, number: usize, requested_ms: u64, answered_ms: u64) -> RestartRecord {
    RestartRecord {
        number,
        requested_at: t(base, requested_ms),
        ok: true,
        generation: Some(number as u64 + 1),
        ready_after: Some(Duration::from_micros(35_250)),
        old_gone_after: Some(Duration::from_millis(120)),
        answered_at: t(base, answered_ms),
        error: None,
        findings: vec![],
    }
}

/// Upgrade `number` to `/bin/handover`, 12.5 ms by the supervisor's
/// measure, keeping supervisor 100 and worker 101 of generation 1.
pub(super) fn upgrade(base: Instant, number: usize, requested_ms: u64, answered_ms: u64) -> UpgradeRecord {
    let snapshot = Snapshot { pid: 100, workers: vec![(1, 101, false)] };
    UpgradeRecord {
        number,
        binary: "/bin/handover".into(),
        requested_at: t(base, requested_ms),
        answered_at: t(base, answered_ms),
        ok: true,
        took: Some(Duration::from_micros(12_500)),
        versions: Some(("0.1.0".into(), "0.1.0".into())),
        error: None,
        before: Some(snapshot.clone()),
        after: Some(snapshot),
        child: 100,
        child_alive: true,
    }
}

pub(super) fn inputs(base: Instant, samples: &[Sample], restarts: &[RestartRecord]) -> Inputs {
    let ended = samples.iter().map(Sample::ended).max().unwrap_or(base);
    Inputs {
        samples: samples.to_vec(),
        unsampled: Default::default(),
        connections: 1,
        asked: (restarts.len(), 0),
        cut_short: None,
        startup: None,
        first_generation: None,
        kills: vec![],
        stop_signal: "TERM".into(),
        series: false,
        restarts: restarts.to_vec(),
        upgrades: vec![],
        upgrade_log: None,
        request_lines: None,
        started: Some(base),
        ended: Some(ended),
        load_cpu: Some(Duration::from_millis(42)),
        supervisor: "handover".into(),
        peak_rss_kib: Some(3 * 1024 + 512),
        private_kib: Some(256),
        idle: Some(Idle { seconds: 5.0, cpu_ms: 0.0, wakeups: 0 }),
        leftovers: vec![],
        thresholds: Thresholds::default(),
    }
}

/// One request a millisecond, each taking 1 ms, from `from` to `to`.
pub(super) fn steady(base: Instant, from: u64, to: u64) -> Vec<Sample> {
    (from..to).map(|i| sample(base, i, 1, Outcome::Ok)).collect()
}

#[test]
fn percentiles_are_nearest_rank_over_successes() {
    let base = Instant::now();
    let mut samples: Vec<Sample> = (1..=100).map(|i| sample(base, 0, i, Outcome::Ok)).collect();
    samples.push(sample(base, 0, 5000, Outcome::Timeout));
    let report = compute(&inputs(base, &samples, &[]));
    let want = Latency { p50_ms: Some(50.0), p90_ms: Some(90.0), p99_ms: Some(99.0), max_ms: Some(100.0) };
    assert_eq!(report.latency, want);
    assert_eq!((report.requests, report.ok, report.failures.timeout), (101, 100, 1));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&[7], 99.0), Some(7));
}

#[test]
fn a_restart_window_has_its_requests_failures_latency_and_accept_gap() {
    let base = Instant::now();
    // Completions every ms from 1 to 1000, but none from 501 to 529.
    let mut samples = steady(base, 0, 500);
    samples.extend(steady(base, 529, 1000));
    samples.push(sample(base, 505, 20, Outcome::Reset));
    samples.push(sample(base, 510, 19, Outcome::Ok)); // ends at 529: the gap is 500 -> 529
    let restarts = [restart(base, 1, 510, 515), restart(base, 2, 2000, 2100)];
    let report = compute(&inputs(base, &samples, &restarts));
    let r = &report.restarts[0];
    assert_eq!((r.window.window_from_ms, r.window.window_to_ms, r.answered_after_ms), (410.0, 1015.0, 5.0));
    // Overlapping [410, 1015]: starts 409..=999 (the one at 409 ends at 410), plus the two extra.
    assert_eq!((r.window.requests, r.window.failures.reset, r.window.failures.total), (591 - 29 + 2, 1, 1));
    assert_eq!(
        (r.window.latency_max_ms, r.window.latency_p99_ms, r.window.accept_gap_ms),
        (Some(19.0), Some(1.0), Some(29.0))
    );
    assert_eq!((r.ready_after_ms, r.old_gone_after_ms), (Some(35.25), Some(120.0)));
    let r2 = &report.restarts[1];
    assert_eq!((r2.window.requests, r2.window.accept_gap_ms, r2.window.latency_max_ms), (0, None, None));
    assert_eq!(report.accept_gap, AcceptGap { max_ms: Some(29.0), outside_restarts_ms: Some(1.0) });
    assert_eq!(report.rate_per_s, (report.requests as f64 / 1.0).round());
}

#[test]
fn a_stall_counts_until_the_load_stopped() {
    let base = Instant::now();
    let mut samples = steady(base, 0, 800);
    samples.extend((800..1500).step_by(10).map(|i| sample(base, i, 1, Outcome::Refused)));
    let report = compute(&inputs(base, &samples, &[restart(base, 1, 700, 750)]));
    assert_eq!(report.restarts[0].window.accept_gap_ms, Some(1491.0 - 800.0));
    assert_eq!(report.accept_gap.max_ms, Some(691.0));
}

#[test]
fn json_shape() {
    let base = Instant::now();
    let samples = steady(base, 0, 10);
    let json = compute(&inputs(base, &samples, &[restart(base, 1, 2, 5)])).to_json();
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "accept_gap",
            "connections",
            "duration_s",
            "failures",
            "idle",
            "killed_at_stop",
            "latency",
            "leftovers",
            "load_cpu_us_per_request",
            "max_failures",
            "max_p99_ms",
            "max_retried_per_connection_restart",
            "max_retried_percent",
            "ok",
            "passed",
            "peak_rss_kib",
            "private_kib",
            "rate_per_s",
            "request_lines",
            "requests",
            "restarts",
            "restarts_asked",
            "retried",
            "retried_per_connection_restart",
            "retried_percent",
            "startup_error",
            "supervisor",
            "unsampled",
            "upgrades",
            "upgrades_asked",
            "verdicts",
        ]
    );
    let none = serde_json::json!({
        "count": 0,
        "failed": 0,
        "took_ms": {"min": null, "median": null, "max": null},
        "round_trip_ms": {"min": null, "median": null, "max": null},
        "pids_preserved": true,
        "log_lines": null,
        "each": [],
    });
    assert_eq!(json["upgrades"], none);
    assert_eq!(json["failures"]["total"], 0);
    assert_eq!(json["failures"]["statuses"], serde_json::json!({}));
    assert_eq!(json["latency"]["p99_ms"], 1.0);
    assert_eq!(json["accept_gap"]["max_ms"], 1.0);
    let r = &json["restarts"][0];
    assert_eq!(
        (r["number"].as_u64(), r["generation"].as_u64(), r["ok"].as_bool()),
        (Some(1), Some(2), Some(true))
    );
    assert_eq!(r["ready_after_ms"], 35.25);
    assert_eq!(r["failures"]["reset"], 0);
    assert_eq!(json["verdicts"], serde_json::json!([]));
    assert_eq!(
        (json["retried_percent"].as_f64(), json["max_retried_per_connection_restart"].as_f64()),
        (Some(0.0), Some(1.0))
    );
}

#[test]
fn fewer_request_log_lines_than_answered_requests_fail_the_drill() {
    let base = Instant::now();
    let samples = steady(base, 0, 10);
    let mut inputs = inputs(base, &samples, &[]);
    inputs.request_lines = Some(("hello: request".into(), 10));
    let report = compute(&inputs);
    assert!(report.passed, "{:?}", report.verdicts);
    assert_eq!(
        report.request_lines,
        Some(RequestLines { text: "hello: request".into(), seen: 10, answered: 10 })
    );
    assert!(report.to_text().contains("log lines    10 with \"hello: request\" for 10 answered requests\n"));
    inputs.request_lines = Some(("hello: request".into(), 7));
    let report = compute(&inputs);
    assert_eq!(
        report.verdicts,
        ["10 answered requests but 7 output lines with \"hello: request\": at least 3 log lines were lost"]
    );
    assert!(report.to_junit("d").contains("a log line per request"));
}
