//! The classic BPF filter a worker may have attached to a shared listener
//! (`SO_ATTACH_FILTER`): whether there is one, whether it is locked
//! (`SO_LOCK_FILTER`), and detaching it. socket2 and nix offer none of
//! these, hence raw `getsockopt`/`setsockopt` here.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// The number of instructions of the attached classic filter, 0 for none
/// (an eBPF program attached with `SO_ATTACH_BPF` is not seen here).
pub fn filter_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // With a zero length the kernel only reports the filter's length in
    // instructions back through `len` (`sk_get_filter`).
    get(fd, libc::SO_GET_FILTER, None)
}

/// Whether the socket's filter can no longer be changed or detached.
pub fn filter_locked(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut value = 0;
    get(fd, libc::SO_LOCK_FILTER, Some(&mut value))?;
    Ok(value != 0)
}

/// `getsockopt(SOL_SOCKET, option)` into `value`, or into nothing with a
/// zero length; the length the kernel reports back.
fn get(fd: BorrowedFd<'_>, option: libc::c_int, value: Option<&mut libc::c_int>) -> io::Result<usize> {
    let (ptr, mut len) = match value {
        Some(value) => ((value as *mut libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `ptr` is null with `len` 0 (the kernel then writes only the
    // length into `len`, a live local), or a live int of `len` bytes.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, option, ptr, &mut len) };
    Errno::result(rc)?;
    Ok(len as usize)
}

/// Detaches the socket's filter (EPERM when locked, ENOENT when none).
pub fn detach_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    let value: libc::c_int = 0;
    // SAFETY: the kernel reads at most `size_of::<c_int>()` bytes of
    // `value`, a live local; SO_DETACH_FILTER ignores it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(rc)?;
    Ok(())
}
