//! `handover drill`'s outputs (`--report DIR`, `--junit FILE`, `--keep
//! DIR`) are checked before anything starts: a symlink for the file it
//! writes, a directory another user owns or can write (not sticky), an
//! entry another user planted in a sticky one, a report directory that is
//! a file, a JUnit file in a missing directory: exit 2, one line naming the
//! option and path, and the server never ran. Bounds on its numbers are
//! checked as early, and nothing is left in its temporary directory.
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::Path;
use std::process::{Command, Output};

use crate::drill::{drill_with, text};
use crate::harness::*;

const NOBODY: u32 = 65534;

/// A drill of the worker journaling into `journal` (which exists only if
/// it ran), with TMPDIR in `tmp`.
fn drill_in(tmp: &Path, journal: &Path, args: &[&str]) -> Output {
    let worker = example("worker").display().to_string();
    let journal = journal.display().to_string();
    let mut command = Command::new(binary());
    command.env("TMPDIR", tmp);
    let rate = if args.contains(&"--rate") { 0 } else { 2 };
    let base = ["--port", "127.0.0.1:0", "--rate", "200"];
    let base = &base[..2 + rate];
    let server = ["--raw-send=", "--raw-expect", "gen=", "--", &worker, "--journal", &journal];
    drill_with(command, &[base, args, &server[..]].concat())
}

/// Refused before the run: exit 2, one line on stderr starting with
/// `handover drill: ` and holding `needles`, nothing on stdout, the
/// server never started and nothing left in TMPDIR.
fn refused(out: &Output, tmp: &Path, journal: &Path, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("handover drill: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert!(out.stdout.is_empty(), "{}", text(out));
    assert!(!journal.exists(), "the server ran: {}", text(out));
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// A test directory with `tmp/` for TMPDIR, the journal's path and the canary.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "CANARY\n").unwrap();
    let journal = dir.path().join("journal");
    (dir, tmp, journal, canary)
}

fn sticky(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o1777)).unwrap();
}

fn root() -> bool {
    can_run("root (to plant files as uid 65534)", nix::unistd::Uid::effective().is_root())
}

#[test]
fn a_report_directory_of_another_user_with_a_planted_link_is_refused() {
    if !root() {
        return;
    }
    let (dir, tmp, journal, canary) = setup();
    let r = dir.path().join("r");
    std::fs::create_dir(&r).unwrap();
    symlink(&canary, r.join("report.html")).unwrap();
    lchown(r.join("report.html"), Some(NOBODY), Some(NOBODY)).unwrap();
    lchown(&r, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = drill_in(&tmp, &journal, &["--report", r.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--report", "uid 65534", r.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "CANARY\n");
    // Root's own directory with a link in it: the link is not followed either.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    symlink(&canary, mine.join("report.json")).unwrap();
    let out = drill_in(&tmp, &journal, &["--report", mine.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["report.json", "symbolic link"]);
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "CANARY\n");
}

#[test]
fn a_junit_file_or_keep_directory_planted_as_a_link_in_a_sticky_directory_is_refused() {
    if !root() {
        return;
    }
    let (dir, tmp, journal, canary) = setup();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    sticky(&shared);
    let junit = shared.join("j.xml");
    symlink(&canary, &junit).unwrap();
    lchown(&junit, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = drill_in(&tmp, &journal, &["--junit", junit.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--junit", "symbolic link", junit.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "CANARY\n");
    // A link of root's own is not followed either.
    let own_link = dir.path().join("j2.xml");
    symlink(&canary, &own_link).unwrap();
    let out = drill_in(&tmp, &journal, &["--junit", own_link.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--junit", "symbolic link"]);
    // A file of another user is not truncated.
    let theirs = shared.join("theirs.xml");
    std::fs::write(&theirs, "THEIRS\n").unwrap();
    lchown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = drill_in(&tmp, &journal, &["--junit", theirs.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--junit", "uid 65534"]);
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "THEIRS\n");
    // --keep given a link to a directory, planted by another user.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let keep = shared.join("k");
    symlink(&elsewhere, &keep).unwrap();
    lchown(&keep, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = drill_in(&tmp, &journal, &["--keep", keep.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--keep", "uid 65534"]);
    assert!(!elsewhere.join("output.log").exists());
}

#[test]
fn a_report_directory_others_can_write_is_refused() {
    let (dir, tmp, journal, _) = setup();
    let r = dir.path().join("open");
    std::fs::create_dir(&r).unwrap();
    std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = drill_in(&tmp, &journal, &["--report", r.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--report", "writable by other users", "chmod"]);
    assert_eq!(std::fs::read_dir(&r).unwrap().count(), 0);
}

#[test]
fn destinations_are_checked_before_the_run() {
    let (dir, tmp, journal, canary) = setup();
    let out = drill_in(&tmp, &journal, &["--report", canary.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--report", "is not a directory"]);
    let missing = dir.path().join("missing").join("j.xml");
    let out = drill_in(&tmp, &journal, &["--junit", missing.to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--junit", "does not exist"]);
    let out = drill_in(&tmp, &journal, &["--junit", dir.path().to_str().unwrap()]);
    refused(&out, &tmp, &journal, &["--junit", "is a directory"]);
}

#[test]
fn a_report_directory_missing_is_created_and_written() {
    let (dir, tmp, journal, _) = setup();
    let r = dir.path().join("a").join("b");
    let junit = dir.path().join("j.xml");
    std::fs::write(&junit, "an earlier run's\n").unwrap();
    let out =
        drill_in(&tmp, &journal, &["--report", r.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read_to_string(r.join("report.html")).unwrap().contains("handover drill: PASSED"));
    assert!(std::fs::read_to_string(r.join("report.json")).unwrap().contains("\"passed\": true"));
    assert!(std::fs::read_to_string(&junit).unwrap().starts_with("<?xml"));
}

#[test]
fn numbers_out_of_bounds_are_refused_before_the_run() {
    let (_dir, tmp, journal, _) = setup();
    let huge = "18446744073709551615";
    for option in ["--restarts", "--upgrades", "--connections", "--rate", "--requests"] {
        let out = drill_in(&tmp, &journal, &[option, huge]);
        refused(&out, &tmp, &journal, &[option, huge, "is not in"]);
    }
    let out = drill_in(&tmp, &journal, &["--connections", "0"]);
    refused(&out, &tmp, &journal, &["--connections", "is not in 1..=10000"]);
    for option in ["--request-timeout", "--restart-timeout", "--duration"] {
        let out = drill_in(&tmp, &journal, &[option, "0"]);
        refused(&out, &tmp, &journal, &[&format!("{option} must be more than 0")]);
    }
}
