//! Listeners are the supervisor's, not the workers': what a generation
//! does to the shared listener (shutdown, O_NONBLOCK, `listen(fd, 1)`, a
//! socket filter, locked or not) is undone before the next one starts, or
//! the listener is replaced, or reported broken.
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::errors::{Outcome, run_in};
use crate::harness::*;

/// handover on a TCP port (and `options`) with a notifying worker that
/// does `sabotage` in generation 1 and `worker` besides.
fn sabotaged(options: &[&str], sabotage: &str, worker: &[&str]) -> Supervisor {
    let options = [&["--control", "{dir}/ctl"], options].concat();
    with_worker(&options, &[&["--notify", "--journal-listeners", "--sabotage", sabotage], worker].concat())
}

fn client(s: &Supervisor, args: &str) -> Outcome {
    let mut args: Vec<&str> = args.split_whitespace().collect();
    args.extend(["--control", "{dir}/ctl"]);
    run_in(s.dir.path(), &args)
}

fn status(s: &Supervisor) -> Value {
    let o = client(s, "status --json");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}\n{}", o.dossier()))
}

/// The worker's answer, connecting within 3 s (a filtered listener drops
/// the SYN: connect would otherwise retry for minutes).
fn ask_within(addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.trim().to_string())
}

/// Generation 1 sabotaged the listener; `restart --wait` succeeds and
/// generation 2 answers on the same address.
fn restart_and_ask(s: &Supervisor, addr: &str) -> Outcome {
    s.wait_journal(&["sabotage", "gen=1"]);
    let o = client(s, "restart --wait");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    let answer = ask_within(addr).unwrap_or_else(|e| panic!("{addr}: {e}\n{}", s.dossier()));
    assert_eq!(generation_of(&answer), Some(2), "{answer}\n{}", s.dossier());
    o
}

#[test]
fn a_listener_shut_down_by_a_worker_listens_again_for_the_next_generation() {
    let s = sabotaged(&["--port", "127.0.0.1:0"], "shutdown-rd", &[]);
    let addr = s.tcp_addr();
    restart_and_ask(&s, &addr);
    assert!(status(&s)["listeners"][0]["broken"].is_null(), "{}", s.dossier());
}

#[test]
fn o_nonblock_set_by_a_worker_is_cleared_once_no_worker_uses_the_listener() {
    // The worker exits 3 when it finds its listener non-blocking, as a
    // server with a blocking accept(2) fails. Generation 1 sets the flag,
    // then exits: its successor, with no worker left, finds it cleared.
    let s = sabotaged(&["--port", "127.0.0.1:0"], "nonblock", &["--require-blocking", "--exit-after", "300"]);
    s.wait_journal(&["listener", "gen=2", "nonblocking=0"]);
}

#[test]
fn a_backlog_shrunk_by_a_worker_is_restored_before_the_next_generation() {
    if !can_run("ss(8) (apt-get install iproute2)", Command::new("ss").arg("-V").output().is_ok()) {
        return;
    }
    let s = sabotaged(&["--port", "127.0.0.1:0", "--backlog", "77"], "backlog1", &[]);
    let addr = s.tcp_addr();
    s.wait_journal(&["sabotage", "gen=1"]);
    assert_eq!(listen_backlog(&addr), Some(1), "{}", s.dossier());
    restart_and_ask(&s, &addr);
    assert_eq!(listen_backlog(&addr), Some(77), "{}", s.dossier());
}

/// The Send-Q `ss -lnt` shows for the listening socket at `addr`: its
/// listen backlog.
fn listen_backlog(addr: &str) -> Option<u64> {
    let port = addr.rsplit(':').next().unwrap();
    let out = Command::new("ss").args(["-Hlnt", &format!("sport = :{port}")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.split_whitespace().nth(3) == Some(addr))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn a_socket_filter_attached_by_a_worker_is_detached_before_the_next_generation() {
    let s = sabotaged(&["--port", "127.0.0.1:0"], "filter", &[]);
    let addr = s.tcp_addr();
    restart_and_ask(&s, &addr);
}

#[test]
fn a_listener_with_a_locked_filter_is_replaced_on_the_same_address() {
    let s = sabotaged(&["--port", "127.0.0.1:0"], "locked-filter", &[]);
    let addr = s.tcp_addr();
    restart_and_ask(&s, &addr);
    let st = status(&s);
    assert!(st["listeners"][0]["broken"].is_null(), "{st:#}");
    assert_eq!(st["listeners"][0]["address"], format!("tcp {addr}"), "{st:#}");
    // And the generation after it serves too (the replacement is checked like any).
    let o = client(&s, "restart --wait");
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    assert_eq!(generation_of(&ask_within(&addr).unwrap()), Some(3), "{}", s.dossier());
}

#[test]
fn a_udp_listener_with_a_locked_filter_is_reported_broken() {
    let s = sabotaged(&["--listen", "udp://127.0.0.1:0"], "locked-filter", &[]);
    s.wait_journal(&["sabotage", "gen=1"]);
    let o = client(&s, "restart --wait");
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    assert!(
        o.stdout.contains("warning: listener udp 127.0.0.1:") && o.stdout.contains("is broken"),
        "{}",
        o.dossier()
    );
    let st = status(&s);
    let broken = st["listeners"][0]["broken"].as_str().unwrap_or_else(|| panic!("{st:#}"));
    assert!(broken.contains("locked"), "{st:#}");
    let text = client(&s, "status");
    assert!(text.stdout.contains("BROKEN: "), "{}", text.dossier());
}

#[test]
fn a_unix_listener_shut_down_by_a_worker_is_replaced_on_the_same_path() {
    let s = sabotaged(&["--listen", "unix:{dir}/app.sock"], "shutdown-rd", &[]);
    let path = s.path("app.sock");
    s.wait_journal(&["sabotage", "gen=1"]);
    let o = client(&s, "restart --wait");
    assert_eq!((o.code, o.stderr.as_str()), (Some(0), ""), "{}\n{}", o.dossier(), s.dossier());
    let mut stream = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{e}\n{}", s.dossier()));
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(generation_of(answer.trim()), Some(2), "{answer}\n{}", s.dossier());
    assert!(status(&s)["listeners"][0]["broken"].is_null(), "{}", s.dossier());
}

#[test]
fn a_socket_activated_listener_with_a_locked_filter_is_reported_broken() {
    let Some(activate) = socket_activate() else {
        return;
    };
    let s = handover()
        .program(activate)
        .args(["-l", "{dir}/act.sock"])
        .arg(binary())
        .args(["--control", "{dir}/ctl", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal", "--notify", "--sabotage", "locked-filter"])
        .start();
    let trigger = s.path("act.sock");
    let _first =
        wait_for("systemd-socket-activate to listen", || s.dossier(), || UnixStream::connect(&trigger).ok());
    s.wait_journal(&["sabotage", "gen=1"]);
    let o = client(&s, "restart --wait");
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    assert!(
        o.stdout.contains("warning: listener unix ") && o.stdout.contains("is broken"),
        "{}",
        o.dossier()
    );
    let st = status(&s);
    let broken = st["listeners"][0]["broken"].as_str().unwrap_or_else(|| panic!("{st:#}"));
    assert!(broken.contains("socket activation"), "{st:#}");
}
