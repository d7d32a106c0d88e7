//! The drill is a program of its own: `handover drill ARGS` executes the
//! `handover-drill` in handover's directory, and the drill runs the
//! `handover` in its own; either missing is one line naming the path
//! looked at and the fix, exit 127.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::drill::{drill_with, text};
use crate::harness::*;

fn drill_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_handover-drill"))
}

/// `program` copied into `dir`, under its own name.
fn copy_into(dir: &Path, program: &Path) -> PathBuf {
    let copy = dir.join(program.file_name().unwrap());
    std::fs::copy(program, &copy).unwrap();
    copy
}

fn one_line(stderr: &[u8]) -> String {
    let said = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(said.lines().count(), 1, "{said}");
    said
}

#[test]
fn handover_without_its_drill_names_the_path_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let handover = copy_into(dir.path(), &binary());
    let out = Command::new(&handover).args(["drill", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    let said = one_line(&out.stderr);
    let looked = dir.path().join("handover-drill").display().to_string();
    assert!(said.starts_with(&format!("handover drill: {looked} not found: ")), "{said}");
    assert!(said.contains("cargo build --bin handover-drill"), "{said}");
}

#[test]
fn the_drill_without_its_handover_names_the_path_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let drill = copy_into(dir.path(), &drill_binary());
    let worker = example("worker").display().to_string();
    let mut command = Command::new(&drill);
    command.env("TMPDIR", dir.path());
    let out = command.args(["--port", "127.0.0.1:0", "--restarts", "1", "--", &worker]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    let said = one_line(&out.stderr);
    let looked = dir.path().join("handover").display().to_string();
    assert!(said.starts_with(&format!("handover drill: {looked} not found: ")), "{said}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [drill.file_name().unwrap()], "left behind: {left:?}");
}

#[test]
fn handover_drill_passes_its_arguments_and_exit_code_through() {
    let out = drill_with(Command::new(binary()), &["--restarts", "x", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = one_line(&out.stderr);
    assert!(said.starts_with("handover drill: invalid value 'x' for '--restarts <RESTARTS>'"), "{said}");
    let help = drill_with(Command::new(binary()), &["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", text(&help));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: handover drill "), "{}", text(&help));
}

#[test]
fn the_drill_runs_and_upgrades_to_the_handover_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let handover = copy_into(dir.path(), &binary());
    copy_into(dir.path(), &drill_binary());
    let worker = example("worker").display().to_string();
    let args = ["--port", "127.0.0.1:0", "--restarts", "1", "--upgrades", "1", "--json", "--rate", "200"];
    let raw = ["--raw-send=", "--raw-expect", "gen=", "--", &worker, "--notify"];
    let out = drill_with(Command::new(&handover), &[&args[..], &raw].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let binary = &report["upgrades"]["each"][0]["binary"];
    assert_eq!(binary.as_str(), Some(handover.to_str().unwrap()), "{report:#}");
}
