//! Watching a starting generation for the moment it accepts connections
//! (`--ready auto` and `--ready accepting`), for servers that send no
//! `READY=1`: what `sys::observe` sees becomes `Input::Accepting`.
//!
//! Only while a generation is starting, and only while the rule in force
//! lets a sighting count (auto mode not learned, accepting mode): the
//! first look 1 ms after the spawn, then every 2 ms for 50 ms, every 5 ms
//! until 5 s, every 100 ms after that (`step`); a look is well under a
//! millisecond, bounded by `sys::observe`'s limits. At rest there
//! is no deadline, so the loop never wakes for it. The members looked at
//! are the worker's cgroup (cgroup containment) and its descendants
//! (prefork servers accept in children).
//!
//! Where a worker cannot be looked at, the machine is told
//! (`Input::Unobservable`: alive after `--interval` holds for it) and the
//! log says why, once; a process of the generation listening on a
//! listener's address with a socket of its own is named, once per
//! generation.
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::listen::Listener;
use crate::machine::event::Sighting;
use crate::machine::{Input, Machine, ReadyMode};
use crate::sys::observe::{self, Seen};

use super::contain::Containment;

const FIRST_LOOK: Duration = Duration::from_millis(1);

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
    cursors: Vec<(i32, usize)>,
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
                    cursors: Vec::new(),
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
        (!settled).then_some(watch.next_at)
    }

    /// Look, if it is time: the inputs for the machine and the lines to
    /// log. A process listening with a socket of its own is named once the
    /// generation has been starting `interval` unseen (a server may bind
    /// an admin port of its own before it serves the inherited one).
    pub fn look(
        &mut self,
        machine: &Machine,
        contain: &Containment,
        interval: Duration,
        now: Instant,
    ) -> (Vec<Input>, Vec<String>) {
        let (mut inputs, mut lines) = (Vec::new(), Vec::new());
        let Some((generation, pids, _)) = watched(machine) else { return (inputs, lines) };
        let Some(watch) = self.watch.as_mut().filter(|w| w.generation == generation && w.next_at <= now)
        else {
            return (inputs, lines);
        };
        watch.next_at = now + step(now.saturating_duration_since(watch.spawned_at));
        let waiting: Vec<i32> = pids.into_iter().filter(|pid| !watch.done.contains(pid)).collect();
        for pid in waiting {
            let mut members = contain.members(pid);
            for member in observe::descendants(pid) {
                if !members.contains(&member) && members.len() < observe::MAX_PROCESSES {
                    members.push(member);
                }
            }
            let at =
                watch.cursors.iter().find(|(p, _)| *p == pid).map_or(0, |&(_, at)| at) % members.len().max(1);
            members.rotate_left(at);
            let mut report = observe::look(&members, &watch.listeners);
            watch.cursors.retain(|(p, _)| *p != pid);
            watch.cursors.push((pid, at + report.looked));
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
                watch.done.push(pid);
                if self.blind.is_none() {
                    lines.push(format!(
                        "cannot see whether worker {pid} accepts connections ({why}); \
                         it counts as ready when alive after --interval"
                    ));
                }
                self.blind = Some(why);
                inputs.push(Input::Unobservable { pid });
            }
        }
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
    let starting = views.into_iter().find(|v| v.phase == "starting")?;
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

/// A live worker whose /proc directory is not there.
fn hidden(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}
