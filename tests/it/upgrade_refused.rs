//! `handover upgrade` refused: a binary that cannot take over (missing,
//! not executable, of another architecture, no handover, too old or too
//! new for the record, silent, replaced or removed while it is checked) or
//! an exec that fails. Each is one line to the asker, and the running
//! supervisor carries on untouched.
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;

use crate::errors::run_in;
use crate::harness::*;
use crate::upgrade::{client, controlled, passes_then, status, upgrade, with_real_handover};

#[test]
fn a_binary_that_cannot_take_over_is_refused_and_nothing_changes() {
    let s = controlled(&[], &["--notify"]);
    let before = s.wait_generations(&[1]);
    let fake = s.path("other-arch");
    // An ELF header for no machine this kernel runs.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xff, 0xff];
    elf.resize(64, 0);
    fs::File::create(&fake).unwrap().write_all(&elf).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let text = s.path("text");
    fs::write(&text, "not a program").unwrap();
    let cases: [(&str, &str); 4] = [
        ("/nonexistent/handover", "cannot run /nonexistent/handover: No such file or directory"),
        (text.to_str().unwrap(), "Permission denied"),
        (fake.to_str().unwrap(), "Exec format error"),
        ("/bin/true", "it is no handover that reads this state"),
    ];
    for (binary, why) in cases {
        let o = client(&s, &["upgrade", "--wait", "--binary", binary]);
        assert_eq!(o.code, Some(1), "{binary}: {}\n{}", o.dossier(), s.dossier());
        assert!(o.stderr.starts_with("handover: upgrade refused: "), "{}", o.dossier());
        assert!(o.stderr.contains(why), "{binary}: {}", o.dossier());
        assert_eq!(o.stderr.lines().count(), 1, "{}", o.dossier());
    }
    let st = status(&s);
    assert_eq!(st["image"]["upgrades"], 0, "{st:#}");
    assert_eq!(s.status_file(), before);
    let o = client(&s, &["upgrade", "--wait", "--binary", "relative/path"]);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    assert!(ask(&s.tcp_addr()).unwrap().starts_with("gen=1 "));
}

#[test]
fn a_failed_exec_leaves_the_old_image_running_with_its_signals() {
    let s = with_real_handover();
    s.wait_generations(&[1]);
    // Passes the verify run, then cannot be executed any more.
    let locked = passes_then(&s, "locked", "chmod a-x \"$0\"");
    let o = client(&s, &["upgrade", "--wait", "--binary", locked.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    let expected =
        format!("handover: upgrade refused: cannot execute {}: Permission denied", locked.display());
    assert_eq!(o.stderr.trim_end(), expected, "{}", o.dossier());
    // Signals are unblocked again: a HUP restarts.
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    assert_eq!(status(&s)["image"]["upgrades"], 0);
    upgrade(&s);
    assert_eq!(status(&s)["image"]["upgrades"], 1);
}

#[test]
fn a_binary_replaced_or_removed_while_it_is_checked_is_not_executed() {
    let s = with_real_handover();
    let before = s.wait_generations(&[1]);
    let replaced = passes_then(&s, "replaced", "cp \"$0\" \"$0.new\" && mv -f \"$0.new\" \"$0\"");
    let removed = passes_then(&s, "removed", "rm -- \"$0\"");
    let cases = [
        (&replaced, format!("{} was replaced while it was checked; ask again", replaced.display())),
        (
            &removed,
            format!(
                "{} changed while it was checked (No such file or directory); ask again",
                removed.display()
            ),
        ),
    ];
    for (binary, why) in cases {
        let o = client(&s, &["upgrade", "--wait", "--binary", binary.to_str().unwrap()]);
        assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
        assert_eq!(o.stderr.trim_end(), format!("handover: upgrade refused: {why}"), "{}", o.dossier());
    }
    assert_eq!(status(&s)["image"]["upgrades"], 0);
    assert_eq!(s.status_file(), before);
}

#[test]
fn a_binary_that_never_answers_is_given_up_while_the_supervisor_serves() {
    let s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let mute = s.path("mute");
    fs::write(&mute, format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", s.path("mute.pid").display()))
        .unwrap();
    fs::set_permissions(&mute, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = s.dir.path().to_owned();
    let binary = mute.to_str().unwrap().to_owned();
    let asked =
        std::thread::spawn(move || run_in(&dir, &["upgrade", "--binary", &binary, "--control", "{dir}/ctl"]));
    let pid: i32 = wait_for(
        "the verify run",
        || s.dossier(),
        || fs::read_to_string(s.path("mute.pid")).ok()?.trim().parse().ok(),
    );
    // Meanwhile the supervisor answers, restarts and serves.
    assert_eq!(status(&s)["image"]["upgrades"], 0);
    s.signal(Signal::SIGHUP);
    s.wait_generations(&[2]);
    // A client with a shorter --timeout gives up on its own, with one line.
    let o = client(&s, &["upgrade", "--timeout", "200ms", "--binary", mute.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    let said = o.stderr.trim_end();
    assert!(
        said.starts_with("handover: no reply from the supervisor") && !said.contains('\n'),
        "{}",
        o.dossier()
    );
    let o = asked.join().unwrap();
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    let expected =
        format!("handover: upgrade refused: {} did not answer within 10s; not upgraded", mute.display());
    assert_eq!(o.stderr.trim_end(), expected);
    wait_for("the verify run killed", || s.dossier(), || (!alive(pid)).then_some(()));
}

#[test]
fn a_handover_that_cannot_read_the_record_format_is_refused_with_its_reason() {
    let s = with_real_handover();
    let before = s.wait_generations(&[1]);
    // A handover that reads formats 1 and 2 only, shown a record of format 3.
    let older = s.path("older");
    let script = "#!/bin/sh\nsed 's/^{\"format\":2,/{\"format\":3,/' | \"$REAL_HANDOVER\" \"$@\"\n";
    fs::write(&older, script).unwrap();
    fs::set_permissions(&older, fs::Permissions::from_mode(0o755)).unwrap();
    let o = client(&s, &["upgrade", "--binary", older.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}\n{}", o.dossier(), s.dossier());
    let version = env!("CARGO_PKG_VERSION");
    let expected = format!(
        "handover: upgrade refused: {} cannot take over: state record format 3 (written by handover {version}) \
         is newer than this handover {version} reads ([1, 2])",
        older.display()
    );
    assert_eq!(o.stderr.trim_end(), expected);
    assert_eq!(s.status_file(), before);
    assert_eq!(status(&s)["image"]["upgrades"], 0);
}

#[test]
fn upgrade_without_a_control_socket_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["upgrade", "--wait"]);
    assert_eq!(o.code, Some(2), "{}", o.dossier());
    let expected =
        "handover: the following required arguments were not provided: --control <PATH> (see --help)";
    assert_eq!(o.stderr.trim_end(), expected);
    let o = run_in(dir.path(), &["upgrade", "--control", "{dir}/nothing"]);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    assert!(o.stderr.contains("is the supervisor running with --control"), "{}", o.dossier());
    assert_eq!(crate::errors::listing(dir.path()), [] as [&str; 0]);
}

#[test]
fn what_a_verify_run_leaves_running_is_stopped_with_it() {
    let s = controlled(&[], &["--notify"]);
    s.wait_generations(&[1]);
    let messy = s.path("messy");
    let script = format!("#!/bin/sh\nsleep 1000 &\necho $! > {}\nexit 3\n", s.path("left.pid").display());
    fs::write(&messy, script).unwrap();
    fs::set_permissions(&messy, fs::Permissions::from_mode(0o755)).unwrap();
    let o = client(&s, &["upgrade", "--wait", "--binary", messy.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}", o.dossier());
    let left: i32 = fs::read_to_string(s.path("left.pid")).unwrap().trim().parse().unwrap();
    wait_for("the verify run's leftover gone", || s.dossier(), || (!alive(left)).then_some(()));
}

/// A supervisor program that cannot take over (here: its record is not
/// there at all) stops what it would have supervised and says why.
#[test]
fn a_program_that_cannot_take_over_stops_its_children_and_says_why() {
    let b = handover();
    let child = b.dir().join("child");
    let script = format!(
        "sleep 1000 & echo $! > {}; exec env HANDOVER_UPGRADE_STATE=99 {} --port 127.0.0.1:0 -- sleep 1",
        child.display(),
        binary().display()
    );
    let mut s = b.program("sh".into()).args(["-c", &script]).start();
    let status = s.wait_exit();
    let pid: i32 = fs::read_to_string(s.path("child")).unwrap().trim().parse().unwrap();
    let left = alive(pid);
    if left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_eq!(status.code(), Some(1), "{}", s.dossier());
    let expected = "handover: cannot take over after an upgrade: carried fd 99: Bad file descriptor; \
                    stopped the process it supervised";
    assert_eq!(s.lines(), [expected], "{}", s.dossier());
    assert!(!left, "the child was left running\n{}", s.dossier());
}
