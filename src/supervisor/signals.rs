//! Signals as typed events for the poll loop.
//!
//! A handler only sets a flag and writes a byte to a self-pipe (signal-hook);
//! the loop wakes on the pipe, drains it, then swaps the flags. Several
//! deliveries of one signal between two wake-ups read as one: HUPs coalesce
//! anyway, and every child is reaped with a `waitpid` loop.
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal::{self, *};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGCHLD: reap.
    Child,
    /// TERM or INT: stop.
    Terminate(Signal),
    /// HUP: restart.
    Hup,
    /// Passed on to the serving generation.
    Forward(Signal),
}

/// In the order they are acted on when several arrive together.
const HANDLED: &[Signal] =
    &[SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGTTIN, SIGTTOU, SIGALRM];

fn classify(signal: Signal) -> Option<SignalEvent> {
    match signal {
        Signal::SIGCHLD => Some(SignalEvent::Child),
        Signal::SIGTERM | Signal::SIGINT => Some(SignalEvent::Terminate(signal)),
        Signal::SIGHUP => Some(SignalEvent::Hup),
        // start_server: ALRM only wakes the loop.
        Signal::SIGALRM => None,
        other => Some(SignalEvent::Forward(other)),
    }
}

pub struct Signals {
    wake: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
}

impl Signals {
    /// Installs the handlers. The signals are blocked meanwhile: one that
    /// arrives while signal-hook sets a handler up would otherwise be
    /// dropped (its registry calls no default action), and a TERM in the
    /// first moments of the supervisor's life would be lost. Blocked, it
    /// waits, and comes in once every handler is in place.
    pub fn install() -> std::io::Result<Signals> {
        let handled: SigSet = HANDLED.iter().copied().collect();
        let mut mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut mask))?;
        let installed = Signals::register();
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
        installed
    }

    fn register() -> std::io::Result<Signals> {
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for &signal in HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal as i32, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(signal as i32, writer.try_clone()?)?;
            flags.push((signal, flag));
        }
        Ok(Signals { wake, flags })
    }

    /// Readable when a signal arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The signals that arrived since the last call, unclassified, SIGCHLD
    /// included (a self-upgrade raises them again while they are blocked,
    /// so that they wait for the next image).
    pub fn take_raw(&mut self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        loop {
            match self.wake.read(&mut buf) {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let flagged = self.flags.iter().filter(|(_, flag)| flag.swap(false, Ordering::SeqCst));
        flagged.map(|(signal, _)| *signal).collect()
    }

    /// Everything that arrived since the last call, in acting order.
    pub fn drain(&mut self) -> Vec<SignalEvent> {
        self.take_raw().into_iter().filter_map(classify).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_events() {
        assert_eq!(classify(Signal::SIGHUP), Some(SignalEvent::Hup));
        assert_eq!(classify(Signal::SIGINT), Some(SignalEvent::Terminate(Signal::SIGINT)));
        assert_eq!(classify(Signal::SIGUSR2), Some(SignalEvent::Forward(Signal::SIGUSR2)));
        assert_eq!(classify(Signal::SIGALRM), None);
    }
}
