//! The supervisor's own lines on stderr: start_server's bare texts under
//! that name, `handover[PID]: ` lines, or JSON records (`--log-format json`).
use std::io::Write;

use serde_json::json;

use super::words;
use crate::machine::event::Event;

/// How lines are printed: start_server's bare texts, or prefixed.
pub struct Log {
    pub compat: bool,
    /// `--log-format json`: our lines are JSON records like the workers'.
    pub json: bool,
}

impl Log {
    pub fn line(&self, text: &str) {
        let line = if self.json {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            format!(
                "{}\n",
                json!({"time": time, "source": "handover", "pid": std::process::id(), "line": text})
            )
        } else if self.compat {
            format!("{text}\n")
        } else {
            format!("handover[{}]: {text}\n", std::process::id())
        };
        // One write per line, so lines from several writers never interleave.
        let _ = std::io::stderr().write_all(line.as_bytes());
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
}
