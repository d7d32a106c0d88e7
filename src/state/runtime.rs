//! Where the supervisor's private directory (the notify and einhorn
//! sockets, `supervisor::readiness`) is made.
//!
//! Invariants:
//! - Every path is absolute (a relative one is taken from the current
//!   directory at start): workers get the sockets' paths, and `--dir`
//!   starts them elsewhere.
//! - `$HANDOVER_RUNTIME_DIR`, when set, is the only place tried: a
//!   directory the user chose is never silently replaced by another.
//! - Otherwise the first usable of `$XDG_RUNTIME_DIR` (only when it is this
//!   user's and mode 0700, as pam_systemd makes it), the temp dir (`$TMPDIR`
//!   or `/tmp`), and `/dev/shm` (a sticky tmpfs in every container runtime:
//!   the one writable place in a scratch image with a read-only root).
//! - Usable: short enough for `sun_path` once the private directory's name
//!   and `notify` are added, accepted by a checked walk (`SafeDir::open`:
//!   every directory root's or ours, none writable by others unless
//!   sticky), and writable by this process (`access`, which also sees a
//!   read-only mount).
//! - When none is, the error is one line naming every path tried, why
//!   each failed, and the fix.
use std::path::{Path, PathBuf};

use super::SafeDir;
use crate::error::{Error, Result, io_text};

/// The variable that names the directory outright.
pub const RUNTIME_DIR_ENV: &str = "HANDOVER_RUNTIME_DIR";

/// The shared-memory tmpfs, the last resort.
const DEV_SHM: &str = "/dev/shm";

/// Longest usable parent: `sun_path` is 108 bytes, and the socket's path
/// adds `/handover-` and 16 hex digits, then `/notify` or `/einhorn`.
const MAX_LEN: usize = 60;

const FIX: &str = "a directory that this user can write and no other user can (or a sticky one, as /tmp)";

/// The directory to make the private one in.
pub fn runtime_dir() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from).map(absolute);
    choose(var(RUNTIME_DIR_ENV), var("XDG_RUNTIME_DIR"), absolute(std::env::temp_dir()), Path::new(DEV_SHM))
}

/// `dir` from the current directory when relative: the sockets' paths are
/// handed to workers, which may run elsewhere (`--dir`).
fn absolute(dir: PathBuf) -> PathBuf {
    std::path::absolute(&dir).unwrap_or(dir)
}

fn choose(explicit: Option<PathBuf>, xdg: Option<PathBuf>, temp: PathBuf, shm: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return match usable(&dir) {
            Ok(()) => Ok(dir),
            Err(why) => {
                Err(Error::runtime(format!("{RUNTIME_DIR_ENV}={}: {why}; set it to {FIX}", dir.display())))
            }
        };
    }
    if let Some(dir) = xdg.filter(|dir| private(dir) && usable(dir).is_ok()) {
        return Ok(dir);
    }
    let mut tried = Vec::new();
    for dir in [temp, shm.to_path_buf()] {
        match usable(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => tried.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(Error::runtime(format!(
        "no usable directory for it ({}); set {RUNTIME_DIR_ENV} to {FIX}",
        tried.join("; ")
    )))
}

/// This user's, mode 0700.
fn private(dir: &Path) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    SafeDir::open(dir)
        .and_then(|d| Ok(nix::sys::stat::fstat(d.fd())?))
        .is_ok_and(|st| st.st_uid == euid && st.st_mode & 0o077 == 0)
}

/// Why `dir` cannot hold the private directory, in a few words.
fn usable(dir: &Path) -> Result<()> {
    let len = dir.as_os_str().len();
    if len >= MAX_LEN {
        let why = format!("{len} bytes, too long for a unix socket's path (at most {})", MAX_LEN - 1);
        return Err(Error::runtime(why));
    }
    SafeDir::open(dir).map_err(|e| Error::runtime(io_text(&e)))?;
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| Error::runtime(format!("not writable: {}", e.desc())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn the_variable_is_the_only_place_tried() {
        let given = dir(0o700);
        let temp = dir(0o700);
        let chosen = choose(Some(given.path().into()), None, temp.path().into(), temp.path()).unwrap();
        assert_eq!(chosen, given.path());
        let missing = given.path().join("missing");
        let err = choose(Some(missing.clone()), None, temp.path().into(), temp.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("HANDOVER_RUNTIME_DIR={}: No such file", missing.display())),
            "{text}"
        );
        assert!(text.contains("set it to a directory that this user can write"), "{text}");
    }

    #[test]
    fn a_relative_directory_is_taken_from_the_current_one() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(absolute(PathBuf::from("run/x")), here.join("run/x"));
        assert_eq!(absolute(PathBuf::from("/run/x")), PathBuf::from("/run/x"));
    }

    #[test]
    fn a_directory_others_can_write_is_refused_by_name() {
        let open = dir(0o777);
        let err = choose(Some(open.path().into()), None, open.path().into(), open.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is writable by other users"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn xdg_runtime_dir_only_when_private() {
        let (xdg, temp) = (dir(0o755), dir(0o700));
        let chosen = choose(None, Some(xdg.path().into()), temp.path().into(), temp.path()).unwrap();
        assert_eq!(chosen, temp.path());
        std::fs::set_permissions(xdg.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let chosen = choose(None, Some(xdg.path().into()), temp.path().into(), temp.path()).unwrap();
        assert_eq!(chosen, xdg.path());
    }

    #[test]
    fn without_a_temp_dir_dev_shm_is_next_and_then_the_fix_is_named() {
        let shm = dir(0o1777);
        let gone = shm.path().join("tmp");
        let chosen = choose(None, None, gone.clone(), shm.path()).unwrap();
        assert_eq!(chosen, shm.path());
        let err = choose(None, None, gone.clone(), &gone.join("shm")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("no usable directory for it ({}: No such file", gone.display())),
            "{text}"
        );
        assert!(text.contains("; set HANDOVER_RUNTIME_DIR to "), "{text}");
        let long = shm.path().join("x".repeat(MAX_LEN));
        assert!(usable(&long).unwrap_err().message.contains("too long"));
    }
}
