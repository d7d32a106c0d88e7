//! Real, unmodified servers under handover, run with the command lines of
//! README.md's "Servers" section, read from the README itself (one code
//! line per server, `handover --port 127.0.0.1:8080 ... -- COMMAND`): the
//! port becomes 0, and the command runs in tests/fixtures/, where its app
//! is. Each app answers `gen=G pid=P`.
//!
//! Starlet (SERVER_STARTER_PORT), gunicorn (LISTEN_FDS), a Node.js `http`
//! server on `{fd: 3}` and an einhorn-style worker (EINHORN_FD_0, ready by
//! `worker:ack`) go through a hot restart under this file's own load: the
//! test restarts (SIGHUP, or `handover restart --wait --control`), waits
//! until the status file lists generation 2 alone and keeps the load up a
//! little longer. Then: no request failed, both generations answered, and
//! none from generation 1 once it was gone. SIGTERM: exit 0, and every
//! process that answered is gone.
//!
//! puma, uvicorn, hypercorn and uWSGI go through `handover drill`: see
//! `servers_drilled`.
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

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Where the recipes are: the tests run what the README says.
const README: &str = include_str!("../../README.md");
/// Client threads, each with one request in flight.
pub const CLIENTS: usize = 4;
/// Requests before the restart, and again once generation 2 serves alone.
const SOME: usize = 300;
/// Hot restarts in each drill.
pub const RESTARTS: usize = 2;

/// How the test asks for the restart.
#[derive(Clone, Copy)]
enum Restart {
    Hup,
    /// `handover restart --wait --control`, which must report generation 2.
    Control,
}

pub struct Server {
    pub name: &'static str,
    /// A command that succeeds when the server can run here.
    check: &'static [&'static str],
    packages: &'static str,
    /// How the README's command line for it begins, after `--`.
    pub worker: &'static str,
    /// What its `ready` record may say of how generation 2 got ready:
    /// `READY=1` (sd_notify or einhorn's ack), or seen waiting for connections or
    /// holding one (a server busy under load is seldom caught waiting);
    /// checked by `hot_restart_under_load`, as is `restart`.
    ready_by: &'static [&'static str],
    restart: Restart,
}

const STARLET: Server = Server {
    name: "Starlet",
    check: &["perl", "-MPlack::Handler::Starlet", "-MPlack::Runner", "-e1"],
    packages: "starlet libplack-perl",
    worker: "plackup -s Starlet",
    ready_by: &["waiting in ", "accepted a connection on fd"],
    restart: Restart::Hup,
};

const GUNICORN: Server = Server {
    name: "gunicorn",
    check: &["gunicorn", "--version"],
    packages: "gunicorn",
    worker: "gunicorn",
    ready_by: &["READY=1"],
    restart: Restart::Control,
};

const NODE: Server = Server {
    name: "Node.js",
    check: &["node", "--version"],
    packages: "nodejs",
    worker: "node",
    ready_by: &["waiting in ", "accepted a connection on fd"],
    restart: Restart::Hup,
};

const EINHORN: Server = Server {
    name: "Python 3 (for the einhorn-style worker)",
    check: &["python3", "--version"],
    packages: "python3",
    worker: "python3 einhorn_worker.py",
    ready_by: &["READY=1"],
    restart: Restart::Control,
};

pub const PUMA: Server = Server {
    name: "puma with sd_notify",
    check: &["ruby", "-rpuma", "-rsd_notify", "-e1"],
    packages: "puma ruby-sd-notify",
    worker: "puma",
    ready_by: &["READY=1"],
    restart: Restart::Control,
};

pub const UVICORN: Server = Server {
    name: "uvicorn",
    check: &["python3", "-c", "import uvicorn"],
    packages: "python3-uvicorn",
    worker: "python3 -m uvicorn",
    ready_by: &["waiting in ", "accepted a connection on fd"],
    restart: Restart::Control,
};

pub const HYPERCORN: Server = Server {
    name: "hypercorn",
    check: &["hypercorn", "--help"],
    packages: "python3-hypercorn",
    worker: "hypercorn",
    ready_by: &["waiting in ", "accepted a connection on fd"],
    restart: Restart::Control,
};

pub const UWSGI: Server = Server {
    name: "uWSGI with its Python 3 plugin",
    check: &["uwsgi", "--need-plugin", "python3", "--version"],
    packages: "uwsgi-plugin-python3",
    worker: "uwsgi",
    ready_by: &["READY=1"],
    restart: Restart::Control,
};

/// A recipe of the README: handover's options (`--port 127.0.0.1:8080`
/// taken out) and the worker's command.
pub struct Recipe {
    pub options: Vec<String>,
    pub command: Vec<String>,
}

/// The one line of the README's "Servers" section that runs `worker`.
pub fn recipe(worker: &str) -> Recipe {
    let section = README.split("\n## Servers\n").nth(1).expect("README.md has a \"## Servers\" section");
    let section = section.split("\n## ").next().unwrap();
    let lines: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("    handover "))
        .filter(|l| l.split_once(" -- ").is_some_and(|(_, command)| command.starts_with(worker)))
        .collect();
    assert_eq!(lines.len(), 1, "README's Servers section: one command line for {worker:?}, found {lines:?}");
    let words = shell_words(lines[0]);
    let dash = words.iter().position(|w| w == "--").unwrap();
    let mut options = words[..dash].to_vec();
    let port = options.windows(2).position(|w| w == ["--port", "127.0.0.1:8080"]);
    let port = port.unwrap_or_else(|| panic!("{worker}'s recipe has no --port 127.0.0.1:8080: {lines:?}"));
    options.drain(port..port + 2);
    Recipe { options, command: words[dash + 1..].to_vec() }
}

/// A command line split into words as a POSIX shell does for these
/// recipes: blanks separate, '...' and "..." quote (no escapes inside).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (None, ' ') if started => {
                words.push(std::mem::take(&mut word));
                started = false;
            }
            (None, ' ') => {}
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line:?}");
    if started {
        words.push(word);
    }
    words
}

/// PATH with Debian's directories first: its packages' modules are for
/// /usr/bin/python3 and /usr/bin/ruby, and a python3 earlier in the
/// caller's PATH (pyenv, a virtualenv) would not find them.
pub fn debian_path() -> String {
    format!("/usr/bin:/bin:{}", std::env::var("PATH").unwrap_or_default())
}

#[test]
fn starlet_via_server_starter_port() {
    // Starlet sends no READY=1. On TERM its workers finish the request in
    // hand and exit; the parent waits for them (Server::Starter's usual setup).
    hot_restart_under_load(&STARLET);
}

#[test]
fn gunicorn_via_listen_fds() {
    // gunicorn adopts fds 3.. when LISTEN_PID is its pid (no --bind needed)
    // and its arbiter sends READY=1 once it holds them; its workers boot
    // right after, connections wait in the backlog meanwhile. TERM is its
    // graceful stop (QUIT would be the fast one).
    hot_restart_under_load(&GUNICORN);
}

#[test]
fn node_http_server_on_fd_3() {
    hot_restart_under_load(&NODE);
}

#[test]
fn einhorn_worker_ready_by_its_ack() {
    // With --ready notify the switch waits for the ack, the worker's only
    // readiness message (it ignores NOTIFY_SOCKET). It checks
    // EINHORN_MASTER_PID against its parent and exits without acking if not.
    hot_restart_under_load(&EINHORN);
}

fn hot_restart_under_load(server: &Server) {
    if !installed(server) {
        return;
    }
    let recipe = recipe(server.worker);
    let mut s = handover()
        .cwd(FIXTURES)
        .args(["--port", "127.0.0.1:0", "--status-file", "{dir}/status", "--control", "{dir}/control"])
        .args(["--log-format", "json"])
        .args(&recipe.options)
        .arg("--")
        .args(&recipe.command)
        .env("PATH", &debian_path())
        // Python imports the apps from tests/fixtures: no __pycache__ there.
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
    let ready = s.wait_event("ready", |r| r["generation"] == 2);
    let how = ready["how"].as_str().unwrap_or_default();
    assert!(server.ready_by.iter().any(|by| how.contains(by)), "{ready}\n{}", s.dossier());

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

/// Whether `server.check` succeeds; if not, says what is skipped, or
/// fails under CI.
pub fn installed(server: &Server) -> bool {
    available(server.name, server.packages, server.check)
}

/// Whether `check` succeeds; if not, says what is skipped (on the real
/// stderr, which the test harness does not capture), or fails under CI.
pub fn available(what: &str, packages: &str, check: &[&str]) -> bool {
    let ok = Command::new(check[0])
        .args(&check[1..])
        .env("PATH", debian_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let message =
        format!("{what} is not installed (apt-get install -y {packages}): `{}` failed", check.join(" "));
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
