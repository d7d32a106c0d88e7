//! session mode: which processes are a worker's, from /proc.
//!
//! A worker leads a session whose id is its pid (the kernel does not give
//! that number to another process while the session has members). What
//! it starts stays in that session unless it calls `setsid()`. Such a
//! process is followed while it is attached by parentage (a descendant of
//! the session's members) and, once its parent has exited, because it is
//! re-parented to the supervisor (a subreaper): the processes that become
//! our children when a worker is reaped are that worker's orphans
//! (`Orphans::adopt`), its own until they exit.
use std::collections::HashSet;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// At most this many processes are looked at in /proc.
const MAX_PROCESSES: usize = 100_000;

/// One process as /proc/PID/stat has it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Proc {
    pid: i32,
    ppid: i32,
    sid: i32,
}

/// Orphans of reaped workers: (worker, orphan), each orphan our child
/// until reaped, so its pid is not reused meanwhile.
#[derive(Default)]
pub struct Orphans(Vec<(i32, i32)>);

impl Orphans {
    /// `worker` was reaped: our children not in `known` (workers, the
    /// logger) and not yet anyone's are its orphans. Returns them.
    pub fn adopt(&mut self, worker: i32, known: &[i32]) -> Vec<i32> {
        let mut new = our_children(known);
        new.retain(|p| !self.0.iter().any(|&(_, o)| o == *p));
        self.0.extend(new.iter().map(|&o| (worker, o)));
        new
    }

    /// An orphan was reaped: it is no one's any more.
    pub fn reaped(&mut self, pid: i32) {
        self.0.retain(|&(_, o)| o != pid);
    }

    fn of(&self, worker: i32) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().filter(move |&&(w, _)| w == worker).map(|&(_, o)| o)
    }

    /// The worker's processes: its session, its orphans, and whatever
    /// these started, in sessions of their own included.
    pub fn members(&self, worker: i32) -> Vec<i32> {
        members(&table(), worker, &self.of(worker).collect::<Vec<_>>())
    }

    /// Whether anything of the worker (itself reaped) is left.
    pub fn alive(&self, worker: i32) -> bool {
        crate::supervisor::reaper::group_alive(worker) || !self.members(worker).is_empty()
    }

    /// KILL for the worker and every process of it; returns those that
    /// had left its session (named in the log). `reaped`: the worker's pid
    /// may be another process's now, so it is not signalled itself.
    pub fn kill(&self, worker: i32, reaped: bool) -> Vec<i32> {
        // Looked at before any KILL: a dying worker's children are
        // re-parented at once, which would hide whose they were.
        let table = table();
        let _ = killpg(Pid::from_raw(worker), Signal::SIGKILL);
        if !reaped {
            let _ = kill(Pid::from_raw(worker), Signal::SIGKILL);
        }
        let orphans: Vec<i32> = self.of(worker).collect();
        let mut escaped = Vec::new();
        for p in members(&table, worker, &orphans) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            if table.iter().any(|q| q.pid == p && q.sid != worker) {
                escaped.push(p);
            }
        }
        escaped
    }
}

/// Our children (zombies left out), except `keep`.
pub fn our_children(keep: &[i32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    table().into_iter().filter(|p| p.ppid == me && !keep.contains(&p.pid)).map(|p| p.pid).collect()
}

/// The processes of the session `worker` leads, the `orphans`, and what
/// any of these started (its own sessions included), closed under both
/// parentage and session: one pass per level, bounded by the table. The
/// worker's pid is matched only as a session (reaped, it may be reused).
fn members(table: &[Proc], worker: i32, orphans: &[i32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut set: HashSet<i32> = HashSet::new();
    let mut sessions: HashSet<i32> = HashSet::from([worker]);
    loop {
        let before = set.len();
        for p in table {
            let joins = sessions.contains(&p.sid) || orphans.contains(&p.pid) || set.contains(&p.ppid);
            if joins && p.pid != me && set.insert(p.pid) && p.sid == p.pid {
                sessions.insert(p.pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    let mut set: Vec<i32> = set.into_iter().collect();
    set.sort_unstable();
    set
}

/// Every process's pid, parent and session, from /proc. Zombies (exited,
/// not yet waited for) are left out: they run nothing and a KILL does not
/// reach them.
fn table() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    (entries.flatten().take(MAX_PROCESSES))
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .flatten()
        .collect()
}

/// pid, ppid and session of a `/proc/PID/stat` text (the name in
/// parentheses may hold anything, so fields are counted after the last `)`).
/// Some(None): a zombie.
fn parse_stat(text: &str) -> Option<Option<Proc>> {
    let pid = text.split(' ').next()?.parse().ok()?;
    let mut rest = text.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    let sid = rest.nth(1)?.parse().ok()?;
    Some((state != "Z").then_some(Proc { pid, ppid, sid }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_past_a_hostile_name() {
        let text = "812 (a) S 1 2 (b) R 7 812 812 9 0 -1 4194560";
        assert_eq!(parse_stat(text), Some(Some(Proc { pid: 812, ppid: 7, sid: 812 })));
        assert_eq!(parse_stat("812 (a) Z 7 812 812 0"), Some(None));
        assert_eq!(parse_stat("812 (x"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn follows_sessions_and_parentage() {
        let p = |pid, ppid, sid| Proc { pid, ppid, sid };
        // 10 leads its session; 11 is in it; 12, 11's child, left for a
        // session of its own, 13 is in 12's; 20 is an orphan of 10 that
        // leads 20; 21 is in 20's; 30 is someone else's.
        let table = [
            p(10, 1, 10),
            p(11, 10, 10),
            p(12, 11, 12),
            p(13, 12, 12),
            p(20, 1, 20),
            p(21, 20, 20),
            p(30, 1, 30),
        ];
        assert_eq!(members(&table, 10, &[]), [10, 11, 12, 13]);
        assert_eq!(members(&table, 10, &[20]), [10, 11, 12, 13, 20, 21]);
        assert_eq!(members(&table, 99, &[]), Vec::<i32>::new());
        // A reaped worker's pid reused by a process of another session.
        assert_eq!(members(&[p(10, 1, 30)], 10, &[]), Vec::<i32>::new());
    }
}
