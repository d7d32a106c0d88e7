//! `handover drill ARGS...`: the drill is a program of its own,
//! `handover-drill`, looked for in the directory of the running handover
//! (not on PATH: the drill and the supervisor it runs are one build) and
//! executed there with the same ARGS, in this process. The drill runs the
//! `handover` in its own directory the same way.
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result, io_text};

/// The drill's program, next to handover's.
pub const DRILL: &str = "handover-drill";
/// The supervisor's program, next to the drill's.
pub const HANDOVER: &str = "handover";
/// A program of the pair is missing, as a shell says "not found".
pub const NOT_FOUND: u8 = 127;
/// A program of the pair is there but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;

/// `name` in the directory of the running program (`/proc/self/exe`).
pub fn beside_this_program(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::runtime(format!("cannot find this program's own path: {}", io_text(&e))))?;
    Ok(exe.with_file_name(name))
}

/// The error for `path`, a program of the pair that `Command` could not run.
pub fn missing(path: &Path, error: &std::io::Error) -> Error {
    let shown = path.display();
    if error.kind() == ErrorKind::NotFound {
        let build = if path.ends_with(DRILL) { "--bin handover-drill" } else { "--bins" };
        return Error::new(
            NOT_FOUND,
            format!(
                "{shown} not found: handover and handover-drill are installed side by side \
                 (reinstall the package, or build both: cargo build {build})"
            ),
        );
    }
    Error::new(NOT_EXECUTABLE, format!("cannot execute {shown}: {}", io_text(error)))
}

/// Executes the drill with `args` (those after the word `drill`); returns
/// only when that fails.
pub fn exec(args: Vec<OsString>) -> Result<u8> {
    let path = beside_this_program(DRILL)?;
    let error = Command::new(&path).args(args).exec();
    Err(missing(&path, &error))
}
