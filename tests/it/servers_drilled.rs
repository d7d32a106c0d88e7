//! puma, uvicorn, hypercorn and uWSGI through `handover drill` (two hot
//! restarts under four clients), once with a connection per request and
//! once with keep-alive, run with the README's recipes (`servers`). The
//! JSON report is checked: every restart ok, nothing left behind, no
//! failed request except where a server's own stop resets connections
//! (`Resets`), and keep-alive retries bounded (`Retries`). Both are the
//! servers' doing, described in the README. Where a server never resets,
//! handover also upgrades itself twice in between, which the server must
//! not notice.
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;
use crate::servers::{CLIENTS, FIXTURES, HYPERCORN, PUMA, RESTARTS, Server, UVICORN, UWSGI};
use crate::servers::{debian_path, installed, recipe};

/// What a keep-alive client meets across a hot restart.
#[derive(Clone, Copy, Debug)]
enum Retries {
    /// Nothing to retry: every connection the server closes, it closes
    /// after a response that said `Connection: close`.
    None,
    /// At most one retry per client connection and restart: the old
    /// generation, stopping, closes each keep-alive connection after a
    /// response that did not say `Connection: close` (or with the client's
    /// next request already sent), and the client, as browsers and proxies
    /// do for a GET, sends it again on a new connection (`retried` in the
    /// drill's report).
    OnePerConnection,
}

/// Whether a server's own stop drops connections.
#[derive(Clone, Copy, Debug)]
enum Resets {
    /// No request fails.
    Never,
    /// The server's own bug: a connection it accepted in the moment before
    /// its stop signal, whose request it had not begun, is closed
    /// unanswered. The only failures allowed are such resets, during a
    /// restart, at most one per client and restart (each client has one
    /// connection open when the old generation stops).
    AtItsStop,
}

#[test]
fn puma_drilled_with_a_connection_per_request() {
    drill_checks(&PUMA, &[], Resets::Never, Retries::None);
}

#[test]
fn puma_drilled_with_keep_alive() {
    // Its threads outnumber the clients (`-t 0:16`): with the default
    // `0:5`, four keep-alive clients keep puma 5.6 from finishing its TERM.
    drill_checks(&PUMA, &["--keepalive"], Resets::Never, Retries::OnePerConnection);
}

#[test]
fn uvicorn_drilled_with_a_connection_per_request() {
    // Its shutdown() closes every connection with no request in progress,
    // among them those whose request has arrived but is not parsed yet.
    drill_checks(&UVICORN, &[], Resets::AtItsStop, Retries::None);
}

#[test]
fn uvicorn_drilled_with_keep_alive() {
    // A client's connection is never new when the old generation stops.
    drill_checks(&UVICORN, &["--keepalive"], Resets::Never, Retries::OnePerConnection);
}

#[test]
fn hypercorn_drilled_with_a_connection_per_request() {
    // A connection accepted as it stops is dropped when its loop ends.
    drill_checks(&HYPERCORN, &[], Resets::AtItsStop, Retries::None);
}

#[test]
fn hypercorn_drilled_with_keep_alive() {
    drill_checks(&HYPERCORN, &["--keepalive"], Resets::Never, Retries::OnePerConnection);
}

#[test]
fn hypercorn_closes_keep_alive_connections_after_an_app_that_did_not_read_its_request() {
    // No restart: hypercorn 0.13 itself closes the connection, without
    // `Connection: close`, after nearly every response of an app that
    // answers before reading the request (`GET /unread`), so a keep-alive
    // client has to send nearly every request twice.
    let Some((code, report, text)) =
        drill(&HYPERCORN, 0, &["--requests", "200", "--keepalive", "--get", "/unread"])
    else {
        return;
    };
    assert_eq!(code, Some(0), "{text}");
    let retried = report["retried"].as_u64().unwrap();
    assert!(retried > 100, "{retried} of 200 retried: has hypercorn's keep-alive been fixed? {text}");
}

#[test]
fn uwsgi_drilled_with_a_connection_per_request() {
    // A worker told to stop exits at once unless it is in a request: one
    // that has just accepted a connection drops it (rarely).
    drill_checks(&UWSGI, &[], Resets::AtItsStop, Retries::None);
}

#[test]
fn uwsgi_drilled_with_keep_alive() {
    // `--add-header "Connection: close"`: its --http-socket closes every
    // connection after one response, and now says so; each request is a
    // new connection, as above.
    drill_checks(&UWSGI, &["--keepalive"], Resets::AtItsStop, Retries::None);
}

/// `handover drill` of the server's README recipe: `restarts` restarts,
/// `CLIENTS` connections, the JSON report: its exit code, the
/// report and the drill's output; `None` when the server is not installed.
/// Every restart succeeded and nothing was left behind.
fn drill(server: &Server, restarts: usize, options: &[&str]) -> Option<(Option<i32>, Value, String)> {
    if !installed(server) {
        return None;
    }
    let recipe = recipe(server.worker);
    let (wanted, clients) = (restarts, CLIENTS.to_string());
    let restarts = restarts.to_string();
    let out = Command::new(binary())
        .current_dir(FIXTURES)
        .args([
            "drill",
            "--json",
            "--restart-timeout",
            "30s",
            "--restarts",
            &restarts,
            "--connections",
            &clients,
            // Retries are bounded by count below (`Retries`), not as a share.
            "--max-retried",
            "100",
        ])
        .args(options)
        .args(["--port", "127.0.0.1:0"])
        .args(&recipe.options)
        .arg("--")
        .args(&recipe.command)
        .env("PATH", debian_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "--- drill of {}: {options:?} {:?} -- {:?}\n{}\n{}",
        server.name,
        recipe.options,
        recipe.command,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON report ({e})\n{text}"));
    assert_eq!(report["leftovers"], serde_json::json!([]), "{text}");
    let restarts = report["restarts"].as_array().unwrap();
    assert!(restarts.len() == wanted && restarts.iter().all(|r| r["ok"] == true), "{text}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{text}");
    Some((out.status.code(), report, text))
}

/// The drill's failures as `resets` allows, its retries as `retries` does.
/// Where the server never resets, handover upgrades itself in between
/// the restarts too (`--upgrades`), which the server must not notice.
fn drill_checks(server: &Server, options: &[&str], resets: Resets, retries: Retries) {
    let upgrades = match resets {
        Resets::Never => &["--upgrades", "2"][..],
        Resets::AtItsStop => &[],
    };
    let Some((code, report, text)) = drill(server, RESTARTS, &[options, upgrades].concat()) else { return };
    let failures = &report["failures"];
    let total = failures["total"].as_u64().unwrap();
    match resets {
        Resets::Never => {
            assert_eq!((code, total), (Some(0), 0), "{text}");
            let up = &report["upgrades"];
            let summary = (up["count"].as_u64(), up["failed"].as_u64(), up["pids_preserved"].as_bool());
            assert_eq!(summary, (Some(2), Some(0), Some(true)), "{text}");
        }
        Resets::AtItsStop => {
            assert_eq!(failures["reset"], total, "{text}");
            assert!(total <= (CLIENTS * RESTARTS) as u64, "{text}");
            let at_a_stop = |v: &Value| v.as_str().unwrap().contains(" reset during restart ");
            assert!(report["verdicts"].as_array().unwrap().iter().all(at_a_stop), "{text}");
            assert_eq!(code, Some(if total == 0 { 0 } else { 1 }), "{text}");
            if total > 0 {
                let requests = if total == 1 { "request" } else { "requests" };
                let line =
                    format!("{}: {total} {requests} reset as the old generation stopped\n", server.name);
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
    let retried = report["retried"].as_u64().unwrap();
    let most = match retries {
        Retries::None => 0,
        Retries::OnePerConnection => (CLIENTS * RESTARTS) as u64,
    };
    assert!(retried <= most, "{retried} requests retried, {retries:?} allows {most}\n{text}");
}
