//! What a restart that was not done in time is waiting for, in the
//! supervisor's own account: handover's `status` reply, or a
//! start_server-compatible program's status file. A generation still
//! starting never became ready; one still draining has workers that did
//! not exit when told to stop. Pure: the caller asks, this words it.
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::time::Duration;

use crate::drill::report::pids;
use crate::wire::control::{Phase, Status};

/// `120 s`, `1.5 s`.
pub fn seconds(period: Duration) -> String {
    format!("{} s", (period.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// The signal an old generation is told to stop with: `--signal-on-hup`
/// among the supervisor's options (before `--`), TERM by default.
pub fn stop_signal(args: &[OsString]) -> String {
    let Some(value) = option(args, "signal-on-hup") else { return "TERM".into() };
    match crate::config::parse_signal("signal-on-hup", &value) {
        Ok(signal) => signal.as_str().trim_start_matches("SIG").to_owned(),
        Err(_) => value,
    }
}

/// The value of the supervisor's option `--NAME` (the last one given,
/// before `--`).
fn option(args: &[OsString], name: &str) -> Option<String> {
    let (long, prefixed) = (format!("--{name}"), format!("--{name}="));
    let mut value = None;
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if arg == long {
            value = iter.next().map(|v| v.into_owned());
        } else if let Some(v) = arg.strip_prefix(&prefixed) {
            value = Some(v.to_owned());
        }
    }
    value
}

/// The supervisor's `--stop-timeout`, if given and valid.
pub fn stop_timeout(args: &[OsString]) -> Option<Duration> {
    crate::config::parse_duration("stop-timeout", &option(args, "stop-timeout")?).ok()
}

/// Every generation in `status` still starting or draining, `waited`
/// after the restart was asked for, in one line; None when none is.
pub fn from_status(status: &Status, waited: Duration, signal: &str) -> Option<String> {
    let after = seconds(waited);
    let unsettled: Vec<String> = (status.generations.iter())
        .filter_map(|g| {
            let n = g.generation;
            Some(match g.phase {
                Phase::Serving => return None,
                Phase::Starting => {
                    format!("generation {n} still starting after {after} (no READY=1? see --ready-timeout)")
                }
                Phase::Draining if g.told_to_stop.is_none() => {
                    format!("generation {n} still draining after {after}: not told to stop yet (see --kill-old-delay)")
                }
                Phase::Draining => format!(
                    "generation {n} still draining after {after}: {} did not exit on {signal} (see --drain-timeout)",
                    pids(&g.pids)
                ),
            })
        })
        .collect();
    (!unsettled.is_empty()).then(|| unsettled.join("; "))
}

/// The generations up to `old` (the newest before the restart) that the
/// status file `listed` (generation, pid) still holds, in one line; None
/// when it holds none.
pub fn from_status_file(listed: &[(u64, u32)], old: u64, waited: Duration, signal: &str) -> Option<String> {
    let generations: BTreeSet<u64> = listed.iter().map(|g| g.0).filter(|&g| g <= old).collect();
    let after = seconds(waited);
    let lines: Vec<String> = (generations.iter())
        .map(|&n| {
            let of: Vec<i32> = listed.iter().filter(|g| g.0 == n).map(|g| g.1 as i32).collect();
            format!("generation {n} still draining after {after}: {} did not exit on {signal}", pids(&of))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::control::{Counters, Generation};

    fn generation(generation: u64, phase: Phase, pids: &[i32], told: bool) -> Generation {
        Generation {
            generation,
            phase,
            pids: pids.to_vec(),
            started: "2026-01-01T00:00:00.000Z".into(),
            ready: None,
            told_to_stop: told.then(|| "2026-01-01T00:00:01.000Z".into()),
            members: Vec::new(),
            rss_bytes: None,
            ready_by: None,
        }
    }

    fn status(generations: Vec<Generation>) -> Status {
        let (listeners, last_restart, counters) = (vec![], None, Counters::default());
        Status {
            ok: true,
            pid: 1,
            stopping: false,
            ready: None,
            listeners,
            generations,
            last_restart,
            counters,
            image: None,
            containment: None,
            observation: None,
        }
    }

    #[test]
    fn the_status_names_what_is_not_settled() {
        let two = Duration::from_secs(120);
        let cases = [
            (vec![generation(4, Phase::Serving, &[900], false)], None),
            (
                vec![
                    generation(3, Phase::Draining, &[812, 813], true),
                    generation(4, Phase::Serving, &[900], false),
                ],
                Some(
                    "generation 3 still draining after 120 s: pids 812, 813 did not exit on TERM (see --drain-timeout)",
                ),
            ),
            (
                vec![
                    generation(3, Phase::Serving, &[812], false),
                    generation(4, Phase::Starting, &[900], false),
                ],
                Some("generation 4 still starting after 120 s (no READY=1? see --ready-timeout)"),
            ),
            (
                vec![
                    generation(2, Phase::Draining, &[700], false),
                    generation(3, Phase::Starting, &[812], false),
                ],
                Some(
                    "generation 2 still draining after 120 s: not told to stop yet (see --kill-old-delay); \
                     generation 3 still starting after 120 s (no READY=1? see --ready-timeout)",
                ),
            ),
        ];
        for (generations, want) in cases {
            assert_eq!(from_status(&status(generations), two, "TERM").as_deref(), want);
        }
        let one = status(vec![generation(1, Phase::Draining, &[5], true)]);
        assert_eq!(
            from_status(&one, Duration::from_millis(1500), "QUIT").unwrap(),
            "generation 1 still draining after 1.5 s: pid 5 did not exit on QUIT (see --drain-timeout)"
        );
    }

    #[test]
    fn the_status_file_names_the_old_generations_still_listed() {
        let waited = Duration::from_secs(2);
        let listed = [(3, 812), (3, 813), (4, 900)];
        assert_eq!(
            from_status_file(&listed, 3, waited, "TERM").unwrap(),
            "generation 3 still draining after 2 s: pids 812, 813 did not exit on TERM"
        );
        assert_eq!(from_status_file(&[(4, 900)], 3, waited, "TERM"), None);
        assert_eq!(
            from_status_file(&[(2, 7), (3, 8), (4, 9)], 3, waited, "TERM").unwrap(),
            "generation 2 still draining after 2 s: pid 7 did not exit on TERM; \
             generation 3 still draining after 2 s: pid 8 did not exit on TERM"
        );
    }

    #[test]
    fn the_stop_signal_is_signal_on_hup_or_term() {
        let signal = |args: &[&str]| stop_signal(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(signal(&["--port", "0", "--", "app", "--signal-on-hup", "USR1"]), "TERM");
        assert_eq!(signal(&["--signal-on-hup", "quit", "--", "app"]), "QUIT");
        assert_eq!(signal(&["--signal-on-hup=SIGUSR2", "--", "app"]), "USR2");
        assert_eq!(signal(&["--signal-on-hup=3"]), "QUIT");
        assert_eq!(signal(&["--signal-on-hup=BOGUS"]), "BOGUS");
        let stop = |args: &[&str]| stop_timeout(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(stop(&["--stop-timeout", "90s", "--", "app"]), Some(Duration::from_secs(90)));
        assert_eq!(stop(&["--stop-timeout=2", "--", "app"]), Some(Duration::from_secs(2)));
        assert_eq!(stop(&["--", "app", "--stop-timeout", "9"]), None);
    }
}
