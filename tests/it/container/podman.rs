//! podman for tests/it/container.rs: the command line, the image (built
//! once per run by packaging/container/build.sh), a container removed by
//! name when dropped, and an HTTP load through its published port.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

pub const IMAGE: &str = "localhost/handover-it:latest";
/// The image's default command's control socket.
pub const CONTROL: &str = "/dev/shm/handover.control";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The podman command line: `HANDOVER_TEST_PODMAN`, or what works here.
pub fn podman_line() -> Vec<String> {
    let line = std::env::var("HANDOVER_TEST_PODMAN")
        .unwrap_or_else(|_| "podman --runtime runc --cgroup-manager=cgroupfs".to_string());
    line.split_whitespace().map(str::to_string).collect()
}

pub fn podman(args: &[&str]) -> Command {
    let line = podman_line();
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]).args(args);
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        command.env("CONTAINERS_CONF", repo().join("packaging/container/containers.conf"));
    }
    command
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn run(args: &[&str]) -> Output {
    podman(args).output().unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// Held for a whole test (declared before its containers, so dropped
/// after them): one container test at a time, so that their networks are
/// not set up and torn down at once and their load does not add up.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// podman can run a container here and the image is built (once per
/// test run); false (a skip) where podman cannot run, a failure under CI.
pub fn ready() -> bool {
    static BUILT: Mutex<Option<bool>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ok) = *built {
        return ok;
    }
    let info = podman(&["info"]).output();
    let usable = info.as_ref().is_ok_and(|o| o.status.success());
    if !usable {
        eprintln!("podman info: {:?}", info.as_ref().map(text));
    }
    if !can_run("podman and runc (apt-get install podman runc)", usable) {
        *built = Some(false);
        return false;
    }
    let binaries = binary().parent().unwrap().to_path_buf();
    let _ = example("hello");
    let output = Command::new("bash")
        .arg(repo().join("packaging/container/build.sh"))
        .arg("--binaries")
        .arg(&binaries)
        .args(["--tag", IMAGE])
        .env("PODMAN", podman_line().join(" "))
        .env("CONTAINERS_CONF", repo().join("packaging/container/containers.conf"))
        .output()
        .unwrap();
    assert!(output.status.success(), "packaging/container/build.sh failed: {}", text(&output));
    *built = Some(true);
    true
}

/// A container of this test, removed (`podman rm -f`) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d` with the loopback port published for 8080.
    pub fn start(test: &str, options: &[&str], command: &[&str]) -> Container {
        let name = format!("handover-it-{test}-{}", std::process::id());
        let _ = run(&["rm", "-f", "-t", "0", &name]);
        let container = Container { name };
        let mut args = vec!["run", "-d", "--name", &container.name, "-p", "127.0.0.1::8080"];
        args.extend(options);
        args.push(IMAGE);
        args.extend(command);
        let output = run(&args);
        assert!(output.status.success(), "podman {args:?}: {}\n{}", text(&output), container.dossier());
        container
    }

    pub fn dossier(&self) -> String {
        let logs = run(&["logs", &self.name]);
        let state = run(&["ps", "-a", "--filter", &format!("name={}", self.name), "--format", "{{.Status}}"]);
        format!("--- container {}: {}--- logs:\n{}", self.name, text(&state), text(&logs))
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        run(&[&["exec", &self.name], args].concat())
    }

    /// `handover ARGS --control C` inside, as the container's user.
    pub fn client(&self, control: &str, args: &[&str]) -> Output {
        self.exec(&[&["/usr/local/bin/handover"], args, &["--control", control]].concat())
    }

    /// The status reply once `status --serving` (the probe) passes.
    pub fn wait_serving(&self, control: &str) -> Value {
        wait_for(
            "the probe to pass",
            || self.dossier(),
            || self.client(control, &["status", "--serving"]).status.success().then_some(()),
        );
        self.status(control)
    }

    pub fn status(&self, control: &str) -> Value {
        let output = self.client(control, &["status", "--json"]);
        assert!(output.status.success(), "{}\n{}", text(&output), self.dossier());
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Waits until `generation` serves alone.
    pub fn wait_alone(&self, control: &str, generation: u64) {
        wait_for(
            &format!("generation {generation} serving alone"),
            || self.dossier(),
            || {
                let gens = self.status(control)["generations"].clone();
                let gens = gens.as_array()?;
                (gens.len() == 1 && gens[0]["generation"] == generation && gens[0]["phase"] == "serving")
                    .then_some(())
            },
        );
    }

    /// The host's address of the published port.
    pub fn addr(&self) -> String {
        let output = run(&["port", &self.name, "8080/tcp"]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().trim().to_string()
    }

    pub fn inspect(&self, format: &str) -> String {
        let output = run(&["inspect", &self.name, "--format", format]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The host pids of every process in the container.
    pub fn host_pids(&self) -> Vec<i32> {
        let output = run(&["top", &self.name, "hpid"]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// `podman stop`: exit 0, the container exited 0, none of its
    /// processes left on the host.
    pub fn stop_clean(&self) {
        let pids = self.host_pids();
        assert!(!pids.is_empty(), "{}", self.dossier());
        let output = run(&["stop", "-t", "20", &self.name]);
        assert!(output.status.success(), "podman stop: {}\n{}", text(&output), self.dossier());
        assert_eq!(self.inspect("{{.State.Status}} {{.State.ExitCode}}"), "exited 0", "{}", self.dossier());
        let left: Vec<i32> = pids.into_iter().filter(|&p| alive(p)).collect();
        assert!(left.is_empty(), "processes left: {left:?}\n{}", self.dossier());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// One `GET /` on a new connection: hello's body, or why not.
pub fn get(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(DEADLINE)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: it\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    match answer.starts_with("HTTP/1.1 200") {
        true => answer.lines().last().map(str::to_string).ok_or(answer),
        false => Err(format!("answer {answer:?}")),
    }
}

/// The generation in hello's `hello from pid P generation G`.
pub fn generation(body: &str) -> Option<u64> {
    body.rsplit(' ').next()?.parse().ok()
}

/// `clients` threads of GETs until stopped (each at most 20,000 requests
/// or 90 s): (answers, failures).
pub fn http_load(
    addr: &str,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<(usize, Vec<String>)>> {
    (0..clients)
        .map(|_| {
            let (addr, stop) = (addr.to_string(), Arc::clone(stop));
            std::thread::spawn(move || {
                let (mut answered, mut failed) = (0, Vec::new());
                let start = Instant::now();
                while !stop.load(Ordering::SeqCst)
                    && answered + failed.len() < 20_000
                    && start.elapsed() < Duration::from_secs(90)
                {
                    match get(&addr) {
                        Ok(_) => answered += 1,
                        Err(e) => failed.push(e),
                    }
                }
                (answered, failed)
            })
        })
        .collect()
}
