//! The one error type: a line for stderr and the exit code it ends with.
//!
//! Every layer returns `Result<T>` (this module's alias) or a typed error of
//! its own with a `From` impl here, so `?` carries a failure up to `main`,
//! which prints `handover: MESSAGE` once and exits with `code`. Success is
//! never an error: help and version are `Ok`.
//!
//! Exit codes (the README's contract): 1 runtime failure, 2 usage or
//! configuration, 126/127 the worker cannot be executed / found at the
//! first start, 128+N ended by signal N.
use std::fmt;
use std::io;

use crate::listen::{BindError, SpecError};
use crate::state::PidFileError;
use crate::sys::error::SpawnError;

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

/// A bad listener spec is a usage error.
impl From<SpecError> for Error {
    fn from(e: SpecError) -> Self {
        Error::usage(e.0)
    }
}

impl From<BindError> for Error {
    fn from(e: BindError) -> Self {
        Error::runtime(e.to_string())
    }
}

impl From<PidFileError> for Error {
    fn from(e: PidFileError) -> Self {
        Error::runtime(e.to_string())
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
    }
}
