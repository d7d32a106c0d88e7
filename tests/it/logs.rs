//! --log-capture: every line a worker writes reaches the log once, labelled.
use std::collections::HashMap;

use nix::sys::signal::Signal;

use crate::harness::*;

#[test]
fn a_burst_across_twenty_restarts_loses_and_duplicates_nothing() {
    const LINES: u32 = 5_000;
    const GENERATIONS: u64 = 20;
    // Each generation writes its lines at once, while the previous one is
    // being replaced; a TERM that comes before they are all written waits
    // for them (a trap runs after the foreground command), so every
    // generation writes all its lines, however slow the machine.
    let script = format!(
        "trap 'exit 0' TERM; seq -f \"line $SERVER_STARTER_GENERATION %g\" 1 {LINES}; exec sleep 1000"
    );
    let mut s = handover()
        .args([
            "--log-capture",
            "--log-format",
            "json",
            "--interval",
            "20ms",
            "--status-file",
            "{dir}/status",
        ])
        .args(["--", "sh", "-c"])
        .arg(script)
        .start();
    for generation in 1..GENERATIONS {
        s.wait_generations(&[generation]);
        s.signal(Signal::SIGHUP);
    }
    s.wait_generations(&[GENERATIONS]);
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    let mut seen: HashMap<(u64, u32), u32> = HashMap::new();
    for line in s.lines() {
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if record["source"] == "handover" {
            continue;
        }
        let text = record["line"].as_str().unwrap();
        let mut words = text.split(' ').skip(1).map(|w| w.parse::<u64>().unwrap());
        let (generation, n) = (words.next().unwrap(), words.next().unwrap() as u32);
        assert_eq!(record["generation"], generation, "labelled with its generation: {line}");
        assert_eq!(record["stream"], "stdout");
        *seen.entry((generation, n)).or_default() += 1;
    }
    for generation in 1..=GENERATIONS {
        for n in 1..=LINES {
            let count = seen.get(&(generation, n)).copied().unwrap_or(0);
            assert_eq!(count, 1, "line {n} of generation {generation} seen {count} times");
        }
    }
}

#[test]
fn text_lines_name_generation_pid_and_stream_and_keep_partial_lines() {
    let b = handover();
    let done = b.dir().join("done");
    let script =
        format!("echo out; echo err >&2; printf 'no newline'; : > {}; exec sleep 1000", done.display());
    let mut s = b.args(["--log-capture", "--interval", "20ms", "--", "sh", "-c"]).arg(script).start();
    s.wait_line("starting new worker ");
    let pid = s.worker_pids()[0];
    s.wait_line(&format!("[gen 1 pid {pid} stdout] out"));
    s.wait_line(&format!("[gen 1 pid {pid} stderr] err"));
    wait_for("the partial line written", || s.dossier(), || done.exists().then_some(()));
    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success());
    s.wait_line(&format!("[gen 1 pid {pid} stdout partial] no newline"));
}
