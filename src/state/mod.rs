//! The supervisor's files, one per module, each reached through a checked
//! directory (`dir`, `SafeDir`): the pid file (flock) in
//! `pid_file`, the status file (atomic rename) in `status_file`, the envdir
//! in `envdir`, where the private runtime directory goes in `runtime`, files it created and may remove in `owned`; each states
//! its invariants.

mod dir;
mod envdir;
mod lock_holder;
mod owned;
mod pid_file;
mod runtime;
mod status_file;

pub use dir::SafeDir;
pub use envdir::{overlay_env, read_envdir};
pub use lock_holder::{flock_holders, holds_flock};
pub use owned::OwnedPath;
pub use pid_file::{PidFile, PidFileWatch};
#[cfg(test)]
pub use pid_file::{is_locked, read_pid};
pub use runtime::runtime_dir;
pub use status_file::{StatusFile, read_status};
