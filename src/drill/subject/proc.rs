//! What /proc says about the supervisor: whether a process is alive, its
//! memory, its CPU time and wake-ups (for `--idle`), and which sockets a
//! process and its descendants hold.
use std::collections::BTreeSet;

use nix::unistd::Pid;

/// The peak resident set so far (VmHWM: its own pages and the shared ones
/// it maps, the binary and libc) and the private part now (RssAnon), in KiB.
pub fn memory(pid: Pid) -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (field(&status, "VmHWM:"), field(&status, "RssAnon:"))
}

/// The number after `name` in a /proc status file.
fn field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The inodes of the sockets `pid` has open; None when its fds cannot be read.
pub fn sockets(pid: i32) -> Option<BTreeSet<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inode = |entry: std::fs::DirEntry| {
        let link = std::fs::read_link(entry.path()).ok()?;
        link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    };
    Some(dir.flatten().filter_map(inode).collect())
}

/// `pids` and all their descendants (each once).
pub fn with_descendants(pids: &[i32]) -> Vec<i32> {
    let parent = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<i32>().ok()
    };
    let all: Vec<(i32, i32)> = (std::fs::read_dir("/proc").into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, parent(pid)?)))
        .collect();
    let mut out: Vec<i32> = pids.to_vec();
    let mut i = 0;
    while i < out.len() {
        let children: Vec<i32> =
            all.iter().filter(|&&(c, p)| p == out[i] && !out.contains(&c)).map(|&(c, _)| c).collect();
        out.extend(children);
        i += 1;
    }
    out
}

pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

/// CPU clock ticks (user + system) and context switches of a process,
/// summed over its threads.
pub fn usage(pid: Pid) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let count = |name| field(&status, name).unwrap_or(0);
        switches += count("voluntary_ctxt_switches:") + count("nonvoluntary_ctxt_switches:");
    }
    Some((ticks, switches))
}

pub fn clock_ticks() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_and_its_children_and_their_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = std::process::id() as i32;
        let family = with_descendants(&[me]);
        assert!(family[0] == me && family.contains(&(child.id() as i32)), "{family:?}");
        let mine = sockets(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(!mine.is_empty(), "the listener is a socket");
        assert_eq!(sockets(i32::MAX), None);
        drop(listener);
    }

    #[test]
    fn this_process_has_usage() {
        let (_, switches) = usage(Pid::this()).unwrap();
        assert!(switches > 0);
        assert!(clock_ticks() > 0);
    }
}
