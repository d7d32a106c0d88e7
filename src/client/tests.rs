//! A fake supervisor: `sh` that locks the pid file with util-linux
//! `flock` on its own fd 9, writes its pid and a status file, and runs
//! the given trap bodies on HUP and TERM. It runs in its own process
//! group, killed on drop. Children it starts close fd 9, so the lock
//! lives exactly as long as the shell.
use super::*;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::killpg;
use std::os::unix::process::CommandExt;

use crate::state::PidFile;

const SCRIPT: &str = r#"
put() { printf "$1" > "$2.tmp" 9>&- && mv "$2.tmp" "$2" 9>&-; }
trap '@HUP@' HUP
trap '@TERM@' TERM
exec 9>>"$1"
flock -n 9 || exit 99
echo $$ > "$1"
put "1:$$\n" "$2"
while :; do sleep 1000 9>&- & wait $!; done
"#;

struct Fake {
    child: Child,
    _dir: tempfile::TempDir,
    pid_file: PathBuf,
    status_file: PathBuf,
}

impl Fake {
    /// Starts the fake and waits until it serves generation 1.
    fn start(on_hup: &str, on_term: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let status_file = dir.path().join("status");
        let script = SCRIPT.replace("@HUP@", on_hup).replace("@TERM@", on_term);
        let child = Command::new("sh")
            .args(["-c", &script, "fake"])
            .args([&pid_file, &status_file])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cannot run sh");
        let mut fake = Fake { child, _dir: dir, pid_file, status_file };
        let pid = fake.pid();
        fake.wait_until("the fake supervisor to start", |f| {
            f.status_file.exists() && state::read_pid(&f.pid_file) == Ok(pid)
        });
        fake
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Deadline polling of a fact; fails with the fake's exit status if it died.
    fn wait_until(&mut self, what: &str, fact: impl Fn(&Fake) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fact(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("fake supervisor exited ({status}) while waiting for {what}");
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

const LONG: Duration = Duration::from_secs(10);

#[test]
fn restart_accepts_a_generation_past_the_target() {
    // Generation 2 failed its probation, 3 took over: upstream waited for 2 forever (Q6).
    let fake = Fake::start(r#"put "1:$$\n3:$$\n" "$2"; put "3:$$\n" "$2""#, "exit 0");
    let mut notes = Vec::new();
    let got = restart(&fake.pid_file, &fake.status_file, LONG, |n| notes.push(n.to_string()));
    assert_eq!(got, Ok(3));
    assert!(notes[0].contains(&format!("pid {}", fake.pid())), "{notes:?}");
}

#[test]
fn restart_times_out_naming_the_generations() {
    let fake = Fake::start(r#"put "1:$$\n2:$$\n" "$2""#, "exit 0");
    let err = restart(&fake.pid_file, &fake.status_file, Duration::from_millis(300), |_| {}).unwrap_err();
    assert_eq!(err.code, 1);
    assert!(err.message.starts_with("restart not finished after 300ms: generation"), "{err}");
    assert!(err.message.ends_with("still running (see the supervisor's log)"), "{err}");
}

#[test]
fn restart_fails_when_the_supervisor_exits() {
    let fake = Fake::start("exit 3", "exit 0");
    let err = restart(&fake.pid_file, &fake.status_file, LONG, |_| {}).unwrap_err();
    assert_eq!(
        err.message,
        format!("supervisor exited during the restart (pid {}); see its log", fake.pid())
    );
}

#[test]
fn restart_needs_an_active_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (pid_path, status_path) = (dir.path().join("pid"), dir.path().join("status"));
    let mut pid_file = PidFile::acquire(&pid_path).unwrap();
    pid_file.write_pid(std::process::id()).unwrap();
    fs::write(&status_path, "").unwrap();
    let err = restart(&pid_path, &status_path, LONG, |_| {}).unwrap_err();
    assert_eq!(err.message, format!("no active generation in status file {}", status_path.display()));
}

#[test]
fn stop_waits_until_the_supervisor_has_exited() {
    let mut fake = Fake::start("", r#"kill $! 2>/dev/null; exit 0"#);
    let mut announced = None;
    stop(&fake.pid_file, Some(LONG), |pid| announced = Some(pid)).unwrap();
    assert_eq!(announced, Some(fake.pid()));
    assert!(fake.child.wait().unwrap().success());
    assert!(!state::is_locked(&fake.pid_file).unwrap());
}

#[test]
fn stop_times_out_when_the_supervisor_ignores_term() {
    let fake = Fake::start("", "");
    let err = stop(&fake.pid_file, Some(Duration::from_millis(200)), |_| {}).unwrap_err();
    assert_eq!(
        err.message,
        format!("supervisor pid {} still running after 200ms (see the supervisor's log)", fake.pid())
    );
}

#[test]
fn stop_and_restart_refuse_missing_or_stale_pid_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pid_path, status_path) = (dir.path().join("pid"), dir.path().join("status"));
    let err = stop(&pid_path, None, |_| panic!("announced")).unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "cannot open pid file {}: No such file or directory (is the supervisor running?)",
            pid_path.display()
        )
    );
    // Above any pid_max: even a bug here could not signal a real process.
    fs::write(&pid_path, "999999999\n").unwrap();
    fs::write(&status_path, "1:999999999\n").unwrap();
    let stale = format!(
        "pid file {} is stale (pid 999999999, not locked): no supervisor is running; remove the file",
        pid_path.display()
    );
    assert_eq!(stop(&pid_path, None, |_| panic!("announced")).unwrap_err().message, stale);
    assert_eq!(restart(&pid_path, &status_path, LONG, |_| {}).unwrap_err().message, stale);
}

#[test]
fn status_reports_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pid_path, status_path) = (dir.path().join("pid"), dir.path().join("status"));
    assert_eq!(status(None, None).unwrap_err().code, 2);
    let absent = status(Some(&pid_path), Some(&status_path)).unwrap();
    assert_eq!(absent, Status { pid: None, running: false, generations: vec![], stale: vec![] });
    assert_eq!(absent.to_text(), "supervisor not running\n");

    // The file must name its lock holder, this process, to be trusted.
    let me = std::process::id();
    let mut pid_file = PidFile::acquire(&pid_path).unwrap();
    pid_file.write_pid(me).unwrap();
    fs::write(&status_path, "5:6000\n4:5678\n").unwrap();
    let live = status(Some(&pid_path), Some(&status_path)).unwrap();
    assert_eq!(
        live.to_text(),
        format!("supervisor pid {me} running\ngeneration 4  pid 5678\ngeneration 5  pid 6000\n")
    );
    assert_eq!(
        serde_json::to_string(&live).unwrap(),
        format!(
            r#"{{"pid":{me},"running":true,"generations":[{{"generation":4,"pid":5678}},{{"generation":5,"pid":6000}}]}}"#
        )
    );
    drop(pid_file);
    let stale = status(Some(&pid_path), None).unwrap();
    assert_eq!(stale.to_text(), format!("supervisor pid {me} not running (stale pid file)\n"));
    // A killed supervisor's status file: its generations are not served.
    fs::write(&status_path, format!("4:{me}\n5:999999999\n")).unwrap();
    let dead = status(Some(&pid_path), Some(&status_path)).unwrap();
    assert!(!dead.running && dead.generations.is_empty());
    assert_eq!(
        dead.to_text(),
        format!(
            "supervisor pid {me} not running (stale pid file)\nthe status file is stale: its supervisor is gone\n\
             generation 4  pid {me}  still running, orphaned\ngeneration 5  pid 999999999  gone\n"
        )
    );
    let by_status = status(None, Some(&status_path)).unwrap();
    assert!(by_status.running && by_status.pid.is_none());
}

#[test]
fn durations_read_naturally() {
    assert_eq!(show(Duration::from_secs(60)), "60s");
    assert_eq!(show(Duration::from_millis(1500)), "1s 500ms");
}
