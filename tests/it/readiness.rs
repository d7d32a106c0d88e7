//! `--ready auto`, the default, through the real binary: it learns from a
//! worker that sends `READY=1` and then waits for it at every restart;
//! without one, a generation is ready when it is seen waiting for
//! connections (`readiness_observed.rs`).
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::errors::run_in;
use crate::harness::*;

/// The default command line (no `--ready`) with a control socket at `{dir}/ctl`.
fn default_ready(worker: &[&str]) -> Supervisor {
    with_worker(&["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--log-format", "json"], worker)
}

/// `handover status [--json] --control {dir}/ctl`: its stdout.
fn status(s: &Supervisor, json: bool) -> String {
    let mut args = vec!["status", "--control", "{dir}/ctl"];
    if json {
        args.push("--json");
    }
    let o = run_in(s.dir.path(), &args);
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    o.stdout
}

fn ready_rule(s: &Supervisor) -> String {
    let reply: Value = serde_json::from_str(&status(s, true)).unwrap();
    reply["ready"].as_str().unwrap_or_else(|| panic!("no \"ready\" in {reply:#}")).to_string()
}

/// Where the journal line `EVENT pid=.. gen=G` is.
fn journal_at(s: &Supervisor, event: &str, generation: u64) -> Option<usize> {
    let gen_word = format!("gen={generation}");
    s.journal().iter().position(|l| l.split(' ').next() == Some(event) && l.split(' ').any(|w| w == gen_word))
}

#[test]
fn a_slow_worker_that_sends_ready_is_switched_to_at_its_ready_message_not_after_the_interval() {
    // READY=1 after 1.5 s, --interval 1 s (the default): the old generation
    // must be told to stop only once the new one has said it is ready.
    let s = default_ready(&["--notify", "--startup-delay", "1500"]);
    s.wait_event("note", |r| r["what"] == "ready_learned");
    assert_eq!(ready_rule(&s), "auto, learned notify");
    assert!(status(&s, false).contains("\nreadiness: auto, learned notify\n"), "{}", s.dossier());
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    s.wait_journal(&["term", "gen=1"]);
    let (ready, term) = (journal_at(&s, "ready", 2), journal_at(&s, "term", 1));
    assert!(
        ready.is_some() && ready < term,
        "generation 1 stopped before generation 2 was ready\n{}",
        s.dossier()
    );
    s.wait_event("ready", |r| r["generation"] == 2 && r["how"] == "READY=1");
    let learned = s.count_events("note", |r| r["what"] == "ready_learned");
    assert_eq!(learned, 1, "logged once\n{}", s.dossier());
}

#[test]
fn a_worker_that_never_sends_ready_is_switched_to_when_seen_waiting_for_connections() {
    let s = default_ready(&[]);
    s.wait_generations(&[1]);
    assert_eq!(ready_rule(&s), "auto");
    s.signal(Signal::SIGHUP);
    s.wait_journal(&["term", "gen=1"]);
    s.wait_generations(&[2]);
    let reply: Value = serde_json::from_str(&status(&s, true)).unwrap();
    let how = reply["generations"][0]["ready_by"].as_str().unwrap_or_default().to_string();
    assert!(how.starts_with("waiting in ") && how.ends_with(" on fd 3"), "{reply:#}\n{}", s.dossier());
    assert_eq!(s.count_events("note", |r| r["what"] == "ready_learned"), 0, "{}", s.dossier());
    assert!(status(&s, false).contains("\nreadiness: auto\n"), "{}", s.dossier());
}
