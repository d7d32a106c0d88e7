//! The supervisor's own lines on stderr: start_server's bare texts under
//! that name, `handover[PID]: ` lines, or JSON records (`--log-format json`),
//! each queued whole in the non-blocking `Sink` (one write per line where
//! the reader keeps up, so lines from several writers never interleave).
use std::cell::RefCell;
use std::time::{Duration, Instant};

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
    /// The last line, and how often it came again since it was printed.
    repeat: RefCell<Repeat>,
}

/// Identical lines in a row (a HUP storm, a fork failing for every worker)
/// are printed once, then counted: the count goes out with the next other
/// line, or `REPEAT_EVERY` after the line, whichever comes first.
#[derive(Default)]
struct Repeat {
    text: String,
    count: u64,
    since: Option<Instant>,
}

/// How long repeats of a line are counted before the count is printed.
pub const REPEAT_EVERY: Duration = Duration::from_secs(1);

impl Log {
    pub fn new(compat: bool, json: bool) -> Log {
        let sink = RefCell::new(Sink::new());
        Log { compat, json, sink, restartable: false, repeat: RefCell::default() }
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
        // Under start_server's name every line is its own, as there.
        if !self.compat {
            let mut repeat = self.repeat.borrow_mut();
            if repeat.text == text && repeat.since.is_some() {
                repeat.count += 1;
                return;
            }
            let said = self.repeated(&mut repeat);
            *repeat = Repeat { text: text.to_owned(), count: 0, since: Some(Instant::now()) };
            drop(repeat);
            if let Some(said) = said {
                self.write(&said);
            }
        }
        self.write(text);
    }

    /// The line saying how often the last one came again, if it did.
    fn repeated(&self, repeat: &mut Repeat) -> Option<String> {
        let count = std::mem::take(&mut repeat.count);
        let times = if count == 1 { "once more".to_string() } else { format!("{count} more times") };
        (count > 0).then(|| format!("the line above came {times}: {}", repeat.text))
    }

    /// Prints the count of a repeated line once `REPEAT_EVERY` has passed.
    pub fn tick(&self, now: Instant) {
        let mut repeat = self.repeat.borrow_mut();
        if repeat.since.is_some_and(|since| now >= since + REPEAT_EVERY) {
            let said = self.repeated(&mut repeat);
            repeat.since = None;
            drop(repeat);
            if let Some(said) = said {
                self.write(&said);
            }
        }
    }

    /// Prints the count of a repeated line now, if there is one (before
    /// the process image is replaced).
    pub fn settle(&self) {
        let mut repeat = self.repeat.borrow_mut();
        let said = self.repeated(&mut repeat);
        *repeat = Repeat::default();
        drop(repeat);
        if let Some(said) = said {
            self.write(&said);
        }
    }

    /// When `tick` has a count to print.
    pub fn deadline(&self) -> Option<Instant> {
        let repeat = self.repeat.borrow();
        repeat.since.filter(|_| repeat.count > 0).map(|since| since + REPEAT_EVERY)
    }

    fn write(&self, text: &str) {
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
        self.warn_if_blocking();
        self.sink.get_mut().flush(restartable);
    }

    fn warn_if_blocking(&self) {
        let warning = self.sink.borrow().blocking_warning();
        if let Some(warning) = warning {
            self.line(warning);
        }
    }

    /// Writes what the reader takes now, after saying how many captured
    /// records went while the log command was down, if some did.
    pub fn flush(&self) {
        let dropped = self.sink.borrow_mut().take_dropped_captured();
        if let Some(dropped) = dropped {
            let kib = super::sink::LOSSY_CAPACITY / 1024;
            self.line(&format!(
                "dropped {dropped} captured lines while the log command was down ({kib} KiB were waiting)"
            ));
        }
        self.sink.borrow_mut().flush(self.restartable);
    }

    /// At exit: the last lines get at most `within` to be read.
    pub fn finish(&self, within: Duration) {
        self.sink.borrow_mut().finish(within);
    }
}
