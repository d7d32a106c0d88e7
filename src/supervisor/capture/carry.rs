//! The captured output across a self-upgrade.
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use serde::{Deserialize, Serialize};

use super::{Capture, Splitter, Stream, Token, Which};
use crate::config::Config;
use crate::supervisor::carry::{Carry, Resuming, Written, hex};

/// What a self-upgrade carries of the captured output: every open
/// stream's read end and the part of a line read so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub next_token: u64,
    pub streams: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    pub fd: RawFd,
    pub token: u64,
    pub stderr: bool,
    pub owner: Option<(u64, i32)>,
    #[serde(with = "hex")]
    pub pending: Vec<u8>,
}

impl Carry for Capture {
    type Record = CaptureRecord;

    /// Streams not attached yet belong to a spawn in progress, which
    /// never spans a turn: there are none.
    fn carry(&self, _: Written) -> CaptureRecord {
        let streams = (self.streams.iter())
            .filter(|s| s.owner.is_some())
            .map(|s| StreamRecord {
                fd: s.fd.as_raw_fd(),
                token: s.token.0,
                stderr: s.which == Which::Stderr,
                owner: s.owner,
                pending: s.splitter.pending.clone(),
            })
            .collect();
        CaptureRecord { next_token: self.next_token, streams }
    }

    fn fds(record: &CaptureRecord) -> Vec<RawFd> {
        record.streams.iter().map(|s| s.fd).collect()
    }

    /// Reading on where the previous image stopped, in this image's
    /// `--log-capture` format.
    fn resume(record: CaptureRecord, from: &mut Resuming, config: &Config) -> io::Result<Capture> {
        let format = config.capture.ok_or_else(|| io::Error::other("--log-capture is not given"))?;
        let mut capture = Capture::new(format);
        capture.next_token = record.next_token;
        for s in record.streams {
            let fd = from.fd(s.fd)?;
            fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            let which = if s.stderr { Which::Stderr } else { Which::Stdout };
            let splitter = Splitter { pending: s.pending };
            capture.streams.push(Stream { token: Token(s.token), which, owner: s.owner, fd, splitter });
        }
        Ok(capture)
    }
}
