//! `handover drill` interrupted (SIGINT, SIGTERM) while its server ignores
//! TERM: it stops the load, asks the supervisor to stop, kills what it
//! started when that does not stop within a few seconds (at once on a
//! second signal), removes its temporary directory and exits 128 + the
//! first signal with one line saying what it killed.
use nix::sys::signal::Signal;

use crate::drill::processes_mentioning;
use crate::harness::*;

/// A drill of a worker that ignores TERM, past its one restart (the old
/// generation draining forever, the new one serving), with TMPDIR in its
/// test directory; the processes it started.
fn drill_of_a_term_ignoring_worker(options: &[&str]) -> (Supervisor, std::path::PathBuf, Vec<i32>) {
    let builder = handover();
    let tmp = builder.dir().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let drill = builder
        .env("TMPDIR", &tmp.display().to_string())
        .args(["drill", "--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "1", "--duration", "60s"])
        .args(["--rate", "200", "--raw-send=", "--raw-expect", "gen="])
        .args(options)
        .arg("--")
        .arg(example("worker"))
        .args(["--notify", "--ignore-term", "forever"])
        .start();
    let mention = tmp.display().to_string();
    // The supervisor and the two generations' workers.
    let started = wait_for(
        "the supervisor and two workers",
        || drill.dossier(),
        || Some(processes_mentioning(&mention)).filter(|found| found.len() >= 3),
    );
    (drill, tmp, started)
}

fn nothing_left(drill: &Supervisor, tmp: &std::path::Path, started: &[i32]) {
    let left: Vec<i32> = started.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running: {left:?}\n{}", drill.dossier());
    let files: Vec<_> = std::fs::read_dir(tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.is_empty(), "left behind: {files:?}");
}

#[test]
fn sigint_kills_a_supervisor_whose_workers_ignore_term_and_cleans_up() {
    let (mut drill, tmp, started) = drill_of_a_term_ignoring_worker(&[]);
    drill.signal(Signal::SIGINT);
    let status = drill.wait_exit();
    assert_eq!(status.code(), Some(130), "{}", drill.dossier());
    let said: Vec<String> = drill.lines().into_iter().filter(|l| l.contains("interrupted")).collect();
    assert_eq!(said.len(), 1, "{}", drill.dossier());
    // The supervisor, or (when it did stop, leaving them) the workers that ignore TERM.
    assert!(said[0].starts_with("handover drill: interrupted by SIGINT; killed "), "{}", drill.dossier());
    assert!(said[0].ends_with("which did not stop within 3 s"), "{}", drill.dossier());
    nothing_left(&drill, &tmp, &started);
}

#[test]
fn a_second_signal_kills_at_once_and_leaves_nothing() {
    // Without the second signal it would wait --stop-timeout + 2 s (62 s)
    // for the supervisor: longer than `wait_exit` waits for it.
    let (mut drill, tmp, started) = drill_of_a_term_ignoring_worker(&["--stop-timeout", "60s"]);
    drill.signal(Signal::SIGTERM);
    drill.signal(Signal::SIGINT);
    let status = drill.wait_exit();
    // Both may be pending when it looks: either is the first it saw.
    assert!(matches!(status.code(), Some(130 | 143)), "{}", drill.dossier());
    let said = |l: &String| {
        l.contains("killed the supervisor") && l.ends_with("on a second signal, without waiting")
    };
    assert!(drill.lines().iter().any(said), "{}", drill.dossier());
    nothing_left(&drill, &tmp, &started);
}
