//! Readiness seen from outside (`--ready auto`, the default, and `--ready
//! accepting`): a worker that sends no `READY=1` is switched to when one
//! of its processes waits for connections on an inherited listener, not
//! after `--interval`, and the old generation serves until then.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::errors::run_in;
use crate::harness::*;

/// hello with its NOTIFY_SOCKET taken away, as most servers are: no READY=1.
fn hello_without_ready(options: &[&str], hello_args: &str) -> Supervisor {
    let hello = example("hello").display().to_string();
    let script = format!("unset NOTIFY_SOCKET; exec {hello} --quiet {hello_args}");
    handover()
        .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/ctl"])
        .args(options)
        .args(["--", "sh", "-c", &script])
        .start()
}

fn status(s: &Supervisor) -> Value {
    let o = run_in(s.dir.path(), &["status", "--json", "--control", "{dir}/ctl"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    serde_json::from_str(&o.stdout).unwrap()
}

/// How `status` says generation `generation` was found ready.
fn ready_by(s: &Supervisor, generation: u64) -> String {
    let reply = status(s);
    let generations = reply["generations"].as_array().cloned().unwrap_or_default();
    let g = generations.iter().find(|g| g["generation"] == generation);
    let how = g.and_then(|g| g["ready_by"].as_str());
    how.unwrap_or_else(|| panic!("no ready_by for generation {generation}: {reply:#}\n{}", s.dossier()))
        .to_string()
}

/// `GET /` over HTTP/1.0: the generation in hello's answer.
fn get(addr: &str) -> Result<u64, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let generation = body.split_whitespace().skip_while(|w| *w != "generation").nth(1);
    generation.and_then(|g| g.parse().ok()).ok_or_else(|| format!("bad answer {answer:?}"))
}

/// Clients, one request in flight each, until stopped (at most 60 s and
/// 20,000 requests each).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(Vec<u64>, Vec<String>)>>,
}

impl Load {
    fn start(addr: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (addr, stop) = (addr.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let (mut seen, mut errors) = (Vec::new(), Vec::new());
                    let start = Instant::now();
                    while !stop.load(Ordering::SeqCst)
                        && seen.len() < 20_000
                        && start.elapsed().as_secs() < 60
                    {
                        match get(&addr) {
                            Ok(g) => seen.push(g),
                            Err(e) => errors.push(e),
                        }
                    }
                    (seen, errors)
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> (Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut seen, mut errors) = (Vec::new(), Vec::new());
        for thread in self.threads {
            let (s, e) = thread.join().unwrap();
            seen.extend(s);
            errors.extend(e);
        }
        (seen, errors)
    }
}

#[test]
fn hello_without_ready_is_switched_to_once_it_accepts_not_after_the_interval() {
    // With --interval 60 the alive rule would take a minute: the restart
    // must be done long before.
    let s = hello_without_ready(&["--interval", "60"], "");
    s.wait_generations(&[1]);
    let o = run_in(s.dir.path(), &["restart", "--wait", "--timeout", "20s", "--control", "{dir}/ctl"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
    assert!(o.stdout.starts_with("generation 2 is serving"), "{}\n{}", o.dossier(), s.dossier());
    assert_eq!(ready_by(&s, 2), "waiting in poll on fd 3", "{}", s.dossier());
    assert_eq!(status(&s)["ready"], "auto");
}

#[test]
fn a_go_server_is_switched_to_once_it_accepts_from_either_protocol() {
    // net/http waits in epoll on the listener; --interval 60 as above.
    let Some(go) = crate::drill_recipes::go_server() else { return };
    for from in ["listen-fds", "server-starter"] {
        let s = handover()
            .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/ctl"])
            .args(["--interval", "60", "--"])
            .arg(go.to_str().unwrap())
            .args(["-from", from])
            .start();
        s.wait_generations(&[1]);
        let o = run_in(s.dir.path(), &["restart", "--wait", "--timeout", "20s", "--control", "{dir}/ctl"]);
        assert_eq!(o.code, Some(0), "{from}: {}\n{}", o.dossier(), s.dossier());
        let how = ready_by(&s, 2);
        assert!(
            how.starts_with("waiting in epoll") || how.starts_with("accepted a connection"),
            "{from}: {how}"
        );
    }
}

#[test]
fn a_slow_start_keeps_the_old_generation_serving_until_the_new_one_accepts() {
    let s = hello_without_ready(&[], "--startup-delay 1500");
    s.wait_generations(&[1]);
    let addr = s.tcp_addr();
    let load = Load::start(&addr, 4);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    wait_for("an answer from generation 2", || s.dossier(), || (get(&addr) == Ok(2)).then_some(()));
    let (seen, errors) = load.stop();
    assert!(
        errors.is_empty(),
        "{} failed requests: {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        s.dossier()
    );
    assert!(seen.contains(&1), "generation 1 answered none\n{}", s.dossier());
    // Under load it may be caught with a connection in hand first.
    let how = ready_by(&s, 2);
    assert!(["waiting in poll on fd 3", "accepted a connection on fd 3"].contains(&how.as_str()), "{how}");
}

/// Where the journal line `EVENT pid=.. gen=G` is.
fn journal_at(s: &Supervisor, event: &str, generation: u64) -> Option<usize> {
    let gen_word = format!("gen={generation}");
    s.journal().iter().position(|l| l.split(' ').next() == Some(event) && l.split(' ').any(|w| w == gen_word))
}

#[test]
fn the_old_generation_is_told_to_stop_only_once_the_new_one_waits_for_connections() {
    // The worker journals `ready` just before it starts polling its
    // listeners, 1.5 s after its start: longer than --interval (1 s).
    let s = with_worker(&["--port", "127.0.0.1:0", "--control", "{dir}/ctl"], &["--startup-delay", "1500"]);
    s.wait_generations(&[1]);
    s.signal(Signal::SIGHUP);
    s.wait_journal(&["term", "gen=1"]);
    let (ready, term) = (journal_at(&s, "ready", 2), journal_at(&s, "term", 1));
    assert!(
        ready.is_some() && ready < term,
        "generation 1 stopped before generation 2 accepted\n{}",
        s.dossier()
    );
}

#[test]
fn a_prefork_server_is_seen_accepting_in_its_child() {
    // The shell holds the listener and waits; its child accepts.
    let hello = example("hello").display().to_string();
    let script = format!("unset NOTIFY_SOCKET; {hello} --quiet & wait");
    let s = handover()
        .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/ctl"])
        .args(["--interval", "60", "--", "sh", "-c", &script])
        .start();
    s.wait_generations(&[1]);
    let how = ready_by(&s, 1);
    assert!(how.starts_with("pid ") && how.ends_with(" waiting in poll on fd 3"), "{how}\n{}", s.dossier());
}

#[test]
fn accepting_mode_is_named_in_status_and_waits_for_the_worker_to_accept() {
    let s = with_worker(
        &["--port", "127.0.0.1:0", "--control", "{dir}/ctl", "--ready", "accepting", "--interval", "60"],
        &[],
    );
    s.wait_generations(&[1]);
    let reply = status(&s);
    assert_eq!(reply["ready"], "accepting", "{reply:#}");
    assert!(ready_by(&s, 1).starts_with("waiting in "), "{}", s.dossier());
}

#[test]
fn a_worker_that_listens_on_a_socket_of_its_own_is_named_and_not_switched_to() {
    // Binds a port of its own (as `puma config.ru` binds 9292) and never
    // touches fd 3.
    if !can_run("python3", std::process::Command::new("python3").arg("--version").output().is_ok()) {
        return;
    }
    let program =
        "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\ntime.sleep(60)\n";
    let s = handover()
        .args([
            "--port",
            "127.0.0.1:0",
            "--control",
            "{dir}/ctl",
            "--ready-timeout",
            "2s",
            "--log-format",
            "json",
        ])
        .args(["--", "python3", "-c", program])
        .start();
    // No event says it: the line is read.
    let line = s.wait_line("with a socket of its own, not on the inherited listener fd 3");
    assert!(line.contains("listens on 127.0.0.1:"), "{line}\n{}", s.dossier());
    // --ready auto, no READY=1: it waited to see it accepting.
    let timeout = s.wait_event("not_ready", |r| r["generation"] == 1);
    assert_eq!(timeout["awaited"], "accepting_or_notify", "{timeout}");
}

/// gunicorn with its `READY=1` taken away (it sends one when it finds
/// `NOTIFY_SOCKET`): `sync` workers wait in select, `gthread` ones in epoll.
fn gunicorn_without_ready(worker_class: &str) -> Supervisor {
    let script =
        format!("unset NOTIFY_SOCKET; exec gunicorn --workers 2 --worker-class {worker_class} app:app");
    handover()
        .cwd(crate::servers::FIXTURES)
        .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/ctl"])
        .args(["--interval", "60", "--", "sh", "-c", &script])
        .env("PATH", &crate::servers::debian_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .start()
}

#[test]
fn gunicorn_workers_are_seen_waiting_in_select_or_epoll() {
    let installed = std::process::Command::new("gunicorn")
        .arg("--version")
        .env("PATH", crate::servers::debian_path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run("gunicorn (apt-get install -y gunicorn)", installed) {
        return;
    }
    for (class, call) in [("sync", "pselect6"), ("gthread", "epoll_wait")] {
        let s = gunicorn_without_ready(class);
        s.wait_generations(&[1]);
        let o = run_in(s.dir.path(), &["restart", "--wait", "--timeout", "20s", "--control", "{dir}/ctl"]);
        assert_eq!(o.code, Some(0), "{class}: {}\n{}", o.dossier(), s.dossier());
        let how = ready_by(&s, 2);
        // A worker process of the master, not the master itself.
        assert!(
            how.starts_with("pid ") && how.ends_with(&format!(" waiting in {call} on fd 3")),
            "{class}: {how}"
        );
    }
}

#[test]
fn a_worker_that_cannot_be_seen_is_ready_alive_after_the_interval_and_says_why() {
    // A supervisor that is not root cannot look into a worker that made
    // itself non-dumpable (its /proc files become root's).
    let ok = nix::unistd::geteuid().is_root() && std::path::Path::new("/usr/bin/setpriv").exists();
    if !can_run("root and setpriv(1)", ok) || !can_run("python3", which("python3")) {
        return;
    }
    let program = "import ctypes, socket\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\ns = socket.socket(fileno=3)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n";
    let builder = handover();
    std::fs::set_permissions(builder.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let s = builder
        .program("/usr/bin/setpriv".into())
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary())
        .args([
            "--port",
            "127.0.0.1:0",
            "--control",
            "{dir}/ctl",
            "--cgroup",
            "off",
            "--log-format",
            "json",
            "--",
        ])
        .args(["python3", "-c", program])
        .env("TMPDIR", "/tmp")
        .start();
    // No event says it: the line is read (its message, under --log-format json).
    let line: Value = serde_json::from_str(&s.wait_line("cannot see whether worker")).unwrap();
    let line = line["message"].as_str().unwrap();
    assert!(line.ends_with("it counts as ready when alive after --interval"), "{line}\n{}", s.dossier());
    s.wait_event("ready", |r| r["how"] == "alive");
    // The client as the same user: root does not trust another user's socket.
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary())
        .args(["status", "--json", "--control"])
        .arg(s.path("ctl"))
        .output()
        .unwrap();
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let why = reply["observation"].as_str().unwrap_or_default();
    assert!(why.contains("Permission denied"), "{reply:#} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.count_lines("cannot see whether worker"), 1, "said once\n{}", s.dossier());
}

fn which(program: &str) -> bool {
    std::process::Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn a_worker_that_binds_the_listeners_address_itself_is_named_with_the_fd_it_ignored() {
    // The address handover listens on, which the worker binds again: EADDRINUSE.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut s = with_worker(&["--port", &addr, "--max-start-attempts", "1"], &["--bind-itself", &addr]);
    let line = s.wait_line("exited before it ever waited on the inherited listener");
    let named =
        format!("listener fd 3 ({addr}); a worker that binds that address itself fails with EADDRINUSE");
    assert!(line.contains(&named) && line.contains(": pid "), "{line}\n{}", s.dossier());
    assert_eq!(s.wait_exit().code(), Some(1), "{}", s.dossier());
}
