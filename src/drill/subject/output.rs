//! What the supervisor and its workers write (they share its stdout and
//! stderr, both piped to the drill), kept for diagnosis.
//!
//! Every line goes to [`FILE_NAME`] in the drill's directory, up to
//! [`LIMIT`] bytes; past that the file gets one note and nothing more, and
//! the pipes are still read so nobody blocks on them. The last [`TAIL`]
//! lines are also kept in memory whatever the limit: the tail a failure
//! shows, even once the directory is removed. A line longer than
//! [`MAX_LINE`] is kept in pieces. Writes are buffered and flushed whenever
//! a reader has caught up with its pipe, so a chatty server costs few
//! system calls and a quiet one's lines reach the file at once.
//!
//! Every line, kept or not, is also looked at for the supervisor's own
//! lines about upgrades (`upgraded from handover`, `dropped N of its own
//! log lines`), which are counted ([`LogLines`]), for the text of
//! `--log-line`, for the supervisor's KILLs (up to [`MAX_KILLS`], each
//! with when it was read) and for "Address already in use" (a worker that
//! binds the port itself).
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::drill::report::{Kill, LogLines, parse_kill};
use crate::error::{Context, Result};

/// The file in the drill's directory that holds the output.
pub const FILE_NAME: &str = "output.log";
/// Bytes written to the file at most.
const LIMIT: u64 = 256 << 20;
/// Lines shown when the drill fails.
const TAIL: usize = 20;
/// A longer line is kept in pieces of this size.
const MAX_LINE: u64 = 64 << 10;
/// KILLs remembered at most.
const MAX_KILLS: usize = 1000;

#[derive(Default)]
struct State {
    /// `None` once the limit is reached.
    file: Option<BufWriter<File>>,
    written: u64,
    tail: VecDeque<String>,
    /// Streams not yet at their end.
    open: usize,
    log_lines: LogLines,
    /// `--log-line`: lines containing it are counted.
    pattern: Option<String>,
    kills: Vec<Kill>,
    /// A line said "Address already in use" (not the supervisor's hint).
    address_in_use: bool,
}

pub struct Output {
    state: Arc<(Mutex<State>, Condvar)>,
    path: PathBuf,
    /// Whether the directory outlives the drill (`--keep`).
    kept: bool,
}

impl Output {
    /// Reads `streams` on threads of their own into `dir`/[`FILE_NAME`].
    /// Lines containing `pattern` are counted (`LogLines::matched`).
    pub fn start(
        dir: &Path,
        kept: bool,
        streams: Vec<Box<dyn Read + Send>>,
        pattern: Option<&str>,
    ) -> Result<Output> {
        let path = dir.join(FILE_NAME);
        // Checked as every file the drill writes (a kept directory is the user's).
        let dest = crate::drill::dest::FileDest::in_dir("--keep", dir, FILE_NAME)?;
        let file = dest.open().context(|| format!("cannot create {}", path.display()))?;
        let state = State {
            file: Some(BufWriter::new(file)),
            open: streams.len(),
            pattern: pattern.map(str::to_owned),
            ..State::default()
        };
        let state = Arc::new((Mutex::new(state), Condvar::new()));
        for stream in streams {
            let state = Arc::clone(&state);
            std::thread::spawn(move || read(BufReader::new(stream), &state));
        }
        Ok(Output { state, path, kept })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `period` for every stream to end (all writers gone),
    /// then flushes the file.
    pub fn finish(&self, period: Duration) {
        let ended = &self.state.1;
        let (mut state, _) =
            ended.wait_timeout_while(self.state(), period, |s| s.open > 0).unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &mut state.file {
            let _ = file.flush();
        }
    }

    /// The supervisor's lines about upgrades so far (all of them once
    /// [`finish`](Output::finish) has seen the streams end).
    pub fn log_lines(&self) -> LogLines {
        self.state().log_lines
    }

    /// The supervisor's KILLs so far.
    pub fn kills(&self) -> Vec<Kill> {
        self.state().kills.clone()
    }

    /// Whether any line so far said "Address already in use".
    pub fn address_in_use(&self) -> bool {
        self.state().address_in_use
    }

    /// The last line among the last ones that is worker `pid`'s, as
    /// `--log-capture` tags it (`[gen G pid P stderr]`), else the last
    /// that is not the supervisor's own.
    pub fn last_line_of(&self, pid: Option<i32>) -> Option<String> {
        let state = self.state();
        let theirs = |l: &&String| !l.starts_with("handover[") && !l.starts_with("{\"");
        let mentions = |l: &&String, pid: i32| {
            l.match_indices(&format!("pid {pid}"))
                .any(|(i, m)| !l[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
        };
        let captured = |l: &&String| l.starts_with('[');
        let own = pid.and_then(|pid| {
            state.tail.iter().rev().filter(theirs).filter(captured).find(|l| mentions(l, pid))
        });
        own.or_else(|| state.tail.iter().rev().find(theirs)).cloned()
    }

    /// The last lines, and where the rest is: for a failure message.
    pub fn tail(&self) -> String {
        let state = self.state();
        let whole = if self.kept {
            format!("all of it in {}", self.path.display())
        } else {
            "give --keep DIR to keep all of it".into()
        };
        if state.tail.is_empty() {
            return format!("the supervisor and its workers wrote nothing ({whole})");
        }
        let lines = match state.tail.len() {
            1 => "line".into(),
            n => format!("{n} lines"),
        };
        let shown: String = state.tail.iter().map(|line| format!("\n  {line}")).collect();
        format!("the last {lines} of the supervisor's and workers' output ({whole}):{shown}")
    }
}

/// One stream's lines, until its end or an error.
fn read(mut reader: BufReader<Box<dyn Read + Send>>, state: &(Mutex<State>, Condvar)) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => record(
                &mut state.0.lock().unwrap_or_else(|e| e.into_inner()),
                &line,
                reader.buffer().is_empty(),
            ),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let mut locked = state.0.lock().unwrap_or_else(|e| e.into_inner());
    locked.open -= 1;
    if let Some(file) = &mut locked.file {
        let _ = file.flush();
    }
    state.1.notify_all();
}

/// One line (or piece of one) into the file and the tail; `caught_up`:
/// nothing more is buffered from its pipe, so the file is flushed.
fn record(state: &mut State, line: &[u8], caught_up: bool) {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    if state.tail.len() == TAIL {
        state.tail.pop_front();
    }
    let shown = String::from_utf8_lossy(text).into_owned();
    count(&mut state.log_lines, &shown);
    if state.kills.len() < MAX_KILLS
        && let Some(kill) = parse_kill(&shown, Instant::now())
    {
        state.kills.push(kill);
    }
    if shown.contains("Address already in use") && !shown.contains("If its log says") {
        state.address_in_use = true;
    }
    if state.pattern.as_deref().is_some_and(|p| shown.contains(p)) {
        state.log_lines.matched += 1;
    }
    state.tail.push_back(shown);
    let Some(file) = &mut state.file else { return };
    let size = text.len() as u64 + 1;
    if state.written + size > LIMIT {
        let note =
            format!("[handover drill: more than {} MiB of output; the rest is not kept]\n", LIMIT >> 20);
        let _ = file.write_all(note.as_bytes()).and_then(|()| file.flush());
        state.file = None;
        return;
    }
    state.written += size;
    let written = (file.write_all(text))
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| if caught_up { file.flush() } else { Ok(()) });
    if written.is_err() {
        state.file = None;
    }
}

/// Counts `line` into `lines` if it is one of the supervisor's about
/// upgrades, in any of its log formats: `handover[PID]: TEXT`, a JSON
/// record with `"line":"TEXT"`, or TEXT bare. A line repeated is printed
/// once and then counted (`the line above came N more times: TEXT`),
/// though each new image starts counting afresh, so an upgrade's line
/// never comes twice in a row.
fn count(lines: &mut LogLines, line: &str) {
    let times = |line: &str| {
        let Some((_, after)) = line.split_once("the line above came ") else { return 1 };
        match after.split_once(' ') {
            Some(("once", _)) => 1,
            Some((n, _)) => n.parse().unwrap_or(1),
            None => 1,
        }
    };
    if line.contains("upgraded from handover ") {
        lines.upgraded += times(line);
    }
    if let Some((before, _)) = line.split_once(" of its own log lines") {
        let n = before.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
        lines.dropped += n.unwrap_or(1) * times(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(dir: &Path, input: &'static [u8]) -> (Output, String) {
        let output = Output::start(dir, true, vec![Box::new(input)], Some("hello: request")).unwrap();
        output.finish(Duration::from_secs(30));
        let file = std::fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        (output, file)
    }

    #[test]
    fn lines_go_to_the_file_and_the_last_ones_to_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let (output, file) = kept(dir.path(), text.leak().as_bytes());
        assert_eq!(file.lines().count(), 30);
        let tail = output.tail();
        let shown = format!(
            "the last 20 lines of the supervisor's and workers' output (all of it in {}):",
            dir.path().join(FILE_NAME).display()
        );
        assert!(tail.starts_with(&shown), "{tail}");
        assert!(tail.ends_with("\n  line 29\n  line 30") && !tail.contains("line 10\n"), "{tail}");
    }

    #[test]
    fn an_unfinished_last_line_and_silence_are_shown_too() {
        let dir = tempfile::tempdir().unwrap();
        let (output, file) = kept(dir.path(), b"one\ntwo");
        assert_eq!(file, "one\ntwo\n");
        assert!(output.tail().ends_with(":\n  one\n  two"), "{}", output.tail());
        let silent = Output::start(dir.path(), false, vec![Box::new(&b""[..])], None).unwrap();
        silent.finish(Duration::from_secs(30));
        assert_eq!(
            silent.tail(),
            "the supervisor and its workers wrote nothing (give --keep DIR to keep all of it)"
        );
    }

    #[test]
    fn the_file_stops_at_the_limit_with_a_note() {
        let mut state = State { written: LIMIT - 10, open: 1, ..State::default() };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        state.file = Some(BufWriter::new(File::create(&path).unwrap()));
        record(&mut state, b"12345678\n", false);
        record(&mut state, b"this one is past the limit\n", true);
        record(&mut state, b"and so is this\n", true);
        assert!(state.file.is_none());
        assert_eq!(state.tail.back().map(String::as_str), Some("and so is this"));
        let file = std::fs::read_to_string(&path).unwrap();
        assert_eq!(file, "12345678\n[handover drill: more than 256 MiB of output; the rest is not kept]\n");
    }

    #[test]
    fn the_supervisors_lines_about_upgrades_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let input = b"handover[7]: upgraded from handover 0.1.0 to 0.1.0 (pid 7, generations 1)\n\
            [gen 1 pid 9 stdout] hello: request 1\n\
            [gen 1 pid 9 stdout] hello: requests are logged\n\
            {\"line\":\"upgraded from handover 0.1.0 to 0.2.0 (pid 7, generations 1, 2)\",\"pid\":7}\n\
            handover[7]: the line above came 3 more times: upgraded from handover 0.2.0 to 0.2.0 (pid 7)\n\
            handover[7]: dropped 12 of its own log lines while the log was not read\n\
            handover[7]: restarting: upgraded from handover's point of view\n";
        let (output, _) = kept(dir.path(), input);
        // And the `--log-line` text ("hello: request"), wherever it is in a line.
        assert_eq!(output.log_lines(), LogLines { upgraded: 5, dropped: 12, matched: 2 });
    }

    #[test]
    fn kills_a_workers_last_line_and_address_in_use_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let input = b"[gen 2 pid 91 stderr] listening\n\
            worker: pid 91 gen 1 up\n\
            [gen 2 pid 912 stderr] other worker\n\
            handover[7]: old worker 90 still running 1s after it was told to stop; sending KILL to its process group\n\
            handover[7]: worker 91 exited with 1; it failed during startup. If its log says \"Address already in use\", ...\n";
        let (output, _) = kept(dir.path(), input);
        let kills = output.kills();
        assert_eq!(kills.len(), 1);
        assert_eq!((kills[0].pids.as_slice(), kills[0].after), (&[90][..], Duration::from_secs(1)));
        assert!(!output.address_in_use(), "the supervisor's hint is not the worker's word");
        assert_eq!(output.last_line_of(Some(91)).as_deref(), Some("[gen 2 pid 91 stderr] listening"));
        assert_eq!(output.last_line_of(Some(5)).as_deref(), Some("[gen 2 pid 912 stderr] other worker"));
        let (output, _) = kept(dir.path(), b"bind: Address already in use\n");
        assert!(output.address_in_use());
    }
}
