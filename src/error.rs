//! The one error type: a line for stderr and the exit code it ends with.
//!
//! Every layer returns `Result<T>` (this module's alias) or, where a caller
//! branches on the kind, a typed error with a `From` impl, so `?` carries a
//! failure up to `main`, which prints `handover: MESSAGE` once and exits
//! with `code`. Success is never an error: help and version are `Ok`.
//!
//! This module is the lowest layer (tests/it/layers.rs): it names no other
//! module, so a typed error of one layer has its `From` impl beside it
//! (`listen::BindError`, `state::PidFileError`). `SpawnError` lives here,
//! beside its `From` impl: `sys` makes it and the machine carries it (in
//! `Failure::SpawnFailed` and its snapshots), and neither may name the
//! other's module.
//!
//! Exit codes (the README's contract): 1 runtime failure, 2 usage or
//! configuration, 126/127 the worker cannot be executed / found at the
//! first start, 128+N ended by signal N.
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// A runtime failure.
pub const RUNTIME: u8 = 1;
/// A usage or configuration error.
pub const USAGE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub code: u8,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: u8, message: impl Into<String>) -> Error {
        Error { message: message.into(), code }
    }

    /// Exit code 1.
    pub fn runtime(message: impl Into<String>) -> Error {
        Error::new(RUNTIME, message)
    }

    /// Exit code 2: bad options or configuration.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(USAGE, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Why starting a worker failed before it could run the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnError {
    /// What failed: `exec /usr/bin/x`, `chdir /srv/app`, `fork`.
    pub what: String,
    pub errno: i32,
}

impl SpawnError {
    /// Exit code when the first generation cannot be started: 127 the
    /// program is not found and 126 it cannot be executed (as a shell
    /// says it), 71 (EX_OSERR) the system is out of a resource (fork, fds,
    /// memory): nothing is wrong with the program.
    pub fn exit_code(&self) -> i32 {
        match self.errno {
            libc::ENOENT if !self.what.starts_with("chdir") => 127,
            libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE => 71,
            _ => 126,
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "cannot {}: {}", self.what, io_text(&err))
    }
}

/// The worker cannot be run at the first start: 126 or 127, as a shell says it.
impl From<SpawnError> for Error {
    fn from(e: SpawnError) -> Self {
        Error::new(e.exit_code() as u8, e.to_string())
    }
}

/// An `io::Error` as a sentence's end: without Rust's " (os error N)".
pub fn io_text(err: &io::Error) -> String {
    let text = err.to_string();
    // std's words for a unix socket path over sun_path's 108 bytes.
    if text.contains("shorter than SUN_LEN") {
        return "the path is too long for a unix socket (at most 107 bytes): choose a shorter one"
            .to_string();
    }
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// `text` with its control characters escaped (a newline as `\n`), for a
/// value quoted in a message: whatever it holds, the message stays one line.
pub fn printable(text: &str) -> String {
    let escaped = |c: char| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() };
    text.chars().map(escaped).collect()
}

/// Turns an I/O failure into a runtime `Error` naming what was attempted:
/// `file.open().context(|| format!("cannot open {path}"))?` gives
/// `cannot open PATH: No such file or directory`.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::runtime(format!("{}: {}", what(), io_text(&e))))
    }
}

/// An `Error` named by what was attempted keeps its exit code.
impl<T> Context<T> for Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(e.code, format!("{}: {}", what(), e.message)))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::runtime(format!("{}: {}", what(), e.desc())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_text_drops_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_text(&e), "No such file or directory");
        assert_eq!(io_text(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("/srv/bob's \"app\" caf\u{e9}"), "/srv/bob's \"app\" caf\u{e9}");
        assert_eq!(printable("a\nb\r\t\u{7f}\0"), r"a\nb\r\t\u{7f}\0");
    }

    #[test]
    fn context_names_the_attempt() {
        let failed: io::Result<()> = Err(io::Error::from_raw_os_error(libc::EACCES));
        let err = failed.context(|| "cannot open /x".to_string()).unwrap_err();
        assert_eq!(err, Error::runtime("cannot open /x: Permission denied"));
        let failed: nix::Result<()> = Err(nix::errno::Errno::EBADF);
        assert_eq!(failed.context(|| "cannot poll".into()).unwrap_err().code, RUNTIME);
        let failed: Result<()> = Err(Error::usage("no such user"));
        assert_eq!(failed.context(|| "cannot chown".into()), Err(Error::usage("cannot chown: no such user")));
    }

    #[test]
    fn spawn_errors_map_to_shell_exit_codes() {
        let missing = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
        assert_eq!(missing.exit_code(), 127);
        let denied = SpawnError { what: "exec /etc/passwd".into(), errno: libc::EACCES };
        assert_eq!(denied.exit_code(), 126);
        let no_dir = SpawnError { what: "chdir /nope".into(), errno: libc::ENOENT };
        let no_fork = SpawnError { what: "fork".into(), errno: libc::EAGAIN };
        assert_eq!(no_fork.exit_code(), 71);
        let no_fds = SpawnError { what: "place the listening sockets".into(), errno: libc::EMFILE };
        assert_eq!(no_fds.exit_code(), 71);
        assert_eq!(no_dir.exit_code(), 126);
    }

    #[test]
    fn spawn_errors_name_what_failed() {
        let missing = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
        assert_eq!(missing.to_string(), "cannot exec /nope: No such file or directory");
    }
}
