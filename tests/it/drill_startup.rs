//! `handover drill` with a first generation that never serves: a failure
//! like any other, within `--startup-timeout` (or `--restart-timeout`),
//! with its JSON and JUnit reports and the output's last lines as lines.
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::drill::{drill, text};
use crate::harness::*;

/// A drill whose worker never becomes ready; how long it took.
fn never_ready(timeouts: &[&str], junit: &str) -> (Output, Duration) {
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "2", "--json", "--junit", junit];
    let server = ["--", &worker, "--notify", "--never-ready-from-generation", "1"];
    let started = Instant::now();
    let out = drill(&[&args[..], timeouts, &server[..]].concat());
    (out, started.elapsed())
}

fn check_failed_start(out: &Output, took: Duration, junit: &std::path::Path, after: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    assert_eq!(report["passed"], false);
    let first = report["verdicts"][0].as_str().unwrap_or_default();
    assert!(first.starts_with("startup failed: ") && first.contains(after), "{report:#}");
    assert_eq!(report["restarts"], serde_json::json!([]), "{report:#}");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("name=\"startup\"") && xml.contains("<failure message=\"startup failed: "), "{xml}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("\\n"), "{stderr}");
    assert!(stderr.contains("output (give --keep DIR to keep all of it):\n  "), "{stderr}");
}

#[test]
fn a_first_generation_that_never_serves_fails_within_the_startup_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (out, took) = never_ready(&["--startup-timeout", "2s"], &junit.display().to_string());
    check_failed_start(&out, took, &junit, "generation 1 still starting after 2 s");
}

#[test]
fn the_restart_timeout_bounds_the_start_too() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (out, took) = never_ready(&["--restart-timeout", "2s"], &junit.display().to_string());
    check_failed_start(&out, took, &junit, "generation 1 still starting after 2 s");
}

#[test]
fn a_worker_start_server_restarts_forever_fails_within_the_startup_timeout() {
    let start_server = "/usr/bin/start_server";
    if !std::path::Path::new(start_server).exists() {
        assert!(std::env::var_os("CI").is_none(), "{start_server} missing: .ci/run must install it");
        eprintln!("skipped: start_server is not installed (apt-get install -y libserver-starter-perl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let worker = example("worker").display().to_string();
    let args = ["--supervisor", start_server, "--port", "127.0.0.1:0", "--startup-timeout", "3s", "--json"];
    let server = ["--", &worker, "--crash-before-ready", "78"];
    let started = Instant::now();
    let out = drill(&[&args[..], &["--junit", &junit.display().to_string()], &server[..]].concat());
    check_failed_start(&out, started.elapsed(), &junit, "no generation serving after 3 s");
    assert!(text(&out).contains("worker: crashing before ready with exit code 78"), "{}", text(&out));
}

#[test]
fn a_supervisor_refusing_its_options_exits_2_with_its_own_line() {
    let hello = example("hello").display().to_string();
    let out = drill(&["--port", "127.0.0.1:0", "--interval", "bogus", "--", &hello]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--interval") && !said.contains("\\n"), "{said}");
}
