//! The control server across a self-upgrade: its socket, every connection
//! with its buffers and the requests it waits on (the machine's waiters
//! name them by id), and the next id.
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Answer, Conn, ControlServer, LineConn, OwnedPath, RequestId};
use crate::config::Config;
use crate::supervisor::carry::{Carry, HexBytes, Resuming, Written};
use crate::supervisor::line_conn::ConnRecord;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRecord {
    pub fd: RawFd,
    pub path: PathBuf,
    pub identity: (u64, u64),
    pub next_id: u64,
    pub conns: Vec<ControlConnRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlConnRecord {
    pub conn: ConnRecord,
    /// Requests in order: the id (None for an error already answered) and
    /// the reply, once made.
    pub waiting: Vec<(Option<u64>, Option<HexBytes>)>,
    pub stopping: bool,
}

impl Carry for ControlServer {
    type Record = ControlRecord;

    fn carry(&self, at: Written) -> ControlRecord {
        // Followers are not carried: they are told to reconnect (`follow`).
        let conns = (self.conns.iter().filter(|c| c.follow.is_none()))
            .map(|c| {
                let waiting = c.waiting.iter().map(|s| (s.id.map(|id| id.0), s.reply.clone().map(HexBytes)));
                ControlConnRecord { conn: c.io.carry(at), waiting: waiting.collect(), stopping: c.stopping }
            })
            .collect();
        let (path, identity) = (self.file.path().to_owned(), self.file.identity());
        ControlRecord { fd: self.listener.as_raw_fd(), path, identity, next_id: self.next_id, conns }
    }

    fn fds(record: &ControlRecord) -> Vec<RawFd> {
        std::iter::once(record.fd).chain(record.conns.iter().map(|c| c.conn.fd)).collect()
    }

    fn resume(record: ControlRecord, from: &mut Resuming, config: &Config) -> io::Result<ControlServer> {
        let listener = UnixListener::from(from.fd(record.fd)?);
        let mut conns = Vec::with_capacity(record.conns.len());
        for c in record.conns {
            // Replies to `status` are made in the turn it is read: any
            // other one still to make is a restart's or an upgrade's.
            let answer = |(id, reply): (Option<u64>, Option<HexBytes>)| Answer {
                deferred: id.is_some() && reply.is_none(),
                id: id.map(RequestId),
                reply: reply.map(|r| r.0),
            };
            let (io, waiting) =
                (LineConn::resume(c.conn, from, config)?, c.waiting.into_iter().map(answer).collect());
            conns.push(Conn { io, waiting, heard_at: from.now, stopping: c.stopping, follow: None });
        }
        let file = OwnedPath::known(record.path, record.identity);
        Ok(ControlServer::new(listener, file, conns, record.next_id))
    }

    fn remove_files(record: &ControlRecord) {
        let _ = OwnedPath::known(record.path.clone(), record.identity).remove();
    }
}

impl ControlRecord {
    /// Without the connections owed more than `max` bytes of replies: left
    /// out, their fds stay close-on-exec and the exec closes them (a failed
    /// exec leaves them as they were).
    pub fn bounded(mut self, max: usize) -> ControlRecord {
        self.conns.retain(|c| {
            let made: usize =
                c.waiting.iter().filter_map(|(_, reply)| reply.as_ref()).map(|r| r.0.len()).sum();
            c.conn.output.len() + made <= max
        });
        self
    }
}
