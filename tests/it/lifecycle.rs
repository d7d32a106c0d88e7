//! Hot restart, rollback, respawn, shutdown: the lifecycle through the real binary.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use nix::sys::signal::Signal;

use crate::harness::*;

#[test]
fn hot_restart_refuses_and_resets_nothing() {
    let s = with_worker(&["--port", "127.0.0.1:0", "--log-format", "json"], &["--notify"]);
    let addr = s.tcp_addr();
    s.wait_journal(&["ready", "gen=1"]);
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..2).map(|_| load(addr.clone(), stop.clone(), done.clone())).collect();
    let at_least = |n: usize| {
        wait_for(
            &format!("{n} requests"),
            || s.dossier(),
            || (done.load(Ordering::SeqCst) >= n).then_some(()),
        )
    };
    at_least(200);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    let after = done.load(Ordering::SeqCst);
    at_least(after + 200);
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for client in clients {
        let (gens, errors) = client.join().unwrap();
        assert!(errors.is_empty(), "failed requests: {errors:?}\n{}", s.dossier());
        seen.extend(gens);
    }
    assert!(seen.contains(&1) && seen.contains(&2), "{seen:?}");
    assert!(s.count_events("ready", |r| r["how"] == "READY=1") > 0, "{}", s.dossier());
}

#[test]
fn failing_new_generation_leaves_the_old_one_serving() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--log-format", "json"],
        &["--notify", "--crash-if-generation-at-least", "2"],
    );
    let addr = s.tcp_addr();
    let first = s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    s.wait_event("exited", |r| r["generation"] == 2 && r["role"] == "starting");
    s.wait_event("note", |r| r["generation"] == 2 && r["what"] == "diagnosis");
    assert_eq!(generation_of(&s.ask(&addr).unwrap()), Some(1));
    assert_eq!(s.status_file(), first, "status untouched");
    assert!(
        !s.journal().iter().any(|l| l.starts_with("term ")),
        "old generation was signalled\n{}",
        s.dossier()
    );
    // Retried every --interval with a new generation number, as start_server.
    s.wait_event("note", |r| r["generation"] == 3 && r["what"] == "diagnosis");
}

#[test]
fn dead_worker_is_respawned() {
    let s = with_worker(&["--port", "127.0.0.1:0", "--log-format", "json"], &["--notify"]);
    let addr = s.tcp_addr();
    let first = s.wait_generations(&[1]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[0].1), Signal::SIGKILL).unwrap();
    s.wait_event("exited", |r| {
        pids_of(r, "pids") == [first[0].1] && r["role"] == "serving" && r["signal"] == "KILL"
    });
    s.wait_generations(&[2]);
    assert_eq!(generation_of(&s.ask(&addr).unwrap()), Some(2));
}

#[test]
fn a_worker_killed_by_a_real_time_signal_is_respawned_and_the_stop_ends() {
    // waitpid's status for signals 34-64 has no name in nix's Signal: the
    // exit was reaped and lost, and a stop waited for it for ever.
    let mut s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    let first = s.wait_generations(&[1]);
    // 37: SIGRTMIN+3 under glibc, sent by the shell's own kill.
    let pid = first[0].1.to_string();
    let kill = std::process::Command::new("sh").args(["-c", "kill -37 \"$1\"", "sh", &pid]).status().unwrap();
    assert!(kill.success());
    s.wait_generations(&[2]);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
}

#[test]
fn hups_during_a_restart_coalesce_into_one() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--log-format", "json"],
        &["--notify", "--startup-delay", "300"],
    );
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    s.wait_journal(&["start", "gen=2"]);
    for _ in 0..3 {
        s.signal(Signal::SIGHUP);
    }
    s.wait_generations(&[3]);
    s.wait_journal(&["ready", "gen=3"]);
    assert_eq!(s.count_events("spawned", |_| true), 3, "{}", s.dossier());
}

#[test]
fn term_stops_every_worker_and_removes_every_file() {
    for (signal, word) in [(Signal::SIGTERM, "TERM"), (Signal::SIGINT, "INT")] {
        let mut s = with_worker(
            &["--port", "127.0.0.1:0", "--path", "{dir}/app.sock", "--log-format", "json"],
            &["--notify"],
        );
        let pid = s.wait_generations(&[1])[0].1;
        assert!(s.path("app.sock").exists() && s.path("pid").exists());
        s.signal(signal);
        assert!(s.wait_exit().success(), "{}", s.dossier());
        let stop = |r: &serde_json::Value| r["signal"] == word && pids_of(r, "pids") == [pid];
        assert_eq!(s.count_events("stop_requested", stop), 1, "{}", s.dossier());
        assert_eq!(s.events().last().unwrap()["event"], "exiting", "{}", s.dossier());
        s.wait_journal(&["term", &format!("pid={pid}")]);
        assert!(!alive(pid));
        for file in ["pid", "status", "app.sock"] {
            assert!(!s.path(file).exists(), "{file} left behind");
        }
    }
}

#[test]
fn other_signals_are_forwarded_to_the_serving_generation() {
    let s = with_worker(&["--port", "127.0.0.1:0"], &["--notify"]);
    let pid = s.wait_generations(&[1])[0].1;
    for (signal, name) in [
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGQUIT, "QUIT"),
        (Signal::SIGWINCH, "WINCH"),
    ] {
        s.signal(signal);
        s.wait_journal(&["signal", &format!("pid={pid}"), &format!("name={name}")]);
    }
    assert!(alive(s.pid()), "supervisor survived");
}

#[test]
fn drain_timeout_kills_an_old_generation_that_ignores_term() {
    let s = with_worker(
        &[
            "--port",
            "127.0.0.1:0",
            "--drain-timeout",
            "200ms",
            "--stop-timeout",
            "100ms",
            "--log-format",
            "json",
        ],
        &["--notify", "--ignore-term", "forever"],
    );
    let old = s.wait_generations(&[1])[0].1;
    s.signal(Signal::SIGHUP);
    s.wait_event("killed", |r| r["deadline"] == "drain" && pids_of(r, "pids") == [old]);
    s.wait_event("exited", |r| {
        pids_of(r, "pids") == [old] && r["role"] == "draining" && r["signal"] == "KILL"
    });
    s.wait_generations(&[2]);
}

#[test]
fn stop_timeout_kills_workers_that_ignore_term() {
    let mut s = with_worker(
        &["--port", "127.0.0.1:0", "--stop-timeout", "100ms"],
        &["--notify", "--ignore-term", "forever"],
    );
    let pid = s.wait_generations(&[1])[0].1;
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!alive(pid));
}

#[test]
fn several_workers_per_generation_are_replaced_together() {
    let s = with_worker(&["--port", "127.0.0.1:0", "--workers", "3", "--ready", "notify"], &["--notify"]);
    let first = s.wait_generations(&[1, 1, 1]);
    for index in ["index=0", "index=1", "index=2"] {
        s.wait_journal(&["start", "gen=1", index]);
    }
    // One crashed worker comes back alone, in its generation.
    let victim = first[1].1;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let respawned = wait_for(
        "the respawned worker",
        || s.dossier(),
        || {
            let now = s.status_file();
            (now.len() == 3 && !now.iter().any(|&(_, p)| p == victim)).then_some(now)
        },
    );
    assert!(respawned.iter().all(|&(g, _)| g == 1), "{respawned:?}");
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2, 2, 2]);
    for (_, pid) in respawned {
        s.wait_journal(&["term", &format!("pid={pid}")]);
    }
}

#[test]
fn a_watched_file_that_changes_restarts_without_dropping_a_request() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--watch", "{dir}/app.conf", "--log-format", "json"],
        &["--notify"],
    );
    let addr = s.tcp_addr();
    s.wait_generations(&[1]);
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let client = load(addr, stop.clone(), done.clone());
    let at_least = |n: usize| {
        wait_for(
            &format!("{n} requests"),
            || s.dossier(),
            || (done.load(Ordering::SeqCst) >= n).then_some(()),
        )
    };
    at_least(100);
    // An editor's scratch file does not count; the file itself does.
    std::fs::write(s.path(".app.conf.swp"), "x").unwrap();
    std::fs::write(s.path("app.conf"), "workers = 2\n").unwrap();
    s.wait_event("restart_requested", |r| r["by"] == "watch");
    s.wait_generations(&[2]);
    at_least(done.load(Ordering::SeqCst) + 100);
    stop.store(true, Ordering::SeqCst);
    let (seen, errors) = client.join().unwrap();
    assert!(errors.is_empty(), "{errors:?}\n{}", s.dossier());
    assert!(seen.contains(&1) && seen.contains(&2));
    assert_eq!(s.count_events("restart_requested", |r| r["by"] == "watch"), 1, "{}", s.dossier());
}

#[test]
fn auto_restart_replaces_the_generation_on_its_own() {
    let s = with_worker(
        &[
            "--port",
            "127.0.0.1:0",
            "--enable-auto-restart",
            "--auto-restart-interval",
            "1",
            "--kill-old-delay",
            "0",
            "--log-format",
            "json",
        ],
        &["--notify"],
    );
    s.wait_generations(&[1]);
    s.wait_event("restart_requested", |r| r["by"] == "autorestart");
    s.wait_generations(&[2]);
    s.wait_journal(&["term", "gen=1"]);
}

#[test]
fn kill_old_delay_keeps_the_old_generation_serving_a_while() {
    let s = with_worker(&["--port", "127.0.0.1:0", "--kill-old-delay", "1"], &["--notify"]);
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    // The last look at the journal that did not show generation 2 ready:
    // its `ready` line, then its READY=1, came after that look, and the
    // TERM of generation 1 at least the delay after that.
    let mut not_yet = std::time::Instant::now();
    wait_for(
        "generation 2 ready",
        || s.dossier(),
        || {
            let looked = std::time::Instant::now();
            let ready = s.journal().iter().any(|l| l.starts_with("ready ") && l.ends_with(" gen=2"));
            if !ready {
                not_yet = looked;
            }
            ready.then_some(())
        },
    );
    assert!(!s.journal().iter().any(|l| l.starts_with("term ")), "signalled before the delay");
    s.wait_journal(&["term", "gen=1"]);
    let delay = not_yet.elapsed();
    assert!(delay >= std::time::Duration::from_secs(1), "TERM after {delay:?}\n{}", s.dossier());
}

#[test]
fn signal_on_hup_and_signal_on_term_choose_what_workers_get() {
    let mut s = with_worker(
        &[
            "--port",
            "127.0.0.1:0",
            "--signal-on-hup",
            "USR1",
            "--signal-on-term",
            "usr2",
            "--stop-timeout",
            "200ms",
            "--log-format",
            "json",
        ],
        &["--notify"],
    );
    let first = s.wait_generations(&[1])[0].1;
    s.signal(Signal::SIGHUP);
    s.wait_event("switched", |r| r["signal"] == "USR1" && pids_of(r, "old_pids") == [first]);
    s.wait_journal(&["signal", &format!("pid={first}"), "name=USR1"]);
    let second = s.wait_generations(&[1, 2])[1].1;
    s.signal(Signal::SIGTERM);
    s.wait_event("stop_requested", |r| r["signal"] == "TERM" && pids_of(r, "pids").contains(&second));
    s.wait_journal(&["signal", &format!("pid={second}"), "name=USR2"]);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!alive(first) && !alive(second));
}

/// A TERM the moment the supervisor starts ends it, by its default action
/// (before the handlers) or by a clean stop (after), every time; during
/// the handlers' set-up it is held until they are in place (a window too
/// short to aim at from here, so this checks the two sides of it).
#[test]
fn a_term_at_once_after_start_is_never_lost() {
    for _ in 0..40 {
        let mut s = handover().args(["--port", "127.0.0.1:0", "--"]).arg(example("worker")).start();
        s.signal(Signal::SIGTERM);
        let status = s.wait_exit();
        use std::os::unix::process::ExitStatusExt;
        let ended = status.success() || status.signal() == Some(Signal::SIGTERM as i32);
        assert!(ended, "{status:?}\n{}", s.dossier());
    }
}

/// A generation that never became ready serves no one: a worker that
/// ignores TERM during its start-up does not keep a stop waiting for ever
/// (no --stop-timeout here); its group is killed after --ready-timeout.
#[test]
fn a_stop_kills_a_generation_that_never_became_ready_after_the_ready_timeout() {
    let before = std::time::Instant::now();
    let mut s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--ready-timeout", "2s"],
        &["--ignore-term", "forever"],
    );
    // Its handlers are in place; it never sends READY=1.
    let line = s.wait_journal(&["ready", "gen=1"]);
    let pid: i32 = line.split(' ').find_map(|w| w.strip_prefix("pid=")).unwrap().parse().unwrap();
    s.signal(Signal::SIGTERM);
    s.wait_journal(&["term", &format!("pid={pid}")]);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    // The kill comes --ready-timeout after the TERM, itself after the spawn.
    let took = before.elapsed();
    assert!(took >= std::time::Duration::from_secs(2), "killed after {took:?}\n{}", s.dossier());
    assert!(!alive(pid), "{}", s.dossier());
    assert!(!s.journal().iter().any(|l| l.starts_with("exit ")), "it never exited itself\n{}", s.dossier());
}
