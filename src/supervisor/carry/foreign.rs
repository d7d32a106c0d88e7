//! The parts defined outside the supervisor, carried like its own: the
//! listeners (`listen`) and the pid file (`state`).
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Carry, Resuming, Written};
use crate::config::Config;
use crate::listen::{self, Listener};
use crate::state::{OwnedPath, PidFile};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub fd: RawFd,
    pub key: String,
    pub local: String,
    /// Its `LISTEN_FDNAMES` name.
    #[serde(default)]
    pub name: Option<String>,
    /// The unix socket file this supervisor created: path, device, inode.
    #[serde(default)]
    pub created: Option<(PathBuf, u64, u64)>,
    #[serde(default)]
    pub inherited_fd: Option<RawFd>,
}

/// The listeners in order: the command line's specs go with them by place.
impl Carry for Vec<Listener> {
    type Record = Vec<ListenerRecord>;

    fn carry(&self, _: Written) -> Vec<ListenerRecord> {
        (self.iter())
            .map(|l| ListenerRecord {
                fd: l.socket.as_raw_fd(),
                key: l.key.clone(),
                local: l.local.clone(),
                name: l.spec.name.clone(),
                created: l.created_path.as_ref().map(|p| {
                    let (dev, ino) = p.identity();
                    (p.path().to_owned(), dev, ino)
                }),
                inherited_fd: l.inherited_fd,
            })
            .collect()
    }

    fn fds(record: &Vec<ListenerRecord>) -> Vec<RawFd> {
        record.iter().map(|l| l.fd).collect()
    }

    fn resume(record: Vec<ListenerRecord>, from: &mut Resuming, config: &Config) -> io::Result<Self> {
        let resume = |(at, l): (usize, ListenerRecord)| {
            let carried = listen::Carried {
                socket: socket2::Socket::from(from.fd(l.fd)?),
                key: l.key,
                local: l.local,
                name: l.name,
                created_path: l.created.map(|(path, dev, ino)| OwnedPath::known(path, (dev, ino))),
                inherited_fd: l.inherited_fd,
            };
            listen::resume(config.listeners.get(at), carried).map_err(|e| io::Error::other(e.to_string()))
        };
        record.into_iter().enumerate().map(resume).collect()
    }

    fn remove_files(record: &Vec<ListenerRecord>) {
        for (path, dev, ino) in record.iter().filter_map(|l| l.created.clone()) {
            let _ = OwnedPath::known(path, (dev, ino)).remove();
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PidFileRecord {
    pub fd: RawFd,
    pub path: PathBuf,
}

impl Carry for PidFile {
    type Record = PidFileRecord;

    fn carry(&self, _: Written) -> PidFileRecord {
        PidFileRecord { fd: self.fd(), path: self.path().to_owned() }
    }

    fn fds(record: &PidFileRecord) -> Vec<RawFd> {
        vec![record.fd]
    }

    fn resume(record: PidFileRecord, from: &mut Resuming, _: &Config) -> io::Result<PidFile> {
        let fd = from.fd(record.fd)?;
        PidFile::resume(record.path, fd).map_err(|e| io::Error::other(e.to_string()))
    }

    /// Only while it still names this process.
    fn remove_files(record: &PidFileRecord) {
        let watch = crate::state::PidFileWatch::open(&record.path).ok();
        if watch.and_then(|w| w.read_pid().ok()) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&record.path);
        }
    }
}
