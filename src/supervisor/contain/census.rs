//! The workers' members and resident memory, for `status`.
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Containment, read_bounded};

/// Members and memory, looked at again at most every `CENSUS_AGE`: a
/// flood of `status` requests does not read /proc for each.
#[derive(Default)]
pub struct Census {
    taken: Vec<(Instant, Vec<i32>, Vec<i32>, u64)>,
}

const CENSUS_AGE: Duration = Duration::from_millis(100);

impl Census {
    /// The members of the workers `pids` and their resident memory.
    pub fn of(&mut self, contain: &Containment, pids: &[i32], now: Instant) -> (Vec<i32>, u64) {
        self.taken.retain(|(at, ..)| now.saturating_duration_since(*at) < CENSUS_AGE);
        if let Some((_, _, members, rss)) = self.taken.iter().find(|(_, p, ..)| p == pids) {
            return (members.clone(), *rss);
        }
        let members: Vec<i32> = pids.iter().flat_map(|&p| contain.members(p)).collect();
        let rss = rss_bytes(&members);
        // At most one entry per generation of a status: a bound.
        if self.taken.len() < 64 {
            self.taken.push((now, pids.to_vec(), members.clone(), rss));
        }
        (members, rss)
    }
}

/// The resident memory of `pids` (`/proc/PID/statm`), summed.
pub fn rss_bytes(pids: &[i32]) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    let pages = |pid: &i32| -> Option<u64> {
        read_bounded(Path::new(&format!("/proc/{pid}/statm")))?.split_whitespace().nth(1)?.parse().ok()
    };
    pids.iter().filter_map(pages).sum::<u64>() * page
}
