//! The drill's progress on stderr while it runs.
//!
//! On a terminal: a bar over the restarts and upgrades (a spinner when
//! there are none), its message the load's live counters and request rate. A thread of its
//! own refreshes it every [`TICK`], so it keeps moving while a restart
//! blocks the drill for seconds; that thread is stopped and joined when the
//! progress is finished or dropped, and the bar is left in place with the
//! final counters, the cursor past it: what is printed next starts on a
//! line of its own.
//!
//! Otherwise (stderr is not a terminal): one plain line per restart and
//! per upgrade, which tests and CI logs read, and nothing else.
use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::load::Counters;
use super::report::Step;

/// How often the bar's counters are refreshed.
const TICK: Duration = Duration::from_millis(150);
/// The request rate is measured over about this last stretch of time.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The bar over the restarts and upgrades (its prefix says which), and the
/// spinner for a load without either.
const BAR: &str = "{spinner} {elapsed_precise} [{bar:25}] {prefix} {pos}/{len}: {wide_msg}";
const SPINNER: &str = "{spinner} {elapsed_precise} load: {wide_msg}";

/// The progress of one drill, from the load's start to its report.
pub struct Progress {
    counters: Counters,
    restarts: usize,
    upgrades: usize,
    /// On a terminal only.
    bar: Option<ProgressBar>,
    /// Dropped to stop the ticker.
    stop: Option<Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// The progress of a drill of `restarts` restarts and `upgrades`
    /// upgrades under the load whose counters are given; a bar drawn on
    /// `target` (stderr when it is a terminal), else plain lines.
    pub fn new(
        counters: Counters,
        (restarts, upgrades): (usize, usize),
        target: Option<ProgressDrawTarget>,
    ) -> Progress {
        let mut progress = Progress { counters, restarts, upgrades, bar: None, stop: None, ticker: None };
        let Some(target) = target else { return progress };
        let steps = restarts + upgrades;
        let (length, template) = if steps > 0 { (Some(steps as u64), BAR) } else { (None, SPINNER) };
        let style = ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ");
        let prefix = match (restarts, upgrades) {
            (_, 0) => "restart",
            (0, _) => "upgrade",
            _ => "restarts+upgrades",
        };
        let bar = ProgressBar::with_draw_target(length, target).with_style(style).with_prefix(prefix);
        bar.set_message(counts(&progress.counters));
        let (stop, stopped) = mpsc::channel();
        let (ticker_bar, counters) = (bar.clone(), progress.counters.clone());
        // Without the thread the bar still moves at each restart.
        progress.ticker = thread::Builder::new()
            .name("drill-progress".into())
            .spawn(move || {
                let mut rate = Rate::new(Instant::now(), counters.done());
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    let per_second = rate.update(Instant::now(), counters.done());
                    ticker_bar.set_message(format!("{}, {per_second:.0} req/s", counts(&counters)));
                    ticker_bar.tick();
                }
            })
            .ok();
        progress.stop = Some(stop);
        progress.bar = Some(bar);
        progress
    }

    /// Restart or upgrade `step` has been answered (they come in order).
    pub fn done(&self, step: Step) {
        let (what, number, of) = match step {
            Step::Restart(n) => ("restart", n, self.restarts),
            Step::Upgrade(n) => ("upgrade", n, self.upgrades),
        };
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => {
                let _ = writeln!(std::io::stderr(), "{}", line(&self.counters, what, number, of));
            }
        }
    }
}

/// Dropped, the progress stops refreshing and leaves the bar with the
/// final counters.
impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        if let Some(bar) = &self.bar {
            // Abandoned rather than finished: a drill whose load ended
            // early did not do every restart, and the bar says so.
            bar.abandon_with_message(counts(&self.counters));
        }
    }
}

/// `N requests, N failed, N retried`.
fn counts(counters: &Counters) -> String {
    let (done, failed, retried) = (counters.done(), counters.failures(), counters.retried());
    format!("{done} requests, {failed} failed, {retried} retried")
}

/// The plain line printed after each restart (`what`) or upgrade when
/// there is no bar.
fn line(counters: &Counters, what: &str, number: usize, of: usize) -> String {
    format!("handover drill: {}, {what} {number}/{of}", counts(counters))
}

/// Requests per second over the last [`RATE_WINDOW`] or so: the difference
/// between the newest count and the newest one at least that old (the
/// oldest kept, until the window is full).
struct Rate {
    counts: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn new(now: Instant, done: u64) -> Rate {
        Rate { counts: VecDeque::from([(now, done)]) }
    }

    fn update(&mut self, now: Instant, done: u64) -> f64 {
        self.counts.push_back((now, done));
        while self.counts.len() > 2 && now.duration_since(self.counts[1].0) >= RATE_WINDOW {
            self.counts.pop_front();
        }
        let (then, before) = self.counts[0];
        let seconds = now.duration_since(then).as_secs_f64();
        if seconds > 0.0 { done.saturating_sub(before) as f64 / seconds } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::load::{Load, Mode, Plan};

    /// The counters of a load without targets: nothing but what a test counts.
    fn counters() -> (Load, Counters) {
        let mode = Mode::Http { path: "/".into(), expect_status: 200, keepalive: false };
        let plan = Plan {
            targets: vec![],
            mode,
            connections: 1,
            requests: None,
            duration: None,
            timeout: Duration::from_secs(1),
            rate: None,
            max_samples: 10,
        };
        let load = Load::start(plan).unwrap();
        let counters = load.counters();
        (load, counters)
    }

    /// Polls `fact` (a watchdog: 20 s).
    fn until(mut fact: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !fact() {
            assert!(Instant::now() < deadline, "not within 20 s");
            thread::yield_now();
        }
    }

    #[test]
    fn plain_line() {
        let (_load, counters) = counters();
        assert_eq!(
            line(&counters, "restart", 0, 0),
            "handover drill: 0 requests, 0 failed, 0 retried, restart 0/0"
        );
        counters.count(false, false);
        counters.count(true, false);
        counters.count(false, true);
        assert_eq!(
            line(&counters, "restart", 2, 5),
            "handover drill: 3 requests, 1 failed, 1 retried, restart 2/5"
        );
        assert_eq!(
            line(&counters, "upgrade", 1, 4),
            "handover drill: 3 requests, 1 failed, 1 retried, upgrade 1/4"
        );
    }

    #[test]
    fn no_terminal_no_bar_no_thread() {
        let (_load, counters) = counters();
        let progress = Progress::new(counters.clone(), (3, 1), None);
        assert!(progress.bar.is_none() && progress.ticker.is_none());
        assert_eq!(counters.handles(), 3);
        drop(progress);
        assert_eq!(counters.handles(), 2);
    }

    #[test]
    fn the_ticker_shows_live_counters_and_stops_with_the_progress() {
        let (_load, counters) = counters();
        let progress = Progress::new(counters.clone(), (4, 0), Some(ProgressDrawTarget::hidden()));
        let bar = progress.bar.clone().unwrap();
        assert_eq!(bar.length(), Some(4));
        assert_eq!(bar.message(), "0 requests, 0 failed, 0 retried");
        // Counted after the bar was made: only the ticker can show them.
        counters.count(true, true);
        counters.count(false, false);
        until(|| {
            bar.message().starts_with("2 requests, 1 failed, 1 retried, ")
                && bar.message().ends_with(" req/s")
        });
        (1..=3).for_each(|n| progress.done(Step::Restart(n)));
        assert_eq!(bar.position(), 3);
        // The load, this test and the progress (its ticker too) hold the counters.
        assert_eq!(counters.handles(), 4);
        drop(progress);
        assert_eq!(counters.handles(), 2, "the ticker is gone");
        assert!(bar.is_finished());
        assert_eq!((bar.position(), bar.message().as_str()), (3, "2 requests, 1 failed, 1 retried"));
    }

    #[test]
    fn a_spinner_without_restarts_and_dropping_stops_the_ticker() {
        let (_load, counters) = counters();
        let progress = Progress::new(counters.clone(), (0, 0), Some(ProgressDrawTarget::hidden()));
        let bar = progress.bar.clone().unwrap();
        assert_eq!(bar.length(), None);
        until(|| bar.message().ends_with(" req/s"));
        drop(progress);
        assert_eq!(counters.handles(), 2);
        assert!(bar.is_finished());
    }

    #[test]
    fn the_bar_counts_restarts_and_upgrades_together() {
        let (_load, counters) = counters();
        let progress = Progress::new(counters.clone(), (2, 3), Some(ProgressDrawTarget::hidden()));
        let bar = progress.bar.clone().unwrap();
        assert_eq!((bar.length(), bar.prefix().as_str()), (Some(5), "restarts+upgrades"));
        for step in [Step::Restart(1), Step::Upgrade(1), Step::Restart(2), Step::Upgrade(2)] {
            progress.done(step);
        }
        assert_eq!(bar.position(), 4);
        drop(progress);
        let only = Progress::new(counters.clone(), (0, 3), Some(ProgressDrawTarget::hidden()));
        assert_eq!(only.bar.as_ref().unwrap().prefix(), "upgrade");
    }

    #[test]
    fn rate_over_the_last_second() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut rate = Rate::new(t0, 0);
        assert_eq!(rate.update(t0, 0), 0.0);
        assert_eq!(rate.update(at(500), 500), 1000.0);
        assert_eq!(rate.update(at(1000), 1500), 1500.0);
        // From t0 + 1 s on, the counts older than a second are let go.
        assert_eq!(rate.update(at(1500), 1500), 1000.0);
        assert_eq!(rate.update(at(2000), 1500), 0.0);
        assert_eq!(rate.update(at(3000), 4500), 3000.0);
        assert!(rate.counts.len() <= 3);
    }

    #[test]
    fn templates() {
        for template in [BAR, SPINNER] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
