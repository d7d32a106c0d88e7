//! `handover drill`: passes a server that restarts cleanly, fails loudly
//! (exit 1, a verdict naming the cause) for one that does not.
use std::net::TcpListener;
use std::process::{Command, Output};

use crate::harness::*;

/// A drill paced at 1000 requests a second (unless `args` set `--rate`):
/// a connection per request at full speed leaves tens of thousands of
/// loopback sockets in TIME_WAIT, which later tests' connects collide
/// with (a SYN answered by a stale ACK is retried after 1 s, then again).
pub(crate) fn drill(args: &[&str]) -> Output {
    let paced = ["--rate", "1000"];
    let given = args.iter().any(|a| a.starts_with("--rate"));
    drill_with(Command::new(binary()), &[&paced[..(if given { 0 } else { 2 })], args].concat())
}

/// A drill as fast as the server answers.
fn unpaced(args: &[&str]) -> Output {
    drill_with(Command::new(binary()), args)
}

pub(crate) fn drill_with(mut command: Command, args: &[&str]) -> Output {
    let out = command.arg("drill").args(args).output().unwrap();
    let dossier =
        format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{dossier}");
    out
}

pub(crate) fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_clean_server_passes_with_a_json_report() {
    let hello = example("hello").display().to_string();
    let out = drill(&[
        "--port",
        "127.0.0.1:0",
        "--ready",
        "notify",
        "--restarts",
        "3",
        "--json",
        "--",
        &hello,
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["failures"]["total"], 0);
    let restarts = report["restarts"].as_array().unwrap();
    assert_eq!(restarts.len(), 3);
    assert!(restarts.iter().all(|r| r["ok"] == true && r["ready_after_ms"].is_number()), "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]));
    assert!(report["load_cpu_us_per_request"].as_f64().is_some_and(|us| us > 0.0), "{report:#}");
    assert!(report["private_kib"].as_u64().is_some_and(|kib| kib > 0), "{report:#}");
}

#[test]
fn a_new_generation_that_crashes_fails_the_drill() {
    let worker = example("worker").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--restarts", "1", "--junit", &junit, "--"];
    let out = drill(&[&args[..], &[&worker, "--notify", "--crash-if-generation-at-least", "2"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("restart 1 failed: generation 2 failed"), "{}", text(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure") && xml.contains("restart 1"), "{xml}");
}

#[test]
fn a_worker_that_binds_its_own_port_fails_with_the_cause() {
    // Someone else holds the port the worker insists on binding.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--max-start-attempts", "2", "--restarts", "1", "--"];
    let out = drill(&[&args[..], &[&worker, "--bind-itself", &port]].concat());
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("Address already in use") && said.contains("binds the port itself"), "{said}");
}

#[test]
fn a_server_that_drops_requests_on_sigterm_fails_the_drill() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rude_server.py");
    let args = ["--port", "127.0.0.1:0", "--interval", "300ms", "--restarts", "3", "--connections", "16"];
    let out = unpaced(&[&args[..], &["--", "python3", fixture]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("during restart") && said.contains("FAILED"), "{said}");
}

/// The test worker answers `gen=G pid=P` to any connection: loaded raw.
const RAW: [&str; 3] = ["--raw-send=", "--raw-expect", "gen="];

#[test]
fn upgrades_under_load_keep_the_pids_and_the_log_lines() {
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--log-capture", "--restarts", "2", "--upgrades", "4", "--json"];
    let out = drill(&[&args[..], &RAW, &["--", &worker, "--notify"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["failures"]["total"].as_u64(), report["restarts"].as_array().map(Vec::len)),
        (Some(0), Some(2))
    );
    let upgrades = &report["upgrades"];
    let summary =
        (upgrades["count"].as_u64(), upgrades["failed"].as_u64(), upgrades["pids_preserved"].as_bool());
    assert_eq!(summary, (Some(4), Some(0), Some(true)), "{report:#}");
    assert_eq!(upgrades["log_lines"], serde_json::json!({"upgraded": 4, "dropped": 0}), "{report:#}");
    let each = upgrades["each"].as_array().unwrap();
    let own = binary().display().to_string();
    for u in each {
        assert!(u["ok"] == true && u["took_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{u:#}");
        assert!(u["binary"] == own.as_str() && u["from"] == env!("CARGO_PKG_VERSION"), "{u:#}");
    }
    assert!(upgrades["took_ms"]["median"].is_number(), "{report:#}");
    // Without a terminal, a line per restart and per upgrade.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(", restart 2/2\n") && said.contains(", upgrade 4/4\n"), "{said}");
}

#[test]
fn an_upgrade_refused_fails_the_drill_with_the_reason() {
    let worker = example("worker").display().to_string();
    let args =
        ["--port", "127.0.0.1:0", "--restarts", "0", "--upgrades", "1", "--upgrade-binary", "/bin/true"];
    let out = drill(&[&args[..], &RAW, &["--", &worker, "--notify"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    let refused = "upgrade 1 failed: upgrade refused: ";
    assert!(said.contains(refused) && said.contains("it is no handover that reads this state"), "{said}");
    assert!(said.contains("upgrades     1 to /bin/true, 1 failed, pids kept\n"), "{said}");
}

#[test]
fn upgrades_need_handover_itself() {
    let out = drill(&["--supervisor", "/usr/bin/start_server", "--upgrades", "2", "--port", "0", "--", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "handover drill: --upgrades cannot be used with --supervisor /usr/bin/start_server: only handover, \
         through its control socket, can be upgraded in place (see handover drill --help)\n"
    );
}

/// `--supervisor PROGRAM`: drilled as start_server is, by SIGHUP and the
/// status file; the report says so and has each restart's timings.
fn drill_by_signal(program: &str) {
    let hello = example("hello").display().to_string();
    let args = ["--supervisor", program, "--port", "127.0.0.1:0", "--restarts", "2", "--idle", "100ms"];
    let out = drill(&[&args[..], &["--json", "--", &hello, "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["supervisor"].as_str().unwrap().contains("SIGHUP"), "{report:#}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report:#}");
    let restarts = report["restarts"].as_array().unwrap();
    let timed = |r: &serde_json::Value| r["ok"] == true && r["old_gone_after_ms"].is_number();
    assert!(restarts.len() == 2 && restarts.iter().all(timed), "{report:#}");
    assert_eq!(restarts[1]["generation"], 3);
    assert!(report["idle"]["wakeups"].is_number(), "{report:#}");
    assert_eq!(report["leftovers"], serde_json::json!([]));
}

#[test]
fn handover_can_be_drilled_by_sighup_and_its_status_file() {
    drill_by_signal(&binary().display().to_string());
}

#[test]
fn start_server_can_be_drilled_side_by_side() {
    let start_server = "/usr/bin/start_server";
    if !std::path::Path::new(start_server).exists() {
        assert!(std::env::var_os("CI").is_none(), "{start_server} missing: .ci/run must install it");
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: start_server is not installed (apt-get install -y libserver-starter-perl)\n",
        );
        return;
    }
    drill_by_signal(start_server);
}

/// The pids whose command line mentions `needle`, and their children.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let pids = all_pids();
    let found: Vec<i32> = pids.iter().copied().filter(|&p| cmdline_of(p).contains(needle)).collect();
    let children = pids.iter().copied().filter(|&p| parent_of(p).is_some_and(|pp| found.contains(&pp)));
    found.iter().copied().chain(children).collect()
}

/// A drill of many restarts, under way, with TMPDIR in its test directory;
/// the processes it started (the supervisor, whose --control is in the
/// drill's temporary directory, and its workers).
fn drill_under_way() -> (Supervisor, std::path::PathBuf, Vec<i32>) {
    let builder = handover();
    let tmp = builder.dir().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let drill = builder
        .env("TMPDIR", &tmp.display().to_string())
        .args(["drill", "--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "100000", "--"])
        .arg(example("hello"))
        .arg("--quiet")
        .start();
    drill.wait_line("restart 1/100000");
    // Restarts follow each other closely: a worker listed may be gone
    // before it is read, so look until one scan sees both.
    let mention = tmp.display().to_string();
    let started = wait_for(
        "the supervisor and a worker",
        || drill.dossier(),
        || Some(processes_mentioning(&mention)).filter(|found| found.len() >= 2),
    );
    (drill, tmp, started)
}

#[test]
fn sigterm_stops_the_drill_and_everything_it_started() {
    let (mut drill, tmp, started) = drill_under_way();
    drill.signal(nix::sys::signal::Signal::SIGTERM);
    let status = drill.wait_exit();
    assert_eq!(status.code(), Some(128 + 15), "{}", drill.dossier());
    assert!(drill.lines().iter().any(|l| l.contains("drill: interrupted")), "{}", drill.dossier());
    let left: Vec<i32> = started.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    let files: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.is_empty(), "left behind: {files:?}");
}

#[test]
fn a_killed_drill_leaves_no_supervisor_running() {
    let (mut drill, _tmp, started) = drill_under_way();
    drill.signal(nix::sys::signal::Signal::SIGKILL);
    drill.wait_exit();
    // The supervisor gets SIGTERM as its parent dies, and stops its workers.
    let left =
        || Some(started.iter().copied().filter(|&p| alive(p)).collect::<Vec<_>>()).filter(Vec::is_empty);
    wait_for("the supervisor and its workers to stop", || format!("{started:?}"), left);
}

#[test]
fn a_restart_by_sighup_that_never_completes_fails_after_the_restart_timeout() {
    let worker = example("worker").display().to_string();
    let handover = binary().display().to_string();
    let args = ["--supervisor", &handover, "--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "1"];
    let crash = [&worker, "--notify", "--crash-if-generation-at-least", "2"];
    let out = drill(&[&args[..], &["--restart-timeout", "1s", "--"], &crash[..]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("restart 1 failed: no new generation after 1 s"), "{said}");
}

/// Options for a drill of one restart whose old generation never exits
/// (the worker ignores SIGTERM); `--stop-timeout` ends it at the stop.
/// The restart timeout only has to outlast the new generation's start.
fn stuck_drill(command: Command, supervisor: &[&str], rest: &[&str]) -> Output {
    let worker = example("worker").display().to_string();
    let once = ["--port", "127.0.0.1:0", "--ready", "notify", "--stop-timeout", "1s", "--restarts", "1"];
    let timeout = ["--restart-timeout", "5s", "--raw-send=", "--raw-expect", "gen=", "--rate", "1000"];
    let server = [&worker, "--notify", "--ignore-term", "forever"];
    drill_with(command, &[supervisor, &once[..], &timeout[..], rest, &["--"], &server[..]].concat())
}

/// The pids a verdict names: `... pid 812 did not exit ...`.
fn named_pids(said: &str, before: &str) -> Vec<i32> {
    let Some((_, after)) = said.split_once(before) else { return Vec::new() };
    let list = after.split(" did not exit").next().unwrap_or("");
    list.trim_start_matches("pids ")
        .trim_start_matches("pid ")
        .split(", ")
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_restart_whose_old_generation_never_exits_names_it_and_keeps_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let out = stuck_drill(Command::new(binary()), &[], &["--keep", &keep.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    let stuck = "restart 1 failed: generation 1 still draining after 5 s: ";
    assert!(said.contains(stuck) && said.contains("did not exit on TERM (see --drain-timeout)"), "{said}");
    let pids = named_pids(&said, stuck);
    assert_eq!(pids.len(), 1, "{said}");
    let log = std::fs::read_to_string(keep.join("output.log")).unwrap();
    let first = format!("worker: pid {} gen 1", pids[0]);
    assert!(log.contains(&first) && log.contains("sending TERM to old workers"), "{log}");
    let tail = format!(
        "of the supervisor's and workers' output (all of it in {}):",
        keep.join("output.log").display()
    );
    assert!(said.contains(&tail) && said.contains("\n  handover["), "{said}");
}

#[test]
fn a_restart_by_sighup_whose_old_generation_never_exits_names_it_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let handover = binary().display().to_string();
    let mut command = Command::new(binary());
    command.env("TMPDIR", dir.path());
    let out = stuck_drill(command, &["--supervisor", &handover], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    let stuck = "restart 1 failed: generation 1 still draining after 5 s: ";
    assert!(said.contains(stuck) && said.contains("did not exit on TERM"), "{said}");
    assert_eq!(named_pids(&said, stuck).len(), 1, "{said}");
    assert!(said.contains("output (give --keep DIR to keep all of it):"), "{said}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.is_empty(), "left behind: {files:?}");
}

#[test]
fn upgrades_alternate_between_the_binaries_given() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("handover-b");
    std::fs::copy(binary(), &other).unwrap();
    let (own, other) = (binary().display().to_string(), other.display().to_string());
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--restarts", "0", "--upgrades", "3", "--json"];
    let binaries = ["--upgrade-binary", &own, "--upgrade-binary", &other];
    let out = drill(&[&args[..], &binaries, &RAW, &["--", &worker, "--notify"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used: Vec<&str> = report["upgrades"]["each"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["binary"].as_str().unwrap())
        .collect();
    assert_eq!(used, [own.as_str(), other.as_str(), own.as_str()], "{report:#}");
    assert_eq!(report["upgrades"]["pids_preserved"], true, "{report:#}");
}

#[test]
fn no_captured_request_line_is_lost_across_restarts_and_upgrades() {
    let hello = example("hello").display().to_string();
    let args =
        ["--port", "127.0.0.1:0", "--ready", "notify", "--log-capture", "--restarts", "3", "--upgrades", "6"];
    let worker = ["--", &hello, "--quiet", "--log-requests"];
    let out = drill(&[&args[..], &["--json", "--log-line", "hello: request "], &worker].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = &report["request_lines"];
    let (seen, answered) = (lines["seen"].as_u64().unwrap(), lines["answered"].as_u64().unwrap());
    assert!(answered > 0 && seen >= answered, "{report:#}");
    assert_eq!(report["upgrades"]["log_lines"]["dropped"], 0, "{report:#}");

    // A line nobody writes: every answered request counts as one lost.
    let out = drill(&[&args[..4], &["--restarts", "0", "--log-line", "never written"], &worker].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("output lines with \"never written\": at least "), "{}", text(&out));
}

#[test]
fn log_line_needs_the_supervisors_output() {
    let out = drill(&["--log-line", "x", "--log-file", "/dev/null", "--port", "0", "--", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        said,
        "handover drill: --log-line needs the supervisor's output, which --log-file sends elsewhere\n"
    );
}
