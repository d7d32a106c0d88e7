//! The clock the state machine runs on (`machine::time::Moment`).

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `Instant` reads, the same
/// for every image of the process.
pub fn monotonic_ns() -> u64 {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else { return 0 };
    let (secs, nanos) = (now.tv_sec().max(0) as u64, now.tv_nsec().max(0) as u64);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
