//! `handover drill --report DIR`: report.html draws the run (and is
//! rendered once in a real browser, Debian's chromium, whose screenshot
//! must not be blank) and report.json holds what it is drawn from.
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::drill::{drill, text};
use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the PNG at `path` has more than a few colours: its pixel data
/// (inflated by Debian's python3, which the tests use anyway) takes many
/// byte values. A blank page takes two or three.
fn not_blank(path: &Path) -> bool {
    let script = "import sys,zlib\n\
        d=open(sys.argv[1],'rb').read(); i=8; idat=b''\n\
        while i < len(d):\n\
        \x20   n=int.from_bytes(d[i:i+4],'big'); t=d[i+4:i+8]\n\
        \x20   if t==b'IDAT': idat+=d[i+8:i+8+n]\n\
        \x20   i+=12+n\n\
        print(len(set(zlib.decompress(idat))))\n";
    let out = Command::new("python3").args(["-c", script]).arg(path).output().unwrap();
    let colours: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    eprintln!("{} byte values in {}", colours, path.display());
    colours > 32
}

/// Renders `page` with chromium into `png`, within the test's deadline;
/// its processes are a group of their own, killed if it overstays.
fn screenshot(page: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::SIGKILL,
            );
            let _ = child.wait();
            panic!("chromium did not finish its screenshot in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_report_draws_the_run_and_a_browser_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let hello = example("hello").display().to_string();
    let args =
        ["--port", "127.0.0.1:0", "--ready", "notify", "--restarts", "3", "--keepalive", "--rate", "500"];
    let out = drill(
        &[&args[..], &["--report", &report_dir.display().to_string(), "--", &hello, "--quiet"]].concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap()).unwrap();
    let series = &json["series"];
    assert!(series["buckets"].as_array().is_some_and(|b| b.len() > 10), "{series:#}");
    let bands = series["bands"].as_array().unwrap();
    assert_eq!(bands.len(), 3, "{series:#}");
    assert!(
        bands.iter().all(|b| b["ok"] == true && b["to_ms"].as_f64() >= b["from_ms"].as_f64()),
        "{series:#}"
    );
    let page = report_dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("handover drill: PASSED")
            && html.contains("<svg")
            && html.contains(">restart 3</text>")
    );
    assert!(!html.contains("<script") && !html.contains("https://"), "self-contained");

    if !Path::new(CHROMIUM).exists() {
        assert!(std::env::var_os("CI").is_none(), "{CHROMIUM} missing: .ci/run must install it");
        eprintln!("skipped the screenshot: chromium is not installed (apt-get install -y chromium)");
        return;
    }
    let png = dir.path().join("report.png");
    screenshot(&page, &png, &dir.path().join("profile"));
    assert!(not_blank(&png), "the screenshot is blank");
}
