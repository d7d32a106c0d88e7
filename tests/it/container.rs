//! The container image of `packaging/container/build.sh` (handover,
//! `hello`, their libraries; no /tmp, /run, /etc/passwd or shell) under
//! podman, handover as PID 1: hot restarts by `podman kill -s HUP` and
//! `podman exec ... handover restart --wait` under load through the
//! published port with no failed request, the `status --serving` probe,
//! `podman stop` ending in exit 0 with no process left; read-only, as
//! other uids, and without /dev/shm.
//!
//! podman runs here as it does on the CI machines: `--runtime runc` (crun
//! refuses their cgroup setup), `--cgroup-manager=cgroupfs`, and
//! `packaging/container/containers.conf` (no default ulimits: raising
//! rlimits is not permitted there). `HANDOVER_TEST_PODMAN` replaces that
//! command line. Where podman cannot run, the tests are skipped, and fail
//! under CI. Every container is removed at the end of its test (by name);
//! the image stays.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::harness::*;

mod podman;
use podman::{CONTROL, Container, generation, get, http_load, one_at_a_time, ready, run, text};

/// Hot restarts from outside under load (`podman kill -s HUP`, then
/// `podman exec ... restart --wait`, three times), no failed request; the
/// probe; `podman stop`.
#[test]
fn pid1_in_the_image_restarts_under_load_and_stops_with_exit_0() {
    if !ready() {
        return;
    }
    let _one = one_at_a_time();
    let c = Container::start("pid1", &[], &[]);
    let status = c.wait_serving(CONTROL);
    assert_eq!(status["pid"], 1, "handover is PID 1: {status}");
    let addr = c.addr();
    assert_eq!(generation_at(&c, &addr), Some(1), "{}", c.dossier());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = http_load(&addr, 4, &stop);
    let mut generation_now = 1;
    for _ in 0..3 {
        let output = run(&["kill", "-s", "HUP", &c.name]);
        assert!(output.status.success(), "{}", text(&output));
        generation_now += 1;
        c.wait_alone(CONTROL, generation_now);
        let output = c.client(CONTROL, &["restart", "--wait"]);
        generation_now += 1;
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{}\n{}", text(&output), c.dossier());
        assert!(said.starts_with(&format!("generation {generation_now} is serving")), "{said}");
    }
    stop.store(true, Ordering::SeqCst);
    let (mut answered, mut failed) = (0, Vec::new());
    for client in clients {
        let (a, f) = client.join().unwrap();
        answered += a;
        failed.extend(f);
    }
    eprintln!("container load: {answered} answered, {} failed, through 6 restarts", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        answered + failed.len(),
        &failed[..failed.len().min(10)],
        c.dossier()
    );
    assert!(answered > 0);
    assert_eq!(generation_at(&c, &addr), Some(generation_now), "{}", c.dossier());
    c.stop_clean();
}

/// The generation that answers a GET at `addr`; a failed GET panics.
fn generation_at(c: &Container, addr: &str) -> Option<u64> {
    match get(addr) {
        Ok(body) => generation(&body),
        Err(e) => panic!("GET {addr}: {e}\n{}", c.dossier()),
    }
}

/// What the container's PID 1 sees at `path`, from the host.
fn inside(c: &Container, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", c.inspect("{{.State.Pid}}")))
}

/// Read-only root, no /tmp or /run tmpfs (podman adds none with
/// `--read-only-tmpfs=false`), no /etc/passwd (`--passwd=false`), nobody's
/// uid or root: the private directory is made in /dev/shm, restarts work, the
/// stop is clean.
#[test]
fn a_read_only_image_without_tmp_runs_as_any_uid() {
    if !ready() {
        return;
    }
    let _one = one_at_a_time();
    for (test, uid) in [("nobody", 65534), ("root", 0)] {
        let user = format!("{uid}:{uid}");
        let options = ["--read-only", "--read-only-tmpfs=false", "--passwd=false", "--user", &user];
        let c = Container::start(test, &options, &[]);
        c.wait_serving(CONTROL);
        // /run holds only podman's read-only /run/.containerenv.
        for absent in ["/tmp", "/run/handover", "/etc/passwd"] {
            assert!(!inside(&c, absent).exists(), "{absent} in the container\n{}", c.dossier());
        }
        let shm = std::fs::read_dir(inside(&c, "/dev/shm")).unwrap();
        let private: Vec<_> =
            shm.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("handover-")).collect();
        assert_eq!(private.len(), 1, "{private:?}\n{}", c.dossier());
        let meta = std::os::unix::fs::MetadataExt::mode(&private[0].metadata().unwrap());
        assert_eq!(meta & 0o7777, 0o700);
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&private[0].metadata().unwrap()), uid);
        assert!(run(&["kill", "-s", "HUP", &c.name]).status.success());
        c.wait_alone(CONTROL, 2);
        let output = c.client(CONTROL, &["restart", "--wait"]);
        assert!(output.status.success(), "{}\n{}", text(&output), c.dossier());
        assert_eq!(generation_at(&c, &c.addr()), Some(3), "{}", c.dossier());
        c.stop_clean();
    }
}

/// No /dev/shm either (`--ipc=none`): one line naming each path tried and
/// the fix, exit 1; with HANDOVER_RUNTIME_DIR at a tmpfs it serves.
#[test]
fn without_dev_shm_the_failure_names_the_paths_and_handover_runtime_dir_is_the_fix() {
    if !ready() {
        return;
    }
    let _one = one_at_a_time();
    let bare = ["--ipc=none", "--read-only", "--read-only-tmpfs=false", "--user", "65534:65534"];
    let c = Container::start("noshm", &bare, &["--port", "0.0.0.0:8080", "--", "/usr/local/bin/hello"]);
    wait_for(
        "the container to exit",
        || c.dossier(),
        || (c.inspect("{{.State.Status}}") == "exited").then_some(()),
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "1", "{}", c.dossier());
    let logs = run(&["logs", &c.name]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stderr).lines().collect::<Vec<_>>(),
        [
            "handover: cannot create the notify socket: no usable directory for it (/tmp: No such file or directory; \
             /dev/shm: No such file or directory); set HANDOVER_RUNTIME_DIR to a directory that this user can write \
             and no other user can (or a sticky one, as /tmp)"
        ],
        "{}",
        c.dossier()
    );
    drop(c);
    // A directory anyone can write, as a Kubernetes emptyDir is (0777, not
    // sticky): refused by name.
    let open =
        [&bare[..], &["--tmpfs", "/run/handover:mode=0777", "-e", "HANDOVER_RUNTIME_DIR=/run/handover"]]
            .concat();
    let c = Container::start("opendir", &open, &["--port", "0.0.0.0:8080", "--", "/usr/local/bin/hello"]);
    wait_for(
        "the container to exit",
        || c.dossier(),
        || (c.inspect("{{.State.Status}}") == "exited").then_some(()),
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "1", "{}", c.dossier());
    let logs = String::from_utf8_lossy(&run(&["logs", &c.name]).stderr).into_owned();
    assert!(
        logs.starts_with(
            "handover: cannot create the notify socket: HANDOVER_RUNTIME_DIR=/run/handover: \
             directory /run/handover is writable by other users (owner uid 0, mode 0777)"
        ),
        "{}",
        c.dossier()
    );
    drop(c);
    let given =
        [&bare[..], &["--tmpfs", "/run/handover:mode=1777", "-e", "HANDOVER_RUNTIME_DIR=/run/handover"]]
            .concat();
    let control = "/run/handover/control";
    let command =
        ["--port", "0.0.0.0:8080", "--ready", "notify", "--control", control, "--", "/usr/local/bin/hello"];
    let c = Container::start("runtimedir", &given, &command);
    c.wait_serving(control);
    let output = c.client(control, &["restart", "--wait"]);
    assert!(output.status.success(), "{}\n{}", text(&output), c.dossier());
    assert_eq!(generation_at(&c, &c.addr()), Some(2), "{}", c.dossier());
    c.stop_clean();
}

/// `--stop-timeout` below the runtime's grace period (`podman stop -t`,
/// Kubernetes' `terminationGracePeriodSeconds`): a worker that ignores
/// TERM is killed by handover and the container exits 0. Without it, the
/// runtime kills PID 1 at its deadline: exit 137.
#[test]
fn stop_timeout_below_the_grace_period_ends_in_exit_0_not_137() {
    if !ready() {
        return;
    }
    let _one = one_at_a_time();
    let worker = format!("{}:/usr/local/bin/worker:ro", example("worker").display());
    let stubborn = ["--", "/usr/local/bin/worker", "--notify", "--ignore-term", "forever"];
    for (test, timeout, grace, code) in
        [("stoptimeout", Some("1s"), "10", "0"), ("nostoptimeout", None, "2", "137")]
    {
        let mut command = vec!["--port", "0.0.0.0:8080", "--ready", "notify", "--control", CONTROL];
        command.extend(timeout.map(|t| ["--stop-timeout", t]).into_iter().flatten());
        command.extend(stubborn);
        let c = Container::start(test, &["-v", &worker], &command);
        c.wait_serving(CONTROL);
        let output = run(&["stop", "-t", grace, &c.name]);
        assert!(output.status.success(), "{}\n{}", text(&output), c.dossier());
        assert_eq!(c.inspect("{{.State.ExitCode}}"), code, "{}", c.dossier());
    }
}
