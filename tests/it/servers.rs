//! Real, unmodified servers under handover, each through a hot restart under
//! loopback load: Starlet (SERVER_STARTER_PORT), gunicorn (LISTEN_FDS), a
//! Node.js `http` server on `{fd: 3}` and an einhorn-style worker
//! (EINHORN_FD_0, ready by `worker:ack`). The apps are in tests/fixtures/ and
//! answer `gen=G pid=P`.
//!
//! Each test: handover starts the server; once it answers, a few client
//! threads send requests (a new connection each, bounded in count and time);
//! the test restarts it (SIGHUP, or `handover restart --wait --control`),
//! waits until the status file lists generation 2 alone and keeps the load
//! up a little longer. Then: no request failed, both generations answered,
//! and none from generation 1 once it was gone. SIGTERM: exit 0, and every
//! process that answered is gone.
//!
//! A server that is not installed is skipped with a line on stderr naming
//! the packages; under CI (`CI` set) that is a failure: .ci/run installs them.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::errors::run_in;
use crate::harness::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Client threads, each with one request in flight.
const CLIENTS: usize = 4;
/// Requests before the restart, and again once generation 2 serves alone.
const SOME: usize = 300;

/// How the test asks for the restart.
#[derive(Clone, Copy)]
enum Restart {
    Hup,
    /// `handover restart --wait --control`, which must report generation 2.
    Control,
}

struct Server {
    name: &'static str,
    /// A command that succeeds when the server can run here.
    check: &'static str,
    packages: &'static str,
    /// handover's readiness options for it.
    ready: &'static str,
    /// How the log says generation 2 got ready: `READY=1` (sd_notify or
    /// einhorn's ack) or `alive` (after --interval).
    ready_by: &'static str,
    /// The worker command; `{fixtures}` is replaced.
    command: &'static str,
    restart: Restart,
}

#[test]
fn starlet_via_server_starter_port() {
    // Starlet sends no READY=1. On TERM its workers finish the request in
    // hand and exit; the parent waits for them (Server::Starter's usual setup).
    hot_restart_under_load(&Server {
        name: "Starlet",
        check: "perl -MPlack::Handler::Starlet -MPlack::Runner -e1",
        packages: "starlet libplack-perl",
        ready: "--ready alive --interval 1",
        ready_by: "alive",
        command: "plackup -s Starlet -E deployment --max-workers 2 {fixtures}/app.psgi",
        restart: Restart::Hup,
    });
}

#[test]
fn gunicorn_via_listen_fds() {
    // gunicorn adopts fds 3.. when LISTEN_PID is its pid (no --bind needed)
    // and its arbiter sends READY=1 once it holds them; its workers boot
    // right after, connections wait in the backlog meanwhile. TERM is its
    // graceful stop (QUIT would be the fast one).
    hot_restart_under_load(&Server {
        name: "gunicorn",
        check: "gunicorn --version",
        packages: "gunicorn",
        ready: "--ready notify",
        ready_by: "READY=1",
        command: "gunicorn --workers 2 --chdir {fixtures} app:app",
        restart: Restart::Control,
    });
}

#[test]
fn node_http_server_on_fd_3() {
    hot_restart_under_load(&Server {
        name: "Node.js",
        check: "node --version",
        packages: "nodejs",
        ready: "--ready alive --interval 500ms",
        ready_by: "alive",
        command: "node {fixtures}/server.js",
        restart: Restart::Hup,
    });
}

#[test]
fn einhorn_worker_ready_by_its_ack() {
    // With --ready notify the switch waits for the ack, the worker's only
    // readiness message (it ignores NOTIFY_SOCKET). It checks
    // EINHORN_MASTER_PID against its parent and exits without acking if not.
    hot_restart_under_load(&Server {
        name: "Python 3 (for the einhorn-style worker)",
        check: "python3 --version",
        packages: "python3",
        ready: "--ready notify",
        ready_by: "READY=1",
        command: "python3 {fixtures}/einhorn_worker.py",
        restart: Restart::Control,
    });
}

fn hot_restart_under_load(server: &Server) {
    if !installed(server) {
        return;
    }
    let command = server.command.split_whitespace().map(|a| a.replace("{fixtures}", FIXTURES));
    let mut s = handover()
        .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/control"])
        .args(server.ready.split_whitespace())
        .arg("--")
        .args(command)
        // gunicorn imports the app from tests/fixtures: no __pycache__ there.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .start();
    let addr = s.tcp_addr();
    s.wait_generations(&[1]);
    let first = wait_for("a first answer", || s.dossier(), || get(&addr).ok());
    assert_eq!(first.generation, 1, "{}", s.dossier());

    let load = Load::start(&addr);
    load.wait_for(SOME, &s);
    match server.restart {
        Restart::Hup => s.signal(Signal::SIGHUP),
        Restart::Control => {
            let o = run_in(
                s.dir.path(),
                &["restart", "--wait", "--timeout", "30s", "--control", "{dir}/control"],
            );
            assert_eq!(o.code, Some(0), "{}\n{}", o.dossier(), s.dossier());
            assert!(o.stdout.starts_with("generation 2 is serving"), "{}\n{}", o.dossier(), s.dossier());
        }
    }
    s.wait_generations(&[2]);
    load.old_gone.store(true, Ordering::SeqCst);
    load.wait_for(load.done.load(Ordering::SeqCst) + SOME, &s);
    let answers = load.stop(&s);

    let from = |generation| answers.iter().filter(|(a, _)| a.generation == generation).count();
    assert!(from(1) > 0 && from(2) > 0, "answers: {} from 1, {} from 2\n{}", from(1), from(2), s.dossier());
    let late: Vec<_> = answers.iter().filter(|(a, gone)| *gone && a.generation != 2).take(10).collect();
    assert!(late.is_empty(), "answered after generation 1 was gone: {late:?}\n{}", s.dossier());
    let ready = s.wait_line("generation 2 (");
    assert!(ready.contains(&format!("is ready ({} after", server.ready_by)), "{}", s.dossier());

    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success(), "{}", s.dossier());
    let mut pids: Vec<i32> = answers.iter().map(|(a, _)| a.pid).collect();
    pids.extend(s.worker_pids());
    pids.sort_unstable();
    pids.dedup();
    wait_for(
        "every process that answered to exit",
        || format!("alive: {:?}\n{}", pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>(), s.dossier()),
        || (!pids.iter().any(|&p| alive(p))).then_some(()),
    );
}

/// Whether `server.check` succeeds; if not, says what is skipped (on the
/// real stderr, which the test harness does not capture), or fails under CI.
fn installed(server: &Server) -> bool {
    let mut words = server.check.split_whitespace();
    let ok = Command::new(words.next().unwrap())
        .args(words)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let message = format!(
        "{} is not installed (apt-get install -y {}): `{}` failed",
        server.name, server.packages, server.check
    );
    if !ok && std::env::var_os("CI").is_some() {
        panic!("{message}; .ci/run must install it");
    }
    if !ok {
        // One write, so the line stays whole among libtest's own output.
        let _ = std::io::stderr().write_all(format!("skipped: {message}\n").as_bytes());
    }
    ok
}

#[derive(Debug)]
struct Answer {
    generation: u64,
    pid: i32,
}

/// `GET /` on a new connection; the app's `gen=G pid=P`, or what went wrong.
fn get(addr: &str) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream.set_read_timeout(timeout).and_then(|()| stream.set_write_timeout(timeout)).unwrap();
    // HTTP/1.0: the body comes as is (never chunked), then the server closes.
    let request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
    let fail = || format!("bad response {response:?}");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(fail)?;
    if head.split(' ').nth(1) != Some("200") {
        return Err(fail());
    }
    match (field(body, "gen="), field(body, "pid=")) {
        (Some(generation), Some(pid)) => Ok(Answer { generation, pid }),
        _ => Err(fail()),
    }
}

/// The value after `prefix` in a word of `text`.
fn field<T: std::str::FromStr>(text: &str, prefix: &str) -> Option<T> {
    text.split_whitespace().find_map(|w| w.strip_prefix(prefix)?.parse().ok())
}

/// One client's answers, each with whether generation 1 was gone when
/// the request began, and its failed requests.
type Tally = (Vec<(Answer, bool)>, Vec<String>);

/// Client threads sending requests until told to stop, each at most 20,000
/// requests or 60 s. Each answer is kept with whether the request began
/// after the test saw generation 1 gone.
struct Load {
    stop: Arc<AtomicBool>,
    old_gone: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Tally>>,
}

impl Load {
    fn start(addr: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let old_gone = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let client = |_| {
            let (addr, stop, old_gone, done) =
                (addr.to_string(), stop.clone(), old_gone.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut answers, mut errors) = (Vec::new(), Vec::new());
                let start = Instant::now();
                while !stop.load(Ordering::SeqCst)
                    && answers.len() + errors.len() < 20_000
                    && start.elapsed() < Duration::from_secs(60)
                {
                    let gone = old_gone.load(Ordering::SeqCst);
                    match get(&addr) {
                        Ok(answer) => answers.push((answer, gone)),
                        Err(e) => errors.push(e),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                (answers, errors)
            })
        };
        let clients = (0..CLIENTS).map(client).collect();
        Load { stop, old_gone, done, clients }
    }

    fn wait_for(&self, requests: usize, s: &Supervisor) {
        let done = || (self.done.load(Ordering::SeqCst) >= requests).then_some(());
        wait_for(&format!("{requests} requests"), || s.dossier(), done);
    }

    /// Stops the clients; every answer, after asserting that none failed.
    fn stop(self, s: &Supervisor) -> Vec<(Answer, bool)> {
        self.stop.store(true, Ordering::SeqCst);
        let (mut answers, mut errors) = (Vec::new(), Vec::new());
        for client in self.clients {
            let (a, e) = client.join().unwrap();
            answers.extend(a);
            errors.extend(e);
        }
        let total = answers.len() + errors.len();
        let first: Vec<_> = errors.iter().take(10).collect();
        assert!(
            errors.is_empty(),
            "{} of {total} requests failed, first: {first:?}\n{}",
            errors.len(),
            s.dossier()
        );
        answers
    }
}
