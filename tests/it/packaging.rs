//! The Debian package's maintainer scripts (`packaging/deb/postinst`,
//! `prerm`), run for real against a scratch root: dpkg passes `DPKG_ROOT`
//! to them, and `update-alternatives` honours it, so the machine's own
//! alternatives are never touched. `packaging/deb/smoke.sh` (CI) installs
//! the built package itself.
//!
//! The rule under test: `/usr/bin/start_server` becomes an alternative
//! pointing to handover only where that path is free or already the
//! alternatives link; a start_server of another package (Debian's
//! libserver-starter-perl ships a plain file) is never replaced or removed.
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LINK: &str = "usr/bin/start_server";
const MAN_LINK: &str = "usr/share/man/man1/start_server.1.gz";
const PERL: &str = "#!/usr/bin/perl\n# Server::Starter's start_server\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    repo().join("packaging/deb").join(name)
}

/// A scratch root with what dpkg would have unpacked, or `None` (with a
/// note) where `update-alternatives` is not installed (not Debian).
fn scratch_root() -> Option<tempfile::TempDir> {
    if Command::new("update-alternatives").arg("--version").output().is_err() {
        eprintln!("note: update-alternatives not found (not Debian); skipped");
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    for dir in ["usr/bin", "usr/share/man/man1", "etc/alternatives", "var/lib/dpkg/alternatives", "var/log"] {
        fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    fs::write(root.path().join("usr/bin/handover"), "").unwrap();
    fs::write(root.path().join("usr/share/man/man1/handover.1.gz"), "").unwrap();
    Some(root)
}

/// `sh SCRIPT ARGS` with `DPKG_ROOT`, as dpkg runs it; must exit 0.
fn run(root: &Path, name: &str, args: &[&str]) -> Output {
    let output = Command::new("sh").arg(script(name)).args(args).env("DPKG_ROOT", root).output().unwrap();
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Whether the scratch root has a start_server alternative registered.
fn registered(root: &Path) -> bool {
    let mut query = Command::new("update-alternatives");
    query.args(["--query", "start_server"]).env("DPKG_ROOT", root);
    query.output().unwrap().status.success()
}

/// Where the scratch root's `path` leads through its symlinks (absolute
/// targets are inside the scratch root).
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut path = PathBuf::from("/").join(path);
    for _ in 0..8 {
        match fs::read_link(root.join(path.strip_prefix("/").unwrap())) {
            Ok(target) => path = target,
            Err(_) => return Some(path).filter(|p| root.join(p.strip_prefix("/").unwrap()).exists()),
        }
    }
    None
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn maintainer_scripts_and_the_smoke_test_parse() {
    for (shell, name) in [("sh", "postinst"), ("sh", "prerm"), ("bash", "smoke.sh")] {
        let output = Command::new(shell).arg("-n").arg(script(name)).output().unwrap();
        assert!(output.status.success(), "{shell} -n {name}: {}", stderr(&output));
    }
}

#[test]
fn a_free_start_server_becomes_the_alternative_and_goes_with_the_package() {
    let Some(root) = scratch_root() else { return };
    let root = root.path();
    run(root, "postinst", &["configure"]);
    assert!(registered(root));
    assert_eq!(fs::read_link(root.join(LINK)).unwrap(), Path::new("/etc/alternatives/start_server"));
    assert_eq!(resolve(root, LINK).unwrap(), Path::new("/usr/bin/handover"));
    assert_eq!(resolve(root, MAN_LINK).unwrap(), Path::new("/usr/share/man/man1/handover.1.gz"));

    // An upgrade: the old prerm, then the new postinst.
    run(root, "prerm", &["upgrade", "0.1.0-1"]);
    run(root, "postinst", &["configure", "0.1.0-1"]);
    assert_eq!(resolve(root, LINK).unwrap(), Path::new("/usr/bin/handover"));

    run(root, "prerm", &["remove"]);
    assert!(!registered(root));
    assert!(fs::symlink_metadata(root.join(LINK)).is_err(), "the start_server link is left");
    assert!(fs::symlink_metadata(root.join(MAN_LINK)).is_err(), "the man page link is left");
}

#[test]
fn a_start_server_of_another_package_is_left_alone() {
    let Some(root) = scratch_root() else { return };
    let root = root.path();
    fs::write(root.join(LINK), PERL).unwrap();
    let output = run(root, "postinst", &["configure"]);
    assert!(stderr(&output).contains("left alone"), "no note: {}", stderr(&output));
    assert!(!registered(root));
    assert_eq!(fs::read_to_string(root.join(LINK)).unwrap(), PERL);
    run(root, "prerm", &["remove"]);
    assert_eq!(fs::read_to_string(root.join(LINK)).unwrap(), PERL);
}

#[test]
fn a_foreign_symlink_is_left_alone() {
    let Some(root) = scratch_root() else { return };
    let root = root.path();
    symlink("/opt/other/start_server", root.join(LINK)).unwrap();
    run(root, "postinst", &["configure"]);
    assert!(!registered(root));
    assert_eq!(fs::read_link(root.join(LINK)).unwrap(), Path::new("/opt/other/start_server"));
}

#[test]
fn a_start_server_unpacked_over_the_alternative_later_survives_handover() {
    let Some(root) = scratch_root() else { return };
    let root = root.path();
    run(root, "postinst", &["configure"]);
    // dpkg replaces the alternatives link (no package owns it) when it
    // unpacks libserver-starter-perl afterwards.
    fs::remove_file(root.join(LINK)).unwrap();
    fs::write(root.join(LINK), PERL).unwrap();

    run(root, "postinst", &["configure", "0.1.0-1"]);
    assert!(!registered(root), "the stale registration is kept");
    assert_eq!(fs::read_to_string(root.join(LINK)).unwrap(), PERL);
    run(root, "prerm", &["remove"]);
    assert_eq!(fs::read_to_string(root.join(LINK)).unwrap(), PERL);
}

#[test]
fn postinst_upgrades_running_supervisors_in_place() {
    let Some(root) = scratch_root() else { return };
    let root = root.path();
    fs::remove_file(root.join("usr/bin/handover")).unwrap();
    symlink(crate::harness::binary(), root.join("usr/bin/handover")).unwrap();
    fs::create_dir_all(root.join("run/handover/app")).unwrap();
    let control = root.join("run/handover/app/control");
    let s = crate::harness::handover()
        .args(["--port", "127.0.0.1:0", "--ready", "alive", "--status-file", "{dir}/status", "--control"])
        .arg(&control)
        .args(["--", "sleep", "1000"])
        .start();
    s.wait_generations(&[1]);
    let upgrades = || {
        let mut status = Command::new(crate::harness::binary());
        let out = status.args(["status", "--json", "--control"]).arg(&control).output().unwrap();
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        st["image"]["upgrades"].as_u64().unwrap()
    };

    // A first install upgrades nothing; an opted-out upgrade neither.
    run(root, "postinst", &["configure"]);
    fs::create_dir_all(root.join("etc/default")).unwrap();
    fs::write(root.join("etc/default/handover"), "HANDOVER_UPGRADE_RUNNING=no\n").unwrap();
    run(root, "postinst", &["configure", "0.1.0-1"]);
    assert_eq!(upgrades(), 0, "{}", s.dossier());

    fs::write(root.join("etc/default/handover"), "HANDOVER_UPGRADE_RUNNING=yes\n").unwrap();
    let output = run(root, "postinst", &["configure", "0.1.0-1"]);
    let said = format!("handover: upgraded the supervisor at {} in place", control.display());
    assert!(stderr(&output).contains(&said), "{}\n{}", stderr(&output), s.dossier());
    assert_eq!(upgrades(), 1, "{}", s.dossier());
    assert_eq!(s.status_file().len(), 1, "{}", s.dossier());
}
