//! The supervisor's own lines on stderr: start_server's bare texts under
//! that name, `handover[PID]: ` lines, or JSON records (`--log-format json`),
//! each queued whole in the non-blocking `Sink` (one write per line where
//! the reader keeps up, so lines from several writers never interleave).
use std::cell::RefCell;
use std::time::Duration;

use serde_json::json;

use super::sink::Sink;
use super::words;
use crate::machine::event::Event;

/// How lines are printed: start_server's bare texts, or prefixed.
pub struct Log {
    pub compat: bool,
    /// `--log-format json`: our lines are JSON records like the workers'.
    pub json: bool,
    sink: RefCell<Sink>,
    /// A `| COMMAND` log: a broken pipe is mended by starting it again.
    restartable: bool,
}

impl Log {
    pub fn new(compat: bool, json: bool) -> Log {
        Log { compat, json, sink: RefCell::new(Sink::new()), restartable: false }
    }

    fn format(&self, text: &str) -> String {
        if self.json {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let record = json!({"time": time, "source": "handover", "pid": std::process::id(), "line": text});
            format!("{record}\n")
        } else if self.compat {
            format!("{text}\n")
        } else {
            format!("handover[{}]: {text}\n", std::process::id())
        }
    }

    pub fn line(&self, text: &str) {
        let line = self.format(text);
        let mut sink = self.sink.borrow_mut();
        if let Some(dropped) = sink.take_dropped() {
            let note = format!("dropped {dropped} of its own log lines while the log was not read");
            sink.own(self.format(&note).as_bytes());
        }
        sink.own(line.as_bytes());
        sink.flush(self.restartable);
    }

    pub fn event(&self, event: &Event) {
        if !self.compat || !event.is_extra() || event.is_warning() {
            self.line(&words::line(event, self.compat));
        }
    }

    /// A line of handover's own, not printed under the name start_server.
    pub fn extra(&self, text: &str) {
        if !self.compat {
            self.line(text);
        }
    }

    /// The sink, for polling, captured records and flushing.
    pub fn sink(&self) -> std::cell::RefMut<'_, Sink> {
        self.sink.borrow_mut()
    }

    /// fd 2 was replaced (`--log-file`, `--daemonize`, a reopened or
    /// restarted log); `restartable` when it is a `| COMMAND` pipe.
    pub fn retarget(&mut self, restartable: bool) {
        self.restartable = restartable;
        self.sink.get_mut().retarget();
        self.sink.get_mut().flush(restartable);
    }

    /// Writes what the reader takes now.
    pub fn flush(&self) {
        self.sink.borrow_mut().flush(self.restartable);
    }

    /// At exit: the last lines get at most `within` to be read.
    pub fn finish(&self, within: Duration) {
        self.sink.borrow_mut().finish(within);
    }
}
