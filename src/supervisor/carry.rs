//! One way to carry a part of the supervisor across a self-upgrade.
//!
//! Each part that lives on in the new image implements `Carry`: its
//! `Record` (declared beside the part, serde, one field of the upgrade's
//! record) says what the part is, names the fds to leave open across
//! `execve`, and builds the part again from them. `upgrade/` knows the
//! parts only through this trait; the parts know nothing of `upgrade/`.
//!
//! Instants outside the machine (whose times are its own `Moment`s) are
//! written as nanoseconds from the moment the record was written
//! (`Written`), which the new image reads on the same clock, so the time
//! the exec took is accounted for.
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::io_text;
use crate::sys;

pub mod foreign;
pub mod hex;

pub use hex::HexBytes;

/// A part of the supervisor carried across a self-upgrade.
pub trait Carry: Sized {
    /// What the upgrade's record holds of the part.
    type Record;
    /// The part as it is now, its instants as offsets from `at`.
    fn carry(&self, at: Written) -> Self::Record;
    /// Every fd `record` names: left open across the exec, each once.
    fn fds(record: &Self::Record) -> Vec<RawFd>;
    /// The part as `carry` described it, on the fds taken from `from`;
    /// `config`: this image's configuration.
    fn resume(record: Self::Record, from: &mut Resuming, config: &Config) -> io::Result<Self>;
    /// The files the part made (socket files, the pid file) removed: the
    /// new image cannot take over, and nobody will. Most parts made none.
    fn remove_files(_: &Self::Record) {}
}

/// The record of part `T`.
pub type Part<T> = <T as Carry>::Record;

/// The fds of `record`, or none.
pub fn fds_of<T: Carry>(record: Option<&Part<T>>) -> Vec<RawFd> {
    record.map(T::fds).unwrap_or_default()
}

/// The moment a record is written, as an `Instant` of the image reading
/// it: what the parts' instants are offsets from.
#[derive(Clone, Copy, Debug)]
pub struct Written(Instant);

impl Written {
    /// Now, and its reading of `CLOCK_MONOTONIC` (the record's `written_at`).
    pub fn now() -> (Written, u64) {
        (Written(Instant::now()), sys::clock::monotonic_ns())
    }

    /// The moment `written_at` (a reading of `CLOCK_MONOTONIC`, the same
    /// clock in both images: the process is the same), on this image's clock.
    pub fn at(written_at: u64) -> Written {
        let since = Duration::from_nanos(sys::clock::monotonic_ns().saturating_sub(written_at));
        let now = Instant::now();
        Written(now.checked_sub(since).unwrap_or(now))
    }

    /// `t` as nanoseconds after this moment (negative: before), saturated.
    pub fn offset(self, t: Instant) -> i64 {
        match t.checked_duration_since(self.0) {
            Some(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            None => i64::try_from((self.0 - t).as_nanos()).map_or(i64::MIN, |before| -before),
        }
    }

    /// The instant `off` nanoseconds after this moment (before, if
    /// negative); this moment if the clock cannot represent it.
    pub fn instant(self, off: i64) -> Instant {
        let span = Duration::from_nanos(off.unsigned_abs());
        let t = if off >= 0 { self.0.checked_add(span) } else { self.0.checked_sub(span) };
        t.unwrap_or(self.0)
    }
}

/// What the parts are resumed from: the fds the record names, owned
/// again (each part takes its own by number), the moment the record was
/// written and the moment it is read.
pub struct Resuming {
    fds: Vec<(RawFd, Option<OwnedFd>)>,
    pub written: Written,
    pub now: Instant,
}

impl Resuming {
    /// Takes every fd in `numbers` (`sys::fd::take_carried`), for a
    /// record written at `written_at`.
    pub fn take(numbers: &[RawFd], written_at: u64) -> io::Result<Resuming> {
        let owned = sys::fd::take_carried(numbers)
            .map_err(|(fd, e)| io::Error::other(format!("carried fd {fd}: {}", io_text(&e))))?;
        let fds = numbers.iter().copied().zip(owned.into_iter().map(Some)).collect();
        Ok(Resuming { fds, written: Written::at(written_at), now: Instant::now() })
    }

    /// The carried fd `number`; an error if the record did not name it.
    pub fn fd(&mut self, number: RawFd) -> io::Result<OwnedFd> {
        let slot = self.fds.iter_mut().find(|(n, _)| *n == number).and_then(|(_, fd)| fd.take());
        slot.ok_or_else(|| {
            io::Error::other(format!("the state record names fd {number} twice or not at all"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_back_as_the_instants_they_were() {
        let (at, _) = Written::now();
        let later = at.instant(1_500_000_000);
        assert_eq!(at.offset(later), 1_500_000_000);
        let earlier = at.instant(-2_000_000);
        assert_eq!(at.offset(earlier), -2_000_000);
    }
}
