//! Nothing escapes: process groups, orphans, exit codes, users, PID 1.
use std::fs;

use nix::sys::signal::Signal;

use crate::harness::*;

/// `(ppid, state)` of a process, from /proc.
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

fn read_pid(s: &Supervisor, file: &str) -> i32 {
    wait_for(file, || s.dossier(), || fs::read_to_string(s.path(file)).ok()?.trim().parse().ok())
}

/// A shell worker: `script` runs with `{dir}` replaced; it must end by exec'ing a long sleep.
fn shell(options: &[&str], script: &str) -> Supervisor {
    let b = handover();
    let script = script.replace("{dir}", &b.dir().display().to_string());
    b.args(options)
        .args(["--interval", "100ms", "--status-file", "{dir}/status", "--", "sh", "-c"])
        .arg(script)
        .start()
}

#[test]
fn orphans_are_reaped_while_running_and_stopped_at_exit() {
    let script = "(sleep 0.3 & echo $! > {dir}/short); sleep 1000 & echo $! > {dir}/long; exec sleep 2000";
    let mut s = shell(&[], script);
    let short = read_pid(&s, "short");
    // Re-parented to the supervisor (a subreaper), then reaped: never a lasting zombie.
    wait_for(
        "the orphan to be ours",
        || s.dossier(),
        || stat(short).is_none_or(|(ppid, _)| ppid == s.pid()).then_some(()),
    );
    wait_for("the orphan to be reaped", || s.dossier(), || stat(short).is_none().then_some(()));
    let long = read_pid(&s, "long");
    assert!(alive(long));
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    assert!(!alive(long), "left behind\n{}", s.dossier());
    s.wait_line(&format!("stopped processes the workers left behind: {long}"));
    assert!(s.lines().last().unwrap().ends_with("exiting"), "exiting is the last line\n{}", s.dossier());
}

#[test]
fn signal_target_group_reaches_the_whole_pipeline_and_pid_only_the_leader() {
    let script = "sleep 1000 & echo $! > {dir}/child; wait";
    for (target, child_survives_restart) in [("group", false), ("pid", true)] {
        let mut s = shell(&["--signal-target", target, "--log-format", "json"], script);
        let leader = s.wait_generations(&[1])[0].1;
        let child = read_pid(&s, "child");
        fs::remove_file(s.path("child")).unwrap();
        s.signal(Signal::SIGHUP);
        read_pid(&s, "child");
        wait_for("the old leader to exit", || s.dossier(), || (!alive(leader)).then_some(()));
        if child_survives_restart {
            assert!(alive(child), "--signal-target pid signalled the group");
            // Its generation drains while a process of its group is left.
            s.wait_generations(&[1, 2]);
        } else {
            wait_for("the old pipeline to stop", || s.dossier(), || (!alive(child)).then_some(()));
            s.wait_event("exited", |r| r["generation"] == 1 && r["role"] == "draining");
            s.wait_generations(&[2]);
        }
        s.signal(Signal::SIGTERM);
        assert!(s.wait_exit().success());
        assert!(!alive(child), "{target}: left behind\n{}", s.dossier());
    }
}

#[test]
fn stop_on_exit_passes_the_workers_code_on() {
    let mut s = with_worker(
        &["--port", "127.0.0.1:0", "--stop-on-exit", "78,79", "--log-format", "json"],
        &["--notify", "--exit-after", "50", "--exit-code", "78"],
    );
    assert_eq!(s.wait_exit().code(), Some(78), "{}", s.dossier());
    assert_eq!(s.count_events("note", |r| r["what"] == "stop_on_exit"), 1, "{}", s.dossier());
    assert!(!s.path("pid").exists() && !s.path("status").exists());
}

#[test]
fn max_start_attempts_ends_a_start_that_never_succeeds() {
    let mut s = with_worker(
        // Ready only by READY=1, which never comes: however slow the
        // machine, the crash counts as a failed start.
        &[
            "--port",
            "127.0.0.1:0",
            "--interval",
            "50ms",
            "--ready",
            "notify",
            "--max-start-attempts",
            "3",
            "--log-format",
            "json",
        ],
        &["--crash-before-ready", "3"],
    );
    assert_eq!(s.wait_exit().code(), Some(1), "{}", s.dossier());
    let failed = |r: &serde_json::Value| r["role"] == "starting" && r["code"] == 3;
    assert_eq!(s.count_events("exited", failed), 3, "{}", s.dossier());
    s.wait_event("note", |r| r["what"] == "gave_up");
}

#[test]
fn exits_are_logged_with_their_meaning() {
    let s = shell(&[], "sleep 0.2; kill -SEGV $$");
    s.wait_line("died unexpectedly (killed by SIGSEGV");
}

#[test]
fn usr1_with_on_usr1_both_reopens_the_log_file_and_reaches_the_worker() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--log-file", "{dir}/log", "--on-usr1", "both"],
        &["--notify"],
    );
    let pid = s.wait_generations(&[1])[0].1;
    fs::rename(s.path("log"), s.path("log.1")).unwrap();
    s.signal(Signal::SIGUSR1);
    s.wait_journal(&["signal", &format!("pid={pid}"), "name=USR1"]);
    s.signal(Signal::SIGHUP);
    wait_for(
        "lines in the new log",
        || s.dossier(),
        || fs::read_to_string(s.path("log")).ok().filter(|l| l.contains("received HUP")).map(drop),
    );
    assert!(fs::read_to_string(s.path("log.1")).unwrap().contains("starting new worker"));
}

#[test]
fn workers_run_as_the_given_user() {
    if !can_run("root", nix::unistd::Uid::effective().is_root()) {
        return;
    }
    let b = handover();
    // The worker (nobody) appends to the journal in the test's directory.
    fs::set_permissions(b.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let s = b
        .args(["--port", "127.0.0.1:0", "--user", "nobody", "--ready", "notify", "--log-format", "json"])
        .args(["--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--notify"])
        .start();
    let pid = s.wait_generations(&[1])[0].1;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(uid.split_whitespace().skip(1).all(|id| id == "65534"), "{uid}");
    // A dropped worker cannot regain privileges through setuid programs.
    assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{status}");
    // The status file is written before the line is read from the pipe: wait for it.
    s.wait_event("ready", |r| r["how"] == "READY=1");
}

#[test]
fn as_pid_1_in_a_pid_namespace_every_zombie_is_reaped() {
    if !root_and_unshare() {
        return;
    }
    let b = handover();
    let dir = b.dir().display().to_string();
    let script = format!("for i in 1 2 3 4 5; do (sleep 1 &); done; echo >> {dir}/spawned; exec sleep 1000");
    let s = b
        .in_pid_namespace()
        .program("unshare".into())
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(binary())
        .args(["--interval", "100ms", "--log-format", "json", "--", "sh", "-c"])
        .arg(script)
        .start();
    wait_for("the orphans", || s.dossier(), || s.path("spawned").exists().then_some(()));
    let init = wait_for(
        "handover as pid 1",
        || s.dossier(),
        || {
            let children = fs::read_to_string(format!("/proc/{}/task/{}/children", s.pid(), s.pid())).ok()?;
            children.split_whitespace().next()?.parse::<i32>().ok()
        },
    );
    // Everything init has as children but the worker (`sleep 1000`): the
    // five orphans, alive for a second, then reaped, never left as zombies.
    let orphans = || {
        let entries = fs::read_dir("/proc").unwrap().flatten();
        let pids = entries.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
        let cmdline = |p: i32| fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
        pids.filter(|&p| stat(p).is_some_and(|(ppid, _)| ppid == init) && !cmdline(p).contains("1000"))
            .count()
    };
    wait_for("the orphans re-parented to pid 1", || s.dossier(), || (orphans() == 5).then_some(()));
    wait_for("every orphan reaped by pid 1", || s.dossier(), || (orphans() == 0).then_some(()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), Signal::SIGTERM).unwrap();
    s.wait_event("exiting", |_| true);
}

/// handover running one of the process examples with a journal.
fn example_worker(name: &str, options: &[&str], args: &[&str]) -> Supervisor {
    handover()
        .args(options)
        .args(["--status-file", "{dir}/status", "--"])
        .arg(example(name))
        .args(["--journal", "{dir}/journal"])
        .args(args)
        .start()
}

/// The `pid=` of the journal line with all `parts`.
fn journal_pid(s: &Supervisor, parts: &[&str]) -> i32 {
    let line = s.wait_journal(parts);
    line.split(' ').find_map(|w| w.strip_prefix("pid=")).unwrap().parse().unwrap()
}

#[test]
fn pipeline_group_signals_stop_the_whole_pipeline_pid_signals_only_the_leader() {
    for target in ["group", "pid"] {
        let mut s = example_worker(
            "pipeline",
            &["--port", "127.0.0.1:0", "--ready", "notify", "--signal-target", target],
            &["--notify", "--output", "{dir}/out"],
        );
        s.wait_generations(&[1]);
        let producer = journal_pid(&s, &["start", "role=producer", "gen=1"]);
        s.signal(Signal::SIGHUP);
        if target == "group" {
            s.wait_generations(&[2]);
            s.wait_journal(&["term", "role=producer", &format!("pid={producer}")]);
        } else {
            // The producer is left in generation 1's group: it drains on.
            s.wait_generations(&[1, 2]);
            assert!(alive(producer), "a pid signal reached the producer\n{}", s.dossier());
        }
        s.signal(Signal::SIGTERM);
        assert!(s.wait_exit().success(), "{}", s.dossier());
        s.wait_journal(&["term", "role=producer", &format!("pid={producer}")]);
        assert!(!alive(producer), "{target}: the old pipeline outlived handover");
    }
}

#[test]
fn exit_codes_are_respawned_or_passed_on_with_stop_on_exit() {
    let s = example_worker(
        "exit_codes",
        &["--interval", "50ms", "--log-format", "json"],
        &["--code", "3", "--after", "100", "--only-generation", "1"],
    );
    s.wait_event("exited", |r| r["generation"] == 1 && r["role"] == "serving" && r["code"] == 3);
    s.wait_generations(&[2]);
    for (args, code) in [(["--code", "78"], 78), (["--signal", "SEGV"], 139)] {
        let mut s = example_worker("exit_codes", &["--interval", "50ms", "--stop-on-exit", "78,139"], &args);
        assert_eq!(s.wait_exit().code(), Some(code), "{}", s.dossier());
    }
}

#[test]
fn orphans_of_a_worker_are_reaped_and_stopped_with_it() {
    let mut s = example_worker(
        "orphans",
        &["--ready", "notify"],
        &["--notify", "--grandchildren", "2", "--zombies", "3"],
    );
    s.wait_generations(&[1]);
    let me = s.pid();
    for _ in 0..3 {
        s.wait_journal(&["exit", "role=zombie", &format!("ppid={me}")]);
    }
    let grandchild = journal_pid(&s, &["start", "role=grandchild"]);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    s.wait_journal(&["term", "role=grandchild", &format!("pid={grandchild}")]);
    assert!(!alive(grandchild));
}
