//! The supervisor's own lines on stderr: start_server's bare texts under
//! that name, `handover[PID]: ` lines, or JSON records (`--log-format json`),
//! each queued whole in the non-blocking `Sink` (one write per line where
//! the reader keeps up, so lines from several writers never interleave).
use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde_json::json;

use super::events::{self, Events};
use super::sink::Sink;
use super::words;
use crate::machine::event::Event;
use crate::machine::{Role, View};
use crate::wire::event::{Record, What};

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
    /// The lines that are events, as records (`handover events`, metrics).
    pub events: RefCell<Events>,
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

/// An event's record, and whether its line is a warning.
type Said<'a> = Option<(&'a Record, bool)>;

/// `--log-format json`: the event's kind (`line` for a line that is no
/// event), the level (`warning` for the machine's warnings and lines that
/// say something could not be done, `info` otherwise) and the fields.
fn json_fields(text: &str, said: Said) -> (String, &'static str, serde_json::Value) {
    let failed = ["cannot ", "refused ", "upgrade refused", "ignored "].iter().any(|p| text.starts_with(p));
    let level = |warning: bool| if warning || failed { "warning" } else { "info" };
    let Some((record, warning)) = said else { return ("line".into(), level(false), json!({})) };
    let mut fields = serde_json::to_value(&record.what).unwrap_or_default();
    if let Some(map) = fields.as_object_mut() {
        map.remove("event");
        map.insert("seq".into(), record.seq.into());
        map.insert("generation".into(), json!(record.generation));
        map.insert("pids".into(), json!(record.pids));
    }
    let warning = warning || matches!(record.what, What::RolledBack { .. } | What::Killed { .. });
    (record.what.name(), level(warning), fields)
}

/// How long repeats of a line are counted before the count is printed.
pub const REPEAT_EVERY: Duration = Duration::from_secs(1);

impl Log {
    pub fn new(compat: bool, json: bool) -> Log {
        let sink = RefCell::new(Sink::new());
        let (restartable, repeat, events) = (false, RefCell::default(), RefCell::default());
        Log { compat, json, sink, restartable, repeat, events }
    }

    /// The line as written: JSON (with the event's kind and fields when it
    /// is an event's), start_server's bare text, or prefixed.
    fn format(&self, text: &str, said: Said) -> String {
        if self.json {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let (event, level, fields) = json_fields(text, said);
            let pid = std::process::id();
            let line = json!({"time": time, "source": "handover", "pid": pid, "level": level, "event": event,
                "message": text, "fields": fields, "line": text});
            format!("{line}\n")
        } else if self.compat {
            format!("{text}\n")
        } else {
            format!("handover[{}]: {text}\n", std::process::id())
        }
    }

    pub fn line(&self, text: &str) {
        self.line_of(text, None);
    }

    /// A line, and the event record it says, if it says one.
    fn line_of(&self, text: &str, said: Said) {
        // Under start_server's name every line is its own, as there.
        if !self.compat {
            let mut repeat = self.repeat.borrow_mut();
            if repeat.text == text && repeat.since.is_some() {
                repeat.count += 1;
                return;
            }
            drop(repeat);
            self.say_repeats(Repeat { text: text.to_owned(), count: 0, since: Some(Instant::now()) });
        }
        self.write(text, said);
    }

    /// Prints how often the last line came again, if it did, and counts
    /// from `next` on.
    fn say_repeats(&self, next: Repeat) {
        let last = self.repeat.replace(next);
        let times =
            if last.count == 1 { "once more".to_string() } else { format!("{} more times", last.count) };
        if last.count > 0 {
            self.write(&format!("the line above came {times}: {}", last.text), None);
        }
    }

    /// Prints the count of a repeated line once `REPEAT_EVERY` has passed.
    pub fn tick(&self, now: Instant) {
        let since = self.repeat.borrow().since;
        if since.is_some_and(|since| now >= since + REPEAT_EVERY) {
            let text = self.repeat.borrow().text.clone();
            self.say_repeats(Repeat { text, count: 0, since: None });
        }
    }

    /// Prints the count of a repeated line now, if there is one (before
    /// the process image is replaced).
    pub fn settle(&self) {
        self.say_repeats(Repeat::default());
    }

    /// When `tick` has a count to print.
    pub fn deadline(&self) -> Option<Instant> {
        let repeat = self.repeat.borrow();
        repeat.since.filter(|_| repeat.count > 0).map(|since| since + REPEAT_EVERY)
    }

    fn write(&self, text: &str, said: Said) {
        self.report_dropped();
        let line = self.format(text, said);
        let mut sink = self.sink.borrow_mut();
        sink.own(line.as_bytes());
        sink.flush(self.restartable);
    }

    /// Own lines dropped while the log was not read, said (as their event)
    /// once it has room again.
    fn report_dropped(&self) {
        let dropped = self.sink.borrow_mut().take_dropped();
        if let Some(dropped) = dropped {
            let note = format!("dropped {dropped} of its own log lines while the log was not read");
            self.said(What::LinesDropped { count: dropped, of: "own".into() }, None, vec![], &note);
        }
    }

    /// A machine event: recorded, and printed as its line. `views`: the
    /// generations now, for the generation of the workers it names.
    pub fn event(&self, event: &Event, views: &[View]) {
        let in_views = |pid| views.iter().find(|v| v.pids.contains(&pid)).map(|v| v.generation);
        let serving =
            views.iter().rev().find(|v| v.role == Role::Serving).map(|v| (v.generation, v.pids.clone()));
        let (what, generation, pids) = {
            let events = self.events.borrow();
            events::describe(event, |pid| events.generation_of(pid).or_else(|| in_views(pid)), serving)
        };
        let respawned = matches!(event, Event::DiedUnexpectedly { .. }).then(|| pids.clone());
        self.record(what, generation, pids, &words::line(event, false));
        let record = self.events.borrow().last().cloned();
        if let Some(pids) = respawned {
            let text = format!("worker {} is started again", pids.first().copied().unwrap_or(0));
            self.record(What::Respawned, generation, pids, &text);
        }
        if !self.compat || !event.is_extra() || event.is_warning() {
            let said = record.as_ref().map(|r| (r, event.is_warning()));
            self.line_of(&words::line(event, self.compat), said);
        }
    }

    /// Keeps an event's record, without printing it.
    pub fn record(&self, what: What, generation: Option<u64>, pids: Vec<i32>, text: &str) {
        self.events.borrow_mut().push(what, generation, pids, text.to_string());
    }

    /// A line of the supervisor's own that is an event: recorded and printed.
    pub fn said(&self, what: What, generation: Option<u64>, pids: Vec<i32>, text: &str) {
        self.record(what, generation, pids, text);
        let record = self.events.borrow().last().cloned();
        self.line_of(text, record.as_ref().map(|r| (r, false)));
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
        if let Some(warning) = self.sink.get_mut().blocking_warning() {
            self.line(warning);
        }
        self.sink.get_mut().flush(restartable);
    }

    /// Writes what the reader takes now, after saying how many captured
    /// records went while the log command was down, if some did.
    pub fn flush(&self) {
        self.report_dropped();
        let dropped = self.sink.borrow_mut().take_dropped_captured();
        if let Some(dropped) = dropped {
            let kib = super::sink::LOSSY_CAPACITY / 1024;
            let text = format!(
                "dropped {dropped} captured lines while the log command was down ({kib} KiB were waiting)"
            );
            self.said(What::LinesDropped { count: dropped, of: "captured".into() }, None, vec![], &text);
        }
        self.sink.borrow_mut().flush(self.restartable);
    }

    /// At exit: the last lines get at most `within` to be read.
    pub fn finish(&self, within: Duration) {
        self.sink.borrow_mut().finish(within);
    }
}
