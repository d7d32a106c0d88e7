//! The line splitter of the control and einhorn sockets, fed as `fill`
//! feeds it: input in random chunks, read only while under `MAX_LINE`,
//! lines taken all at once or a few at a time.
//! No panic; the lines come out exactly (non-blank, without `\n` or a `\r`
//! before it, the unterminated rest at EOF) up to the first line over
//! `MAX_LINE`, which is reported; in between, what is held stays bounded.
use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{Bytes, config, text};

/// What must come out of `stream`: its lines, and whether one is too long.
fn expected(stream: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut lines = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|rest| rest.is_empty()) {
        segments.pop();
    }
    for segment in segments {
        if segment.len() > MAX_LINE {
            return (lines, true);
        }
        let line = segment.strip_suffix(b"\r").unwrap_or(segment);
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push(line.to_vec());
        }
    }
    (lines, false)
}

/// Feeds `stream` in chunks of `sizes` (cycled) as the connection does,
/// taking at most `max` lines at a time.
fn split(stream: &[u8], sizes: &[usize], max: usize) -> Result<(Vec<Vec<u8>>, bool), TestCaseError> {
    let (mut input, mut eof, mut got) = (Vec::new(), false, Vec::new());
    let (mut at, mut sizes) = (0, sizes.iter().cycle());
    loop {
        if input.len() <= MAX_LINE && !eof {
            let end = (at + sizes.next().unwrap()).min(stream.len());
            input.extend_from_slice(&stream[at..end]);
            eof = end == stream.len();
            at = end;
        }
        let (lines, too_long) = take_lines(&mut input, eof, max);
        prop_assert!(lines.len() <= max);
        let held = lines.len() == max;
        got.extend(lines);
        if too_long {
            return Ok((got, true));
        }
        if !held {
            prop_assert!(input.len() <= MAX_LINE && !input.contains(&b'\n'), "{} bytes held", input.len());
            if eof {
                prop_assert!(input.is_empty());
                return Ok((got, false));
            }
        }
    }
}

/// A piece of a peer's input, short to print when a case fails.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Raw(Bytes),
    /// `len` bytes, then `end`: a line of about `MAX_LINE` bytes.
    Long {
        len: usize,
        end: &'static str,
    },
}

fn bytes(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Long { len, end } => {
                out.resize(out.len() + len, b'x');
                out.extend_from_slice(end.as_bytes());
            }
        }
    }
    out
}

fn stream() -> impl Strategy<Value = Vec<Piece>> {
    let short = text(&["{\"command\":\"status\"}", "\n", "\r", "\r\n", " ", "\t", "x"]).prop_map(Piece::Text);
    let raw = prop::collection::vec(any::<u8>(), 0..8).prop_map(|raw| Piece::Raw(Bytes(raw)));
    let end = prop::sample::select(&["\n", "\r\n", "", "\r"][..]);
    let long = (MAX_LINE - 2..=MAX_LINE + 2, end).prop_map(|(len, end)| Piece::Long { len, end });
    prop::collection::vec(prop_oneof![8 => short, 1 => raw, 1 => long], 0..8)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn fuzz_line_splitter(
        stream in stream(),
        sizes in prop::collection::vec(1..=16 * 1024usize, 1..4),
        max in prop_oneof![Just(usize::MAX), 1..4usize],
    ) {
        let stream = bytes(&stream);
        prop_assert_eq!(split(&stream, &sizes, max)?, expected(&stream));
    }
}
