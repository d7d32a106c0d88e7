//! Clients that wait: connections owed a reply still to come (a `restart`
//! or an `upgrade` not yet answered) or the supervisor's exit (a `stop`).
//! They cannot be closed to make room, so they are bounded on their own,
//! below the connection table: however many wait, the table keeps slots
//! that can be freed for a `status` or a `stop`, which are answered at
//! once.
use crate::error::{Error, Result};
use crate::wire::control::Command;

/// Connections that may wait at once. With at most one stop beyond it
/// and the followers of the event stream (`follow::MAX_FOLLOWERS`), the
/// table (`MAX_CONNECTIONS`, larger than all three) always holds
/// connections that can be closed for a newcomer.
pub const MAX_WAITING: usize = 32;

/// The waiting connections, counted at the start of a turn and as
/// requests are taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crowd {
    pub waiting: usize,
    /// A connection waits for the supervisor's exit: a stop has begun.
    pub stopping: bool,
}

impl Crowd {
    /// Whether a connection may make `command` wait, counting it if it
    /// does; the refusal to answer with otherwise. `waits`: the connection
    /// waits already (it is counted; its further requests are bounded by
    /// `MAX_PENDING`). A `status` never waits. The first `stop` always
    /// goes through (it also ends the restarts that wait); once one has
    /// begun, a `stop` beyond the bound is told so.
    pub fn admit(&mut self, waits: bool, command: Command) -> Result<()> {
        let (stop, waiting) = (command == Command::Stop, self.waiting);
        // Answered at once (`follow` streams, bounded on its own).
        let at_once =
            matches!(command, Command::Status | Command::Events | Command::Follow | Command::Metrics);
        // The first stop goes through: it is the one that ends the waits.
        let first_stop = stop && !self.stopping;
        if !at_once && !waits && waiting >= MAX_WAITING && !first_stop {
            return Err(Error::runtime(match stop {
                true => format!(
                    "too many clients are waiting: the supervisor is already stopping and {waiting} clients \
                     wait for its exit; wait for its pid to exit instead"
                ),
                false => format!(
                    "too many clients are waiting: {waiting} wait for a restart, an upgrade or the exit (at \
                     most {MAX_WAITING}); try again once they are answered (status is answered at any time)"
                ),
            }));
        }
        self.waiting += usize::from(!at_once && !waits);
        self.stopping |= stop;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_always_and_others_up_to_the_bound() {
        let mut crowd = Crowd::default();
        for _ in 0..MAX_WAITING {
            assert_eq!(crowd.admit(false, Command::Restart), Ok(()));
            assert_eq!(crowd.admit(false, Command::Status), Ok(()));
        }
        assert_eq!(crowd.waiting, MAX_WAITING);
        let refused = crowd.admit(false, Command::Upgrade).unwrap_err();
        let text = format!("too many clients are waiting: {MAX_WAITING} wait for");
        assert!(refused.message.starts_with(&text), "{refused}");
        assert_eq!(crowd.admit(false, Command::Restart), Err(refused));
        assert_eq!(crowd.admit(true, Command::Restart), Ok(()), "a connection that waits is counted once");
        assert_eq!(crowd.admit(false, Command::Status), Ok(()));
        assert_eq!(crowd.waiting, MAX_WAITING);
    }

    #[test]
    fn the_first_stop_goes_through_the_bound_and_the_next_ones_are_told() {
        let mut crowd = Crowd { waiting: MAX_WAITING, stopping: false };
        assert_eq!(crowd.admit(false, Command::Stop), Ok(()));
        assert_eq!(crowd, Crowd { waiting: MAX_WAITING + 1, stopping: true });
        let refused = crowd.admit(false, Command::Stop).unwrap_err();
        let text = format!("already stopping and {} clients wait for its exit", MAX_WAITING + 1);
        assert!(refused.message.contains(&text), "{refused}");
        assert_eq!(crowd.admit(true, Command::Stop), Ok(()));

        // Under the bound, every stop waits.
        let mut crowd = Crowd { waiting: 3, stopping: true };
        assert_eq!(crowd.admit(false, Command::Stop), Ok(()));
        assert_eq!(crowd.waiting, 4);
    }
}
