//! The classic BPF filter a worker may have attached to a shared listener
//! (`SO_ATTACH_FILTER`): whether there is one, whether it is locked
//! (`SO_LOCK_FILTER`), and detaching it. socket2 and nix offer none of
//! these, hence raw `getsockopt`/`setsockopt` here.
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The number of instructions of the attached classic filter, 0 for none
/// (an eBPF program attached with `SO_ATTACH_BPF` is not seen here).
pub fn filter_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // With a zero length the kernel only reports the filter's length in
    // instructions back through `len` (`sk_get_filter`).
    let mut len: libc::socklen_t = 0;
    // SAFETY: with `len` 0 the kernel writes nothing through the (null)
    // value pointer, only the length into `len`, a live local.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// Whether the socket's filter can no longer be changed or detached.
pub fn filter_locked(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live int of `len` bytes, as SO_LOCK_FILTER reads.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LOCK_FILTER,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
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
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
