//! The accept gap: the longest stretch without a successful completion
//! (the definitions are in the parent module's header).

/// Longest stretch between consecutive `events` (sorted) from the last at
/// or before `from` to the first at or after `to`.
pub(super) fn gap_in(events: &[u64], from: u64, to: u64) -> Option<u64> {
    let lo = events.partition_point(|&e| e <= from).saturating_sub(1);
    let hi = (events.partition_point(|&e| e < to) + 1).min(events.len());
    events.get(lo..hi)?.windows(2).map(|w| w[1] - w[0]).max()
}

/// Longest stretch between consecutive `events` that touches none of the
/// `windows` (sorted by start).
pub(super) fn gap_outside(events: &[u64], windows: &[(u64, u64)]) -> Option<u64> {
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for &(a, b) in windows {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut wi = 0;
    let mut best = None;
    for w in events.windows(2) {
        while wi < merged.len() && merged[wi].1 < w[0] {
            wi += 1;
        }
        if wi == merged.len() || merged[wi].0 > w[1] {
            best = best.max(Some(w[1] - w[0]));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_between_events() {
        let ev = [0, 10, 12, 40, 41, 100];
        let gap = |a, b| gap_in(&ev, a, b);
        assert_eq!(gap(11, 13), Some(28), "from the last event before to the first after");
        assert_eq!(gap(45, 50), Some(59), "a stall that begins before and ends after");
        assert_eq!(gap(0, 41), Some(28));
        assert_eq!(gap(200, 300), None, "after the last event");
        assert_eq!(gap_outside(&ev, &[(11, 13)]), Some(59));
        assert_eq!(gap_outside(&ev, &[(5, 20), (15, 60)]), None, "every stretch touches a window");
        assert_eq!(gap_outside(&ev, &[(5, 20), (15, 30)]), Some(59));
    }
}
