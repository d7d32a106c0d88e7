//! handover under systemd: the exact sd_notify sequence it sends upward,
//! checked on a datagram socket the test binds as NOTIFY_SOCKET.
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(dir: &std::path::Path) -> Manager {
        let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        Manager { socket }
    }

    /// The next message, with MONOTONIC_USEC's value blanked for comparison.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification before the deadline");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines()
            .map(|l| match l.split_once('=') {
                Some(("MONOTONIC_USEC", v)) if v.parse::<u64>().is_ok() => "MONOTONIC_USEC=N".to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The next message that is not a STATUS= line.
    fn next_state(&self) -> String {
        loop {
            let message = self.next();
            if !message.starts_with("STATUS=") {
                return message;
            }
        }
    }
}

fn supervised(options: &[&str], worker: &[&str]) -> (Supervisor, Manager) {
    let b = handover();
    let manager = Manager::bind(b.dir());
    let notify = b.dir().join("notify").display().to_string();
    let s = b
        .env("NOTIFY_SOCKET", &notify)
        .args(options)
        .args(["--pid-file", "{dir}/pid", "--status-file", "{dir}/status", "--"])
        .arg(example("worker"))
        .args(["--journal", "{dir}/journal"])
        .args(worker)
        .start();
    (s, manager)
}

#[test]
fn notify_reload_sequence() {
    let (mut s, manager) = supervised(&["--port", "127.0.0.1:0"], &["--notify"]);
    assert_eq!(manager.next(), "READY=1");
    assert_eq!(manager.next(), "STATUS=generation 1 serving");
    s.signal(Signal::SIGHUP);
    assert_eq!(manager.next(), "RELOADING=1\nMONOTONIC_USEC=N");
    assert_eq!(manager.next(), "READY=1");
    assert_eq!(manager.next(), "STATUS=generation 2 serving");
    s.signal(Signal::SIGTERM);
    assert_eq!(manager.next(), "STOPPING=1");
    assert!(s.wait_exit().success());
}

#[test]
fn a_failed_reload_ends_with_ready_and_says_it_was_rolled_back() {
    let (s, manager) =
        supervised(&["--port", "127.0.0.1:0"], &["--notify", "--crash-if-generation-at-least", "2"]);
    assert_eq!(manager.next_state(), "READY=1");
    s.signal(Signal::SIGHUP);
    assert_eq!(manager.next_state(), "RELOADING=1\nMONOTONIC_USEC=N");
    let status = manager.next();
    assert!(status.starts_with("STATUS=restart to generation 2 failed"), "{status}");
    assert!(status.ends_with("generation 1 still serving"), "{status}");
    assert_eq!(manager.next(), "READY=1");
}

#[test]
fn watchdog_is_fed_at_half_its_period() {
    let b = handover();
    let manager = Manager::bind(b.dir());
    let before = std::time::Instant::now();
    let notify = b.dir().join("notify").display().to_string();
    let _s = b
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .args(["--port", "127.0.0.1:0", "--"])
        .arg(example("worker"))
        .arg("--notify")
        .start();
    manager.socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 200 ms period: a ping every 100 ms, so the fifth cannot have been sent
    // (and received) less than 400 ms after the supervisor started.
    for _ in 0..5 {
        while manager.next() != "WATCHDOG=1" {}
    }
    let took = before.elapsed();
    assert!(took >= Duration::from_millis(400), "5 pings within {took:?}");
}

#[test]
fn the_managers_notify_socket_is_not_the_workers() {
    let (s, _manager) = supervised(&["--port", "127.0.0.1:0", "--log-format", "json"], &["--notify"]);
    // The worker's READY=1 went to handover's own socket: it became ready by message.
    s.wait_event("ready", |r| r["how"] == "READY=1");
}

#[test]
fn an_upgrade_is_a_reload_to_the_manager() {
    let (s, manager) = supervised(&["--port", "127.0.0.1:0", "--control", "{dir}/ctl"], &["--notify"]);
    assert_eq!(manager.next_state(), "READY=1");
    let o = crate::errors::run_in(s.dir.path(), &["upgrade", "--wait", "--control", "{dir}/ctl"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    assert_eq!(manager.next_state(), "RELOADING=1\nMONOTONIC_USEC=N");
    assert_eq!(manager.next_state(), "READY=1");
    // The new image speaks on the same socket: the next reload too.
    s.signal(Signal::SIGHUP);
    assert_eq!(manager.next_state(), "RELOADING=1\nMONOTONIC_USEC=N");
    assert_eq!(manager.next_state(), "READY=1");
}
