//! `handover status --serving`, the readiness and liveness probe of a
//! container (Kubernetes' exec probe): exit 0 only while a generation
//! serves, else exit 1 with the reason in one line; over `--control` and
//! over the pid and status files.
use crate::errors::{Outcome, run_in};
use crate::harness::*;

fn probe(s: &Supervisor, target: &[&str]) -> Outcome {
    run_in(s.dir.path(), &[&["status", "--serving"], target].concat())
}

/// Waits until the probe gives `code`; returns that outcome.
fn wait_probe(s: &Supervisor, target: &[&str], code: i32) -> Outcome {
    wait_for(
        &format!("status --serving to exit {code}"),
        || s.dossier(),
        || Some(probe(s, target)).filter(|o| o.code == Some(code)),
    )
}

const CONTROL: [&str; 2] = ["--control", "{dir}/ctl"];
const FILES: [&str; 4] = ["--pid-file", "{dir}/pid", "--status-file", "{dir}/status"];

#[test]
fn the_probe_fails_while_the_only_generation_is_starting() {
    // `sleep` never sends READY=1: generation 1 stays starting.
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--", "sleep", "1000"])
        .start();
    // Until the control socket is there, the probe fails for that reason.
    let o = wait_for(
        "the probe's answer from the supervisor",
        || s.dossier(),
        || Some(probe(&s, &CONTROL)).filter(|o| !o.stderr.contains("cannot connect")),
    );
    assert_eq!((o.code, o.stdout.as_str()), (Some(1), ""), "{}", o.dossier());
    assert_eq!(
        o.error_lines(),
        ["handover: no generation is serving: generation 1 starting"],
        "{}",
        o.dossier()
    );
    let o = probe(&s, &FILES);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    assert_eq!(
        o.error_lines(),
        ["handover: no generation is serving: the status file lists none"],
        "{}",
        o.dossier()
    );
}

#[test]
fn the_probe_passes_while_a_generation_serves_and_fails_once_the_supervisor_is_gone() {
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--ready", "notify", "--control", "{dir}/ctl"])
        .args(["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--"])
        .arg(example("hello"))
        .start();
    let o = wait_probe(&s, &CONTROL, 0);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""), "{}", o.dossier());
    let o = probe(&s, &FILES);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (Some(0), "", ""), "{}", o.dossier());
    let o = run_in(s.dir.path(), &["stop", "--control", "{dir}/ctl"]);
    assert_eq!(o.code, Some(0), "{}", o.dossier());
    assert!(s.wait_exit().success(), "{}", s.dossier());
    for target in [&CONTROL[..], &FILES[..]] {
        let o = probe(&s, target);
        assert_eq!(o.code, Some(1), "{}", o.dossier());
        assert_eq!(o.error_lines().len(), 1, "{}", o.dossier());
    }
}
