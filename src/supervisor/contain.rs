//! Containment: which processes belong to which worker, whatever they do
//! with sessions and process groups.
//!
//! cgroup mode (cgroup v2 mounted and our cgroup writable: root, or a
//! systemd unit with `Delegate=yes`): a base directory below our own
//! cgroup, `handover-<pid namespace>-<pid>` (found again by the new image
//! of a self-upgrade, which keeps both; distinct for supervisors of other
//! pid namespaces sharing a cgroup), and one cgroup per worker in it,
//! `<base>/<worker pid>`, which the child joins before its exec. Every
//! descendant stays in it: `cgroup.kill` ends them all, the worker counts
//! as gone when it is empty, and a message's sender belongs to the worker
//! whose cgroup it is in.
//!
//! session mode (no writable cgroup v2, or `--cgroup off`): each worker
//! leads a session of its own; a sender belongs to the worker that leads
//! its session (a process can leave a session only for a new one of its
//! own, never join another); what leaves it is followed by parentage and,
//! once orphaned, as the supervisor's child (`session.rs`); at a deadline
//! all of it gets KILL.
//!
//! The `| COMMAND` logger has a cgroup of its own too, `<base>/logger`:
//! its processes are never taken for orphans of workers, and at exit they
//! go back to the supervisor's cgroup (the logger outlives it).
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getsid};

use super::reaper;
use crate::error::{Error, Result};
use crate::sys::spawn;

mod census;
mod session;
pub use census::Census;
use session::Orphans;
pub use session::our_children;

pub enum Containment {
    Cgroup(Cgroups),
    Session(Orphans),
}

pub struct Cgroups {
    /// The base directory.
    base: PathBuf,
    /// The base as `/proc/PID/cgroup` names it.
    name: String,
    /// Workers that have exited whose cgroups are still to be removed.
    exited: Vec<i32>,
}

impl Containment {
    /// session mode, no orphan adopted yet.
    pub fn session() -> Containment {
        Containment::Session(Orphans::default())
    }

    /// cgroup mode if `cgroups` and possible; else session mode, and why.
    pub fn choose(cgroups: bool) -> (Containment, Option<String>) {
        if !cgroups {
            return (Containment::session(), None);
        }
        match Cgroups::create() {
            Ok(c) => (Containment::Cgroup(c), None),
            Err(why) => (Containment::session(), Some(why.message)),
        }
    }

    /// `cgroup PATH` or `session`.
    pub fn describe(&self) -> String {
        match self {
            Containment::Cgroup(c) => format!("cgroup {}", c.base.display()),
            Containment::Session(_) => "session".into(),
        }
    }

    pub fn spawn_mode(&self) -> spawn::Contain<'_> {
        match self {
            Containment::Cgroup(c) => spawn::Contain::Cgroup(&c.base),
            Containment::Session(_) => spawn::Contain::Session,
        }
    }

    /// `--signal-target group`: every member of the worker's cgroup, or its group.
    /// (Once each: a member is not also signalled through its group.)
    pub fn signal_all(&self, pid: i32, signal: Signal) {
        if let Containment::Cgroup(c) = self
            && c.populated(pid).is_some()
        {
            for member in c.members(pid) {
                let _ = kill(Pid::from_raw(member), signal);
            }
            return;
        }
        let _ = killpg(Pid::from_raw(pid), signal);
    }

    /// KILL for the worker and everything it started. `reaped`: the worker
    /// itself has been waited for, so its pid may be another process's now:
    /// only its cgroup, or without one its group (whose id is not reused
    /// while it has members), is signalled.
    /// Returns the processes killed that had left the worker's session
    /// (session mode; in cgroup mode no process leaves).
    pub fn kill(&self, pid: i32, reaped: bool) -> Vec<i32> {
        match self {
            Containment::Cgroup(c) => {
                c.kill(pid);
                if !reaped {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Vec::new()
            }
            Containment::Session(orphans) => orphans.kill(pid, reaped),
        }
    }

    /// Whether anything the worker started (itself reaped) is left.
    pub fn alive(&self, pid: i32) -> bool {
        match self {
            Containment::Cgroup(c) => c.populated(pid).unwrap_or_else(|| reaper::group_alive(pid)),
            Containment::Session(orphans) => orphans.alive(pid),
        }
    }

    /// The worker a message's sender belongs to, decided now; None: no worker's.
    pub fn worker_of(&self, sender: i32) -> Option<i32> {
        match self {
            Containment::Cgroup(c) => c.worker_of(sender),
            Containment::Session(_) => {
                let sid = getsid(Some(Pid::from_raw(sender))).ok()?.as_raw();
                let ours = getsid(None).map_or(0, Pid::as_raw);
                (sid != ours).then_some(sid)
            }
        }
    }

    /// The processes of the worker's cgroup (session mode: the worker).
    pub fn members(&self, pid: i32) -> Vec<i32> {
        match self {
            Containment::Cgroup(c) => c.members(pid),
            Containment::Session(orphans) => orphans.members(pid),
        }
    }

    /// The `| COMMAND` logger's cgroup, `<base>/logger`, created if
    /// needed; None in session mode or when it cannot be created (the
    /// logger then runs in the supervisor's cgroup).
    pub fn logger_cgroup(&self) -> Option<PathBuf> {
        let Containment::Cgroup(c) = self else { return None };
        let dir = c.base.join(LOGGER);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => None,
            _ => Some(dir),
        }
    }

    /// The processes of the logger's cgroup (none in session mode).
    pub fn logger_members(&self) -> Vec<i32> {
        match self {
            Containment::Cgroup(c) => pids(&c.base.join(LOGGER)),
            Containment::Session(_) => Vec::new(),
        }
    }

    /// A reaped worker: its cgroup goes once empty; in session mode the
    /// processes that became our children (not in `known`: workers, the
    /// logger) are its orphans, returned to be named.
    pub fn exited(&mut self, pid: i32, known: &[i32]) -> Vec<i32> {
        match self {
            Containment::Cgroup(c) => {
                c.exited.push(pid);
                Vec::new()
            }
            Containment::Session(orphans) => orphans.adopt(pid, known),
        }
    }

    /// Any reaped pid: an orphan is no one's any more.
    pub fn reaped(&mut self, pid: i32) {
        if let Containment::Session(orphans) = self {
            orphans.reaped(pid);
        }
    }

    /// Remove the exited workers' cgroups that are empty.
    pub fn sweep(&mut self) {
        if let Containment::Cgroup(c) = self {
            c.exited.retain(|pid| matches!(std::fs::remove_dir(c.base.join(pid.to_string())), Err(e) if e.raw_os_error() == Some(libc::EBUSY)));
        }
    }

    /// At exit: every worker cgroup killed and removed, then the base.
    pub fn finish(&mut self) {
        let Containment::Cgroup(c) = self else { return };
        let pids = c.exited.iter().copied().chain(children(&c.base)).collect::<Vec<i32>>();
        for &pid in &pids {
            c.kill(pid);
        }
        let start = Instant::now();
        // Emptied by the kill, a cgroup may still be busy a moment (its
        // members not yet released): tried again until the deadline.
        for pid in pids {
            let dir = c.base.join(pid.to_string());
            while let Err(e) = std::fs::remove_dir(&dir) {
                if e.raw_os_error() != Some(libc::EBUSY) || start.elapsed() > Duration::from_secs(2) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        c.release_logger();
        let _ = std::fs::remove_dir(&c.base);
    }
}

impl Cgroups {
    fn create() -> Result<Cgroups> {
        let read = |path| std::fs::read_to_string(path).map_err(|e| Error::runtime(e.to_string()));
        let mountinfo = read("/proc/self/mountinfo")?;
        let (root, mount) =
            cgroup2_mount(&mountinfo).ok_or_else(|| Error::runtime("no cgroup v2 is mounted"))?;
        let own = read("/proc/self/cgroup")?;
        let ours = unified_path(&own).ok_or_else(|| Error::runtime("this process is in no cgroup v2"))?;
        // A mount of a subtree (a container without a cgroup namespace):
        // our path below the mount's root.
        let below = match root.as_str() {
            "/" => ours,
            root => ours
                .strip_prefix(root)
                .ok_or_else(|| Error::runtime("our cgroup is not below the cgroup v2 mount"))?,
        };
        let ns = std::fs::read_link("/proc/self/ns/pid").map_err(|e| Error::runtime(e.to_string()))?;
        let ns: String = ns.to_string_lossy().chars().filter(char::is_ascii_digit).collect();
        let prefix = format!("handover-{ns}-");
        let leaf = format!("{prefix}{}", std::process::id());
        let name = format!("{}/{leaf}", ours.trim_end_matches('/'));
        let base = mount.join(format!("{}/{leaf}", below.trim_end_matches('/')).trim_start_matches('/'));
        if let Some(parent) = base.parent() {
            remove_stale(parent, &prefix);
        }
        match std::fs::create_dir(&base) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(Error::runtime(format!("cannot create the cgroup {} ({e})", base.display())))
            }
            _ => Ok(Cgroups { base, name, exited: Vec::new() }),
        }
    }

    fn file(&self, pid: i32, name: &str) -> PathBuf {
        self.base.join(pid.to_string()).join(name)
    }

    fn members(&self, pid: i32) -> Vec<i32> {
        pids(&self.base.join(pid.to_string()))
    }

    /// At exit: the logger outlives us (it reads our last lines), so its
    /// processes go back to our own cgroup and its cgroup is removed, then
    /// the base can be. Bounded: a logger forking meanwhile is followed a
    /// few rounds.
    fn release_logger(&self) {
        let dir = self.base.join(LOGGER);
        let Some(ours) = self.base.parent().map(|p| p.join("cgroup.procs")) else { return };
        for _ in 0..10 {
            let members = pids(&dir);
            if members.is_empty() {
                break;
            }
            for member in members {
                let _ = std::fs::write(&ours, member.to_string());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }

    /// None: no such cgroup.
    fn populated(&self, pid: i32) -> Option<bool> {
        let events = read_bounded(&self.file(pid, "cgroup.events"))?;
        Some(events.lines().any(|l| l.trim() == "populated 1"))
    }

    fn kill(&self, pid: i32) {
        if std::fs::write(self.file(pid, "cgroup.kill"), "1").is_ok() {
            return;
        }
        // Before Linux 5.14: every member, until none is left (bounded).
        for _ in 0..100 {
            let members = self.members(pid);
            if members.is_empty() {
                break;
            }
            for member in members {
                let _ = kill(Pid::from_raw(member), Signal::SIGKILL);
            }
        }
    }

    fn worker_of(&self, sender: i32) -> Option<i32> {
        let text = read_bounded(Path::new(&format!("/proc/{sender}/cgroup")))?;
        let path = unified_path(&text)?;
        let rest = path.strip_prefix(&self.name)?.strip_prefix('/')?;
        rest.split('/').next()?.parse().ok()
    }
}

/// The logger's cgroup below the base.
const LOGGER: &str = "logger";

/// The processes in the cgroup `dir`.
fn pids(dir: &Path) -> Vec<i32> {
    let text = read_bounded(&dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The numeric subdirectories of `dir` (workers' cgroups), at most 100000.
fn children(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().take(100_000).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// Base directories left by supervisors of our pid namespace that are
/// gone (killed): their empty cgroups, then themselves.
fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten().take(10_000) {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(prefix)?.parse::<i32>().ok());
        if pid.is_none_or(|pid| kill(Pid::from_raw(pid), None) != Err(nix::errno::Errno::ESRCH)) {
            continue;
        }
        let base = entry.path();
        for worker in children(&base) {
            let _ = std::fs::remove_dir(base.join(worker.to_string()));
        }
        let _ = std::fs::remove_dir(base.join(LOGGER));
        let _ = std::fs::remove_dir(&base);
    }
}

/// A small kernel file, at most 64 KiB of it.
pub(super) fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    File::open(path).ok()?.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The root and mount point of the cgroup2 file system in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (fields, tail) = line.split_once(" - ")?;
        if tail.split(' ').next() != Some("cgroup2") {
            return None;
        }
        let mut fields = fields.split(' ').skip(3);
        Some((fields.next()?.to_string(), PathBuf::from(fields.next()?)))
    })
}

/// The `0::PATH` line of a `/proc/PID/cgroup` text.
fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_a_hybrid_layout() {
        let text = "30 24 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(text), Some(("/".into(), PathBuf::from("/sys/fs/cgroup/unified"))));
        assert_eq!(cgroup2_mount("30 24 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n"), None);
    }

    #[test]
    fn reads_the_unified_line() {
        assert_eq!(unified_path("9:name=systemd:/\n4:memory:/x\n0::/a/b\n"), Some("/a/b"));
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }
}
