use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};

use super::*;

const NOBODY: u32 = 65534;

/// Whether the tests that chown to another user can run: root only, and
/// under CI they must.
fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    assert!(root || std::env::var_os("CI").is_none(), "these tests need root under CI");
    root
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

fn refused(result: io::Result<impl std::fmt::Debug>) -> String {
    let e = result.expect_err("should be refused");
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    e.to_string()
}

#[test]
fn opens_a_private_directory_and_keeps_the_given_name() {
    let top = tempfile::tempdir().unwrap();
    let dir = SafeDir::open(top.path()).unwrap();
    assert_eq!(dir.path(), top.path());
    assert!(!dir.shared());
    let (parent, name) = SafeDir::parent_of(&top.path().join("app.pid")).unwrap();
    assert_eq!(parent.path(), top.path());
    assert_eq!(name, "app.pid");
    let dotted = top.path().join("sub/../.");
    fs::create_dir(top.path().join("sub")).unwrap();
    assert_eq!(
        SafeDir::open(&dotted).unwrap().stat(OsStr::new("sub")).unwrap().map(|s| s.st_ino),
        Some(fs::metadata(top.path().join("sub")).unwrap().ino())
    );
    assert!(SafeDir::parent_of(Path::new("/")).is_err());
}

#[test]
fn refuses_a_directory_others_can_write_unless_sticky() {
    let top = tempfile::tempdir().unwrap();
    let open = top.path().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let text = refused(SafeDir::open(&open));
    assert!(text.contains(&open.display().to_string()) && text.contains("0777"), "{text}");
    // Below it too: anyone could rename `inner` away and put their own.
    fs::create_dir(open.join("inner")).unwrap();
    refused(SafeDir::parent_of(&open.join("inner/app.pid")));
    chmod(&open, 0o1777);
    let sticky = SafeDir::open(&open).unwrap();
    assert!(sticky.shared());
    assert!(!SafeDir::open(&open.join("inner")).unwrap().shared());
}

#[test]
fn refuses_a_directory_of_another_user_and_their_links_in_a_sticky_one() {
    if !root() {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let theirs = top.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    chown(&theirs, NOBODY);
    let text = refused(SafeDir::parent_of(&theirs.join("web.sock")));
    assert!(text.contains("uid 65534"), "{text}");

    let sticky = top.path().join("tmp");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let victim = top.path().join("victim");
    fs::create_dir(&victim).unwrap();
    symlink(&victim, sticky.join("planted")).unwrap();
    chown(&sticky.join("planted"), NOBODY);
    let text = refused(SafeDir::open(&sticky.join("planted")));
    assert!(text.contains("symbolic link of uid 65534"), "{text}");
    // Our own link in the same place is followed.
    symlink(&victim, sticky.join("ours")).unwrap();
    let followed = SafeDir::open(&sticky.join("ours")).unwrap();
    assert_eq!(fstat(followed.fd()).unwrap().st_ino, fs::metadata(&victim).unwrap().ino());
}

#[test]
fn a_link_is_followed_only_to_a_checked_directory() {
    let top = tempfile::tempdir().unwrap();
    let open = top.path().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    symlink(&open, top.path().join("link")).unwrap();
    refused(SafeDir::open(&top.path().join("link")));
    symlink("link", top.path().join("loop")).unwrap();
    fs::remove_file(top.path().join("link")).unwrap();
    symlink("loop", top.path().join("link")).unwrap();
    let e = SafeDir::open(&top.path().join("loop")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
}

#[test]
fn files_are_never_opened_through_a_link_and_in_a_shared_directory_must_be_ours() {
    let top = tempfile::tempdir().unwrap();
    let dir = SafeDir::open(top.path()).unwrap();
    let victim = top.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    symlink(&victim, top.path().join("app.pid")).unwrap();
    let flags = OFlag::O_RDWR | OFlag::O_CREAT;
    let text = refused(dir.open_file(OsStr::new("app.pid"), flags, 0o644));
    assert!(text.contains("symbolic link"), "{text}");
    fs::create_dir(top.path().join("adir")).unwrap();
    refused(dir.open_file(OsStr::new("adir"), OFlag::O_RDONLY, 0));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");

    chmod(top.path(), 0o1777);
    let shared = SafeDir::open(top.path()).unwrap();
    fs::hard_link(&victim, top.path().join("linked")).unwrap();
    let text = refused(shared.open_file(OsStr::new("linked"), OFlag::O_WRONLY, 0));
    assert!(text.contains("2 links"), "{text}");
    let fd = shared.open_file(OsStr::new("new"), flags, 0o640).unwrap();
    assert_eq!(fstat(&fd).unwrap().st_mode & 0o777, 0o640);
    if root() {
        chown(&top.path().join("new"), NOBODY);
        refused(shared.open_file(OsStr::new("new"), OFlag::O_WRONLY, 0));
    }
    chmod(top.path(), 0o700);
}

#[test]
fn temporary_files_and_private_directories_have_fresh_names() {
    let top = tempfile::tempdir().unwrap();
    let dir = SafeDir::open(top.path()).unwrap();
    let (_a, first) = dir.create_temp(".status.", 0o644).unwrap();
    let (_b, second) = dir.create_temp(".status.", 0o644).unwrap();
    assert_ne!(first, second);
    assert_eq!(fs::metadata(top.path().join(&first)).unwrap().mode() & 0o777, 0o644);
    dir.rename(&first, OsStr::new("status")).unwrap();
    dir.rename(&second, OsStr::new("status")).unwrap();
    assert!(!top.path().join(&first).exists() && !top.path().join(&second).exists());

    let (private, name) = dir.make_private(".sock.").unwrap();
    assert_eq!(fs::metadata(top.path().join(&name)).unwrap().mode() & 0o7777, 0o700);
    // Bound through the fd, the socket lands in the directory itself.
    let listener = UnixListener::bind(private.via_fd(OsStr::new("s"))).unwrap();
    fs::rename(top.path().join(&name).join("s"), top.path().join("s")).unwrap();
    fs::remove_dir(top.path().join(&name)).unwrap();
    UnixStream::connect(top.path().join("s")).unwrap();
    drop(listener);
    let ino = fs::symlink_metadata(top.path().join("s")).unwrap().ino();
    let dev = fs::symlink_metadata(top.path().join("s")).unwrap().dev();
    dir.remove_if(OsStr::new("s"), (dev, ino + 1)).unwrap();
    assert!(top.path().join("s").exists(), "another file is left alone");
    dir.remove_if(OsStr::new("s"), (dev, ino)).unwrap();
    assert!(!top.path().join("s").exists());
    dir.remove_if(OsStr::new("s"), (dev, ino)).unwrap();
}
