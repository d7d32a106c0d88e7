//! Envdirs with random names and contents, as an operator (or a deploy
//! script) may leave them: no panic; every visible entry is either a
//! variable holding exactly its file's first line (at most `MAX_VALUE`
//! bytes, no NUL) or one warning line saying why it is skipped.
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

use proptest::prelude::*;

use super::*;
use crate::fuzz_tests::{config, one_line, text};

/// What the directory holds under one name.
#[derive(Clone, Debug)]
enum Entry {
    File(Vec<u8>),
    Dir,
    Fifo,
    Dangling,
}

/// A file name: mostly a variable's, sometimes anything a name can hold.
fn name() -> impl Strategy<Value = OsString> {
    let text = text(&["PATH", "A_1", ".", ".hidden", "=", "\n", "\u{e9}", " ", "-"]).prop_map(OsString::from);
    let raw = prop::collection::vec(any::<u8>(), 1..12).prop_map(OsString::from_vec);
    prop_oneof![3 => text, 1 => raw].prop_filter("a file name", |name| {
        let bytes = name.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 255
            && !bytes.contains(&b'/')
            && !bytes.contains(&0)
            && name != "."
            && name != ".."
    })
}

/// A value's first line of `len` bytes, then `rest`.
fn long_line(len: usize, rest: &[u8]) -> Vec<u8> {
    [vec![b'v'; len], rest.to_vec()].concat()
}

fn contents() -> impl Strategy<Value = Vec<u8>> {
    let limit = MAX_VALUE - 1..=MAX_VALUE + 1;
    prop_oneof![
        4 => text(&["1", "value", "\n", "\r", "\0", " ", "\t"]).prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..24),
        1 => (limit, text(&["\n", "x", "\0"])).prop_map(|(len, rest)| long_line(len, rest.as_bytes())),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let other = prop_oneof![Just(Entry::Dir), Just(Entry::Fifo), Just(Entry::Dangling)];
    prop_oneof![8 => contents().prop_map(Entry::File), 3 => other]
}

fn make(dir: &Path, entries: &BTreeMap<OsString, Entry>) {
    for (name, entry) in entries {
        let path = dir.join(name);
        match entry {
            Entry::File(bytes) => fs::write(&path, bytes).unwrap(),
            Entry::Dir => fs::create_dir(&path).unwrap(),
            Entry::Fifo => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            Entry::Dangling => std::os::unix::fs::symlink(dir.join("nowhere/at/all"), &path).unwrap(),
        }
    }
}

/// The value `read_envdir` must find in a file, if any.
fn value_of(name: &OsStr, entry: &Entry) -> Option<OsString> {
    let Entry::File(bytes) = entry else { return None };
    let line = bytes.split(|&b| b == b'\n').next()?;
    let usable = !bytes.is_empty() && line.len() <= MAX_VALUE && !line.contains(&0);
    (usable && !name.as_bytes().contains(&b'=')).then(|| OsString::from_vec(line.to_vec()))
}

fn check(entries: &BTreeMap<OsString, Entry>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), entries);
    let read = read_envdir(dir.path()).expect("the directory exists");
    let visible: Vec<_> = entries.iter().filter(|(name, _)| !name.as_bytes().starts_with(b".")).collect();
    let want: Vec<(OsString, OsString)> =
        visible.iter().filter_map(|(name, entry)| Some(((*name).clone(), value_of(name, entry)?))).collect();
    prop_assert_eq!(&read.vars, &want);
    prop_assert_eq!(read.vars.len() + read.warnings.len(), visible.len());
    let skipping = format!("envdir {}: skipping ", dir.path().display());
    for warning in &read.warnings {
        prop_assert!(one_line(warning) && warning.starts_with(&skipping), "{}", warning);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn fuzz_read_envdir(entries in prop::collection::btree_map(name(), entry(), 0..6)) {
        check(&entries)?;
    }
}

/// Found by `fuzz_read_envdir`: a file name with a newline made a warning
/// of two lines.
#[test]
fn warnings_stay_on_one_line_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("EMPTY\nLINE"), "").unwrap();
    let shown = dir.path().display();
    let want = format!(r"envdir {shown}: skipping EMPTY\nLINE: empty file");
    assert_eq!(read_envdir(dir.path()).unwrap().warnings, [want]);
}
