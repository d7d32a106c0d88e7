//! The upgrades' part of the report: the recorded text layout, the
//! verdicts of upgrades that lose pids or log lines, what may change.
use std::time::Instant;

use super::super::tests::{inputs, restart, sample, steady, upgrade};
use super::super::{Inputs, Report, compute};
use super::*;
use crate::drill::load::Outcome;

/// 2000 requests, a restart at 200 ms and upgrades at 800 and 1400 ms
/// (the second to another binary, taking longer), the log checked. The
/// restart's window and the first upgrade's meet halfway between the
/// restart's answer and the upgrade's request (580 ms), as do the two
/// upgrades' (1110 ms).
fn report(change: impl FnOnce(&mut Inputs, &mut [UpgradeRecord])) -> Report {
    let base = Instant::now();
    let samples = steady(base, 0, 2000);
    let restarts = [restart(base, 1, 200, 360)];
    let mut upgrades = [upgrade(base, 1, 800, 820), upgrade(base, 2, 1400, 1450)];
    upgrades[1].binary = "/opt/handover-2".into();
    upgrades[1].took = Some(Duration::from_millis(40));
    let extra = sample(base, 1410, 2, Outcome::Reset);
    let samples = [samples, vec![extra]].concat();
    let mut inputs = inputs(base, &samples, &restarts);
    inputs.upgrade_log = Some(LogLines { upgraded: 2, dropped: 0, matched: 0 });
    inputs.thresholds.max_failures = 1;
    change(&mut inputs, &mut upgrades);
    compute(&Inputs { upgrades: upgrades.to_vec(), ..inputs })
}

#[test]
fn text_with_upgrades() {
    assert_eq!(
        report(|_, _| {}).to_text(),
        "requests     2001 in 2.00 s (1001/s), 1 failed, 0 retried on a fresh connection (0%, 0 per connection and restart)\n\
         load cost    21 µs of the drill's CPU per request\n\
         failures     refused 0, reset 1, timeout 0, bad status 0, short read 0, other 0\n\
         latency ms   p50 1.00  p90 1.00  p99 1.00  max 1.00\n\
         accept gap   largest 1.00 ms, outside restarts and upgrades 1.00 ms\n\
         supervisor   handover\n\
         memory       peak RSS 3.5 MiB, private 0.2 MiB\n\
         at rest      0 ms CPU, 0 wake-ups in 5 s\n\
         left behind  nothing\n\
         upgrades     2 to /bin/handover and /opt/handover-2 in turn, 0 failed, pids kept\n\
         upgrade ms   took min 12.50  median 12.50  max 40.00, round trip min 20.00  median 20.00  max 50.00\n\
         upgrade log  2 `upgraded from handover` lines for 2 upgrades, 0 of its own lines dropped\n\
         \n\
         restart  generation  result  ready ms  old gone ms  took ms  requests  failed  p50 ms  p90 ms  p99 ms  max ms  gap ms\n      \
               1           2      ok     35.25        120.0    160.0       482       0    1.00    1.00    1.00    1.00    1.00\n\
         \n\
         upgrade  result  took ms  round trip ms  pids  requests  failed  p50 ms  p90 ms  p99 ms  max ms  gap ms\n      \
               1      ok    12.50          20.00  kept       412       0    1.00    1.00    1.00    1.00    1.00\n      \
               2      ok    40.00          50.00  kept       653       1    1.00    1.00    1.00    1.00    1.00\n\
         \n\
         PASSED\n"
    );
}

#[test]
fn upgrades_that_lose_pids_or_log_lines_fail_with_the_reason() {
    let report = report(|inputs, upgrades| {
        inputs.thresholds.max_failures = 0;
        inputs.upgrade_log = Some(LogLines { upgraded: 0, dropped: 3, matched: 0 });
        let after = upgrades[0].after.as_mut().unwrap();
        after.pid = 200;
        after.workers = vec![(1, 102, false)];
        upgrades[1].ok = false;
        upgrades[1].took = None;
        upgrades[1].error = Some("upgrade refused: /opt/handover-2: it is no handover".into());
        upgrades[1].after = None;
        upgrades[1].child_alive = false;
    });
    assert_eq!(
        report.verdicts,
        [
            "upgrade 1 did not keep the pids: the supervisor's pid went from 100 to 200, \
             worker 101 (generation 1) gone, worker 102 (generation 1) new",
            "upgrade 2 failed: upgrade refused: /opt/handover-2: it is no handover",
            "upgrade 2 did not keep the pids: the supervisor the drill started (pid 100) exited, \
             no status reply after it to compare",
            "the supervisor's output has 0 `upgraded from handover` lines for 1 upgrade: \
             its log lost lines across an upgrade",
            "the supervisor dropped 3 of its own log lines, though the drill read its output all along \
             (see its output)",
            "1 request reset during upgrade 2: \
             a worker closed connections without answering: was it signalled or killed?",
        ]
    );
    let u = &report.upgrades;
    assert_eq!((u.count, u.failed, u.pids_preserved), (2, 1, false));
    assert_eq!(u.took_ms, Spread { min: Some(12.5), median: Some(12.5), max: Some(12.5) });
    assert_eq!((u.each[0].supervisor_pid, u.each[1].supervisor_pid), (Some(200), Some(100)));
    let xml = report.to_junit("drill");
    assert!(xml.contains("tests=\"9\" failures=\"4\""), "{xml}");
    assert!(xml.contains(
        "name=\"upgrade 2\" time=\"0.050\">\n      <failure message=\"upgrade 2 failed: upgrade refused"
    ));
    assert!(xml.contains("name=\"log lines across upgrades\" time=\"0.000\">\n      <failure"));
    assert!(
        report.to_text().contains(
            "upgrades     2 to /bin/handover and /opt/handover-2 in turn, 1 failed, pids CHANGED\n"
        )
    );
}

#[test]
fn draining_workers_may_exit_and_an_unchecked_log_is_said_so() {
    let report = report(|inputs, upgrades| {
        inputs.upgrade_log = None;
        let before = upgrades[0].before.as_mut().unwrap();
        before.workers.insert(0, (0, 99, true));
        upgrades[1].before.as_mut().unwrap().workers.push((2, 103, true));
        upgrades[1].after.as_mut().unwrap().workers.push((2, 103, true));
    });
    assert!(report.passed, "{:?}", report.verdicts);
    let text = report.to_text();
    assert!(text.contains("\nupgrade log  not checked: the supervisor's log does not come to the drill"));
    assert!(!report.to_junit("drill").contains("log lines across upgrades"));
    let json = report.to_json();
    let first = &json["upgrades"]["each"][0];
    assert_eq!((first["took_ms"].as_f64(), first["round_trip_ms"].as_f64()), (Some(12.5), Some(20.0)));
    assert_eq!((first["from"].as_str(), first["pids_preserved"].as_bool()), (Some("0.1.0"), Some(true)));
    assert_eq!(json["upgrades"]["took_ms"], serde_json::json!({"min": 12.5, "median": 12.5, "max": 40.0}));
}

#[test]
fn the_median_is_nearest_rank() {
    assert_eq!(Spread::of(vec![]), Spread::default());
    assert_eq!(Spread::of(vec![3.0, 1.0, 2.0, 4.0]).median, Some(2.0));
    assert_eq!(Spread::of(vec![5.0, 1.0, 3.0]), Spread { min: Some(1.0), median: Some(3.0), max: Some(5.0) });
}
