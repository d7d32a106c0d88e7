//! Followers of the event stream (`{"command":"follow"}`): the answer is
//! the retained records (`wire::event::Retained`), then each new record
//! is one line on the same connection, which takes no more requests.
//!
//! Bounds: at most `MAX_FOLLOWERS` connections follow; each has at most
//! `FOLLOW_BUFFER` bytes queued (and a kernel send buffer of
//! `FOLLOW_SNDBUF`). A record that does not fit is not queued but counted;
//! once the follower has read half its buffer it gets one `dropped`
//! record with the count, then the records that come after. A follower
//! never slows the loop: it costs one `send` per turn, at most.
//!
//! Across `handover upgrade` followers are not carried: their connections
//! close at the exec, after the `upgrading` record. `handover events
//! --follow` then connects again (the socket is carried, so it does not
//! miss it) and skips the records it has seen (by `seq`, carried too).
use std::time::Instant;

use socket2::SockRef;

use super::{Conn, ControlServer, RequestId};
use crate::wire::control::{Verdict, encode};
use crate::wire::event::{Record, Retained, What};

/// Connections that may follow at once.
pub const MAX_FOLLOWERS: usize = 16;
// Followers cannot be closed for a newcomer: with every waiting client and a
// stop they still leave connections that can.
const _: () = assert!(MAX_FOLLOWERS + super::MAX_WAITING + 1 < super::MAX_CONNECTIONS);
/// Bytes queued for a follower before records are dropped for it.
pub const FOLLOW_BUFFER: usize = 64 * 1024;
/// The kernel's send buffer asked for a follower's socket.
const FOLLOW_SNDBUF: usize = 16 * 1024;

pub struct Follow {
    /// The last record queued or dropped for it.
    after: u64,
    /// Records dropped since the last `dropped` record.
    dropped: u64,
}

impl ControlServer {
    /// Answers `follow` with the retained records and makes the connection
    /// a follower, unless `MAX_FOLLOWERS` already are.
    pub fn follow(&mut self, id: RequestId, retained: &Retained) {
        if self.conns.iter().filter(|c| c.follow.is_some()).count() >= MAX_FOLLOWERS {
            let why = format!("too many followers of the event stream (at most {MAX_FOLLOWERS})");
            return self.reply(id, &Verdict::refused(why));
        }
        let after = retained.events.last().map_or(0, |r| r.seq);
        if let Some(conn) = self.conns.iter_mut().find(|c| c.waiting.iter().any(|s| s.id == Some(id))) {
            conn.follow = Some(Follow { after, dropped: 0 });
            let _ = SockRef::from(conn.io.stream()).set_send_buffer_size(FOLLOW_SNDBUF);
        }
        self.reply(id, retained);
    }

    /// Queues new records for every follower, as its buffer allows;
    /// `lost`: records that never reached this point.
    pub fn broadcast(&mut self, records: &[Record], lost: u64) {
        if records.is_empty() && lost == 0 {
            return;
        }
        let lines: Vec<Vec<u8>> = records.iter().map(encode).collect();
        for conn in &mut self.conns {
            let Some(follow) = conn.follow.as_mut() else { continue };
            follow.dropped += lost;
            for (record, line) in records.iter().zip(&lines) {
                if record.seq <= follow.after {
                    continue;
                }
                follow.after = record.seq;
                let fits = conn.waiting.is_empty() && conn.io.unsent() + line.len() <= FOLLOW_BUFFER;
                if follow.dropped > 0 || !fits {
                    follow.dropped += 1;
                    continue;
                }
                conn.io.queue(line);
            }
            catch_up(conn, Instant::now());
        }
    }
}

/// Writes what the peer takes (at `now`); once a follower has read half
/// its buffer, tells it how many records it missed, so the next ones can go.
pub fn catch_up(conn: &mut Conn, now: Instant) {
    if let Some(follow) = conn.follow.as_mut()
        && follow.dropped > 0
        && conn.waiting.is_empty()
        && conn.io.unsent() <= FOLLOW_BUFFER / 2
    {
        let count = std::mem::take(&mut follow.dropped);
        let record = Record {
            seq: follow.after,
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            generation: None,
            pids: Vec::new(),
            what: What::Dropped { count },
            message: format!("dropped {count} events: this follower did not read them in time"),
        };
        conn.io.queue(&encode(&record));
    }
    if conn.io.flush() {
        conn.heard_at = now;
    }
}
