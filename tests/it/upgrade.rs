//! `handover upgrade`: the supervisor executes a new binary in its own
//! process and goes on with the same pid, workers, sockets, files and
//! state, whatever it was doing. Refusals are in `upgrade_refused`.
use std::fs;
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::errors::{Outcome, run_in};
use crate::harness::*;

/// handover on 127.0.0.1:0 with its control socket at `{dir}/ctl`.
pub fn controlled(options: &[&str], worker: &[&str]) -> Supervisor {
    with_worker(&[&["--port", "127.0.0.1:0", "--control", "{dir}/ctl"], options].concat(), worker)
}

pub fn client(s: &Supervisor, args: &[&str]) -> Outcome {
    run_in(s.dir.path(), &[args, &["--control", "{dir}/ctl"]].concat())
}

pub fn status(s: &Supervisor) -> Value {
    let o = client(s, &["status", "--json"]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    serde_json::from_str(&o.stdout).unwrap()
}

/// `upgrade --wait` succeeded; its stdout.
pub fn upgrade(s: &Supervisor) -> String {
    let o = client(s, &["upgrade", "--wait"]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    o.stdout
}

/// `upgrade --wait --binary BINARY` succeeded; its stdout.
pub fn upgrade_to(s: &Supervisor, binary: &std::path::Path) -> String {
    let o = client(s, &["upgrade", "--wait", "--binary", binary.to_str().unwrap()]);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    o.stdout
}

/// (generation, phase, pids) of each generation in a status reply.
pub fn generations(status: &Value) -> Vec<(u64, String, Vec<i64>)> {
    let gens = status["generations"].as_array().expect("generations");
    gens.iter()
        .map(|g| {
            let pids = g["pids"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
            (g["generation"].as_u64().unwrap(), g["phase"].as_str().unwrap().to_string(), pids)
        })
        .collect()
}

fn locked(path: &std::path::Path) -> bool {
    let file = fs::File::open(path).unwrap();
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}

#[test]
fn an_idle_upgrade_keeps_the_pid_workers_sockets_and_pid_file_lock() {
    let mut s = controlled(&["--workers", "2", "--log-format", "json"], &["--notify"]);
    let addr = s.tcp_addr();
    let before = s.wait_generations(&[1, 1]);
    let journal = s.journal().len();
    assert!(locked(&s.path("pid")));

    let said = upgrade(&s);
    assert!(said.starts_with(&format!("supervisor pid {} upgraded from handover ", s.pid())), "{said}");
    let version = env!("CARGO_PKG_VERSION");
    let upgraded = s.wait_event("upgraded", |_| true);
    assert_eq!((upgraded["from"].as_str(), upgraded["to"].as_str()), (Some(version), Some(version)));
    assert_eq!(upgraded["generations"], serde_json::json!([1]), "{upgraded}");
    let st = status(&s);
    assert_eq!(st["pid"], s.pid());
    assert_eq!(st["image"]["upgrades"], 1, "{st:#}");
    assert_eq!(st["image"]["binary"], binary().canonicalize().unwrap().display().to_string());
    assert_eq!(s.status_file(), before, "{}", s.dossier());
    assert_eq!(fs::read_to_string(s.path("pid")).unwrap(), format!("{}\n", s.pid()));
    assert!(locked(&s.path("pid")), "the pid file lock was released\n{}", s.dossier());
    // The workers noticed nothing: no signal, no new generation.
    assert_eq!(s.journal()[journal..], [] as [String; 0], "{}", s.dossier());
    assert!(ask(&addr).unwrap().starts_with("gen=1 "));

    // The machine goes on where it was: the next restart is generation 2.
    let o = client(&s, &["restart", "--wait"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    s.wait_generations(&[2, 2]);
    assert!(ask(&addr).unwrap().starts_with("gen=2 "));
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!s.path("pid").exists() && !s.path("ctl").exists(), "{}", s.dossier());
}

#[test]
fn an_upgrade_while_a_generation_starts_carries_the_candidate() {
    let s =
        controlled(&["--ready", "notify", "--log-format", "json"], &["--notify", "--startup-delay", "1500"]);
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    let starting = wait_for(
        "generation 2 starting",
        || s.dossier(),
        || {
            let st = status(&s);
            generations(&st)
                .into_iter()
                .find(|(g, phase, pids)| *g == 2 && phase == "starting" && !pids.is_empty())
        },
    );
    upgrade(&s);
    s.wait_event("upgraded", |r| r["generations"] == serde_json::json!([1, 2]));
    s.wait_generations(&[2]);
    let after = generations(&status(&s));
    assert_eq!(after, [(2, "serving".to_string(), starting.2)], "{}", s.dossier());
}

#[test]
fn an_upgrade_while_the_old_generation_drains_reaps_it_later() {
    let s = controlled(&["--log-format", "json"], &["--notify", "--ignore-term", "1500"]);
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    let draining = wait_for(
        "generation 1 draining",
        || s.dossier(),
        || {
            let gens = generations(&status(&s));
            let phases: Vec<&str> = gens.iter().map(|g| g.1.as_str()).collect();
            (phases == ["draining", "serving"]).then_some(gens)
        },
    );
    upgrade(&s);
    s.wait_event("upgraded", |r| r["generations"] == serde_json::json!([1, 2]));
    // Gone after the upgrade, reaped and reported by the new image.
    s.wait_generations(&[2]);
    let old = draining[0].2[0];
    s.wait_journal(&["exit", &format!("pid={old}")]);
    wait_for(
        "generation 1 gone from status",
        || s.dossier(),
        || (generations(&status(&s)).len() == 1).then_some(()),
    );
}

#[test]
fn workers_killed_around_upgrades_are_reaped_and_respawned() {
    let s = controlled(&["--workers", "4", "--interval", "0"], &["--notify"]);
    s.wait_generations(&[1, 1, 1, 1]);
    for round in 0..5 {
        let victim = s.status_file()[round % 4].1;
        // Its exit lands before, during or after the exec: each must work.
        kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
        upgrade(&s);
        wait_for(
            "the victim replaced",
            || s.dossier(),
            || {
                let now = s.status_file();
                (now.len() == 4 && now.iter().all(|&(_, p)| p != victim)).then_some(())
            },
        );
    }
    let st = status(&s);
    assert_eq!(st["image"]["upgrades"], 5);
    assert_eq!(st["counters"]["respawns"], 5, "{st:#}");
    // No zombie left behind: every exited child was reaped.
    let zombies: Vec<i32> = (all_pids().into_iter())
        .filter(|&p| parent_of(p) == Some(s.pid()))
        .filter(|p| fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|t| t.contains(") Z ")))
        .collect();
    assert!(zombies.is_empty(), "zombies {zombies:?}\n{}", s.dossier());
}

#[test]
fn a_partial_line_of_captured_output_is_carried_across() {
    let b = handover();
    let fifo = b.dir().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script =
        format!("printf 'first half '; read x < {}; echo 'second half'; exec sleep 1000", fifo.display());
    let s = b
        .args([
            "--port",
            "127.0.0.1:0",
            "--control",
            "{dir}/ctl",
            "--log-capture",
            "--status-file",
            "{dir}/status",
        ])
        .args(["--ready", "alive", "--interval", "0", "--", "sh", "-c"])
        .arg(script)
        .start();
    s.wait_generations(&[1]);
    upgrade(&s);
    fs::write(&fifo, "go\n").unwrap();
    let line = s.wait_line("second half");
    assert!(line.ends_with("stdout] first half second half"), "{line}\n{}", s.dossier());
}

#[test]
fn an_upgrade_as_pid_1_in_a_pid_namespace() {
    if !root_and_unshare() {
        return;
    }
    let b = handover();
    let s = b
        .in_pid_namespace()
        .program("unshare".into())
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(binary())
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--notify", "--journal", "{dir}/journal"])
        .start();
    let before = s.wait_generations(&[1]);
    assert_eq!(status(&s)["pid"], 1);
    upgrade(&s);
    let st = status(&s);
    assert_eq!((st["pid"].as_i64(), st["image"]["upgrades"].as_u64()), (Some(1), Some(1)), "{st:#}");
    assert_eq!(s.status_file(), before);
    assert!(ask(&s.tcp_addr()).unwrap().starts_with("gen=1 "));
}

/// A supervisor with `REAL_HANDOVER` in its environment, for wrapper
/// scripts standing in for a new binary.
pub fn with_real_handover() -> Supervisor {
    handover()
        .env("REAL_HANDOVER", binary().to_str().unwrap())
        .args(["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--status-file", "{dir}/status"])
        .args(["--log-format", "json", "--"])
        .arg(example("worker"))
        .args(["--notify", "--journal", "{dir}/journal"])
        .start()
}

/// An executable script at `{dir}/NAME` that passes the verify run (through
/// the real handover), then does `after` to itself.
pub fn passes_then(s: &Supervisor, name: &str, after: &str) -> std::path::PathBuf {
    let path = s.path(name);
    let script = format!(
        "#!/bin/sh\nif [ \"$HANDOVER_UPGRADE_STATE\" = verify ]; then\n  \
         \"$REAL_HANDOVER\" \"$@\" && {after}\n  exit $?\nfi\nexec \"$REAL_HANDOVER\" \"$@\"\n"
    );
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_script_standing_in_for_the_binary_is_executed_through_its_open_file() {
    let s = with_real_handover();
    let before = s.wait_generations(&[1]);
    let wrapper = passes_then(&s, "wrapper", "true");
    // It ends in the real handover: that is the program the answer names.
    let said = upgrade_to(&s, &wrapper);
    assert!(said.contains(&format!("({})", binary().display())), "{said}");
    assert_eq!(status(&s)["image"]["upgrades"], 1);
    assert_eq!(s.status_file(), before);
    // The wrapper's fd was taken and closed by the new program: none leak.
    // (The control connection that asked is closed just after its answer,
    // so the count is waited for, not read once.)
    let open = || fs::read_dir(format!("/proc/{}/fd", s.pid())).unwrap().count();
    let fds = open();
    upgrade_to(&s, &wrapper);
    upgrade_to(&s, &wrapper);
    wait_for(&format!("{fds} fds open again"), || s.dossier(), || (open() <= fds).then_some(()));
}

#[test]
fn signals_during_upgrades_are_neither_lost_nor_fatal() {
    let s = controlled(&["--interval", "0"], &["--notify"]);
    s.wait_generations(&[1]);
    let pid = Pid::from_raw(s.pid());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hups = {
        let stop = stop.clone();
        // HUPs all the while, some of them while the image changes (a HUP
        // with its default action would end the supervisor).
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && sent < 20_000 {
                let _ = kill(pid, Signal::SIGHUP);
                sent += 1;
                std::thread::yield_now();
            }
        })
    };
    for _ in 0..20 {
        upgrade(&s);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    hups.join().unwrap();
    let st = status(&s);
    assert_eq!(st["image"]["upgrades"], 20, "{st:#}");
    // The last HUP is acted on: a generation newer than 1 ends up serving alone.
    let last = wait_for(
        "the restarts to settle",
        || s.dossier(),
        || {
            let gens = generations(&status(&s));
            (gens.len() == 1 && gens[0].1 == "serving" && gens[0].0 > 1).then_some(gens[0].0)
        },
    );
    assert!(last > 1);
}

#[test]
fn the_workers_readiness_sockets_keep_working_across_upgrades() {
    for worker in ["--notify", "--einhorn-ack"] {
        let s = controlled(&["--ready", "notify"], &[worker]);
        s.wait_generations(&[1]);
        upgrade(&s);
        // A generation started after the upgrade is ready only by its message.
        let o = client(&s, &["restart", "--wait"]);
        assert_eq!(o.code, Some(0), "{worker}: {}\n{}", o.dossier(), s.dossier());
        s.wait_generations(&[2]);
        upgrade(&s);
        let o = client(&s, &["restart", "--wait"]);
        assert_eq!(o.code, Some(0), "{worker}: {}\n{}", o.dossier(), s.dossier());
        s.wait_generations(&[3]);
    }
}

#[test]
fn ready_messages_sent_while_the_program_changes_are_not_lost() {
    // Each new generation says READY=1 a few ms after its HUP, about when
    // the upgrade that follows the HUP executes the new program.
    let s = controlled(&["--ready", "notify", "--interval", "0"], &["--notify", "--startup-delay", "2"]);
    s.wait_generations(&[1]);
    for generation in 2..=11 {
        s.signal(Signal::SIGHUP);
        upgrade(&s);
        s.wait_generations(&[generation]);
    }
    assert_eq!(status(&s)["counters"]["failures"], 0);
}

#[test]
fn a_stop_after_an_upgrade_removes_every_file_the_supervisor_made() {
    let mut s = with_worker(
        &["--path", "{dir}/app.sock", "--control", "{dir}/ctl", "--log-file", "{dir}/log"],
        &["--notify"],
    );
    s.wait_generations(&[1]);
    upgrade(&s);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    let log = fs::read_to_string(s.path("log")).unwrap();
    assert!(log.contains("upgraded from handover") && log.ends_with("exiting\n"), "{log}");
    assert_eq!(crate::errors::listing(s.dir.path()), ["journal", "log"], "left behind\n{}", s.dossier());
}

#[test]
fn a_term_racing_an_upgrade_still_stops_cleanly() {
    for round in 0..6 {
        let mut s = controlled(&["--log-format", "json"], &["--notify"]);
        s.wait_generations(&[1]);
        let dir = s.dir.path().to_owned();
        let asked =
            std::thread::spawn(move || run_in(&dir, &["upgrade", "--wait", "--control", "{dir}/ctl"]));
        // At once, or once the upgrade is under way (the verify run, the
        // exec): the stop is never lost.
        if round % 2 == 1 {
            s.wait_event("upgrade_asked", |_| true);
        }
        s.signal(Signal::SIGTERM);
        assert!(s.wait_exit().success(), "{}", s.dossier());
        let o = asked.join().unwrap();
        assert!(o.code == Some(0) || o.code == Some(1), "{}", o.dossier());
        assert_eq!(crate::errors::listing(s.dir.path()), ["journal"], "left behind\n{}", s.dossier());
    }
}

#[test]
fn a_restart_asked_for_before_an_upgrade_is_answered_by_the_new_program() {
    let s = controlled(&["--ready", "notify"], &["--notify", "--startup-delay", "1000"]);
    s.wait_generations(&[1]);
    let mut asked = crate::control::Raw::connect(&s.path("ctl"));
    asked.send(r#"{"command":"restart"}"#);
    wait_for(
        "generation 2 starting",
        || s.dossier(),
        || generations(&status(&s)).iter().any(|g| g.0 == 2).then_some(()),
    );
    upgrade(&s);
    // The request's connection crossed the exec; its answer comes from the new program.
    let reply = asked.reply();
    assert_eq!((reply["ok"].as_bool(), reply["generation"].as_u64()), (Some(true), Some(2)), "{reply}");
    assert_eq!(status(&s)["image"]["upgrades"], 1);
}

#[test]
fn requests_for_the_binary_being_checked_join_it_and_others_wait_their_turn() {
    let s = with_real_handover();
    s.wait_generations(&[1]);
    // Its verify run waits until the test says so.
    let gate = s.path("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let held = passes_then(&s, "held", "true");
    let script = fs::read_to_string(&held).unwrap();
    let script = script.replacen("then\n", &format!("then\n  read x < {}\n", gate.display()), 1);
    fs::write(&held, script).unwrap();
    let ctl = s.path("ctl");
    let ask = |binary: &std::path::Path| {
        let mut raw = crate::control::Raw::connect(&ctl);
        raw.send(&format!(r#"{{"command":"upgrade","binary":"{}","wait":true}}"#, binary.display()));
        raw
    };
    let mut first = ask(&held);
    s.wait_event("upgrade_asked", |r| r["binary"] == held.display().to_string());
    let mut second = ask(&held);
    let mut other = ask(&binary());
    // Another binary is refused at once, while the first is still checked.
    let refused = other.reply();
    let why =
        format!("upgrade refused: an upgrade to {} is under way; ask again when it is done", held.display());
    assert_eq!(refused["error"], why.as_str(), "{refused}");
    assert_eq!(status(&s)["image"]["upgrades"], 0);
    fs::write(&gate, "go\n").unwrap();
    for raw in [&mut first, &mut second] {
        let reply = raw.reply();
        assert_eq!(reply["ok"], true, "{reply}");
    }
    assert_eq!(status(&s)["image"]["upgrades"], 1, "one upgrade for both");
}

#[test]
fn watched_files_are_watched_again_after_an_upgrade() {
    let s = controlled(
        &["--ready", "notify", "--watch", "{dir}/app.conf", "--log-format", "json"],
        &["--notify"],
    );
    s.wait_generations(&[1]);
    upgrade(&s);
    fs::write(s.path("app.conf"), "workers = 2\n").unwrap();
    s.wait_event("restart_requested", |r| r["by"] == "watch");
    s.wait_generations(&[2]);
}
