//! Why a drill failed: one line per reason, pointing at the restart or
//! upgrade and the likely cause, each tagged with the JUnit testcase it
//! fails.
use std::collections::BTreeMap;

use super::{Failures, Report, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    /// The first generation never served.
    Startup,
    Requests,
    /// Failed requests attributed to a restart or an upgrade: both
    /// testcases fail.
    RequestsIn(Step),
    Step(Step),
    /// The supervisor's log lost lines across upgrades.
    UpgradeLog,
    /// Fewer `--log-line` lines than answered requests.
    RequestLog,
    /// More retried keep-alive requests than `--max-retried` allows.
    Retried,
    Latency,
    Leftovers,
}

/// What probably happened, by kind of failure (as [`Failures::kinds`]
/// lists them): during a restart, during an upgrade, outside both.
const HINTS: [[&str; 3]; 6] = [
    [
        "nothing was accepting: was a listener closed or re-bound?",
        "nothing was accepting: was a listener closed across the exec?",
        "nothing was accepting: was the supervisor down or a listener closed?",
    ],
    [
        "the old generation dropped in-flight requests on SIGTERM?",
        "a worker closed connections without answering: was it signalled or killed?",
        "a worker closed connections without answering: a crash, or an idle timeout?",
    ],
    [
        "nobody answered: no generation accepting, or the old one hung while draining?",
        "nobody answered: did the workers stop, or wait on the supervisor?",
        "the server was too slow for --timeout, or hung?",
    ],
    [
        "a generation answered before it was ready, or while stopping?",
        "see the server's log",
        "see the server's log",
    ],
    [
        "a worker exited while writing a response instead of finishing it?",
        "a worker died while answering: was it signalled or killed?",
        "a worker died while answering?",
    ],
    ["see the error"; 3],
];

impl Failures {
    /// (count, how the verdict says it, its [`HINTS`]) of each kind.
    fn kinds(&self) -> impl Iterator<Item = (u64, String, [&'static str; 3])> {
        let detail = |map: &BTreeMap<String, u64>| {
            map.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
        };
        let words = [
            "refused".into(),
            "reset".into(),
            "timed out".into(),
            format!("answered another status ({})", detail(&self.statuses)),
            "cut short".into(),
            format!("failed ({})", detail(&self.errors)),
        ];
        let counts = [self.refused, self.reset, self.timeout, self.bad_status, self.short_read, self.other];
        counts.into_iter().zip(words).zip(HINTS).map(|((n, what), hints)| (n, what, hints))
    }
}

/// Why the drill failed, each line with the case it belongs to (JUnit):
/// `first` (what stopped the drill, and the kills of restarts), the
/// restarts and upgrades that failed, then the requests. `attributed`:
/// the failed requests of each restart's and upgrade's window;
/// `retried_in_restarts`: how many of the retried requests overlap any of
/// those windows.
pub(super) fn findings(
    report: &Report,
    first: Vec<(Case, String)>,
    attributed: &[(Step, Failures)],
    outside: &Failures,
    retried_in_restarts: u64,
) -> Vec<(Case, String)> {
    let mut out = first;
    let plural = |n: u64| if n == 1 { "request" } else { "requests" };
    for r in &report.restarts {
        let step = Step::Restart(r.number);
        if !r.ok {
            let error = r.error.as_deref().unwrap_or("no reason given");
            out.push((Case::Step(step), format!("{step} failed: {error}")));
        }
        out.extend(r.findings.iter().map(|f| (Case::Step(step), format!("{step}: {f}"))));
    }
    out.extend(report.upgrades.findings());
    if report.requests == 0 && report.startup_error.is_none() {
        out.push((Case::Requests, "no request was made: no listener to drive, or the load never ran".into()));
    }
    if report.failures.total > report.max_failures {
        if report.max_failures > 0 {
            let text = format!(
                "{} failed requests, more than --max-failures {}",
                report.failures.total, report.max_failures
            );
            out.push((Case::Requests, text));
        }
        for (step, failures) in attributed {
            let restart = report.restarts.iter().find(|r| Step::Restart(r.number) == *step);
            let generation = restart.and_then(|r| r.generation).map(|g| format!(" (generation {g})"));
            let (generation, hint) = (generation.unwrap_or_default(), usize::from(restart.is_none()));
            for (n, what, hints) in failures.kinds().filter(|k| k.0 > 0) {
                let text = format!("{n} {} {what} during {step}{generation}: {}", plural(n), hints[hint]);
                out.push((Case::RequestsIn(*step), text));
            }
        }
        let any = if report.upgrades.count > 0 { "any restart or upgrade" } else { "any restart" };
        for (n, what, hints) in outside.kinds().filter(|k| k.0 > 0) {
            out.push((Case::Requests, format!("{n} {} {what} outside {any}: {}", plural(n), hints[2])));
        }
    }
    // A measure equal to the limit passes (give or take a rounding error).
    let share = report.retried as f64 * 100.0 / report.requests.max(1) as f64;
    let each = report.retried as f64 / (report.connections.max(1) * report.restarts.len().max(1)) as f64;
    let over = report.max_retried_percent.is_some_and(|max| share > max + 1e-9)
        || report.max_retried_per_connection_restart.is_some_and(|max| each > max + 1e-9);
    if over {
        out.push((Case::Retried, retried(report, retried_in_restarts)));
    }
    if let Some(lines) = report.request_lines.as_ref().filter(|l| l.seen < l.answered) {
        let (lost, of, text) = (lines.answered - lines.seen, lines.answered, &lines.text);
        let line = format!(
            "{of} answered {} but {} output lines with {text:?}: at least {lost} log lines were lost",
            plural(of),
            lines.seen
        );
        out.push((Case::RequestLog, line));
    }
    if let (Some(p99), Some(max)) = (report.latency.p99_ms, report.max_p99_ms)
        && p99 > max
    {
        let mut text = format!("latency p99 {p99} ms is over --max-p99 {max} ms");
        let worst = report
            .restarts
            .iter()
            .filter_map(|r| Some((r.window.latency_p99_ms?, r.number)))
            .reduce(|a, b| if b.0 > a.0 { b } else { a });
        if let Some((p, n)) = worst.filter(|w| w.0 > max) {
            text += &format!(" (worst around restart {n}: p99 {p} ms)");
        }
        out.push((Case::Latency, text));
    }
    out.extend(report.leftovers.iter().map(|l| (Case::Leftovers, format!("left behind: {l}"))));
    out
}

/// The requests a keep-alive connection closed under: a server that closes
/// one without `Connection: close` leaves the client to find out by trying.
fn retried(report: &Report, in_restarts: u64) -> String {
    let (n, of, share) = (report.retried, report.requests, report.retried_percent);
    let restarts = if report.upgrades.count > 0 { "restarts or upgrades" } else { "restarts" };
    let during = match in_restarts {
        0 => String::new(),
        k if k == n => format!(", all during {restarts}"),
        k => format!(", {k} during {restarts}"),
    };
    let measure = match (report.max_retried_percent, report.max_retried_per_connection_restart) {
        (Some(max), _) => format!("{share}%, more than --max-retried {max}%"),
        (None, max) => {
            let (each, c, r) =
                (report.retried_per_connection_restart, report.connections, report.restarts.len());
            let max = max.unwrap_or_default();
            format!(
                "{each} per connection and restart over {c} connections and {r} restarts, more than --max-retried {max}"
            )
        }
    };
    format!(
        "{n} of {of} keep-alive requests ({measure}) found their connection closed without \
         `Connection: close` and were retried{during}: the server closes idle keep-alive connections on its \
         own (or more than once a restart) without saying so"
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tests::{inputs, restart, sample, steady};
    use super::super::{Inputs, RetryLimit, compute};
    use super::*;
    use crate::drill::load::Outcome;

    #[test]
    fn verdicts_point_at_the_restart_and_the_cause() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 3000);
        samples.extend((0..3).map(|i| sample(base, 1500 + i, 2, Outcome::Reset)));
        samples.push(sample(base, 1510, 2, Outcome::BadStatus(503)));
        samples.push(sample(base, 100, 2, Outcome::Other("Cannot assign requested address".into())));
        let mut restarts = vec![restart(base, 1, 200, 300), restart(base, 2, 1480, 1600)];
        restarts[0].ok = false;
        restarts[0].generation = Some(2);
        restarts[0].error = Some("generation 2 failed: worker 901 exited with 1".into());
        let mut inputs = inputs(base, &samples, &restarts);
        inputs.leftovers = vec!["process 4242 (hello)".into()];
        inputs.thresholds.max_p99 = Some(Duration::from_micros(500));
        let report = compute(&inputs);
        assert!(!report.passed);
        assert_eq!(
            report.verdicts,
            [
                "restart 1 failed: generation 2 failed: worker 901 exited with 1",
                "1 request failed (Cannot assign requested address ×1) during restart 1 (generation 2): see the error",
                "3 requests reset during restart 2 (generation 3): \
                 the old generation dropped in-flight requests on SIGTERM?",
                "1 request answered another status (503 ×1) during restart 2 (generation 3): \
                 a generation answered before it was ready, or while stopping?",
                "latency p99 1 ms is over --max-p99 0.5 ms (worst around restart 1: p99 1 ms)",
                "left behind: process 4242 (hello)",
            ]
        );
        assert_eq!(report.failures.statuses, BTreeMap::from([("503".to_string(), 1)]));
    }

    #[test]
    fn retried_requests_fail_the_drill_above_the_threshold() {
        let base = Instant::now();
        let restarts = [restart(base, 1, 500, 520)];
        // 1000 requests; `at` of them retried at these times (ms).
        let verdicts = |at: &[u64], max: f64| {
            let mut samples = steady(base, 0, 1000);
            for &ms in at {
                samples[ms as usize].retried = true;
            }
            let mut inputs = inputs(base, &samples, &restarts);
            inputs.thresholds.max_retried = RetryLimit::Percent(max);
            let report = compute(&inputs);
            (report.retried_percent, report.passed, report.verdicts)
        };
        let during: Vec<u64> = (500..510).collect();
        let text = |n: u64, share: &str, max: &str, during: &str| {
            format!(
                "{n} of 1000 keep-alive requests ({share}%, more than --max-retried {max}%) found their \
                 connection closed without `Connection: close` and were retried{during}: the server closes \
                 idle keep-alive connections on its own (or more than once a restart) without saying so"
            )
        };
        let cases: [(&[u64], f64, f64, Vec<String>); 6] = [
            (&[], 1.0, 0.0, vec![]),
            (&during, 1.0, 1.0, vec![]),
            (&during[..1], 0.0, 0.1, vec![text(1, "0.1", "0", ", all during restarts")]),
            (&[100, 200, 505], 0.2, 0.3, vec![text(3, "0.3", "0.2", ", 1 during restarts")]),
            (&[100, 200, 300], 0.25, 0.3, vec![text(3, "0.3", "0.25", "")]),
            (&[100, 200, 300], 0.3, 0.3, vec![]),
        ];
        for (at, max, share, want) in cases {
            let (got_share, passed, got) = verdicts(at, max);
            assert_eq!((got_share, passed, &got), (share, want.is_empty(), &want), "{at:?} over {max}%");
        }
    }

    #[test]
    fn retries_are_held_to_one_per_connection_and_restart_at_any_rate() {
        let base = Instant::now();
        let restarts = [restart(base, 1, 200, 220), restart(base, 2, 700, 720)];
        // 8 connections, 2 restarts: 16 retries at most, whatever the rate.
        let check = |requests: u64, retries: usize| {
            let mut samples = steady(base, 0, requests);
            for s in samples.iter_mut().skip(205).take(retries) {
                s.retried = true;
            }
            let mut inputs = inputs(base, &samples, &restarts);
            inputs.connections = 8;
            let report = compute(&inputs);
            (report.retried_per_connection_restart, report.verdicts)
        };
        assert_eq!(check(1000, 16), (1.0, vec![]));
        assert_eq!(check(300, 16), (1.0, vec![]), "2.28% of a slow load passes");
        let (each, said) = check(1000, 17);
        assert_eq!(each, 1.063);
        assert_eq!(
            said,
            [
                "17 of 1000 keep-alive requests (1.063 per connection and restart over 8 connections and 2 restarts, \
              more than --max-retried 1) found their connection closed without `Connection: close` and were \
              retried, all during restarts: the server closes idle keep-alive connections on its own (or more \
              than once a restart) without saying so"
            ]
        );
    }

    #[test]
    fn passed_only_within_every_threshold() {
        let base = Instant::now();
        let mut samples = steady(base, 0, 1000);
        samples.push(sample(base, 800, 1, Outcome::Refused));
        let restarts = [restart(base, 1, 10, 20)];
        let mut inputs = inputs(base, &samples, &restarts);
        let failed = |inputs: &Inputs| compute(inputs).verdicts;
        assert_eq!(
            failed(&inputs),
            ["1 request refused outside any restart: \
            nothing was accepting: was the supervisor down or a listener closed?"]
        );
        inputs.thresholds.max_failures = 1;
        assert!(compute(&inputs).passed);
        inputs.thresholds.max_p99 = Some(Duration::from_millis(1));
        assert!(compute(&inputs).passed, "p99 equal to the limit passes");
        let mut more = samples.clone();
        more.push(sample(base, 900, 1, Outcome::Refused));
        let mut inputs = Inputs { samples: more, ..inputs };
        inputs.thresholds.max_failures = 1;
        assert_eq!(failed(&inputs)[0], "2 failed requests, more than --max-failures 1");
        assert_eq!(
            failed(&Inputs { samples: vec![], ..inputs }),
            ["no request was made: no listener to drive, or the load never ran"]
        );
    }
}
