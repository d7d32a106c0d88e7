//! `handover events [--follow] --control PATH`: the supervisor's event
//! records on stdout, one JSON object per line.
//!
//! Without `--follow`: the records the supervisor retains (its last
//! 1000), then exit 0. With it: those, then each new record as it comes,
//! until the supervisor exits (exit 0). Across `handover upgrade` the
//! supervisor closes followers' connections at the exec; this client
//! connects again at once (the socket lives on, so the connection waits
//! for the new image) and prints only the records after the last one it
//! printed (`seq`), so nothing is printed twice. A connection refused or
//! gone means the supervisor has exited. A closed stdout (`| head`) ends
//! it quietly.
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::control::{connect, read_line};
use crate::error::{Error, Result, io_text};
use crate::wire::control::{Command, Request, decode, encode};
use crate::wire::event::Retained;

/// How long the retained records may take to come (a new image takes
/// over within this, or has failed).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(path: &Path, follow: bool) -> Result<u8> {
    let mut out = io::stdout().lock();
    let mut last = 0u64;
    let mut first = true;
    loop {
        // After the first connection: one refused means the supervisor is gone.
        let mut stream = match connect(path) {
            Ok(stream) => stream,
            Err(_) if !first => return Ok(0),
            Err(e) => return Err(e),
        };
        let command = if follow { Command::Follow } else { Command::Events };
        let fail = |what: &str, e: &io::Error| {
            Error::runtime(format!("cannot {what} control socket {}: {}", path.display(), io_text(e)))
        };
        stream.write_all(&encode(&Request::new(command))).map_err(|e| fail("send to", &e))?;
        let mut buf = Vec::new();
        let deadline = Some(Instant::now() + REPLY_TIMEOUT);
        let line = match read_line(&mut stream, deadline, &mut buf) {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) if !first => return Ok(0),
            Ok(None) => {
                return Err(Error::runtime("the supervisor closed the control connection without a reply"));
            }
            Err(e) => return Err(fail("read from", &e)),
        };
        first = false;
        let retained: Retained = decode(&line)?;
        let seen = last;
        for record in retained.events.iter().filter(|r| r.seq > seen) {
            last = record.seq;
            let line = serde_json::to_string(record).unwrap_or_default();
            if writeln!(out, "{line}").is_err() {
                return Ok(0);
            }
        }
        if !follow {
            return Ok(0);
        }
        // Records, one per line, until the connection ends.
        while let Ok(Some(line)) = read_line(&mut stream, None, &mut buf) {
            let seq = serde_json::from_slice::<Value>(&line).ok().and_then(|v| v.get("seq")?.as_u64());
            if let Some(seq) = seq {
                last = last.max(seq);
            }
            if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                return Ok(0);
            }
        }
    }
}
