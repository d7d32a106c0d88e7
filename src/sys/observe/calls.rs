//! The system calls a server waits for connections in, by number, and what
//! their arguments point at. The numbers are the kernel's for the
//! architecture built for (x86_64 and aarch64; elsewhere nothing is
//! decoded and observation says so).

/// A call that waits for a listener to become readable, or takes a
/// connection from it, by the name `strace` gives it (`recv` for
/// recvfrom, recvmsg, recvmmsg or read: a datagram listener's wait).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call(pub &'static str);

impl Call {
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// What a task blocked in `call` waits on, from its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// accept or a receive on this fd.
    Fd(Call, i32),
    /// epoll_wait on this epoll fd: its targets are in its fdinfo.
    Epoll(Call, i32),
    /// poll: `count` `struct pollfd` at `address` in the task.
    Poll(Call, u64, u64),
    /// select: the read set for fds below `nfds`, at `address`.
    Select(Call, u64, u64),
}

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: u64 = 0;
    pub const POLL: u64 = 7;
    pub const SELECT: u64 = 23;
    pub const ACCEPT: u64 = 43;
    pub const RECVFROM: u64 = 45;
    pub const RECVMSG: u64 = 47;
    pub const EPOLL_WAIT: u64 = 232;
    pub const PSELECT6: u64 = 270;
    pub const PPOLL: u64 = 271;
    pub const EPOLL_PWAIT: u64 = 281;
    pub const ACCEPT4: u64 = 288;
    pub const RECVMMSG: u64 = 299;
    pub const EPOLL_PWAIT2: u64 = 441;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    // aarch64 has no poll, select, epoll_wait or accept-less variants
    // beyond these; the unused names get numbers no call has.
    pub const READ: u64 = 63;
    pub const POLL: u64 = u64::MAX;
    pub const SELECT: u64 = u64::MAX - 1;
    pub const ACCEPT: u64 = 202;
    pub const RECVFROM: u64 = 207;
    pub const RECVMSG: u64 = 212;
    pub const EPOLL_WAIT: u64 = u64::MAX - 2;
    pub const PSELECT6: u64 = 72;
    pub const PPOLL: u64 = 73;
    pub const EPOLL_PWAIT: u64 = 22;
    pub const ACCEPT4: u64 = 242;
    pub const RECVMMSG: u64 = 243;
    pub const EPOLL_PWAIT2: u64 = 441;
}

/// Whether this architecture's calls are known here.
pub const KNOWN_ARCH: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The wait of a task blocked in call `number` with `args`; None for any
/// other call (or an architecture not known here).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn decode(number: u64, args: &[u64; 6]) -> Option<Wait> {
    // An fd argument is a C int: the low 32 bits.
    let fd = |i: usize| args[i] as u32 as i32;
    let wait = match number {
        nr::ACCEPT => Wait::Fd(Call("accept"), fd(0)),
        nr::ACCEPT4 => Wait::Fd(Call("accept4"), fd(0)),
        nr::READ | nr::RECVFROM | nr::RECVMSG | nr::RECVMMSG => Wait::Fd(Call("recv"), fd(0)),
        nr::EPOLL_WAIT => Wait::Epoll(Call("epoll_wait"), fd(0)),
        nr::EPOLL_PWAIT => Wait::Epoll(Call("epoll_pwait"), fd(0)),
        nr::EPOLL_PWAIT2 => Wait::Epoll(Call("epoll_pwait2"), fd(0)),
        nr::POLL => Wait::Poll(Call("poll"), args[0], args[1]),
        nr::PPOLL => Wait::Poll(Call("ppoll"), args[0], args[1]),
        nr::SELECT => Wait::Select(Call("select"), args[1], args[0]),
        nr::PSELECT6 => Wait::Select(Call("pselect6"), args[1], args[0]),
        _ => return None,
    };
    Some(wait)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn decode(_number: u64, _args: &[u64; 6]) -> Option<Wait> {
    None
}
