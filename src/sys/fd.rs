//! Taking ownership of fds this process inherited by number: from systemd
//! socket activation (`LISTEN_FDS` fds from 3 on), or from the previous
//! image of this very process (a self-upgrade's state record).
//!
//! Invariant: nothing else in handover turns a raw fd number into an owned
//! one; [`take_inherited`] runs at most once per process and
//! [`take_carried`] takes each number at most once, so each inherited
//! number gets exactly one owner, which alone closes it.
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
    (first..)
        .take(count)
        .map(|fd| {
            is_open(fd)?;
            // SAFETY: `fd` is open (checked above), was handed to this process
            // by its manager, and is owned only here: this function runs once
            // and nothing else in the program adopts raw numbers.
            unsafe { own(fd) }
        })
        .collect()
}

/// Fails on a number that is not open, with its error.
fn is_open(fd: RawFd) -> Result<(), (RawFd, io::Error)> {
    // SAFETY: F_GETFD only reads the flags of whatever number it is
    // given; an fd that is not open gives EBADF.
    match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
        -1 => Err((fd, io::Error::last_os_error())),
        _ => Ok(()),
    }
}

/// Owns `fd` and makes it close-on-exec.
///
/// # Safety
/// `fd` is open, and nothing else in the program owns it or will.
unsafe fn own(fd: RawFd) -> Result<OwnedFd, (RawFd, io::Error)> {
    // SAFETY: as the caller guarantees.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| (fd, io::Error::from(e)))?;
    Ok(owned)
}

/// Numbers taken by [`take_carried`] so far.
static CARRIED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());

/// Owns the fds a previous image of this process left open for it across
/// `execve` (a self-upgrade names them in its state record) and makes
/// them close-on-exec again. Like [`take_inherited`], fails on a number
/// that is not open; and on a number named twice, in this call or an
/// earlier one, so each number gets one owner.
pub fn take_carried(fds: &[RawFd]) -> Result<Vec<OwnedFd>, (RawFd, io::Error)> {
    let mut carried = CARRIED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (at, &fd) in fds.iter().enumerate() {
        if fd < 0 || fds[..at].contains(&fd) || carried.contains(&fd) {
            return Err((fd, io::Error::other("named twice")));
        }
        is_open(fd)?;
    }
    carried.extend_from_slice(fds);
    // SAFETY: each `fd` is open (checked above) and was left open for this
    // image by the one before it, which owned it; it is named once here
    // and in no earlier call (checked above, under the lock), and nothing
    // else in the program adopts the numbers a record names.
    fds.iter().map(|&fd| unsafe { own(fd) }).collect()
}

/// Sets or clears close-on-exec on fds this process owns (a self-upgrade
/// clears it on what it carries just before `execve`, and sets it again if
/// the exec fails). Returns the first failure.
pub fn set_cloexec(fds: &[RawFd], on: bool) -> io::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    for &fd in fds {
        // SAFETY: F_SETFD changes only the close-on-exec flag of the number
        // given, which the caller owns (or it is not open: EBADF); no
        // memory is involved.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flag) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads at most `limit + 1` bytes of the file open at `fd` from its start
/// (`pread`), without taking the fd: a self-upgrade's record is read so,
/// and stays where it is should the program roll back.
pub fn read_from_start(fd: RawFd, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while bytes.len() <= limit {
        let want = chunk.len().min(limit + 1 - bytes.len());
        // SAFETY: pread writes at most `want` bytes into `chunk`, which is
        // valid for that many; `fd` is only a number to the kernel.
        let n = unsafe { libc::pread(fd, chunk.as_mut_ptr().cast(), want, bytes.len() as libc::off_t) };
        match n {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n as usize]),
        }
    }
    Ok(bytes)
}
