//! Hostile workers: a generation cannot be made ready by another one's
//! processes, and nothing a worker starts outlives a deadline, whatever
//! it does with sessions and process groups (`--cgroup auto` and `off`).
use nix::sys::signal::Signal;

use crate::control::Raw;
use crate::harness::*;

fn pid_in(line: &str, key: &str) -> i32 {
    let field = line.split(' ').find_map(|w| w.strip_prefix(&format!("{key}=")[..]));
    field.and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn supervised(mode: &str, worker: &[&str]) -> Supervisor {
    with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--drain-timeout", "1s"]
            .into_iter()
            .chain(["--control", "{dir}/ctl", "--cgroup", mode])
            .collect::<Vec<_>>(),
        &[&["--notify"], worker].concat(),
    )
}

/// A child of generation 1 moves into generation 2's process group and
/// sends READY=1 before generation 2 is ready: generation 2 stays starting
/// and generation 1 serves on.
fn forged_readiness_is_not_credited(mode: &str) {
    let mut s = supervised(mode, &["--forge-ready", "{dir}/target", "--never-ready-from-generation", "2"]);
    let first = s.wait_generations(&[1])[0].1;
    s.signal(Signal::SIGHUP);
    let second = pid_in(&s.wait_journal(&["start", "gen=2"]), "pid");
    std::fs::write(s.path("target"), second.to_string()).unwrap();
    let forged = s.wait_journal(&["forged"]);
    let status = Raw::connect(&s.path("ctl")).ask("status");
    let gens = status["generations"].as_array().unwrap();
    let phases: Vec<(u64, &str)> =
        gens.iter().map(|g| (g["generation"].as_u64().unwrap(), g["phase"].as_str().unwrap())).collect();
    assert_eq!(phases, [(1, "serving"), (2, "starting")], "after {forged}: {status}\n{}", s.dossier());
    assert!(alive(first), "generation 1 was stopped\n{}", s.dossier());
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn forged_readiness_is_not_credited_in_cgroup_mode() {
    if can_run("a writable cgroup v2 (root)", nix::unistd::Uid::effective().is_root()) {
        forged_readiness_is_not_credited("auto");
    }
}

#[test]
fn forged_readiness_is_not_credited_in_session_mode() {
    forged_readiness_is_not_credited("off");
}

/// A worker that moves into the supervisor's process group and ignores
/// TERM is killed at the drain deadline.
fn a_worker_in_the_supervisors_group_is_killed(mode: &str) {
    let worker = ["--join-supervisor-group", "--ignore-term", "forever"];
    let mut s = with_worker(
        &[
            "--port",
            "127.0.0.1:0",
            "--ready",
            "notify",
            "--drain-timeout",
            "1s",
            "--stop-timeout",
            "1s",
            "--cgroup",
            mode,
        ],
        &[&["--notify"], &worker[..]].concat(),
    );
    let first = s.wait_generations(&[1])[0].1;
    s.wait_journal(&["joined"]);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    assert!(!alive(first), "generation 1 outlived its drain\n{}", s.dossier());
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn a_worker_in_the_supervisors_group_is_killed_in_cgroup_mode() {
    if can_run("a writable cgroup v2 (root)", nix::unistd::Uid::effective().is_root()) {
        a_worker_in_the_supervisors_group_is_killed("auto");
    }
}

#[test]
fn a_worker_in_the_supervisors_group_is_killed_in_session_mode() {
    a_worker_in_the_supervisors_group_is_killed("off");
}

/// A worker's child in a session of its own that ignores TERM: the old
/// generation counts as gone only once it is gone too, at the drain
/// deadline, and `status` lists it meanwhile. (In session mode the worker
/// exits on TERM, its child is re-parented to the supervisor and adopted.)
fn a_setsid_child_does_not_outlive_the_drain(mode: &str) {
    let mut s = supervised(mode, &["--setsid-child"]);
    s.wait_generations(&[1]);
    let escapee = pid_in(&s.wait_journal(&["escapee"]), "child");
    s.wait_journal(&["start", &format!("pid={escapee}")]);
    let mut control = Raw::connect(&s.path("ctl"));
    let status = control.ask("status");
    let members = status["generations"][0]["members"].as_array().cloned().unwrap_or_default();
    assert!(members.iter().any(|m| m.as_i64() == Some(escapee.into())), "{status}");
    let reply = control.ask("restart");
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(!alive(escapee), "the escapee outlived the restart's answer\n{}", s.dossier());
    let gone_ms = reply["signal_to_old_gone_ms"].as_f64().unwrap();
    assert!(gone_ms >= 900.0, "the old generation counted as gone after {gone_ms} ms");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn a_setsid_child_does_not_outlive_the_drain_in_cgroup_mode() {
    if can_run("a writable cgroup v2 (root)", nix::unistd::Uid::effective().is_root()) {
        a_setsid_child_does_not_outlive_the_drain("auto");
    }
}

#[test]
fn a_setsid_child_does_not_outlive_the_drain_in_session_mode() {
    a_setsid_child_does_not_outlive_the_drain("off");
}

/// Both a worker that ignores TERM and its child in a session of its own
/// (still attached by parentage, not yet an orphan) end at the deadline.
#[test]
fn a_setsid_child_of_a_worker_ignoring_term_is_killed_with_it() {
    let mut s = with_worker(
        &["--port", "127.0.0.1:0", "--ready", "notify", "--drain-timeout", "1s", "--stop-timeout", "1s"]
            .into_iter()
            .chain(["--cgroup", "off"])
            .collect::<Vec<_>>(),
        &["--notify", "--setsid-child", "--ignore-term", "forever"],
    );
    let first = s.wait_generations(&[1])[0].1;
    let escapee = pid_in(&s.wait_journal(&["escapee"]), "child");
    s.wait_journal(&["start", &format!("pid={escapee}")]);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    wait_for(
        "the old worker and its escapee gone",
        || s.dossier(),
        || (!alive(first) && !alive(escapee)).then_some(()),
    );
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

/// READY=1 from a process of no worker (here the test itself) while
/// generation 2 starts: ignored, counted in `status`.
fn readiness_from_no_worker_is_counted(mode: &str) {
    let mut s = supervised(mode, &["--never-ready-from-generation", "2"]);
    let first = s.wait_generations(&[1])[0].1;
    let environ = std::fs::read(format!("/proc/{first}/environ")).unwrap();
    let path = (environ.split(|&b| b == 0))
        .find_map(|v| v.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|p| std::path::PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .expect("NOTIFY_SOCKET in the worker's environment");
    s.signal(Signal::SIGHUP);
    s.wait_journal(&["start", "gen=2"]);
    let socket = std::os::unix::net::UnixDatagram::unbound().unwrap();
    socket.send_to(b"READY=1", &path).unwrap();
    let mut control = Raw::connect(&s.path("ctl"));
    let status = wait_for(
        "the foreign READY=1 counted",
        || s.dossier(),
        || {
            let status = control.ask("status");
            (status["counters"]["foreign_ready"] == 1).then_some(status)
        },
    );
    let phases: Vec<&str> =
        status["generations"].as_array().unwrap().iter().map(|g| g["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["serving", "starting"], "{status}");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
}

#[test]
fn readiness_from_no_worker_is_counted_in_cgroup_mode() {
    if can_run("a writable cgroup v2 (root)", nix::unistd::Uid::effective().is_root()) {
        readiness_from_no_worker_is_counted("auto");
    }
}

#[test]
fn readiness_from_no_worker_is_counted_in_session_mode() {
    readiness_from_no_worker_is_counted("off");
}

/// The cgroup v2 mount point, from our mountinfo.
fn cgroup2_mount() -> std::path::PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line =
        info.lines().find(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("cgroup2 "))).unwrap();
    line.split(' ').nth(4).unwrap().into()
}

/// The `| COMMAND` logger runs in a cgroup of its own next to the
/// workers' (never one of theirs, never the supervisor's); at exit its
/// processes go back to the supervisor's cgroup and no cgroup is left.
#[test]
fn the_logger_has_a_cgroup_of_its_own() {
    if !can_run("a writable cgroup v2 (root)", nix::unistd::Uid::effective().is_root()) {
        return;
    }
    let logger = "| cat /proc/self/cgroup > {dir}/logger-cgroup; exec cat >> {dir}/log";
    let mut s = with_worker(&["--port", "127.0.0.1:0", "--cgroup", "auto", "--log-file", logger], &[]);
    let worker = s.wait_generations(&[1])[0].1;
    let of = |text: &str| text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string();
    let worker_cgroup = of(&std::fs::read_to_string(format!("/proc/{worker}/cgroup")).unwrap());
    let logger_cgroup = wait_for(
        "the logger's cgroup",
        || s.dossier(),
        || std::fs::read_to_string(s.path("logger-cgroup")).ok().filter(|t| t.ends_with('\n')),
    );
    let logger_cgroup = of(&logger_cgroup);
    let base = worker_cgroup.rsplit_once('/').unwrap().0.to_string();
    assert_eq!(worker_cgroup, format!("{base}/{worker}"));
    assert_eq!(logger_cgroup, format!("{base}/logger"), "{}", s.dossier());
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.dossier());
    let dir = cgroup2_mount().join(base.trim_start_matches('/'));
    assert!(!dir.exists(), "{} left behind\n{}", dir.display(), s.dossier());
}
