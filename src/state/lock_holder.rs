//! Who holds a pid file's lock, read from /proc: a pid file is trusted only
//! when the process it names holds its exclusive flock.
//!
//! Invariants:
//! - flock locks belong to an open file description, and /proc/locks
//!   lists the pid that TOOK the lock, which after `--daemonize` is the
//!   parent that has exited. So the named pid is checked by its own open
//!   files instead: one of its fds must be the pid file (same device and
//!   inode) and that fd's `/proc/PID/fdinfo/FD` must list a `FLOCK ...
//!   WRITE` lock (Linux shows there the locks held through that very open
//!   file description). A squatter that took the lock after the supervisor
//!   died holds it through its own description, never the named pid's.
//! - Where the named pid's fds cannot be read (another user's process),
//!   /proc/locks is the fallback: the named pid must be the one listed.
//! - Reads are bounded: at most `MAX_FDS` fds of the named pid, and
//!   `MAX_LOCKS_BYTES` of /proc/locks.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

/// The most fds of the named process looked at.
const MAX_FDS: usize = 1 << 16;
/// The most of /proc/locks read (a line is about 50 bytes).
const MAX_LOCKS_BYTES: u64 = 4 << 20;

/// Whether `pid` holds the exclusive flock on `file` (an open pid file).
/// `Ok(false)` when `pid` is gone or holds no such lock.
pub fn holds_flock(pid: u32, file: &File) -> io::Result<bool> {
    let meta = file.metadata()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let entries = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(flock_holders(file)?.contains(&pid));
        }
        Err(e) => return Err(e),
    };
    for entry in entries.take(MAX_FDS) {
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::metadata(entry.path()) else { continue };
        if target.dev() != dev || target.ino() != ino {
            continue;
        }
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(info) = fs::read_to_string(fdinfo) else { continue };
        if info.lines().any(|line| line.strip_prefix("lock:").is_some_and(is_write_flock)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The pids /proc/locks lists as holding an exclusive flock on `file`
/// (granted locks only, not waiters). After `--daemonize` this is the
/// parent that took the lock, not the supervisor.
pub fn flock_holders(file: &File) -> io::Result<Vec<u32>> {
    let meta = file.metadata()?;
    let mut text = String::new();
    File::open("/proc/locks")?.take(MAX_LOCKS_BYTES).read_to_string(&mut text)?;
    Ok(parse_locks(&text, meta.dev(), meta.ino()))
}

/// `1: FLOCK  ADVISORY  WRITE 7286 fe:00:10051998 0 EOF`: the pid of each
/// granted exclusive flock on (`dev`, `ino`). Device numbers are hex.
fn parse_locks(text: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let mut pids = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed as `1: -> FLOCK ...`.
        let [_, "FLOCK", _, "WRITE", pid, id, ..] = fields[..] else { continue };
        let [maj, min, inode] = id.split(':').collect::<Vec<_>>()[..] else { continue };
        let same = u64::from_str_radix(maj, 16) == Ok(major)
            && u64::from_str_radix(min, 16) == Ok(minor)
            && inode.parse::<u64>() == Ok(ino);
        if let (true, Ok(pid)) = (same, pid.parse::<u32>()) {
            pids.push(pid);
        }
    }
    pids
}

fn is_write_flock(lock: &str) -> bool {
    let fields: Vec<&str> = lock.split_whitespace().collect();
    matches!(fields[..], [_, "FLOCK", _, "WRITE", ..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PidFile;

    #[test]
    fn parses_granted_exclusive_flocks_of_one_inode() {
        let dev = (0xfe << 8) | 0x01; // fe:01
        let text = "1: FLOCK  ADVISORY  WRITE 7286 fe:01:100 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 fe:01:100 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 55 fe:01:100 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 66 fe:01:100 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 77 fe:02:100 0 EOF\n\
                    5: FLOCK  ADVISORY  WRITE 88 fe:01:101 0 EOF\n\
                    garbage\n";
        assert_eq!(parse_locks(text, dev, 100), vec![7286]);
    }

    #[test]
    fn the_holder_is_found_by_its_open_files_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let _held = PidFile::acquire(&path).unwrap();
        let file = File::open(&path).unwrap();
        assert!(holds_flock(std::process::id(), &file).unwrap());
        assert!(flock_holders(&file).unwrap().contains(&std::process::id()));
        // A child holds no lock of ours; a pid that is gone holds nothing.
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(!holds_flock(child.id(), &file).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!holds_flock(child.id(), &file).unwrap());
    }
}
