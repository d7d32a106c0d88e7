//! Workers the supervisor had to KILL because they did not exit when told
//! to stop: an old generation at `--drain-timeout`, a generation that never
//! became ready, or any worker at the stop (`--stop-timeout`). Read from
//! handover's own log lines (in any of its formats), each with when the
//! drill saw it, and attributed to the restart in flight then.
use std::time::{Duration, Instant};

use super::verdict::Case;
use super::{RestartRecord, RestartReport, Step};

/// Why a worker was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillWhy {
    /// An old generation still running at `--drain-timeout`.
    Drain,
    /// A generation that never became ready, told to stop (this one).
    NeverReady(u64),
    /// Still running at `--stop-timeout` after the stop began.
    Stop,
}

/// One KILL the supervisor sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// When the drill read the line.
    pub at: Instant,
    pub pids: Vec<i32>,
    /// How long after being told to stop.
    pub after: Duration,
    pub why: KillWhy,
}

/// The text between `start` and `end` in `line`.
fn between<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let (_, after) = line.split_once(start)?;
    Some(after.split_once(end)?.0)
}

fn duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// The KILL `line` reports, if it is one of the supervisor's about one.
pub fn parse(line: &str, at: Instant) -> Option<Kill> {
    if !line.contains("sending KILL to") {
        return None;
    }
    if let Some(before) = between(line, "", ", which never became ready, still running ") {
        let (head, generation) = before.rsplit_once(" of generation ")?;
        let pid = head.rsplit(' ').next()?.parse().ok()?;
        let after = duration(between(line, "never became ready, still running ", " after it was told")?)?;
        return Some(Kill { at, pids: vec![pid], after, why: KillWhy::NeverReady(generation.parse().ok()?) });
    }
    if let Some(rest) = between(line, "old worker ", " after it was told to stop") {
        let (pid, after) = rest.split_once(" still running ")?;
        return Some(Kill {
            at,
            pids: vec![pid.parse().ok()?],
            after: duration(after)?,
            why: KillWhy::Drain,
        });
    }
    let rest = between(line, "workers ", " after shutdown began")?;
    let (pids, after) = rest.split_once(" still running ")?;
    let pids = pids.split(',').map(|p| p.trim().parse().ok()).collect::<Option<Vec<i32>>>()?;
    Some(Kill { at, pids, after: duration(after)?, why: KillWhy::Stop })
}

/// `pid 812`, `pids 812, 813`.
pub fn pids(pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    format!("{} {}", if list.len() == 1 { "pid" } else { "pids" }, list.join(", "))
}

/// What a kill says in a verdict, after `restart N: ` or `at the stop: `;
/// `signal`: what an old generation is told to stop with.
pub(super) fn words(kill: &Kill, signal: &str) -> String {
    // The supervisor's timer fires a little late: 1s 1ms is its 1 s.
    let secs = kill.after.as_secs_f64();
    let after = if secs >= 1.0 { (secs * 10.0).round() / 10.0 } else { (secs * 1000.0).round() / 1000.0 };
    let after = format!("{after} s");
    let who = pids(&kill.pids);
    match kill.why {
        KillWhy::Drain => format!(
            "{who} ignored {signal}; killed after {after}: the server does not stop on --signal-on-hup ({signal})"
        ),
        KillWhy::NeverReady(g) => {
            format!(
                "{who} of generation {g}, never ready, ignored {signal}; killed after {after} (--ready-timeout)"
            )
        }
        KillWhy::Stop => format!("{who} ignored TERM; killed after {after} (--stop-timeout)"),
    }
}

/// The verdicts of `kills`: each old generation's, after `restart N: `
/// (and its pids in that restart's report), those before any restart,
/// those at the stop; and the pids killed at the stop. A kill belongs to
/// the latest restart requested before the drill saw it.
pub(super) fn findings(
    kills: &[Kill],
    records: &[RestartRecord],
    restarts: &mut [RestartReport],
    signal: &str,
) -> (Vec<(Case, String)>, Vec<i32>) {
    let mut out = Vec::new();
    for k in kills.iter().filter(|k| k.why != KillWhy::Stop) {
        let latest = records.iter().filter(|r| r.requested_at <= k.at).max_by_key(|r| r.requested_at);
        match latest.and_then(|r| restarts.iter_mut().find(|report| report.number == r.number)) {
            Some(report) => {
                report.killed.extend(&k.pids);
                let step = Step::Restart(report.number);
                out.push((Case::Step(step), format!("{step}: {}", words(k, signal))));
            }
            None => out.push((Case::Leftovers, format!("before any restart: {}", words(k, signal)))),
        }
    }
    let at_stop: Vec<&Kill> = kills.iter().filter(|k| k.why == KillWhy::Stop).collect();
    out.extend(at_stop.iter().map(|k| (Case::Leftovers, format!("at the stop: {}", words(k, "TERM")))));
    (out, at_stop.iter().flat_map(|k| k.pids.iter().copied()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisors_kill_lines_in_any_format() {
        let at = Instant::now();
        let kill = |line: &str| parse(line, at).map(|k| (k.pids, k.after.as_millis(), k.why));
        assert_eq!(
            kill(
                "handover[7]: old worker 812 still running 30s after it was told to stop; sending KILL to its process group"
            ),
            Some((vec![812], 30_000, KillWhy::Drain))
        );
        assert_eq!(
            kill(
                r#"{"line":"old worker 5 still running 1s 500ms after it was told to stop; sending KILL to its process group","pid":7}"#
            ),
            Some((vec![5], 1500, KillWhy::Drain))
        );
        assert_eq!(
            kill(
                "handover[7]: worker 101 of generation 3, which never became ready, still running 2s after it \
                  was told to stop; sending KILL to its process group (--ready-timeout)"
            ),
            Some((vec![101], 2000, KillWhy::NeverReady(3)))
        );
        assert_eq!(
            kill(
                "handover[7]: workers 101,102 still running 3s after shutdown began; sending KILL to their process groups"
            ),
            Some((vec![101, 102], 3000, KillWhy::Stop))
        );
        assert_eq!(kill("[gen 1 pid 9 stdout] old worker stories"), None);
        assert_eq!(kill("old worker x still running 1s after it was told to stop; sending KILL to"), None);
    }

    #[test]
    fn a_kill_in_words() {
        let at = Instant::now();
        let drain = Kill { at, pids: vec![23783], after: Duration::from_secs(30), why: KillWhy::Drain };
        assert_eq!(
            words(&drain, "TERM"),
            "pid 23783 ignored TERM; killed after 30 s: the server does not stop on --signal-on-hup (TERM)"
        );
        let late = Kill { after: Duration::from_millis(1001), ..drain.clone() };
        assert!(words(&late, "TERM").contains("killed after 1 s:"));
        let stop = Kill { pids: vec![1, 2], why: KillWhy::Stop, ..drain };
        assert_eq!(words(&stop, "QUIT"), "pids 1, 2 ignored TERM; killed after 30 s (--stop-timeout)");
    }
}
