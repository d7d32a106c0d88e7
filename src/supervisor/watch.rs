//! `--watch PATH`: restart when the worker's files change (development).
//!
//! The notify crate's watcher runs its own thread; its callback only sets a
//! flag and writes a byte to a socket the poll loop watches, like a signal
//! handler. Debouncing is the state machine's (`Input::Changed` arms a
//! deadline that each further change pushes back), so a rebuild that
//! writes many files restarts once, after it is done.
//!
//! A directory is watched recursively; a file is watched through its
//! parent directory, so a file that is replaced (a rebuilt binary, an
//! editor's save by rename) keeps being watched. Editors' temporary files
//! (`*~`, `*.swp`, `.#*`, `#*#`, vim's `4913`) never count.
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::error::{Error, Result};

pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    wake: UnixStream,
    changed: Arc<AtomicBool>,
}

/// A change of this path counts (it is not an editor's scratch file).
pub fn counts(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return true };
    let scratch = name.ends_with('~')
        || [".swp", ".swx", ".swo"].iter().any(|ext| name.ends_with(ext))
        || name.starts_with(".#")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name == "4913";
    !scratch
}

impl Watcher {
    pub fn new(paths: &[PathBuf]) -> Result<Watcher> {
        let (wake, waker) = UnixStream::pair().map_err(|e| Error::runtime(e.to_string()))?;
        wake.set_nonblocking(true).map_err(|e| Error::runtime(e.to_string()))?;
        waker.set_nonblocking(true).map_err(|e| Error::runtime(e.to_string()))?;
        let changed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&changed);
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
            paths.iter().map(|p| absolute(p)).partition(|p| p.is_dir());
        let relevant =
            move |p: &PathBuf| counts(p) && (files.contains(p) || dirs.iter().any(|d| p.starts_with(d)));
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !matches!(event.kind, EventKind::Access(_)) && event.paths.iter().any(&relevant) {
                flag.store(true, Ordering::SeqCst);
                let _ = (&waker).write(&[1]);
            }
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(|e| Error::runtime(e.to_string()))?;
        for path in paths {
            let (target, mode) = if path.is_dir() {
                (path.clone(), RecursiveMode::Recursive)
            } else {
                let parent =
                    absolute(path).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
                (parent, RecursiveMode::NonRecursive)
            };
            watcher.watch(&target, mode).map_err(|e| {
                Error::runtime(format!("cannot watch {} (--watch {}): {e}", target.display(), path.display()))
            })?;
        }
        Ok(Watcher { _watcher: watcher, wake, changed })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Whether anything changed since the last call.
    pub fn drain(&mut self) -> bool {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        self.changed.swap(false, Ordering::SeqCst)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_scratch_files_do_not_count() {
        for name in ["app.rs~", ".app.rs.swp", ".#app.rs", "#app.rs#", "4913", "x.swx"] {
            assert!(!counts(Path::new(name)), "{name}");
        }
        for name in ["app", "main.rs", "config.toml", "#", "a#"] {
            assert!(counts(Path::new(name)), "{name}");
        }
    }
}
