//! Log lines of one kind (refused peers, dropped clients) at most once per
//! `THROTTLE`, with a count of the ones held back.
use std::time::{Duration, Instant};

/// Log lines of one kind (refused peers, dropped clients) at most this often.
pub const THROTTLE: Duration = Duration::from_secs(10);

/// Admits a log line of one kind at most once per `THROTTLE`, counting
/// the ones held back, so a flood of refused peers costs one line.
#[derive(Default)]
pub struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// Some(lines held back since the last one) when a line may go now.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.saturating_duration_since(last) < THROTTLE) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }

    pub fn note(&mut self, now: Instant, line: String, logs: &mut Vec<String>) {
        match self.admit(now) {
            Some(0) => logs.push(line),
            Some(held) => logs.push(format!("{line} (and {held} more like it)")),
            None => {}
        }
    }
}
