//! Control-socket replies for people: `handover restart --wait` and
//! `handover status` without `--json`.
use crate::wire::control::{Phase, Reopened, Restart, Restarted, Status, Upgraded, name_of};

fn join(pids: &[i32]) -> String {
    let items: Vec<String> = pids.iter().map(i32::to_string).collect();
    items.join(",")
}

/// `generation 4 is serving (pids 12,13): ready 35 ms after spawn, old generation gone 120 ms after it was told to stop`
pub fn outcome_text(done: &Restarted) -> String {
    let mut text = format!("generation {} is serving (pids {})", done.generation, join(&done.pids));
    text += &format!(": ready {} ms after spawn", done.spawn_to_ready_ms);
    if let Some(gone) = done.signal_to_old_gone_ms {
        text += &format!(", old generation gone {gone} ms after it was told to stop");
    }
    for warning in &done.warnings {
        text += &format!("; warning: {warning}");
    }
    text
}

/// The `upgrade` answer for people.
pub fn upgrade_text(done: &Upgraded) -> String {
    let (pid, from, to, binary) = (done.pid, &done.from, &done.to, &done.binary);
    match done.took_ms {
        Some(ms) => {
            format!("supervisor pid {pid} upgraded from handover {from} to {to} ({binary}) in {ms} ms")
        }
        None => format!("supervisor pid {pid} is upgrading from handover {from} to {to} ({binary})"),
    }
}

/// The `reopen` answer for people.
pub fn reopen_text(done: &Reopened) -> String {
    match (&done.log_file, done.forwarded) {
        (Some(path), true) => format!("reopened {path}; sent USR1 to the serving generation"),
        (Some(path), false) => format!("reopened {path}"),
        (None, true) => "sent USR1 to the serving generation".to_string(),
        (None, false) => "nothing to reopen".to_string(),
    }
}

/// `status --serving`: why no generation serves (what there is instead),
/// or `None` when one does and the supervisor is not stopping.
pub fn not_serving(status: &Status) -> Option<String> {
    if status.stopping {
        return Some(format!("the supervisor (pid {}) is stopping", status.pid));
    }
    if status.generations.iter().any(|g| g.phase == Phase::Serving) {
        return None;
    }
    let each =
        status.generations.iter().map(|g| format!("generation {} {}", g.generation, name_of(&g.phase)));
    let what = each.collect::<Vec<_>>().join(", ");
    Some(format!("no generation is serving: {}", if what.is_empty() { "none is running" } else { &what }))
}

/// The `status` answer for people.
pub fn status_text(status: &Status) -> String {
    let mut out = format!("supervisor pid {}", status.pid);
    if status.stopping {
        out += " (stopping)";
    }
    out.push('\n');
    if let Some(image) = &status.image {
        let since = &image.supervisor_started;
        let upgrades = match image.upgrades {
            0 => String::new(),
            1 => format!(", upgraded once since {since}"),
            n => format!(", upgraded {n} times since {since}"),
        };
        out += &format!(
            "handover {} ({}) running since {}{upgrades}\n",
            image.version, image.binary, image.started
        );
    }
    for l in &status.listeners {
        let name = l.name.as_ref().map(|n| format!(" name {n}")).unwrap_or_default();
        let broken = l.broken.as_ref().map(|why| format!("  BROKEN: {why}")).unwrap_or_default();
        out += &format!("listener fd {}  {}{name}{broken}\n", l.fd, l.address);
    }
    for g in &status.generations {
        let (phase, pids) = (name_of(&g.phase), join(&g.pids));
        out += &format!("generation {}  {phase:<8}  pids {pids}  started {}", g.generation, g.started);
        if !g.members.is_empty() && g.members != g.pids {
            out += &format!("  members {}", join(&g.members));
        }
        if let Some(rss) = g.rss_bytes {
            out += &format!("  rss {} KiB", rss / 1024);
        }
        if let Some(how) = &g.ready_by {
            out += &format!("  ready: {how}");
        }
        out.push('\n');
    }
    match &status.last_restart {
        Some(Restart::Done(done)) => out += &format!("last restart: {}\n", outcome_text(done)),
        Some(Restart::Failed(failed)) => out += &format!("last restart failed: {}\n", failed.error),
        None => {}
    }
    if let Some(ready) = status.ready {
        out += &format!("readiness: {}\n", name_of(&ready));
    }
    if let Some(why) = &status.observation {
        out += &format!("not watched for accepting: {why}\n");
    }
    if let Some(containment) = &status.containment {
        out += &format!("containment: {containment}\n");
    }
    let c = &status.counters;
    out += &format!("restarts {}, failures {}, respawns {}", c.restarts, c.failures, c.respawns);
    if c.foreign_ready > 0 {
        out += &format!(", ignored readiness from no worker {}", c.foreign_ready);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::control::{Counters, Generation, Image, Listener, Readiness};

    #[test]
    fn a_restart_and_a_status_for_people() {
        let done = Restarted {
            ok: true,
            generation: 4,
            pids: vec![12, 13],
            spawn_to_ready_ms: 35.25,
            signal_to_old_gone_ms: Some(120.0),
            warnings: Vec::new(),
        };
        assert_eq!(
            outcome_text(&done),
            "generation 4 is serving (pids 12,13): ready 35.25 ms after spawn, \
             old generation gone 120 ms after it was told to stop"
        );
        let mut status = Status {
            ok: true,
            pid: 7,
            stopping: true,
            ready: Some(Readiness::AutoLearnedNotify),
            listeners: vec![Listener {
                fd: 3,
                name: Some("web".into()),
                key: "8080".into(),
                address: "tcp 0.0.0.0:8080".into(),
                broken: None,
            }],
            generations: vec![Generation {
                generation: 4,
                phase: Phase::Serving,
                pids: vec![12, 13],
                started: "T".into(),
                ready: None,
                told_to_stop: None,
                members: vec![12, 13, 14],
                rss_bytes: Some(4096 * 1024),
                ready_by: Some("waiting in epoll_wait on fd 3".into()),
            }],
            last_restart: Some(Restart::Done(done)),
            counters: Counters { restarts: 1, failures: 2, respawns: 3, foreign_ready: 4 },
            image: Some(Image {
                version: "0.2.0".into(),
                binary: "/usr/bin/handover".into(),
                started: "T2".into(),
                supervisor_started: "T0".into(),
                upgrades: 2,
            }),
            containment: Some("session".into()),
            observation: Some("cannot inspect pid 12: Permission denied (os error 13)".into()),
        };
        let text = status_text(&status);
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "supervisor pid 7 (stopping)",
                "handover 0.2.0 (/usr/bin/handover) running since T2, upgraded 2 times since T0",
                "listener fd 3  tcp 0.0.0.0:8080 name web",
                "generation 4  serving   pids 12,13  started T  members 12,13,14  rss 4096 KiB  \
                 ready: waiting in epoll_wait on fd 3",
                "last restart: generation 4 is serving (pids 12,13): ready 35.25 ms after spawn, \
                 old generation gone 120 ms after it was told to stop",
                "readiness: auto, learned notify",
                "not watched for accepting: cannot inspect pid 12: Permission denied (os error 13)",
                "containment: session",
                "restarts 1, failures 2, respawns 3, ignored readiness from no worker 4",
            ]
        );
        assert_eq!(not_serving(&status).as_deref(), Some("the supervisor (pid 7) is stopping"));
        status.stopping = false;
        assert_eq!(not_serving(&status), None);
        status.generations[0].phase = Phase::Starting;
        assert_eq!(not_serving(&status).as_deref(), Some("no generation is serving: generation 4 starting"));
        status.generations.clear();
        assert_eq!(not_serving(&status).as_deref(), Some("no generation is serving: none is running"));
        let upgraded = |took_ms| Upgraded {
            ok: true,
            pid: 7,
            binary: "/usr/bin/handover".into(),
            from: "0.1.0".into(),
            to: "0.2.0".into(),
            took_ms,
        };
        assert_eq!(
            upgrade_text(&upgraded(Some(9.5))),
            "supervisor pid 7 upgraded from handover 0.1.0 to 0.2.0 (/usr/bin/handover) in 9.5 ms"
        );
        assert_eq!(
            upgrade_text(&upgraded(None)),
            "supervisor pid 7 is upgrading from handover 0.1.0 to 0.2.0 (/usr/bin/handover)"
        );
    }
}
