//! The envdir: every entry whose name does not start with `.` (the first
//! `MAX_ENTRIES` by name); the value is the first line without its `\n`,
//! nothing else trimmed, at most `MAX_VALUE` bytes. Empty files, over-long
//! lines, directories, anything but a regular file, symlinks, files of a
//! user other than root or this one, files with several links and
//! unreadable entries are skipped with a warning. The envdir
//! is re-read before every spawn and applied (`overlay_env`) on top of the
//! supervisor's environment AS IT WAS AT STARTUP: removing a file restores
//! the startup value, or unsets the variable if the startup environment did
//! not have it. This differs from start_server (quirk Q8), where removal
//! restored the value the envdir had at startup.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};

use crate::error::{Error, Result, io_text, printable};
use crate::state::SafeDir;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envdir {
    /// Sorted by name.
    pub vars: Vec<(OsString, OsString)>,
    /// One line each, e.g. `envdir /x: skipping EMPTY: empty file`.
    pub warnings: Vec<String>,
}

/// The longest value read: a variable must fit in one execve string
/// (MAX_ARG_STRLEN, 128 KiB) with its name.
pub const MAX_VALUE: usize = 64 * 1024;
/// Entries read, the first by name.
pub const MAX_ENTRIES: usize = 1000;

/// Reads one envdir entry: `Ok(value)` or `Err(reason it is skipped)`.
/// The entry is opened relative to the envdir's fd, never through a
/// symlink, non-blocking (a FIFO would block), and read only when it is a
/// regular file of root or this user with one link: a file another user
/// placed or linked there would hand its content, read with this
/// process's rights, to the workers. Only its first `MAX_VALUE + 1` bytes
/// are read, whatever its size.
fn envdir_value(dir: &SafeDir, name: &OsStr) -> Result<OsString> {
    if name.as_bytes().contains(&b'=') {
        return Err(Error::runtime("a variable name cannot contain '='"));
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let fd = match openat(dir.fd(), name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(Error::runtime("a symbolic link (not followed)")),
        Err(e) => return Err(Error::runtime(io_text(&e.into()))),
    };
    let st = fstat(&fd).map_err(|e| Error::runtime(io_text(&e.into())))?;
    match st.st_mode & SFlag::S_IFMT.bits() {
        m if m == SFlag::S_IFDIR.bits() => return Err(Error::runtime("a directory")),
        m if m != SFlag::S_IFREG.bits() => return Err(Error::runtime("not a regular file")),
        _ => {}
    }
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(Error::runtime(format!("owned by uid {}, not by root or this user", st.st_uid)));
    }
    if st.st_nlink != 1 {
        return Err(Error::runtime(format!(
            "a file with {} links (another name could change it)",
            st.st_nlink
        )));
    }
    let mut bytes = Vec::new();
    File::from(fd)
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::runtime(io_text(&e)))?;
    if bytes.is_empty() {
        return Err(Error::runtime("empty file"));
    }
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) if end <= MAX_VALUE => &bytes[..end],
        None if bytes.len() <= MAX_VALUE => &bytes[..],
        _ => return Err(Error::runtime(format!("the first line is longer than {MAX_VALUE} bytes"))),
    };
    if line.contains(&0) {
        return Err(Error::runtime("the value contains a NUL byte"));
    }
    Ok(OsString::from_vec(line.to_vec()))
}

/// Reads every variable of an envdir (see the module header for the rules).
/// The directory is reached by a checked walk (`SafeDir`): one that another
/// user can change is refused.
pub fn read_envdir(dir: &Path) -> Result<Envdir> {
    let shown = printable(&dir.to_string_lossy());
    let fail = |e: io::Error| Error::usage(format!("cannot read envdir {shown}: {}", io_text(&e)));
    let safe = SafeDir::open(dir).map_err(fail)?;
    let listing =
        openat(safe.fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .and_then(nix::dir::Dir::from_fd)
            .map_err(|e| fail(e.into()))?;
    let mut names = Vec::new();
    for entry in listing {
        let name = OsStr::from_bytes(entry.map_err(|e| fail(e.into()))?.file_name().to_bytes()).to_owned();
        if !name.as_bytes().starts_with(b".") {
            names.push(name);
        }
    }
    names.sort();
    let mut envdir = Envdir::default();
    if names.len() > MAX_ENTRIES {
        names.truncate(MAX_ENTRIES);
        (envdir.warnings).push(format!(
            "envdir {shown}: more than {MAX_ENTRIES} entries; reading the first {MAX_ENTRIES} by name"
        ));
    }
    for name in names {
        match envdir_value(&safe, &name) {
            Ok(value) => envdir.vars.push((name, value)),
            Err(why) => (envdir.warnings)
                .push(format!("envdir {shown}: skipping {}: {why}", printable(&name.to_string_lossy()))),
        }
    }
    Ok(envdir)
}

/// `base` with the envdir's values replacing or added to it. Pure.
pub fn overlay_env(
    base: &[(OsString, OsString)],
    envdir: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env = base.to_vec();
    for (name, value) in envdir {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(n, v)| (n.into(), v.into())).collect()
    }

    #[test]
    fn envdir_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("FOO"), "foo1\nsecond line\n").unwrap();
        fs::write(d.join("BAR_SP"), "spaced  ").unwrap();
        fs::write(d.join("LEAD"), "  lead\t\n").unwrap();
        fs::write(d.join("BLANK_LINE"), "\nnext\n").unwrap();
        fs::write(d.join("BAR_EMPTY"), "").unwrap();
        fs::write(d.join(".hidden"), "x").unwrap();
        fs::create_dir(d.join("SUBDIR")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("BROKEN")).unwrap();
        let got = read_envdir(d).unwrap();
        assert_eq!(
            got.vars,
            os(&[("BAR_SP", "spaced  "), ("BLANK_LINE", ""), ("FOO", "foo1"), ("LEAD", "  lead\t")])
        );
        let shown = d.display();
        assert_eq!(
            got.warnings,
            vec![
                format!("envdir {shown}: skipping BAR_EMPTY: empty file"),
                format!("envdir {shown}: skipping BROKEN: a symbolic link (not followed)"),
                format!("envdir {shown}: skipping SUBDIR: a directory"),
            ]
        );
    }

    #[test]
    fn envdir_reads_a_bounded_first_line_of_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A short first line before megabytes: read without the rest.
        let mut big = b"short\n".to_vec();
        big.resize(8 << 20, b'x');
        fs::write(d.join("BIG"), &big).unwrap();
        fs::write(d.join("LONG"), vec![b'y'; MAX_VALUE + 1]).unwrap();
        fs::write(d.join("LIMIT"), vec![b'z'; MAX_VALUE]).unwrap();
        // A FIFO would block a reader for ever: skipped, not opened.
        nix::unistd::mkfifo(&d.join("FIFO"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let got = read_envdir(d).unwrap();
        let names: Vec<&OsStr> = got.vars.iter().map(|(n, _)| n.as_os_str()).collect();
        assert_eq!(names, ["BIG", "LIMIT"]);
        assert_eq!(got.vars[0].1, "short");
        assert_eq!(got.vars[1].1.len(), MAX_VALUE);
        let shown = d.display();
        assert_eq!(
            got.warnings,
            vec![
                format!("envdir {shown}: skipping FIFO: not a regular file"),
                format!("envdir {shown}: skipping LONG: the first line is longer than 65536 bytes"),
            ]
        );
    }

    #[test]
    fn envdir_reads_at_most_so_many_entries() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..MAX_ENTRIES + 3 {
            fs::write(dir.path().join(format!("V{n:05}")), "1").unwrap();
        }
        let got = read_envdir(dir.path()).unwrap();
        assert_eq!(got.vars.len(), MAX_ENTRIES);
        let shown = dir.path().display();
        let warning = format!(
            "envdir {shown}: more than {MAX_ENTRIES} entries; reading the first {MAX_ENTRIES} by name"
        );
        assert_eq!(got.warnings, vec![warning]);
    }

    /// Attack: a user who can write the envdir links another file into it
    /// (`ln -s /etc/shadow env/LEAK`), which root would read for the workers.
    #[test]
    fn envdir_reads_no_link_and_no_file_of_another_user() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let secret = dir.path().join(".secret");
        fs::write(&secret, "root:*:secret\n").unwrap();
        std::os::unix::fs::symlink(&secret, d.join("LEAK")).unwrap();
        fs::hard_link(&secret, d.join("HARD")).unwrap();
        fs::write(d.join("OK"), "fine").unwrap();
        let root = nix::unistd::geteuid().is_root();
        assert!(root || std::env::var_os("CI").is_none(), "this test needs root under CI");
        if root {
            fs::write(d.join("THEIRS"), "planted").unwrap();
            std::os::unix::fs::lchown(d.join("THEIRS"), Some(65534), Some(65534)).unwrap();
        }
        let got = read_envdir(d).unwrap();
        assert_eq!(got.vars, os(&[("OK", "fine")]));
        let shown = d.display();
        let mut want = vec![
            format!("envdir {shown}: skipping HARD: a file with 2 links (another name could change it)"),
            format!("envdir {shown}: skipping LEAK: a symbolic link (not followed)"),
        ];
        if root {
            want.push(format!(
                "envdir {shown}: skipping THEIRS: owned by uid 65534, not by root or this user"
            ));
            // A directory another user owns is not read at all.
            std::os::unix::fs::lchown(d, Some(65534), Some(65534)).unwrap();
            let e = read_envdir(d).unwrap_err();
            assert!(e.message.starts_with(&format!("cannot read envdir {shown}: ")), "{e}");
            assert!(e.message.contains("uid 65534"), "{e}");
        }
        assert_eq!(got.warnings, want);
    }

    #[test]
    fn envdir_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert_eq!(
            read_envdir(&missing).unwrap_err(),
            Error::usage(format!("cannot read envdir {}: No such file or directory", missing.display()))
        );
    }

    #[test]
    fn overlay_replaces_adds_and_keeps_order() {
        let base = os(&[("PATH", "/bin"), ("FOO", "start")]);
        assert_eq!(
            overlay_env(&base, &os(&[("FOO", "dir"), ("NEW", "1")])),
            os(&[("PATH", "/bin"), ("FOO", "dir"), ("NEW", "1")])
        );
        // A file removed from the envdir: back to the startup environment.
        assert_eq!(overlay_env(&base, &[]), base);
    }

    mod fuzz;
}
