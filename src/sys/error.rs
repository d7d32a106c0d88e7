//! The typed errors of `sys`, for callers that branch on their kind.
//!
//! `SpawnError` is also written in machine snapshots (the machine carries
//! it in `Failure::SpawnFailed`), by its serde names: renaming a field
//! breaks the snapshots of older handovers.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::io_text;

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

#[cfg(test)]
mod tests {
    use super::*;

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
