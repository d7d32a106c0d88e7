//! One control connection: its requests in order, their replies, and
//! whether it may be closed.
use std::collections::VecDeque;
use std::time::Instant;

use super::crowd::Crowd;
use super::{IDLE_TIMEOUT, MAX_LINE, MAX_PENDING, RequestId, follow};
use crate::supervisor::line_conn::LineConn;
use crate::wire::control::{Command, Request, Verdict, encode, parse_request};

pub(super) struct Answer {
    /// None for an error this module answered by itself.
    pub(super) id: Option<RequestId>,
    pub(super) reply: Option<Vec<u8>>,
    /// Its reply comes later (`restart`, `upgrade`), not in this turn.
    pub(super) deferred: bool,
}

pub(super) struct Conn {
    pub(super) io: LineConn,
    /// Requests in arrival order; replies leave from the front only.
    pub(super) waiting: VecDeque<Answer>,
    /// When it last sent a byte, took one of its replies, or was accepted.
    pub(super) heard_at: Instant,
    /// It asked to stop: it waits, silent, for the supervisor to exit.
    pub(super) stopping: bool,
    /// It follows the event stream (`follow`): takes no more requests.
    pub(super) follow: Option<follow::Follow>,
}

impl Conn {
    /// Is owed no reply still to be made (replies not yet read by the
    /// client do not count): it may be closed to make room, and is once it
    /// has neither sent nor taken a byte for `IDLE_TIMEOUT`.
    pub(super) fn idle(&self) -> bool {
        self.waiting.is_empty() && !self.stopping && self.follow.is_none()
    }

    /// Waits for a reply still to come, or for the supervisor's exit: it
    /// counts against `MAX_WAITING`.
    pub(super) fn waits(&self) -> bool {
        self.stopping || self.waiting.iter().any(|s| s.deferred && s.reply.is_none())
    }

    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        self.idle().then(|| self.heard_at + IDLE_TIMEOUT)
    }

    /// Requests are buffered and may be taken now.
    pub(super) fn has_work(&self) -> bool {
        self.waiting.len() < MAX_PENDING && self.io.has_line() && self.follow.is_none()
    }

    pub(super) fn done(&self) -> bool {
        self.io.broken || (self.io.eof && self.waiting.is_empty() && self.io.unsent() == 0)
    }

    /// Turns buffered lines into requests, as many as may be pending; lines
    /// left in the buffer make `next_deadline` say "now", so they are taken
    /// on the next turn even if no more input comes. A request that would
    /// make one client too many wait is answered at once with the refusal.
    pub(super) fn take_requests(
        &mut self,
        next_id: &mut u64,
        crowd: &mut Crowd,
        out: &mut Vec<(RequestId, Request)>,
    ) {
        // At most what may be pending: the rest waits for the next turn,
        // so a client with thousands of requests queued cannot fill one.
        let room = MAX_PENDING.saturating_sub(self.waiting.len());
        let (lines, too_long) = self.io.lines(room);
        for line in lines {
            let admitted = parse_request(&line)
                .and_then(|request| crowd.admit(self.waits(), request.command).map(|()| request));
            match admitted {
                Ok(request) => {
                    self.stopping |= request.command == Command::Stop;
                    let id = RequestId(*next_id);
                    *next_id += 1;
                    let deferred = matches!(request.command, Command::Restart | Command::Upgrade);
                    self.waiting.push_back(Answer { id: Some(id), reply: None, deferred });
                    let follows = request.command == Command::Follow;
                    out.push((id, request));
                    if follows {
                        // A follower takes no more requests, not even those
                        // it sent along with `follow`.
                        break;
                    }
                }
                Err(refusal) => self.answer_now(&refusal.message),
            }
        }
        if too_long {
            self.answer_now(&format!("request line longer than {MAX_LINE} bytes"));
        }
    }

    pub(super) fn answer_now(&mut self, error: &str) {
        let reply = Some(encode(&Verdict::refused(error)));
        self.waiting.push_back(Answer { id: None, reply, deferred: false });
        self.release();
    }

    /// Moves the answered requests at the front to the output.
    pub(super) fn release(&mut self) {
        while let Some(bytes) = self.waiting.front_mut().and_then(|s| s.reply.take()) {
            self.waiting.pop_front();
            self.io.queue(&bytes);
        }
    }
}
