//! Worker output in random chunks through the splitter, then each record
//! encoded: no panic; records hold no `\n` and at most `MAX_PIECE` bytes,
//! pieces of valid UTF-8 stay valid, `pending` stays bounded, and the
//! records put together give back the input's lines exactly; every
//! encoded record is one line that says what it holds, its control
//! characters written visibly.
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::*;
use crate::fuzz_tests::{Bytes, config, text};

/// Lines that come out of `stream`: whole, without `\n` and a `\r` before
/// it, and the unterminated rest.
fn expected(stream: &[u8]) -> Vec<(Vec<u8>, Kind)> {
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let rest = segments.pop().unwrap_or_default();
    let mut lines: Vec<_> = segments.into_iter().map(|line| (strip_cr(line).to_vec(), Kind::Line)).collect();
    lines.extend((!rest.is_empty()).then(|| (rest.to_vec(), Kind::Partial)));
    lines
}

/// Records put back together: each piece joined to the line it continues.
fn reassembled(records: &[(Vec<u8>, Kind)]) -> Result<Vec<(Vec<u8>, Kind)>, TestCaseError> {
    let (mut lines, mut pieces) = (Vec::new(), Vec::new());
    for (record, kind) in records {
        pieces.extend_from_slice(record);
        if *kind != Kind::Continued {
            lines.push((std::mem::take(&mut pieces), *kind));
        }
    }
    prop_assert!(pieces.is_empty(), "a continued line never ended");
    Ok(lines)
}

fn check(stream: &[u8], sizes: &[usize]) -> Result<(), TestCaseError> {
    let mut splitter = Splitter::default();
    let mut records = Vec::new();
    let mut sizes = sizes.iter().cycle();
    let mut at = 0;
    while at < stream.len() {
        let end = (at + sizes.next().unwrap()).min(stream.len());
        splitter.push(&stream[at..end], &mut |line: &[u8], kind| records.push((line.to_vec(), kind)));
        at = end;
        let pending = &splitter.pending;
        let bounded =
            pending.len() <= MAX_PIECE || (pending.len() == MAX_PIECE + 1 && pending.ends_with(b"\r"));
        prop_assert!(bounded && !pending.contains(&b'\n'), "{} bytes pending", pending.len());
    }
    splitter.flush(&mut |line: &[u8], kind| records.push((line.to_vec(), kind)));
    let utf8 = std::str::from_utf8(stream).is_ok();
    for (record, kind) in &records {
        prop_assert!(
            record.len() <= MAX_PIECE && !record.contains(&b'\n'),
            "{} bytes, {:?}",
            record.len(),
            kind
        );
        prop_assert!(*kind != Kind::Continued || record.len() >= MAX_PIECE - 3);
        prop_assert!(!utf8 || std::str::from_utf8(record).is_ok(), "a character was cut");
    }
    prop_assert_eq!(reassembled(&records)?, expected(stream));
    for (record, kind) in records.iter().take(8) {
        check_encoded(record, *kind)?;
    }
    Ok(())
}

/// The record in both formats: one line, with the label, the marker and the line.
fn check_encoded(line: &[u8], kind: Kind) -> Result<(), TestCaseError> {
    let label = Label { generation: u64::MAX, pid: -1, which: Which::Stderr };
    let mut buf = Vec::new();
    encode(Format::Text, SystemTime::UNIX_EPOCH, label, line, kind, &mut buf);
    let marker = [(Kind::Line, ""), (Kind::Continued, " continued"), (Kind::Partial, " partial")];
    let marker = marker.iter().find(|(k, _)| *k == kind).unwrap().1;
    let prefix = format!("[gen {} pid -1 stderr{marker}] ", u64::MAX);
    let mut escaped = Vec::new();
    super::super::escape::controls(line, &mut escaped);
    prop_assert_eq!(&buf, &[prefix.as_bytes(), &escaped, b"\n"].concat());
    // No control character a terminal acts on but the final `\n`.
    let controls = buf[..buf.len() - 1].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f);
    prop_assert!(!controls && !buf.windows(2).any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])));
    encode(Format::Json, SystemTime::now(), label, line, kind, &mut buf);
    prop_assert_eq!(buf.iter().position(|&b| b == b'\n'), Some(buf.len() - 1));
    let record: Value = serde_json::from_slice(&buf).expect("a JSON record");
    prop_assert_eq!(record["line"].as_str(), Some(&*String::from_utf8_lossy(line)));
    prop_assert_eq!(record["generation"].as_u64(), Some(u64::MAX));
    prop_assert_eq!(record["partial"].as_bool(), (kind == Kind::Partial).then_some(true));
    prop_assert_eq!(record["continued"].as_bool(), (kind == Kind::Continued).then_some(true));
    Ok(())
}

/// A piece of a worker's output, short to print when a case fails.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Raw(Bytes),
    /// `fill` repeated to `len` bytes, then `tail`: a line whose end falls
    /// near a cut (multi-byte characters, `\r`, invalid bytes).
    Long {
        fill: &'static str,
        len: usize,
        tail: &'static str,
        raw: bool,
    },
}

fn bytes(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Long { fill, len, tail, raw } => {
                out.extend(fill.bytes().cycle().take(*len));
                out.extend_from_slice(if *raw { b"\xff" } else { tail.as_bytes() });
            }
        }
    }
    out
}

fn long_line() -> impl Strategy<Value = Piece> {
    let tail = select(&["\u{1f600}\u{1f600}", "\u{e9}", "\r", "\r\n", "\n", "\u{e9}\r\n", "\u{1f600}"][..]);
    let fill = select(&["a", "\u{e9}", "\u{1f600}", "ab"][..]);
    let off = prop_oneof![-1..=1isize, -6..6isize];
    (1..3usize, off, fill, tail, any::<bool>()).prop_map(|(n, off, fill, tail, raw)| {
        let len = (n * MAX_PIECE).saturating_add_signed(off);
        Piece::Long { fill, len, tail, raw }
    })
}

fn stream() -> impl Strategy<Value = Vec<Piece>> {
    let short = text(&["\n", "\r", "\r\n", "say", "\u{e9}", "\t"]).prop_map(Piece::Text);
    let raw = prop::collection::vec(any::<u8>(), 0..8).prop_map(|raw| Piece::Raw(Bytes(raw)));
    prop::collection::vec(prop_oneof![6 => short, 2 => raw, 2 => long_line()], 0..8)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn fuzz_capture_splitter(stream in stream(), sizes in prop::collection::vec(1..=READ_BUDGET, 1..4)) {
        check(&bytes(&stream), &sizes)?;
    }

    #[test]
    fn fuzz_capture_small_reads(stream in stream(), sizes in prop::collection::vec(1..64usize, 1..4)) {
        check(&bytes(&stream), &sizes)?;
    }
}

/// Found by `fuzz_capture_small_reads`: a stream ending in a line of
/// `MAX_PIECE` bytes and a `\r` its `\n` never followed gave a partial
/// record one byte longer than `MAX_PIECE`.
#[test]
fn a_last_line_ending_in_cr_is_cut_like_any_other() {
    let line = [vec![b'a'; MAX_PIECE], b"\r".to_vec()].concat();
    let (mut got, mut splitter) = split(&[&line]);
    assert!(got.is_empty(), "the \\r may still be followed by \\n");
    splitter.flush(&mut |line: &[u8], kind| got.push((line.to_vec(), kind)));
    assert_eq!(got, [(vec![b'a'; MAX_PIECE], Kind::Continued), (b"\r".to_vec(), Kind::Partial)]);
}
