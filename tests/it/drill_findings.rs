//! `handover drill` never passes short and names every finding: restarts
//! cut short by the sample cap or the load's end, an old generation killed
//! at `--drain-timeout`, workers killed or left at the stop, a start
//! failure's hint only when the log bears it out, failures attributed to
//! the one restart whose window they fall in, and keep-alive retries
//! counted per connection and restart.
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::drill::{drill, drill_with, text};
use crate::harness::*;

/// The test worker answers `gen=G pid=P` to any connection: loaded raw.
const RAW: [&str; 3] = ["--raw-send=", "--raw-expect", "gen="];

/// A paced load: a connection per request at full speed leaves tens of
/// thousands of loopback sockets in TIME_WAIT, which later tests' connects
/// can collide with (a SYN answered by a stale ACK, retried after 1 s).
const PACED: [&str; 2] = ["--rate", "1000"];

fn report(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn verdicts(report: &Value) -> Vec<String> {
    let list = report["verdicts"].as_array().cloned().unwrap_or_default();
    list.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn the_sample_cap_stops_the_detail_never_the_restarts() {
    let hello = example("hello").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "4", "--restart-every", "150ms"];
    let out =
        drill(&[&args[..], &PACED, &["--max-samples", "300", "--json", "--", &hello, "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = report(&out);
    assert_eq!(report["restarts"].as_array().map(Vec::len), Some(4), "{report:#}");
    let (requests, unsampled) = (report["requests"].as_u64().unwrap(), report["unsampled"].as_u64().unwrap());
    assert!(requests > 300 && unsampled > 0 && unsampled < requests, "{report:#}");
    assert_eq!(report["ok"].as_u64(), Some(requests), "{report:#}");
}

#[test]
fn a_load_that_ends_before_the_restarts_fails_the_drill() {
    let hello = example("hello").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "3", "--requests", "20"];
    let out = drill(&[&args[..], &["--json", "--", &hello, "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = report(&out);
    let said = verdicts(&report);
    assert!(
        said.iter().any(|v| v.contains("of 3 restarts ran") && v.contains("the load ended first")),
        "{report:#}"
    );
}

/// A drill of a worker that ignores TERM, with these options.
fn ignoring_term(supervisor: &[&str], rest: &[&str]) -> std::process::Output {
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--json"];
    let server = ["--", &worker, "--notify", "--ignore-term", "forever"];
    drill_with(Command::new(binary()), &[supervisor, &args[..], &RAW, &PACED, rest, &server[..]].concat())
}

#[test]
fn an_old_generation_killed_at_the_drain_timeout_is_a_finding() {
    let out = ignoring_term(&[], &["--restarts", "1", "--drain-timeout", "1s", "--stop-timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = report(&out);
    let said = verdicts(&report);
    let drained = "restart 1: pid ";
    let first = said.first().cloned().unwrap_or_default();
    assert!(first.starts_with(drained), "{report:#}");
    assert!(
        first.contains("ignored TERM; killed after 1 s: the server does not stop on --signal-on-hup (TERM)"),
        "{report:#}"
    );
    let stopped =
        said.iter().find(|v| v.starts_with("at the stop: pid ")).unwrap_or_else(|| panic!("{report:#}"));
    assert!(stopped.contains("ignored TERM; killed after 1 s (--stop-timeout)"), "{report:#}");
    assert_eq!(report["restarts"][0]["killed"].as_array().map(Vec::len), Some(1), "{report:#}");
}

#[test]
fn an_old_generation_killed_at_the_drain_timeout_is_a_finding_by_sighup_too() {
    let handover = binary().display().to_string();
    let rest = ["--restarts", "1", "--drain-timeout", "1s", "--stop-timeout", "1s"];
    let out = ignoring_term(&["--supervisor", &handover], &rest);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = verdicts(&report(&out));
    assert!(said.iter().any(|v| v.starts_with("restart 1: pid ") && v.contains("ignored TERM")), "{said:?}");
}

#[test]
fn a_worker_left_at_the_end_is_named_with_the_fix() {
    let started = Instant::now();
    let out = ignoring_term(&[], &["--restarts", "0", "--restart-timeout", "3s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    let said = verdicts(&report(&out));
    let left = said.iter().find(|v| v.contains("still running after the supervisor"));
    let left = left.unwrap_or_else(|| panic!("{said:?}"));
    assert!(left.starts_with("left behind: worker ") && left.contains("--stop-timeout"), "{said:?}");
}

#[test]
fn the_start_failure_hint_comes_only_when_the_log_says_so() {
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--restarts", "1", "--json"];
    let server = ["--", &worker, "--notify", "--crash-if-generation-at-least", "2"];
    let out = drill(&[&args[..], &RAW, &PACED, &server[..]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = verdicts(&report(&out));
    let failed =
        said.iter().find(|v| v.starts_with("restart 1 failed:")).unwrap_or_else(|| panic!("{said:?}"));
    assert!(
        !failed.contains("Address already in use") && !failed.contains("binds the port itself"),
        "{failed}"
    );
    assert!(failed.contains("worker: crashing before ready with exit code 1 (as asked)"), "{failed}");
}

#[test]
fn a_new_generation_that_does_not_serve_the_inherited_socket_is_named() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drill/own_socket.py");
    // --interval: the drill looks at the new generation's fds once it is
    // ready (alive that long), by when Python must have closed fd 3.
    let args = ["--port", "127.0.0.1:0", "--ready", "alive", "--interval", "2s", "--restarts", "1"];
    let out = drill(&[&args[..], &["--request-timeout", "1s", "--json", "--", "python3", fixture]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = verdicts(&report(&out));
    let first = said.first().cloned().unwrap_or_default();
    assert!(first.starts_with("restart 1: generation 2 (pid "), "{said:?}");
    assert!(first.contains("does not hold the listening socket the supervisor passed"), "{said:?}");
}

#[test]
fn a_first_generation_that_does_not_serve_the_inherited_socket_is_named() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drill/own_socket.py");
    let args = ["--port", "127.0.0.1:0", "--ready", "alive", "--interval", "2s", "--restarts", "0"];
    let out =
        drill(&[&args[..], &["--request-timeout", "1s", "--json", "--", "python3", fixture, "1"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = verdicts(&report(&out));
    let first = said.first().cloned().unwrap_or_default();
    assert!(first.starts_with("startup: generation 1 (pid "), "{said:?}");
}

#[test]
fn back_to_back_restarts_have_windows_of_their_own() {
    let hello = example("hello").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "6", "--json"];
    let out = drill(&[&args[..], &PACED, &["--", &hello, "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = report(&out);
    let restarts = report["restarts"].as_array().unwrap();
    for pair in restarts.windows(2) {
        let (to, from) =
            (pair[0]["window_to_ms"].as_f64().unwrap(), pair[1]["window_from_ms"].as_f64().unwrap());
        assert!(to <= from, "windows overlap: {report:#}");
        // Each restart's window holds its own request and answer.
        let asked = pair[1]["requested_at_ms"].as_f64().unwrap();
        assert!(from <= asked, "{report:#}");
    }
}

#[test]
fn a_paced_keep_alive_load_is_held_to_retries_per_connection_and_restart() {
    // hello closes idle keep-alive connections when told to stop: one retry
    // per connection and restart at most, whatever the rate.
    let hello = example("hello").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "3", "--keepalive"];
    let pace = ["--rate", "200", "--connections", "4", "--json"];
    let out = drill(&[&args[..], &pace, &["--", &hello, "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = report(&out);
    let per = report["retried_per_connection_restart"].as_f64().unwrap();
    assert!(per <= 1.0, "{report:#}");
    assert_eq!(report["max_retried_per_connection_restart"].as_f64(), Some(1.0), "{report:#}");
}

#[test]
fn a_mistyped_drill_option_exits_2_before_anything_starts() {
    let hello = example("hello").display().to_string();
    for (typo, meant) in [("--keep-alive", "--keepalive"), ("--connection", "--connections")] {
        let started = Instant::now();
        let out = drill(&["--port", "127.0.0.1:0", typo, "4", "--", &hello]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(&format!("'{typo}'")) && said.contains(&format!("'{meant}'")), "{said}");
        assert!(started.elapsed() < Duration::from_secs(5), "{said}");
    }
}
