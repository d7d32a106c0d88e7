//! The README's drill recipes, each drilled as written there (port 0,
//! the fixtures in `tests/fixtures/drill/`): a Go net/http server from
//! LISTEN_FDS and, under start_server, from SERVER_STARTER_PORT; aiohttp
//! through `{fd}`; Starman with `--signal-on-hup QUIT`. Each needs its
//! Debian package and fails under CI when it is missing.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

use crate::drill::{drill_with, text};
use crate::harness::*;
use crate::servers::{available, debian_path};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/drill");
const CONNECTIONS: u64 = 4;
const RESTARTS: u64 = 2;

/// The Go fixture, built once into the tests' scratch directory.
pub fn go_server() -> Option<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if !available("go", "golang-go", &["go", "version"]) {
        return None;
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.is_none() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("drill-go");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(dir.join("go_server"))
            .arg(Path::new(FIXTURES).join("go_server.go"))
            .env("PATH", debian_path())
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .output()
            .unwrap();
        assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
        *built = Some(dir.join("go_server"));
    }
    built.clone()
}

/// A drill of the recipe (`supervisor` options, `--`, `worker`), with
/// `--keepalive` or not, as JSON.
fn drilled(supervisor: &[&str], keepalive: bool, worker: &[&str]) -> (Output, Value) {
    let mut command = Command::new(binary());
    command.env("PATH", debian_path()).current_dir(FIXTURES);
    let (c, r) = (CONNECTIONS.to_string(), RESTARTS.to_string());
    // Paced: see `drill_findings::PACED`.
    let mut args =
        vec!["--port", "127.0.0.1:0", "--restarts", &r, "--connections", &c, "--json", "--rate", "1000"];
    args.extend(keepalive.then_some("--keepalive"));
    let out = drill_with(command, &[supervisor, &args[..], &["--"], worker].concat());
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out, report)
}

/// Every restart ok, nothing left behind, and no failed request.
fn clean(out: &Output, report: &Value) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert_eq!(report["failures"]["total"], 0, "{report:#}");
    assert_eq!(report["restarts"].as_array().map(Vec::len), Some(RESTARTS as usize), "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
}

/// Every restart ok and nothing left behind; the only failures allowed
/// are resets during restarts, at most one per connection and restart
/// (the server's own stop: see the README).
fn resets_at_its_stop(report: &Value) {
    let restarts = report["restarts"].as_array().unwrap();
    assert!(restarts.len() == RESTARTS as usize && restarts.iter().all(|r| r["ok"] == true), "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{report:#}");
    let failures = &report["failures"];
    let total = failures["total"].as_u64().unwrap();
    assert_eq!(failures["reset"].as_u64(), Some(total), "{report:#}");
    assert!(total <= CONNECTIONS * RESTARTS, "{report:#}");
    let during: u64 = restarts.iter().map(|r| r["failures"]["total"].as_u64().unwrap()).sum();
    assert_eq!(during, total, "every reset during a restart: {report:#}");
}

#[test]
fn a_go_server_from_listen_fds_is_drilled_clean() {
    let Some(go) = go_server() else { return };
    let go = go.display().to_string();
    for keepalive in [false, true] {
        let (out, report) = drilled(&[], keepalive, &[&go, "-from", "listen-fds"]);
        clean(&out, &report);
    }
}

#[test]
fn a_go_server_from_server_starter_port_is_drilled_clean_under_start_server() {
    let Some(go) = go_server() else { return };
    if !available("start_server", "libserver-starter-perl", &["test", "-x", "/usr/bin/start_server"]) {
        return;
    }
    let go = go.display().to_string();
    let (out, report) =
        drilled(&["--supervisor", "/usr/bin/start_server"], false, &[&go, "-from", "server-starter"]);
    clean(&out, &report);
}

#[test]
fn aiohttp_through_fd_is_drilled() {
    if !available("aiohttp", "python3-aiohttp", &["python3", "-c", "import aiohttp"]) {
        return;
    }
    let app = ["python3", "aiohttp_app.py", "--fd", "{fd}"];
    let (out, report) = drilled(&[], true, &app);
    clean(&out, &report);
    let (_, report) = drilled(&[], false, &app);
    resets_at_its_stop(&report);
}

#[test]
fn starman_with_quit_is_drilled() {
    if !available("starman", "starman", &["starman", "--version"]) {
        return;
    }
    let options = ["--signal-on-hup", "QUIT"];
    let (_, report) = drilled(&options, false, &["starman", "--workers", "2", "../app.psgi"]);
    resets_at_its_stop(&report);
}
