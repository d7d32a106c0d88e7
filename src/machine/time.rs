//! The machine's clock: a `Moment` is a reading of `CLOCK_MONOTONIC` in
//! nanoseconds (the time since boot, suspend not counted), taken by `sys`
//! and handed in with every input. The machine reads no clock itself.
//!
//! Unlike an `Instant`, a moment is plain data: the same number means the
//! same moment in every image of the process, so the machine's state goes
//! across a self-upgrade as it is (`snapshot.rs`). Arithmetic saturates: no
//! input can make it panic.
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Moment(u64);

impl Moment {
    pub const fn from_nanos(nanos: u64) -> Moment {
        Moment(nanos)
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Moment {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Moment {
    type Output = Moment;
    fn sub(self, d: Duration) -> Moment {
        Moment(self.0.saturating_sub(nanos(d)))
    }
}

/// As for `Instant`: zero if `earlier` is later.
impl Sub<Moment> for Moment {
    type Output = Duration;
    fn sub(self, earlier: Moment) -> Duration {
        self.saturating_duration_since(earlier)
    }
}
