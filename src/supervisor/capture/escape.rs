//! Control characters in captured text records, written visibly.

use std::io::Write;

/// `line` into `buf` with every control character a terminal acts on
/// written visibly: C0 but TAB, and DEL, as `\x1b`; C1 (U+0080..U+009F)
/// and the characters that reorder or break a line on display (bidi
/// embeddings, overrides and isolates U+202A..U+202E, U+2066..U+2069; the
/// line and paragraph separators U+2028, U+2029) as `\u{9b}`; a byte
/// 0x80..0x9F outside valid UTF-8 (C1 to an 8-bit terminal) as `\x9b`.
/// Everything else, other invalid UTF-8 included, goes out as it came. A
/// worker cannot overprint its record's prefix, reorder it, nor start a
/// line of its own.
pub(super) fn controls(line: &[u8], buf: &mut Vec<u8>) {
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => buf.push(b'\t'),
                '\0'..='\x1f' | '\x7f' => {
                    let _ = write!(buf, "\\x{:02x}", c as u32);
                }
                '\u{80}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}' => {
                    let _ = write!(buf, "\\u{{{:x}}}", c as u32);
                }
                c => buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        for &byte in chunk.invalid() {
            match byte {
                0x80..=0x9f => {
                    let _ = write!(buf, "\\x{byte:02x}");
                }
                _ => buf.push(byte),
            }
        }
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
        assert_eq!(escaped(b"8-bit csi \x9b2K latin \xe9"), b"8-bit csi \\x9b2K latin \xe9");
        assert_eq!(escaped("\u{202e}gnp.exe \u{2028}x".as_bytes()), b"\\u{202e}gnp.exe \\u{2028}x");
    }
}
