//! Named listeners (`--listen`), `{fd}`/`{fd:NAME}` placeholders, several
//! workers per generation (`--workers`) and einhorn's `worker:ack` as
//! readiness.
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::errors::{listing, run_once};
use crate::harness::*;

/// handover with `options`, then the probe writing `{dir}/probe.json`,
/// saying READY=1, with `probe_args`.
fn start_probe(options: &[&str], probe_args: &[&str]) -> Supervisor {
    handover()
        .args(options)
        .arg("--")
        .arg(example("probe"))
        .args(["--out", "{dir}/probe.json", "--notify"])
        .args(probe_args)
        .start()
}

/// The local address of the socket the probe found on `fd`.
fn local(report: &Value, fd: i64) -> String {
    let fds = report["fds"].as_array().expect("fds");
    let entry = fds.iter().find(|f| f["fd"] == fd).unwrap_or_else(|| panic!("no fd {fd} in {report:#}"));
    entry["socket"]["local"].as_str().unwrap_or_else(|| panic!("fd {fd}: {report:#}")).to_string()
}

const NAMED: [&str; 4] =
    ["--listen", "web=tcp://127.0.0.1:0", "--listen", "admin=unix:{dir}/admin.sock?mode=0660"];

#[test]
fn named_listeners_reach_the_worker_and_the_status() {
    let s = start_probe(&[&NAMED[..], &["--control", "{dir}/ctl"]].concat(), &[]);
    let report = probe_report(&s, 1);
    let (web, admin) = (local(&report, 3), s.path("admin.sock").display().to_string());
    assert!(web.starts_with("127.0.0.1:") && !web.ends_with(":0"), "{report:#}");
    assert_eq!(local(&report, 4), admin, "{report:#}");
    assert_eq!(report["listen_fdnames"], json!(["web", "admin"]), "{report:#}");
    let keys = json!([{"key": web, "fd": 3}, {"key": admin, "fd": 4}]);
    assert_eq!(report["server_starter"], keys, "{report:#}");
    let meta = fs::symlink_metadata(s.path("admin.sock")).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);

    let o = crate::errors::run_in(s.dir.path(), &["status", "--json", "--control", "{dir}/ctl"]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}", o.dossier());
    let status: Value = serde_json::from_str(&o.stdout).unwrap();
    let listeners = json!([
        {"fd": 3, "name": "web", "key": web, "address": format!("tcp {web}")},
        {"fd": 4, "name": "admin", "key": admin, "address": format!("unix {admin}")},
    ]);
    assert_eq!(status["listeners"], listeners, "{status:#}");
}

#[test]
fn placeholders_become_fd_numbers_in_the_workers_arguments() {
    let tags = ["--tag", "fd={fd}", "--tag", "admin={fd:admin}", "--tag", "fd://{fd:web}", "--tag", "{fd"];
    let s = start_probe(&NAMED, &tags);
    let argv = probe_report(&s, 1)["argv"].clone();
    let tail: Vec<&str> =
        argv.as_array().unwrap().iter().rev().take(8).map(|a| a.as_str().unwrap()).collect();
    let want = ["--tag", "fd=3", "--tag", "admin=4", "--tag", "fd://3", "--tag", "{fd"];
    assert_eq!(tail.into_iter().rev().collect::<Vec<_>>(), want, "{argv}");
}

/// Exit 2, exactly one `handover: ` line with every needle, nothing on
/// stdout, nothing left in the temp dir (no pid, status, control or socket
/// file, no journal: no worker ran).
fn assert_refused(options: &[&str], worker_args: &[&str], needles: &[&str]) {
    let mut args = vec!["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--control", "{dir}/ctl"];
    let worker = example("worker").display().to_string();
    args.extend(options);
    args.extend(["--", &worker, "--journal", "{dir}/journal"]);
    args.extend(worker_args);
    let (o, dir) = run_once(&args);
    assert_eq!(o.code, Some(2), "{}", o.dossier());
    let lines = o.stderr_lines();
    assert!(lines.len() == 1 && lines[0].starts_with("handover: "), "{}", o.dossier());
    for needle in needles {
        assert!(lines[0].contains(needle), "no {needle:?}\n{}", o.dossier());
    }
    assert!(o.stdout.is_empty(), "{}", o.dossier());
    assert!(listing(dir.path()).is_empty(), "left behind: {:?}\n{}", listing(dir.path()), o.dossier());
}

#[test]
fn an_unknown_placeholder_name_is_refused_at_startup() {
    assert_refused(&NAMED, &["--startup-delay", "{fd:nope}"], &["{fd:nope}", "\"nope\"", "admin", "web"]);
}

#[test]
fn listen_errors_are_one_line_and_exit_2() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--listen", "http://127.0.0.1:0"], &["--listen", "http://127.0.0.1:0", "unknown scheme \"http\""]),
        (&["--listen", "tcp://:0"], &["--listen", "tcp://:0", "HOST is required"]),
        (&["--listen", "tcp://127.0.0.1:0?color=red"], &["unknown option \"color\"", "tcp takes backlog"]),
        (
            &["--listen", "a=tcp://127.0.0.1:0", "--listen", "a=unix:{dir}/a.sock"],
            &["two listeners are named \"a\""],
        ),
    ];
    for (options, needles) in cases {
        assert_refused(options, &[], needles);
    }
}

/// The journal's lines with every word in `parts`.
fn journaled(s: &Supervisor, parts: &[&str]) -> Vec<String> {
    let has = |l: &String| parts.iter().all(|p| l.split(' ').any(|w| w == *p));
    s.journal().into_iter().filter(has).collect()
}

/// `index=I einhorn_index=E` of each `start` line of `generation`, sorted.
fn indices(s: &Supervisor, generation: u64) -> Vec<(String, String)> {
    let field = |l: &str, name: &str| {
        let prefix = format!("{name}=");
        l.split(' ').find_map(|w| w.strip_prefix(&prefix)).unwrap_or("?").to_string()
    };
    let lines = journaled(s, &["start", &format!("gen={generation}")]);
    let mut found: Vec<_> = lines.iter().map(|l| (field(l, "index"), field(l, "einhorn_index"))).collect();
    found.sort();
    found
}

#[test]
fn three_workers_get_their_indices_and_are_replaced_once_all_are_ready() {
    let options = ["--port", "127.0.0.1:0", "--workers", "3", "--ready", "notify"];
    let s = with_worker(&options, &["--notify"]);
    s.wait_generations(&[1, 1, 1]);
    let expected: Vec<(String, String)> = (0..3).map(|i| (i.to_string(), i.to_string())).collect();
    assert_eq!(indices(&s, 1), expected, "{}", s.dossier());
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2, 2, 2]);
    let three_terms = || (journaled(&s, &["term", "gen=1"]).len() == 3).then_some(());
    wait_for("three `term gen=1` lines", || s.dossier(), three_terms);
    assert_eq!(indices(&s, 2), expected, "{}", s.dossier());
    // `ready` is journaled before READY=1 is sent, so the order is causal.
    let journal = s.journal();
    let position = |word: &str, generation: &str| {
        let hit = |l: &&String| l.starts_with(&format!("{word} ")) && l.split(' ').any(|w| w == generation);
        journal.iter().enumerate().filter(|(_, l)| hit(l)).map(|(i, _)| i).collect::<Vec<_>>()
    };
    let (ready, term) = (position("ready", "gen=2"), position("term", "gen=1"));
    assert_eq!((ready.len(), term.len()), (3, 3), "{}", s.dossier());
    assert!(ready.iter().max() < term.iter().min(), "a gen=1 term before a gen=2 ready\n{}", s.dossier());
}

#[test]
fn an_einhorn_ack_counts_as_ready() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--log-format", "json"],
        &["--einhorn-ack"],
    );
    let first = s.wait_generations(&[1])[0].1;
    let ready = |generation: u64, pid: i32| {
        s.wait_event("ready", |r| {
            r["generation"] == generation && pids_of(r, "pids") == [pid] && r["how"] == "READY=1"
        })
    };
    ready(1, first);
    s.wait_journal(&["ack", "gen=1", "result=sent"]);
    s.signal(Signal::SIGHUP);
    let second = s.wait_generations(&[2])[0].1;
    ready(2, second);
    s.wait_journal(&["ack", "gen=2", "result=sent"]);
}

#[test]
fn without_an_ack_the_generation_is_not_ready_in_time() {
    let options =
        ["--port", "127.0.0.1:0", "--ready", "notify", "--ready-timeout", "300ms", "--log-format", "json"];
    let s = with_worker(&options, &[]);
    let record = s.wait_event("not_ready", |_| true);
    let pid = s.worker_pids()[0];
    assert_eq!((&record["generation"], pids_of(&record, "pids")), (&1.into(), vec![pid]), "{}", s.dossier());
    s.wait_journal(&["term", &format!("pid={pid}")]);
    assert_eq!(s.count_events("ready", |_| true), 0, "{}", s.dossier());
}
