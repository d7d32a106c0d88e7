use super::*;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollTimeout, poll};
use nix::unistd::write;

const GUARD: Duration = Duration::from_secs(20);

fn split(chunks: &[&[u8]]) -> (Vec<(Vec<u8>, Kind)>, Splitter) {
    let mut splitter = Splitter::default();
    let mut got = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, &mut |line: &[u8], kind| got.push((line.to_vec(), kind)));
    }
    (got, splitter)
}

fn line(text: &str, kind: Kind) -> (Vec<u8>, Kind) {
    (text.as_bytes().to_vec(), kind)
}

fn label(generation: u64, pid: i32) -> Label {
    Label { generation, pid, which: Which::Stdout }
}

fn encoded(format: Format, line: &[u8], kind: Kind) -> String {
    let mut buf = Vec::new();
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_694_400_123);
    encode(format, time, Label { generation: 2, pid: 1234, which: Which::Stderr }, line, kind, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn text_records() {
    assert_eq!(encoded(Format::Text, b"the line", Kind::Line), "[gen 2 pid 1234 stderr] the line\n");
    assert_eq!(encoded(Format::Text, b"abc", Kind::Continued), "[gen 2 pid 1234 stderr continued] abc\n");
    assert_eq!(encoded(Format::Text, b"", Kind::Partial), "[gen 2 pid 1234 stderr partial] \n");
    let mut buf = Vec::new();
    encode(Format::Text, SystemTime::now(), label(1, 5), b"raw \xff\tbytes", Kind::Line, &mut buf);
    assert_eq!(buf, b"[gen 1 pid 5 stdout] raw \xff\tbytes\n", "text passes bytes through");
}

#[test]
fn json_records() {
    let time = "\"time\":\"2026-11-26T12:00:00.123Z\"";
    assert_eq!(
        encoded(Format::Json, b"say \"hi\"\\ \t\x01 caf\xc3\xa9 \xff", Kind::Line),
        format!(
            "{{{time},\"generation\":2,\"pid\":1234,\"stream\":\"stderr\",\
             \"line\":\"say \\\"hi\\\"\\\\ \\t\\u0001 café \u{fffd}\"}}\n"
        )
    );
    assert_eq!(
        encoded(Format::Json, b"abc", Kind::Partial),
        format!(
            "{{{time},\"generation\":2,\"pid\":1234,\"stream\":\"stderr\",\"line\":\"abc\",\"partial\":true}}\n"
        )
    );
    assert!(encoded(Format::Json, b"abc", Kind::Continued).ends_with(",\"continued\":true}\n"));
}

#[test]
fn lines_split_across_reads_come_out_whole() {
    let text = b"one\ntwo\r\nthree\rstill three\n\nfour";
    let bytes: Vec<&[u8]> = text.chunks(1).collect();
    let (got, mut splitter) = split(&bytes);
    let whole = split(&[text]).0;
    assert_eq!(got, whole);
    let expected = ["one", "two", "three\rstill three", ""].map(|l| line(l, Kind::Line));
    assert_eq!(got, expected, "only a \\r right before the \\n goes");
    let mut rest = Vec::new();
    splitter.flush(&mut |l: &[u8], kind| rest.push((l.to_vec(), kind)));
    assert_eq!(rest, [line("four", Kind::Partial)]);
}

#[test]
fn long_lines_come_in_pieces() {
    let long = "x".repeat(40_000) + "\n";
    let (got, _) = split(&[long.as_bytes()]);
    let sizes: Vec<(usize, Kind)> = got.iter().map(|(l, k)| (l.len(), *k)).collect();
    assert_eq!(sizes, [(MAX_PIECE, Kind::Continued), (MAX_PIECE, Kind::Continued), (7232, Kind::Line)]);

    let exact = "y".repeat(MAX_PIECE);
    for text in [format!("{exact}\n"), format!("{exact}\r\n")] {
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(MAX_PIECE).collect();
        assert_eq!(split(&bytes).0, [line(&exact, Kind::Line)], "16 KiB is one record");
    }
    let over = format!("{exact}z");
    let (got, splitter) = split(&[over.as_bytes()]);
    assert_eq!(got, [line(&exact, Kind::Continued)], "cut as soon as it is known to be too long");
    assert_eq!(splitter.pending, b"z");
}

#[test]
fn pieces_keep_utf8_characters_whole() {
    let text = "a".repeat(MAX_PIECE - 2) + "€€\n";
    let (got, _) = split(&[text.as_bytes()]);
    assert_eq!(got, [line(&"a".repeat(MAX_PIECE - 2), Kind::Continued), line("€€", Kind::Line)]);
}

#[test]
fn memory_is_bounded_without_newlines() {
    let mut splitter = Splitter::default();
    let mut pieces = 0;
    for _ in 0..64 {
        splitter.push(&[b'z'; 16_000], &mut |l: &[u8], _| pieces += l.len());
        assert!(splitter.pending.len() <= MAX_PIECE + 1);
    }
    assert_eq!(pieces + splitter.pending.len(), 64 * 16_000);
}

/// Kills and reaps the child if the test gives up on it.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(capture: &mut Capture, generation: u64, script: &str) -> Worker {
    let pipes = capture.open().unwrap();
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::from(pipes.stdout))
        .stderr(Stdio::from(pipes.stderr))
        .spawn()
        .unwrap();
    capture.attach(pipes.token, generation, child.id() as i32);
    Worker(child)
}

fn pump(capture: &mut Capture, out: &mut Vec<u8>, mut done: impl FnMut(&Capture, &[u8]) -> bool) {
    let deadline = Instant::now() + GUARD;
    loop {
        capture.service(out);
        if done(capture, out) {
            return;
        }
        let wanted = capture.poll_fds();
        assert!(!wanted.is_empty(), "nothing to poll; so far: {}", String::from_utf8_lossy(out));
        let mut fds: Vec<PollFd> = wanted.iter().map(|&(fd, ev)| PollFd::new(fd, ev)).collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = poll(&mut fds, PollTimeout::try_from(left).unwrap()).unwrap();
        assert!(ready > 0 && Instant::now() < deadline, "no progress within {GUARD:?}");
    }
}

fn all_closed(capture: &Capture, _: &[u8]) -> bool {
    capture.streams.is_empty()
}

/// Text records as (prefix without brackets, line).
fn records(out: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|l| {
            let (prefix, line) = l.strip_prefix('[').unwrap().split_once("] ").unwrap();
            (prefix.to_string(), line.to_string())
        })
        .collect()
}

#[test]
fn a_writer_that_stops_mid_line_loses_nothing() {
    let mut capture = Capture::new(Format::Text);
    let pipes = capture.open().unwrap();
    capture.attach(pipes.token, 1, 7);
    write(&pipes.stdout, b"whole\nabc").unwrap();
    write(&pipes.stderr, b"err\n").unwrap();
    drop(pipes);
    let mut out = Vec::new();
    pump(&mut capture, &mut out, all_closed);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "[gen 1 pid 7 stdout] whole\n[gen 1 pid 7 stdout partial] abc\n[gen 1 pid 7 stderr] err\n"
    );
}

#[test]
fn a_killed_worker_loses_nothing_written() {
    let mut capture = Capture::new(Format::Text);
    let mut worker = start(&mut capture, 4, "printf 'one\\ntw'; kill -9 $$");
    let mut out = Vec::new();
    pump(&mut capture, &mut out, all_closed);
    let pid = worker.0.id();
    assert_eq!(
        records(&out),
        [
            (format!("gen 4 pid {pid} stdout"), "one".into()),
            (format!("gen 4 pid {pid} stdout partial"), "tw".into())
        ]
    );
    assert!(!worker.0.wait().unwrap().success());
}

#[test]
fn workers_interleave_whole_lines_only() {
    let mut capture = Capture::new(Format::Text);
    let a = capture.open().unwrap();
    let b = capture.open().unwrap();
    capture.attach(a.token, 1, 10);
    capture.attach(b.token, 2, 20);
    let mut out = Vec::new();
    write(&a.stdout, b"a1\na2 first half").unwrap();
    write(&b.stdout, b"b1\nb2 first").unwrap();
    capture.service(&mut out);
    write(&b.stdout, b" half, second half\n").unwrap();
    write(&a.stdout, b", second half\na3\n").unwrap();
    capture.service(&mut out);
    drop((a, b));
    pump(&mut capture, &mut out, all_closed);
    let mut got = records(&out);
    got.sort();
    let expected = [
        ("gen 1 pid 10 stdout", "a1"),
        ("gen 1 pid 10 stdout", "a2 first half, second half"),
        ("gen 1 pid 10 stdout", "a3"),
        ("gen 2 pid 20 stdout", "b1"),
        ("gen 2 pid 20 stdout", "b2 first half, second half"),
    ];
    assert_eq!(got, expected.map(|(p, l)| (p.to_string(), l.to_string())));
}

#[test]
fn streams_are_read_only_once_attached() {
    let mut capture = Capture::new(Format::Text);
    let pipes = capture.open().unwrap();
    write(&pipes.stdout, b"early\n").unwrap();
    let mut out = Vec::new();
    capture.service(&mut out);
    assert!(out.is_empty() && capture.poll_fds().is_empty());
    capture.attach(pipes.token, 3, 33);
    assert_eq!(capture.poll_fds().len(), 2);
    capture.service(&mut out);
    assert_eq!(out, b"[gen 3 pid 33 stdout] early\n");

    let failed = capture.open().unwrap();
    assert_eq!(capture.streams.len(), 4);
    capture.abandon(failed.token);
    assert_eq!(capture.streams.len(), 2);
    assert_eq!(write(&failed.stdout, b"x"), Err(Errno::EPIPE), "read ends closed");
}

#[test]
fn one_call_reads_at_most_the_budget() {
    let mut capture = Capture::new(Format::Text);
    let pipes = capture.open().unwrap();
    capture.attach(pipes.token, 1, 1);
    fcntl(&pipes.stdout, FcntlArg::F_SETPIPE_SZ(1 << 20)).unwrap();
    let line = format!("{}\n", "q".repeat(99));
    let burst = line.repeat(2000);
    assert_eq!(write(&pipes.stdout, burst.as_bytes()).unwrap(), burst.len());
    let mut out = Vec::new();
    capture.service(&mut out);
    let lines = records(&out).len();
    assert_eq!(lines, READ_BUDGET / 100, "whole lines within 64 KiB");
    drop(pipes);
    pump(&mut capture, &mut out, all_closed);
    assert_eq!(records(&out).len(), 2000);
}

#[test]
fn finish_flushes_partial_lines_of_live_writers() {
    let mut capture = Capture::new(Format::Json);
    let pipes = capture.open().unwrap();
    capture.attach(pipes.token, 9, 99);
    write(&pipes.stderr, b"done\nhalf").unwrap();
    let mut out = Vec::new();
    capture.finish(&mut out);
    assert_eq!(capture.streams.len(), 0);
    let got: Vec<serde_json::Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0]["line"].as_str(), got[0]["stream"].as_str()), (Some("done"), Some("stderr")));
    assert_eq!((got[1]["line"].as_str(), got[1]["partial"].as_bool()), (Some("half"), Some(true)));
    assert_eq!((got[1]["generation"].as_u64(), got[1]["pid"].as_i64()), (Some(9), Some(99)));
    assert_eq!(write(&pipes.stdout, b"x"), Err(Errno::EPIPE), "closed");
}

#[test]
fn a_burst_of_100000_lines_arrives_once_in_order() {
    let mut capture = Capture::new(Format::Text);
    let worker = start(&mut capture, 1, "seq 1 100000");
    let mut out = Vec::new();
    pump(&mut capture, &mut out, all_closed);
    let prefix = format!("gen 1 pid {} stdout", worker.0.id());
    let got = records(&out);
    assert!(got.iter().all(|(p, _)| *p == prefix));
    let numbers: Vec<u32> = got.iter().map(|(_, l)| l.parse().unwrap()).collect();
    assert_eq!(numbers, (1..=100_000).collect::<Vec<u32>>());
}

#[test]
fn twenty_overlapping_generations_lose_and_duplicate_nothing() {
    let mut capture = Capture::new(Format::Json);
    let mut out = Vec::new();
    let mut workers = HashMap::new();
    for generation in 1..=20u64 {
        let first = (generation - 1) * 5000 + 1;
        let script = format!("seq {first} {}; echo bye >&2", first + 4999);
        let worker = start(&mut capture, generation, &script);
        workers.insert(worker.0.id() as i64, (generation, worker));
        capture.service(&mut out);
    }
    pump(&mut capture, &mut out, all_closed);
    let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut byes = 0;
    for record in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let record: serde_json::Value = serde_json::from_slice(record).unwrap();
        let generation = record["generation"].as_u64().unwrap();
        assert_eq!(workers[&record["pid"].as_i64().unwrap()].0, generation, "{record}");
        assert_eq!(record["time"].as_str().map(|t| (t.len(), t.ends_with('Z'))), Some((24, true)));
        assert!(record.get("partial").is_none() && record.get("continued").is_none());
        match record["stream"].as_str() {
            Some("stdout") => {
                seen.entry(generation).or_default().push(record["line"].as_str().unwrap().parse().unwrap())
            }
            _ => byes += 1,
        }
    }
    assert_eq!(byes, 20);
    for generation in 1..=20u64 {
        let first = (generation - 1) * 5000 + 1;
        assert_eq!(seen[&generation], (first..first + 5000).collect::<Vec<u64>>(), "generation {generation}");
    }
}

#[test]
fn a_grandchild_keeps_the_stream_open() {
    let mut capture = Capture::new(Format::Text);
    let (control_read, control_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
    let pipes = capture.open().unwrap();
    // Background jobs get /dev/null as stdin, so the control pipe goes as fd 3.
    let script = "exec 3<&0; echo parent; (read x <&3; echo \"late $x\") & exit 0";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::from(control_read))
        .stdout(Stdio::from(pipes.stdout))
        .stderr(Stdio::from(pipes.stderr))
        .spawn()
        .unwrap();
    let pid = child.id();
    capture.attach(pipes.token, 3, pid as i32);
    assert!(child.wait().unwrap().success());
    let mut out = Vec::new();
    pump(&mut capture, &mut out, |_, out| out.ends_with(b"parent\n"));
    capture.service(&mut out);
    assert_eq!(capture.streams.len(), 2, "the worker is gone, its child is not");
    write(&control_write, b"x\n").unwrap();
    drop(control_write);
    pump(&mut capture, &mut out, all_closed);
    let prefix = format!("gen 3 pid {pid} stdout");
    assert_eq!(records(&out), [(prefix.clone(), "parent".into()), (prefix, "late x".into())]);
}

/// The wiring the event loop uses: the write ends join the spawn's fd
/// plan as targets 1 and 2, and the parent drops them after the spawn.
#[test]
fn spawn_puts_the_write_ends_on_stdout_and_stderr() {
    let mut capture = Capture::new(Format::Text);
    let pipes = capture.open().unwrap();
    let command = ["sh", "-c", "echo out; echo err >&2"].map(std::ffi::OsString::from);
    let env = [("PATH".into(), std::env::var_os("PATH").unwrap_or_default())];
    let fds = [(pipes.stdout.as_raw_fd(), 1), (pipes.stderr.as_raw_fd(), 2)];
    let request = crate::sys::spawn::Request {
        command: &command,
        env: &env,
        listen_pid: false,
        dir: None,
        fds: &fds,
        credentials: None,
        contain: crate::sys::spawn::Contain::Session,
    };
    let spawned = crate::sys::spawn::spawn(&request);
    let token = pipes.token;
    drop(pipes);
    let pid = spawned.unwrap();
    capture.attach(token, 5, pid.as_raw());
    let mut out = Vec::new();
    pump(&mut capture, &mut out, all_closed);
    let _ = nix::sys::wait::waitpid(pid, None);
    let mut got = records(&out);
    got.sort();
    let prefix = |stream| format!("gen 5 pid {pid} {stream}");
    assert_eq!(got, [(prefix("stderr"), "err".into()), (prefix("stdout"), "out".into())]);
}

#[test]
fn pipes_are_close_on_exec_and_only_the_read_end_is_non_blocking() {
    let mut capture = Capture::new(Format::Text);
    let pipes = capture.open().unwrap();
    let flags = |fd: BorrowedFd| OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    let cloexec = |fd: BorrowedFd| fcntl(fd, FcntlArg::F_GETFD).unwrap() & libc::FD_CLOEXEC != 0;
    assert!(!flags(pipes.stdout.as_fd()).contains(OFlag::O_NONBLOCK));
    assert!(cloexec(pipes.stdout.as_fd()) && cloexec(pipes.stderr.as_fd()));
    for stream in &capture.streams {
        assert!(flags(stream.fd.as_fd()).contains(OFlag::O_NONBLOCK));
        assert!(cloexec(stream.fd.as_fd()));
        assert_ne!(stream.fd.as_raw_fd(), pipes.stdout.as_raw_fd());
    }
}

mod fuzz;
