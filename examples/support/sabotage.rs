//! What a hostile worker does to the listeners it shares with the
//! supervisor and later generations (`worker --sabotage`).
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use socket2::SockRef;

/// Applies `what` to `fd`: `shutdown-rd`, `nonblock`, `backlog1`,
/// `filter` (a drop-all classic BPF filter) or `locked-filter` (the same,
/// then SO_LOCK_FILTER).
pub fn apply(fd: BorrowedFd<'_>, what: &str) -> std::io::Result<()> {
    let sock = SockRef::from(&fd);
    match what {
        "shutdown-rd" => sock.shutdown(std::net::Shutdown::Read),
        "nonblock" => sock.set_nonblocking(true),
        "backlog1" => sock.listen(1),
        "filter" => attach_drop_all(fd, false),
        "locked-filter" => attach_drop_all(fd, true),
        other => Err(std::io::Error::other(format!("unknown sabotage {other:?}"))),
    }
}

/// An inherited fd by number, for the knobs.
#[allow(unsafe_code)]
pub fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the worker's inherited fds stay open until it exits
    // (it never closes a listener while serving).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Whether `fd` is O_NONBLOCK.
pub fn nonblocking(fd: BorrowedFd<'_>) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
        .is_ok_and(|f| nix::fcntl::OFlag::from_bits_truncate(f).contains(nix::fcntl::OFlag::O_NONBLOCK))
}

#[allow(unsafe_code)]
fn attach_drop_all(fd: BorrowedFd<'_>, lock: bool) -> std::io::Result<()> {
    // `ret #0`: accept no packet.
    let mut code = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];
    let prog = libc::sock_fprog { len: 1, filter: code.as_mut_ptr() };
    // SAFETY: `prog` points at `code`, both live locals, for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const prog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if lock {
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live int of the length given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LOCK_FILTER,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
