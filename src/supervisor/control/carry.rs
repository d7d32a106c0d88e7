//! The control server across a self-upgrade: its socket, every connection
//! with its buffers and the requests it waits on (the machine's waiters
//! name them by id), and the next id.
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use super::{Conn, ControlServer, LineConn, OwnedPath, RequestId, Slot, Throttle};
use crate::supervisor::upgrade::Carried;
use crate::supervisor::upgrade::record::{ControlConnRecord, ControlRecord, HexBytes};

impl ControlServer {
    /// What a self-upgrade carries over: the socket, every connection with
    /// its buffers and the requests it waits on (the machine's waiters name
    /// them by id), and the next id.
    pub fn carry(&self) -> ControlRecord {
        // Followers are not carried: they are told to reconnect (`follow`).
        let conns = (self.conns.iter().filter(|c| c.follow.is_none()))
            .map(|c| ControlConnRecord {
                conn: c.io.carry(),
                waiting: c
                    .waiting
                    .iter()
                    .map(|s| (s.id.map(|id| id.0), s.reply.clone().map(HexBytes)))
                    .collect(),
                stopping: c.stopping,
            })
            .collect();
        let (path, identity) = (self.file.path().to_owned(), self.file.identity());
        ControlRecord { fd: self.listener.as_raw_fd(), path, identity, next_id: self.next_id, conns }
    }

    /// The server as `carry` described it; `take` gives back a carried fd.
    pub fn resume(record: ControlRecord, take: &mut Carried, now: Instant) -> io::Result<ControlServer> {
        let listener = UnixListener::from(take.fd(record.fd)?);
        let mut conns = Vec::with_capacity(record.conns.len());
        for c in record.conns {
            let stream = UnixStream::from(take.fd(c.conn.fd)?);
            let waiting = (c.waiting.into_iter())
                // Replies to `status` are made in the turn it is read:
                // any other one still to make is a restart's or an upgrade's.
                .map(|(id, reply)| Slot {
                    deferred: id.is_some() && reply.is_none(),
                    id: id.map(RequestId),
                    reply: reply.map(|r| r.0),
                })
                .collect();
            let io = LineConn::resume(stream, c.conn)?;
            conns.push(Conn { io, waiting, heard_at: now, stopping: c.stopping, follow: None });
        }
        Ok(ControlServer {
            listener,
            file: OwnedPath::known(record.path, record.identity),
            euid: nix::unistd::geteuid().as_raw(),
            conns,
            next_id: record.next_id,
            accept_paused: false,
            refused: Throttle::default(),
            dropped: Throttle::default(),
            notes: Vec::new(),
        })
    }
}
