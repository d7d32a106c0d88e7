//! What the child runs between fork and exec besides plain system calls:
//! async-signal-safe helpers that neither allocate nor lock.
use std::os::fd::RawFd;

use nix::errno::Errno;

pub(super) const CGROUP_PROCS: &[u8] = b"/cgroup.procs\0";

/// Create `<base>/<pid>` and move this process into it, before the
/// privileges go. `path` holds `<base>/` (`len` bytes) and room for the
/// rest. Async-signal-safe: no allocation.
pub(super) fn join_cgroup(path: &mut [u8], len: usize) -> bool {
    let mut digits = [0u8; 24];
    // SAFETY: getpid, mkdir, open, write and close are plain system calls
    // on NUL-terminated names in memory prepared before the fork.
    unsafe {
        write_decimal(&mut digits, libc::getpid() as u64);
        let n = digits.iter().take_while(|&&b| b != 0).count();
        path[len..len + n].copy_from_slice(&digits[..n]);
        path[len + n] = 0;
        if libc::mkdir(path.as_ptr().cast(), 0o755) != 0 && Errno::last_raw() != libc::EEXIST {
            return false;
        }
        path[len + n..len + n + CGROUP_PROCS.len()].copy_from_slice(CGROUP_PROCS);
        let procs = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if procs < 0 {
            return false;
        }
        let joined = libc::write(procs, b"0".as_ptr().cast(), 1) == 1;
        libc::close(procs);
        joined
    }
}

/// Close-on-exec for `fd` if it lies in one of `ranges`. Async-signal-safe.
pub(super) fn mark_cloexec(ranges: &[(u32, u32)], fd: RawFd) {
    if ranges.iter().any(|&(first, last)| (first..=last).contains(&(fd as u32))) {
        // SAFETY: F_SETFD on any number is harmless (EBADF if not open).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Calls `f` with every fd open in this process, read from /proc/self/fd
/// with raw open/getdents64/close on a stack buffer: async-signal-safe,
/// usable between fork and exec. False if /proc cannot be read.
pub(super) fn each_open_fd(mut f: impl FnMut(RawFd)) -> bool {
    const PATH: &[u8] = b"/proc/self/fd\0";
    // SAFETY: open, getdents64 and close are plain system calls; the
    // buffer is on the stack and each record is read within the length
    // the kernel returned (d_reclen at offset 16, the name from 19).
    unsafe {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let dir = libc::open(PATH.as_ptr().cast(), flags);
        if dir < 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                libc::close(dir);
                return n == 0;
            }
            let mut at = 0usize;
            while at + 19 < n as usize {
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                if reclen == 0 {
                    break;
                }
                let mut fd: i64 = 0;
                let mut digits = 0;
                for &b in buf[at + 19..(at + reclen).min(n as usize)].iter().take_while(|&&b| b != 0) {
                    if !b.is_ascii_digit() || digits == 10 {
                        digits = 0;
                        break;
                    }
                    fd = fd * 10 + i64::from(b - b'0');
                    digits += 1;
                }
                if digits > 0 && fd != i64::from(dir) && fd <= i64::from(RawFd::MAX) {
                    f(fd as RawFd);
                }
                at += reclen;
            }
        }
    }
}

/// Decimal digits and a NUL into `out`, without allocating.
pub(super) fn write_decimal(out: &mut [u8], mut value: u64) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n.min(out.len() - 1) {
        out[i] = digits[n - 1 - i];
    }
    out[n.min(out.len() - 1)] = 0;
}
