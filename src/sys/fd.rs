//! Taking ownership of fds this process inherited by number (systemd
//! socket activation: `LISTEN_FDS` fds from 3 on).
//!
//! Invariant: nothing else in handover turns a raw fd number into an owned
//! one, and [`take_inherited`] runs at most once per process, so each
//! inherited number gets exactly one owner, which alone closes it.
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Owns `count` fds from `first` on and makes them close-on-exec. Fails on
/// a number that is not open (owning it would let a later `open` reuse the
/// number and a drop close someone else's file), and on a second call.
/// The error names the fd it is about.
pub fn take_inherited(first: RawFd, count: usize) -> Result<Vec<OwnedFd>, (RawFd, io::Error)> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err((first, io::Error::other("inherited fds were already taken")));
    }
    let mut taken = Vec::with_capacity(count);
    for fd in (first..).take(count) {
        // SAFETY: F_GETFD only reads the flags of whatever number it is
        // given; an fd that is not open gives EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err((fd, io::Error::last_os_error()));
        }
        // SAFETY: `fd` is open (checked above), was handed to this process
        // by its manager, and is owned only here: this function runs once
        // and nothing else in the program adopts raw numbers.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| (fd, io::Error::from(e)))?;
        taken.push(owned);
    }
    Ok(taken)
}
