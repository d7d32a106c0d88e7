//! Control characters in captured text records, written visibly.

use std::io::Write;

/// `line` into `buf` with every control character a terminal acts on
/// written visibly: C0 but TAB, and DEL, as `\x1b`; C1 (U+0080..U+009F,
/// UTF-8 `c2 80`..`c2 9f`) as `\u{9b}`. Everything else, invalid UTF-8
/// included, goes out as it came. A worker cannot overprint its record's
/// prefix with ESC or CR sequences, nor start a line of its own.
pub(super) fn controls(line: &[u8], buf: &mut Vec<u8>) {
    let mut i = 0;
    while i < line.len() {
        let byte = line[i];
        match (byte, line.get(i + 1)) {
            (b'\t', _) => buf.push(byte),
            (0..=0x1f | 0x7f, _) => {
                let _ = write!(buf, "\\x{byte:02x}");
            }
            (0xc2, Some(&next @ 0x80..=0x9f)) => {
                let _ = write!(buf, "\\u{{{next:x}}}");
                i += 1;
            }
            _ => buf.push(byte),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::controls;

    fn escaped(line: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        controls(line, &mut buf);
        buf
    }

    #[test]
    fn terminal_controls_are_visible_and_the_rest_is_kept() {
        assert_eq!(escaped(b"\x1b[2K\rhandover[2]: ready"), b"\\x1b[2K\\x0dhandover[2]: ready");
        assert_eq!(escaped(b"a\tb\x00\x7f\x08"), b"a\tb\\x00\\x7f\\x08");
        assert_eq!(escaped("csi \u{9b}2K caf\u{e9}".as_bytes()), "csi \\u{9b}2K caf\u{e9}".as_bytes());
        assert_eq!(escaped(b"raw \xff\xc2"), b"raw \xff\xc2");
    }
}
