//! What the `fuzz_*` property tests share: their configuration and the
//! strategies that make outside input.
//!
//! Every parser of input from outside (command line, environment, envdir,
//! control and notify sockets, files) has a `fuzz_*` target next to it,
//! so `cargo test fuzz_` runs them all. Each asserts that nothing panics
//! and, where it is cheap to state, the documented contract. Cases are
//! counted so that all targets together stay within seconds in a debug
//! build; a failing case is recorded under `proptest-regressions/` (next
//! to the source path of its target) and re-run first from then on.
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::FileFailurePersistence;

/// `cases` random inputs, times `FUZZ_SCALE` when it is set (a longer
/// run: `FUZZ_SCALE=100 cargo test --release fuzz_`); failures persisted
/// under `proptest-regressions/`.
pub fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("FUZZ_SCALE").ok().and_then(|scale| scale.parse().ok()).unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

/// Short fragments that parsers care about, mixed into random text.
#[rustfmt::skip]
const SHARP: &[&str] = &[
    "", " ", "\t", "\n", "\r", "\r\n", "\0", "=", ":", ";", "?", "&", "[", "]", "{", "}", "\"", "'",
    "%", "-", "+", ".", "/", "//", "0", "1", "-1", "65535", "65536", "2147483647", "4294967296",
    "18446744073709551616", "1e309", "NaN", "inf", "\u{7f}", "\u{fffd}", "é", "\u{1f600}",
];

/// Text made of `tokens`, the fragments above and arbitrary characters:
/// mostly near the grammar, sometimes far from it.
pub fn text(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => select(tokens).prop_map(str::to_owned),
        2 => select(SHARP).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[ -~]{1,4}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// Bytes that print as a byte string literal when a case fails.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Arbitrary bytes, mostly short.
pub fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes)
}

/// One change to a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, &'static str),
    Delete(Index, Index),
    Duplicate(Index, Index),
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<Index>;
    prop_oneof![
        (at(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (at(), select(SHARP)).prop_map(|(i, s)| Edit::Insert(i, s)),
        (at(), at()).prop_map(|(i, j)| Edit::Delete(i, j)),
        (at(), at()).prop_map(|(i, j)| Edit::Duplicate(i, j)),
        at().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edit: &Edit) -> Vec<u8> {
    let len = bytes.len();
    let span = |i: &Index, j: &Index| {
        let (a, b) = (i.index(len + 1), j.index(len + 1));
        (a.min(b), a.max(b))
    };
    match edit {
        Edit::Flip(_, _) if len == 0 => {}
        Edit::Flip(i, b) => bytes[i.index(len)] ^= b | 1,
        Edit::Insert(i, s) => drop(bytes.splice(i.index(len + 1)..i.index(len + 1), s.bytes())),
        Edit::Delete(i, j) => {
            let (a, b) = span(i, j);
            bytes.drain(a..b);
        }
        Edit::Duplicate(i, j) => {
            let (a, b) = span(i, j);
            let copy = bytes[a..b].to_vec();
            bytes.splice(b..b, copy);
        }
        Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
    }
    bytes
}

/// One of `valid`, changed a few times: inputs close to what a real peer sends.
pub fn mutated(valid: &'static [&'static str]) -> impl Strategy<Value = Bytes> {
    (select(valid), prop::collection::vec(edit(), 1..5))
        .prop_map(|(seed, edits)| Bytes(edits.iter().fold(seed.as_bytes().to_vec(), apply)))
}

/// `mutated`, as text (invalid UTF-8 replaced).
pub fn mutated_text(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    mutated(valid).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Mostly one of `valid`, sometimes one changed, sometimes text made of
/// `tokens`: for inputs that must get past a parser to reach the next one.
pub fn near(
    valid: &'static [&'static str],
    tokens: &'static [&'static str],
) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(valid).prop_map(str::to_owned),
        1 => mutated_text(valid),
        1 => text(tokens),
    ]
}

/// Every line of `text` is one line: no `\n`, no `\r`.
pub fn one_line(text: &str) -> bool {
    !text.contains(['\n', '\r'])
}

#[test]
fn bytes_print_as_a_literal() {
    assert_eq!(format!("{:?}", Bytes(b"a\n\xff\"".to_vec())), r#"b"a\n\xff\"""#);
}
