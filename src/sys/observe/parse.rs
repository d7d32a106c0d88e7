//! Readers of the kernel's text about other processes: pure functions of
//! what was read, for any text (the files are outside input: a process
//! may be replaced while it is read, and a later kernel may write more).
//! None of them panics, and each bounds what it returns.
use std::net::{IpAddr, SocketAddr};

/// Targets read from one epoll fdinfo, at most.
pub const MAX_TARGETS: usize = 65_536;
/// fds of one poll set looked at, at most (read `POLL_CHUNK` at a time:
/// 512 KiB of a set in all, 32 KiB at once).
pub const MAX_POLL_FDS: u64 = 65_536;
/// `struct pollfd` entries read from a task at once.
pub const POLL_CHUNK: u64 = 4096;
/// fds of one select set looked at, at most (FD_SETSIZE is 1024; some
/// programs allocate larger sets).
pub const MAX_SELECT_FDS: u64 = 65_536;

/// `/proc/PID/task/TID/syscall`: the call number and its six arguments
/// when the task is blocked in a call; None when it is running, blocked
/// outside a call (`-1 SP PC`) or the text is not that.
pub fn syscall(text: &str) -> Option<(u64, [u64; 6])> {
    let mut words = text.split_ascii_whitespace();
    let number = words.next()?.parse::<u64>().ok()?;
    let mut args = [0u64; 6];
    for arg in &mut args {
        let word = words.next()?;
        *arg = u64::from_str_radix(word.strip_prefix("0x")?, 16).ok()?;
    }
    Some((number, args))
}

/// The targets of an epoll fd from its `/proc/PID/fdinfo/E`: `(fd, events,
/// inode)` for each `tfd:` line that has the three.
pub fn epoll_targets(text: &str) -> Vec<(i32, u32, u64)> {
    let mut targets = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("tfd:")) {
        if targets.len() >= MAX_TARGETS {
            break;
        }
        let mut words = line.split_ascii_whitespace();
        let (mut fd, mut events, mut inode) = (None, None, None);
        while let Some(word) = words.next() {
            match word {
                "tfd:" => fd = words.next().and_then(|w| w.parse::<i32>().ok()),
                "events:" => events = words.next().and_then(|w| u32::from_str_radix(w, 16).ok()),
                _ => {
                    if let Some(hex) = word.strip_prefix("ino:") {
                        inode = u64::from_str_radix(hex, 16).ok();
                    }
                }
            }
        }
        if let (Some(fd), Some(events), Some(inode)) = (fd, events, inode) {
            targets.push((fd, events, inode));
        }
    }
    targets
}

/// The inode of a `/proc/PID/fd/N` link naming a socket: `socket:[INODE]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// `struct pollfd` entries as read from a task: `(fd, events)`.
pub fn pollfds(bytes: &[u8]) -> Vec<(i32, i16)> {
    bytes
        .chunks_exact(8)
        .take(POLL_CHUNK as usize)
        .map(|c| (i32::from_ne_bytes([c[0], c[1], c[2], c[3]]), i16::from_ne_bytes([c[4], c[5]])))
        .collect()
}

/// The fds set in an `fd_set` as read from a task (bits in native
/// `unsigned long` words, lowest fd in the lowest bit), below `nfds`.
pub fn fd_set(bytes: &[u8], nfds: u64) -> Vec<i32> {
    const WORD: usize = std::mem::size_of::<libc::c_ulong>();
    let mut fds = Vec::new();
    for (w, chunk) in bytes.chunks_exact(WORD).enumerate() {
        let mut word = [0u8; 8];
        word[..WORD].copy_from_slice(chunk);
        let bits = u64::from_ne_bytes(word);
        for bit in 0..(WORD * 8) {
            let fd = (w * WORD * 8 + bit) as u64;
            if fd >= nfds.min(MAX_SELECT_FDS) {
                return fds;
            }
            if bits & (1 << bit) != 0 {
                fds.push(fd as i32);
            }
        }
    }
    fds
}

/// Whether a connection whose local end is `local` came through a
/// listener bound to `listener`: same port, and the same address unless
/// the listener's is unspecified (an IPv4 peer of a dual-stack listener
/// shows as `::ffff:a.b.c.d`).
pub fn came_through(local: SocketAddr, listener: SocketAddr) -> bool {
    if local.port() != listener.port() {
        return false;
    }
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    listener.ip().is_unspecified() || canonical(local.ip()) == canonical(listener.ip())
}

/// The pids in a `/proc/PID/task/TID/children` text.
pub fn pids(text: &str) -> impl Iterator<Item = i32> + '_ {
    text.split_ascii_whitespace().filter_map(|w| w.parse().ok()).filter(|&p: &i32| p > 0)
}
