//! `Moment` (`machine/time.rs`): arithmetic saturates, as an `Instant`'s
//! difference does, and never panics whatever a snapshot holds.
use super::*;

#[test]
fn moments_saturate_at_both_ends() {
    let (zero, max) = (Moment::from_nanos(0), Moment::from_nanos(u64::MAX));
    assert_eq!(zero - Duration::from_secs(1), zero);
    assert_eq!(max + Duration::from_secs(1), max);
    assert_eq!(Moment::from_nanos(5) + Duration::MAX, max);
    assert_eq!(zero - max, Duration::ZERO, "a later moment is no time before");
    assert_eq!(max - zero, Duration::from_nanos(u64::MAX));
    let mut t = Moment::from_nanos(T0);
    t += ms(1500);
    assert_eq!((t - Moment::from_nanos(T0), t.nanos()), (ms(1500), T0 + 1_500_000_000));
}
