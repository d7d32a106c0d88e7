//! sd_notify in both directions.
//!
//! Downward, the supervisor owns a datagram socket that every worker gets
//! as `NOTIFY_SOCKET`. It is a path in a private directory (mode 0700) under
//! `$XDG_RUNTIME_DIR` or the temp dir, not an abstract name: several
//! client libraries (the Rust sd-notify crate among them) only speak paths.
//! The directory is removed when the socket is dropped. `SO_PASSCRED` makes the kernel attach the
//! sender's pid to each message, so a worker cannot speak for another; the
//! event loop maps the pid to a worker by process group, so a child of the
//! worker may report for it. A NOTIFY_SOCKET that handover inherited is
//! never passed down: it belongs to handover's own service manager, which
//! hears from handover alone (upward: READY, RELOADING, STOPPING, STATUS).
//! What a datagram says is read by `wire::sd_notify`.
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, setsockopt, sockopt};

use crate::machine::Upward;
use crate::wire::sd_notify::{Message, parse};

pub struct NotifySocket {
    socket: UnixDatagram,
    dir: PathBuf,
    name: String,
}

/// Where the private directory goes: short enough for `sun_path` (108 bytes).
fn runtime_dir() -> PathBuf {
    let candidates = [std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from), Some(std::env::temp_dir())];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| {
            dir.is_dir()
                && dir.as_os_str().len() < 60
                && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
        })
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

impl NotifySocket {
    pub fn bind() -> io::Result<NotifySocket> {
        let dir = nix::unistd::mkdtemp(&runtime_dir().join("handover-XXXXXX"))?;
        let path = dir.join("notify");
        let bound = UnixDatagram::bind(&path).and_then(|socket| {
            socket.set_nonblocking(true)?;
            setsockopt(&socket, sockopt::PassCred, &true)?;
            Ok(socket)
        });
        match bound {
            Ok(socket) => Ok(NotifySocket { socket, name: path.to_string_lossy().into_owned(), dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The value of the workers' `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        Path::new(&self.name)
    }

    /// Let workers running as `uid`/`gid` reach the socket (and the einhorn
    /// socket beside it): the directory becomes traversable, the sockets theirs.
    pub fn grant(&self, uid: u32, gid: u32, others: &[&Path]) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o711))?;
        for path in std::iter::once(self.path()).chain(others.iter().copied()) {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Every datagram waiting, with its sender's pid.
    pub fn receive(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!(libc::ucred);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let received = recvmsg::<UnixAddr>(self.socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags);
            let (len, pid) = match received {
                Ok(msg) => {
                    let pid = msg.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    });
                    (msg.bytes, pid)
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if let Some(pid) = pid {
                messages.push(parse(pid, &String::from_utf8_lossy(&buf[..len])));
            }
        }
        messages
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tell handover's own service manager, if it gave us a NOTIFY_SOCKET.
pub fn upward(state: &Upward) {
    use sd_notify::NotifyState;
    let result = match state {
        Upward::Ready => sd_notify::notify(&[NotifyState::Ready]),
        Upward::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Upward::Status(line) => sd_notify::notify(&[NotifyState::Status(&line.to_string())]),
        Upward::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
        Upward::ExtendTimeout(by) => {
            let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
            sd_notify::notify(&[NotifyState::ExtendTimeoutUsec(usec)])
        }
        Upward::Reloading => match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
            Err(e) => Err(e),
        },
    };
    // A manager that went away is no reason to stop serving.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_with_the_senders_pid() {
        let socket = NotifySocket::bind().unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", socket.path()).unwrap();
        let got = socket.receive();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pid, std::process::id() as i32);
        assert!(got[0].ready);
        let dir = socket.path().parent().unwrap().to_path_buf();
        drop(socket);
        assert!(!dir.exists(), "removed on drop");
    }
}
