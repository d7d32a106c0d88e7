//! `handover events [--follow]`: the event records of a restart, a follower
//! that does not read (it slows nothing, then learns what it missed), and
//! a follower across `handover upgrade`.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::control::Raw;
use crate::harness::*;
use crate::upgrade::{client, controlled, generations, status, upgrade};

/// `handover events`: every retained record.
pub fn events(s: &Supervisor) -> Vec<Value> {
    let o = client(s, &["events"]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    o.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn of_kind<'a>(records: &'a [Value], kind: &str, generation: u64) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == kind && r["generation"] == generation).collect()
}

fn pids(record: &Value, field: &str) -> Vec<i64> {
    let mut pids: Vec<i64> = record[field].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    pids.sort();
    pids
}

/// `restart` on a raw connection; its reply.
fn restart(raw: &mut Raw) -> Value {
    let reply = raw.ask("restart");
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

#[test]
fn a_restart_is_spawned_ready_switched_restarted_and_exited_records() {
    let s = controlled(&["--workers", "2"], &["--notify"]);
    s.wait_generations(&[1, 1]);
    let old: Vec<i64> = generations(&status(&s))[0].2.clone();
    let mut raw = Raw::connect(&s.path("ctl"));
    let reply = restart(&mut raw);
    let new: Vec<i64> = reply["pids"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    // The old generation's exits are recorded as they are reaped.
    let records = wait_for(
        "the old workers' exit records",
        || s.dossier(),
        || {
            let records = events(&s);
            (of_kind(&records, "exited", 1).len() == 2).then_some(records)
        },
    );
    let spawned: Vec<i64> = of_kind(&records, "spawned", 2).iter().flat_map(|r| pids(r, "pids")).collect();
    assert_eq!(spawned.len(), 2, "{records:#?}");
    assert!(spawned.iter().all(|p| new.contains(p)), "{spawned:?} {new:?}");
    let ready = of_kind(&records, "ready", 2);
    assert_eq!(ready.len(), 1, "{records:#?}");
    assert_eq!(ready[0]["how"], "READY=1");
    assert!(ready[0]["after_ms"].as_f64().unwrap() >= 0.0);
    let switched = of_kind(&records, "switched", 2);
    assert_eq!(pids(switched[0], "old_pids"), old, "{records:#?}");
    assert_eq!(switched[0]["signal"], "TERM");
    let exits: Vec<i64> = of_kind(&records, "exited", 1).iter().flat_map(|r| pids(r, "pids")).collect();
    let mut exits = exits;
    exits.sort();
    assert_eq!(exits, old);
    assert!(of_kind(&records, "exited", 1).iter().all(|r| r["role"] == "draining"));
    let restarted = of_kind(&records, "restarted", 2);
    assert_eq!(restarted.len(), 1, "{records:#?}");
    assert!(restarted[0]["signal_to_old_gone_ms"].as_f64().is_some());
    // Numbered in order, stamped, each with its line.
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(records.iter().all(|r| r["time"].as_str().unwrap().ends_with('Z') && r["message"].is_string()));
}

#[test]
fn a_follower_that_does_not_read_slows_nothing_and_is_told_what_it_missed() {
    let s = controlled(&["--workers", "8"], &["--notify"]);
    s.wait_generations(&[1; 8]);
    let mut follower = UnixStream::connect(s.path("ctl")).unwrap();
    follower.write_all(b"{\"command\":\"follow\"}\n").unwrap();
    let mut raw = Raw::connect(&s.path("ctl"));
    // About 20 records a restart: the follower's buffers (64 KiB and the
    // socket's) are full within 60. Every restart and status is answered
    // (Raw::ask fails at its read deadline): a loop blocked on the follower,
    // which never reads, would answer none of them.
    for _ in 0..60 {
        restart(&mut raw);
        assert_eq!(raw.ask("status")["ok"], true);
    }
    // Now it reads: the records it got, one `dropped` record, then new ones.
    follower.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut reader = BufReader::new(follower);
    let mut next = || -> Value {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    };
    assert_eq!(next()["ok"], true);
    let dropped = loop {
        let record = next();
        if record["event"] == "dropped" {
            break record["count"].as_u64().unwrap();
        }
    };
    assert!(dropped > 0);
    let generation = restart(&mut raw)["generation"].as_u64().unwrap();
    loop {
        let record = next();
        assert_ne!(record["event"], "dropped", "a second dropped record: {record}");
        if record["event"] == "restarted" && record["generation"] == generation {
            break;
        }
    }
}

#[test]
fn a_follower_reconnects_across_an_upgrade_and_misses_nothing() {
    let s = controlled(&["--workers", "2"], &["--notify"]);
    s.wait_generations(&[1, 1]);
    let out = s.path("followed");
    let mut follower = Command::new(binary())
        .args(["events", "--follow", "--control"])
        .arg(s.path("ctl"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = || -> Vec<Value> {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    };
    wait_for("the follower's first records", || s.dossier(), || (!read().is_empty()).then_some(()));
    upgrade(&s);
    let mut raw = Raw::connect(&s.path("ctl"));
    restart(&mut raw);
    let records = wait_for(
        "generation 2's restarted record",
        || s.dossier(),
        || {
            let records = read();
            (!of_kind(&records, "restarted", 2).is_empty()).then_some(records)
        },
    );
    let kinds: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    for kind in ["upgrade_asked", "upgrading", "upgraded", "spawned", "switched"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "missed or repeated: {seqs:?}");
    drop(s);
    // The supervisor gone, a follower ends by itself, with 0.
    let status = kill_and_wait(&mut follower, true);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Waits for `child` to end (`wait`), or kills it; its status if it ended.
fn kill_and_wait(child: &mut std::process::Child, wait: bool) -> Option<std::process::ExitStatus> {
    if wait {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_failed_restart_is_rolled_back_with_its_reason_and_counted() {
    let s =
        controlled(&[], &["--notify", "--crash-if-generation-at-least", "2", "--crash-before-ready", "3"]);
    s.wait_generations(&[1]);
    let reply = Raw::connect(&s.path("ctl")).ask("restart");
    assert_eq!(reply["ok"], false, "{reply}");
    let records = events(&s);
    let rolled_back = of_kind(&records, "rolled_back", 2);
    assert_eq!(rolled_back.len(), 1, "{records:#?}");
    assert!(rolled_back[0]["reason"].as_str().unwrap().contains("exited with 3"), "{records:#?}");
    let exited = of_kind(&records, "exited", 2);
    assert_eq!((exited[0]["code"].as_i64(), exited[0]["role"].as_str()), (Some(3), Some("starting")));
    // Failed generations are tried again every --interval: counted at least once.
    let page = client(&s, &["metrics"]).stdout;
    let value = |name: &str| -> f64 {
        let line = page.lines().find(|l| l.rsplit_once(' ').is_some_and(|(n, _)| n == name));
        line.unwrap_or_else(|| panic!("no {name} in {page}")).rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    assert_eq!(value("handover_last_restart_success"), 0.0);
    assert!(value("handover_restart_failures_total") >= 1.0, "{page}");
    assert!(value("handover_worker_exits_by_code_total{code=\"3\"}") >= 1.0, "{page}");
    assert_eq!(value("handover_generation"), 1.0);
}

#[test]
fn an_old_generation_killed_at_its_drain_deadline_is_recorded() {
    let s = controlled(&["--drain-timeout", "100ms"], &["--notify", "--ignore-term", "forever"]);
    s.wait_generations(&[1]);
    let old = generations(&status(&s))[0].2.clone();
    restart(&mut Raw::connect(&s.path("ctl")));
    let records = wait_for(
        "the old worker's exit record",
        || s.dossier(),
        || {
            let records = events(&s);
            (!of_kind(&records, "exited", 1).is_empty()).then_some(records)
        },
    );
    let killed = of_kind(&records, "killed", 1);
    assert_eq!(killed.len(), 1, "{records:#?}");
    assert_eq!((killed[0]["deadline"].as_str(), pids(killed[0], "pids")), (Some("drain"), old.clone()));
    let exited = of_kind(&records, "exited", 1)[0];
    assert_eq!((exited["signal"].as_str(), exited["role"].as_str()), (Some("KILL"), Some("draining")));
    let page = client(&s, &["metrics"]).stdout;
    assert!(page.contains("\nhandover_deadline_kills_total{deadline=\"drain\"} 1\n"), "{page}");
    assert!(page.contains("\nhandover_worker_exits_by_signal_total{signal=\"KILL\"} 1\n"), "{page}");
}
