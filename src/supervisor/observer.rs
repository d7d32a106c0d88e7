//! Watching a starting generation for the moment it accepts connections
//! (`--ready auto` and `--ready accepting`), for servers that send no
//! `READY=1`: what `sys::observe` sees becomes `Input::Accepting`.
//!
//! Only while a generation is starting, and only while the rule in force
//! lets a sighting count (auto mode not learned, accepting mode): the
//! first look 1 ms after the spawn, then every 2 ms for 50 ms, every 5 ms
//! until 5 s, every 100 ms after that (`step`), and never sooner than
//! four times the last look's length after it (a worker with thousands of
//! threads costs at most a fifth of a core). A look is well under a
//! millisecond, bounded by `sys::observe`'s limits, and runs on a thread
//! of its own (`looker`): the loop never waits on a worker's memory. At
//! rest there is no deadline, so the loop never wakes for it. The members
//! looked at are the worker's cgroup (cgroup containment) and its
//! descendants (prefork servers accept in children).
//!
//! Where a worker cannot be looked at, the machine is told
//! (`Input::Unobservable`: alive after `--interval` holds for it) and the
//! log says why, once; so is a worker whose look has not come back
//! after `STUCK` (and every later one: the thread is still held). A
//! process of the generation listening on a
//! listener's address with a socket of its own is named, once per
//! generation.
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::listen::Listener;
use crate::machine::event::Sighting;
use crate::machine::{Input, Machine, ReadyMode, Role};
use crate::sys::observe::{self, Seen};

use super::contain::Containment;

mod looker;

use looker::{Job, Looker};

const FIRST_LOOK: Duration = Duration::from_millis(1);
/// A look not back by then is given up: the worker holds it (its memory
/// is on a page it serves itself, or a disk that hangs).
const STUCK: Duration = Duration::from_secs(1);
/// The next look comes no sooner than this many times the last one's
/// length after it.
const SPACING: u32 = 4;

/// The wait before the next look, by how long the generation has been
/// starting: often at first (most servers are up within milliseconds),
/// then at most 5 ms late for one that takes its time, and a worker that
/// takes more than 5 s costs less.
fn step(age: Duration) -> Duration {
    match age.as_millis() {
        0..50 => Duration::from_millis(2),
        50..5000 => Duration::from_millis(5),
        _ => Duration::from_millis(100),
    }
}
/// Evidence kept for `status`: the last generations'.
const KEPT: usize = 8;

#[derive(Default)]
pub struct Observer {
    watch: Option<Watch>,
    /// Why workers could not be looked at, as said in the log (once).
    pub blind: Option<String>,
    /// How each of the last generations was found ready, for `status`.
    pub evidence: Vec<(u64, String)>,
    /// The thread that looks, started with the first watch.
    looker: Option<Looker>,
    /// Why it can no longer look (its thread is held, or could not start).
    stuck: Option<String>,
}

struct Watch {
    generation: u64,
    listeners: Vec<observe::Listener>,
    /// Workers still to be seen (those seen, or blind, are done).
    done: Vec<i32>,
    spawned_at: Instant,
    next_at: Instant,
    /// Per worker, where the next look starts among its processes (a look
    /// that runs out of time leaves the rest for the next).
    cursors: HashMap<i32, usize>,
    /// A process of it listening with a socket of its own, and whether that was said.
    own_bind: Option<observe::OwnBind>,
    said_own_bind: bool,
}

impl Observer {
    /// When to look next (None: nothing starting to watch). Starts or ends
    /// a watch as the machine's starting generation comes and goes.
    pub fn deadline(&mut self, machine: &Machine, listeners: &[Listener], fds: &[i32]) -> Option<Instant> {
        let starting = watched(machine);
        match (&self.watch, &starting) {
            (Some(w), Some((generation, _, _))) if w.generation == *generation => {}
            (_, &Some((generation, _, spawned_at))) => {
                self.watch = Some(Watch {
                    generation,
                    listeners: inodes(listeners, fds),
                    done: Vec::new(),
                    spawned_at,
                    next_at: spawned_at + FIRST_LOOK,
                    cursors: HashMap::new(),
                    own_bind: None,
                    said_own_bind: false,
                })
            }
            (_, None) => self.watch = None,
        }
        // Every worker seen (or found blind): nothing to look for, unless a
        // socket of its own is still to be named.
        let pids = starting.map(|(_, pids, _)| pids).unwrap_or_default();
        let watch = self.watch.as_ref()?;
        let settled =
            pids.iter().all(|p| watch.done.contains(p)) && (watch.own_bind.is_none() || watch.said_own_bind);
        // A look in hand wakes the loop through `poll_fd` when it is done.
        let asked = self.looker.as_ref().and_then(|l| l.asked_at);
        (!settled).then_some(asked.map_or(watch.next_at, |at| at + STUCK))
    }

    /// Readable when a look is done.
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.looker.as_ref().filter(|l| l.asked_at.is_some()).map(Looker::fd)
    }

    /// Take the look that is done, give up on one held too long, and hand
    /// over the next when it is time: the inputs for the machine and the
    /// lines to log. A process listening with a socket of its own is named
    /// once the generation has been starting `interval` unseen (a server
    /// may bind an admin port of its own before it serves the inherited one).
    pub fn look(
        &mut self,
        machine: &Machine,
        contain: &Containment,
        interval: Duration,
        now: Instant,
    ) -> (Vec<Input>, Vec<String>) {
        let (mut inputs, mut lines) = (Vec::new(), Vec::new());
        // Taken whatever is watched now: its pipe must not stay readable.
        let done = self.looker.as_mut().and_then(Looker::take);
        let watching = |g: u64| self.watch.as_ref().is_some_and(|w| w.generation == g);
        let Some((generation, pids, _)) = watched(machine).filter(|(g, ..)| watching(*g)) else {
            return (inputs, lines);
        };
        if let Some(done) = done
            && let Some(watch) = self.watch.as_mut()
        {
            watch.next_at = watch.next_at.max(now + done.took * SPACING);
            if done.generation == generation {
                for (pid, report) in done.reports {
                    self.heard(pid, report, &mut inputs, &mut lines);
                }
            }
        }
        let held = self.looker.as_ref().and_then(|l| l.asked_at).filter(|&at| now >= at + STUCK);
        if held.is_some() && self.stuck.is_none() {
            self.stuck = Some(format!(
                "a look at its processes did not come back within {}s: its memory may be on a page it \
                 serves itself (userfaultfd, FUSE)",
                STUCK.as_secs()
            ));
        }
        let Some(watch) = self.watch.as_mut() else { return (inputs, lines) };
        let waiting: Vec<i32> = pids.into_iter().filter(|pid| !watch.done.contains(pid)).collect();
        if let Some(why) = self.stuck.clone() {
            for pid in waiting {
                self.blind_to(pid, why.clone(), &mut inputs, &mut lines);
            }
        } else if watch.next_at <= now && self.looker.as_ref().is_none_or(|l| l.asked_at.is_none()) {
            watch.next_at = now + step(now.saturating_duration_since(watch.spawned_at));
            let looks: Vec<(i32, Vec<i32>)> =
                waiting.iter().map(|&pid| (pid, members(watch, contain, pid))).collect();
            let job = Job { generation, looks, listeners: watch.listeners.clone() };
            if self.looker.is_none() {
                match Looker::start() {
                    Ok(looker) => self.looker = Some(looker),
                    Err(e) => self.stuck = Some(format!("cannot start a thread to look: {e}")),
                }
            }
            if let Some(looker) = self.looker.as_mut()
                && !looker.ask(job, now)
            {
                self.stuck = Some("its looking thread is gone".to_string());
            }
        }
        let Some(watch) = self.watch.as_mut() else { return (inputs, lines) };
        let unseen = now.saturating_duration_since(watch.spawned_at) >= interval;
        if let Some(bind) = watch.own_bind.filter(|_| unseen && !watch.said_own_bind) {
            watch.said_own_bind = true;
            lines.push(format!(
                "generation {generation}: pid {} listens on {} with a socket of its own, not on the inherited \
                 listener fd {}; give it the inherited socket (see Readiness in the README)",
                bind.pid, bind.address, bind.fd
            ));
        }
        (inputs, lines)
    }

    /// What a look at worker `pid`'s processes found.
    fn heard(
        &mut self,
        pid: i32,
        mut report: observe::Report,
        inputs: &mut Vec<Input>,
        lines: &mut Vec<String>,
    ) {
        let Some(watch) = self.watch.as_mut() else { return };
        if watch.done.contains(&pid) {
            return;
        }
        *watch.cursors.entry(pid).or_default() += report.looked;
        if report.seen.is_none() && report.blind.is_none() && hidden(pid) {
            report.blind = Some(format!("/proc/{pid} cannot be seen (is /proc mounted with hidepid?)"));
        }
        if report.seen.is_none() && watch.own_bind.is_none() && watch.done.is_empty() {
            watch.own_bind = report.own_bind;
        }
        if let Some((member, seen)) = report.seen {
            watch.done.push(pid);
            // It serves the inherited socket: a port of its own is its business.
            watch.own_bind = None;
            let sighting = match seen {
                Seen::Waiting { call, fd } => Sighting::Waiting { call: call.name(), fd },
                Seen::Accepted { fd } => Sighting::Accepted { fd },
            };
            inputs.push(Input::Accepting { pid, member, sighting });
        } else if let Some(why) = report.blind {
            self.blind_to(pid, why, inputs, lines);
        }
    }

    /// Worker `pid` cannot be looked at, for `why`: said once, and it
    /// counts as ready when alive after --interval.
    fn blind_to(&mut self, pid: i32, why: String, inputs: &mut Vec<Input>, lines: &mut Vec<String>) {
        if let Some(watch) = self.watch.as_mut() {
            watch.done.push(pid);
        }
        if self.blind.is_none() {
            lines.push(format!(
                "cannot see whether worker {pid} accepts connections ({why}); \
                 it counts as ready when alive after --interval"
            ));
        }
        self.blind = Some(why);
        inputs.push(Input::Unobservable { pid });
    }

    /// The line for worker `pid` of the watched generation, which exited
    /// during its start before any of its processes was seen waiting on a
    /// listener: most often a server that binds the address itself and
    /// fails with EADDRINUSE. None: it was seen, or nothing was watched.
    pub fn exited_unseen(&self, generation: u64, pid: i32) -> Option<String> {
        let watch = self.watch.as_ref().filter(|w| w.generation == generation && w.done.is_empty())?;
        let (fd, address) = watch.listeners.iter().find_map(|l| Some((l.fd, l.tcp?)))?;
        Some(format!(
            "generation {generation}: pid {pid} exited before it ever waited on the inherited listener fd {fd} \
             ({address}); a worker that binds that address itself fails with EADDRINUSE: give it the inherited \
             socket (see Readiness in the README)"
        ))
    }

    /// Keep how generation `generation` was found ready, for `status`.
    pub fn ready(&mut self, generation: u64, how: String) {
        if self.evidence.len() >= KEPT {
            self.evidence.remove(0);
        }
        self.evidence.push((generation, how));
    }

    pub fn evidence_of(&self, generation: u64) -> Option<&str> {
        self.evidence.iter().rev().find(|(g, _)| *g == generation).map(|(_, how)| how.as_str())
    }
}

/// The starting generation, its live workers and its spawn time, when a
/// sighting would count for it.
fn watched(machine: &Machine) -> Option<(u64, Vec<i32>, Instant)> {
    let (mode, learned) = machine.readiness();
    let counts =
        machine.observes() && (mode == ReadyMode::Accepting || (mode == ReadyMode::Auto && !learned));
    if !counts {
        return None;
    }
    let views = machine.views();
    let starting = views.into_iter().find(|v| v.role == Role::Starting)?;
    Some((starting.generation, starting.pids, super::instant(starting.spawned_at)))
}

/// The listeners as the workers have them: fd and inode, and a TCP one's address.
fn inodes(listeners: &[Listener], fds: &[i32]) -> Vec<observe::Listener> {
    let listener = |(l, &fd): (&Listener, &i32)| {
        let stat = nix::sys::stat::fstat(l.socket.as_fd()).ok()?;
        let address = l.socket.local_addr().ok().and_then(|a| a.as_socket());
        let tcp = address.filter(|_| l.socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM));
        Some(observe::Listener { fd, inode: stat.st_ino, tcp })
    };
    listeners.iter().zip(fds).filter_map(listener).collect()
}

/// The processes of worker `pid` to look at: its cgroup's and its
/// descendants, starting where the last look at them stopped.
fn members(watch: &Watch, contain: &Containment, pid: i32) -> Vec<i32> {
    let mut members = contain.members(pid);
    for member in observe::descendants(pid) {
        if !members.contains(&member) && members.len() < observe::MAX_PROCESSES {
            members.push(member);
        }
    }
    let at = watch.cursors.get(&pid).map_or(0, |at| at % members.len().max(1));
    members.rotate_left(at);
    members
}

/// A live worker whose /proc directory is not there.
fn hidden(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}
