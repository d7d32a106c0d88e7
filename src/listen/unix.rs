//! Unix stream sockets at a path: making room for one, creating it with
//! its owner, group and mode, and removing it again.
//!
//! - An existing file is replaced only when it is a socket nobody accepts
//!   on; anything else at the path is left alone and refused.
//! - The directory is reached by a checked walk (`state::SafeDir`): one
//!   another user could change is refused, and everything after is done
//!   relative to it.
//! - A new file is created with its mode (0777 unless asked otherwise)
//!   and gets its owner and group (when asked) without following a link,
//!   then the socket starts listening: nobody can connect before
//!   `listen`, so there is no window with the wrong mode or owner.
//! - Owners and groups are looked up at bind time, before anything is
//!   created; a number is taken as the id itself.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};
use socket2::{Domain, SockAddr, Socket, Type};

use super::{BindError, ListenSpec, Listener, UnixOptions};
use crate::error::io_text;
use crate::state::OwnedPath;
use crate::state::SafeDir;

/// Mode of a unix socket file unless `?mode=` says otherwise (start_server
/// creates it with umask 0, so anyone may connect).
const DEFAULT_UNIX_MODE: u32 = 0o777;

pub(super) fn bind_unix(
    spec: &ListenSpec,
    path: &Path,
    options: &UnixOptions,
    backlog: i32,
) -> Result<Listener, BindError> {
    let user = |name: &str| User::from_name(name).map(|user| user.map(|user| user.uid));
    let owner = options.owner.as_deref().map(|name| lookup("user", name, path, Uid::from_raw, user));
    let group = |name: &str| Group::from_name(name).map(|group| group.map(|group| group.gid));
    let group = options.group.as_deref().map(|name| lookup("group", name, path, Gid::from_raw, group));
    let (owner, group) = (owner.transpose()?, group.transpose()?);
    let io_err = |action, cause| BindError::Io { action, object: path.display().to_string(), cause };
    let (dir, name) = SafeDir::parent_of(path).map_err(|e| io_err("bind", e))?;
    let replaced_stale = clear_stale_socket(&dir, &name, path)?;
    let socket =
        Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| io_err("create a socket for", e))?;
    socket.set_reuse_address(true).map_err(|e| io_err("set SO_REUSEADDR on", e))?;
    let mode = options.mode.unwrap_or(DEFAULT_UNIX_MODE);
    let identity = dir.bind_socket(&socket, &name, mode, owner, group).map_err(|e| io_err("bind", e))?;
    // From here on the file is ours: remove it if anything else fails.
    // Nobody can connect before `listen`, so the order leaves no window.
    if let Err(e) = socket.listen(backlog) {
        let _ = dir.remove_if(&name, identity);
        return Err(io_err("listen on", e));
    }
    Ok(Listener {
        created_path: Some(OwnedPath::known(path.to_owned(), identity)),
        replaced_stale,
        ..Listener::bound(spec, socket, spec.key(0), format!("unix {}", path.display()))
    })
}

/// A user or group name, or a number taken as the id itself (as chown(1) does).
fn lookup<T>(
    what: &'static str,
    name: &str,
    path: &Path,
    from_raw: fn(u32) -> T,
    by_name: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> Result<T, BindError> {
    if let Ok(id) = name.parse() {
        return Ok(from_raw(id));
    }
    let failed = |cause| BindError::Owner { what, name: name.to_owned(), path: path.to_owned(), cause };
    match by_name(name) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(failed(None)),
        Err(e) => Err(failed(Some(e.desc().to_owned()))),
    }
}

/// Makes room for `name` in `dir`: nothing there is fine, a stale socket
/// is removed (returns true), a live socket or any other file is refused.
fn clear_stale_socket(dir: &SafeDir, name: &OsStr, path: &Path) -> Result<bool, BindError> {
    let inspect = |cause| BindError::Io { action: "inspect", object: path.display().to_string(), cause };
    let refused = |why| BindError::Refused { path: path.into(), why };
    match dir.stat(name).map_err(inspect)? {
        None => return Ok(false),
        Some(st) if st.st_mode & libc::S_IFMT != libc::S_IFSOCK => {
            return Err(refused("not a socket (remove it or choose another --path)".into()));
        }
        Some(_) => {}
    }
    let probe = |e| refused(format!("cannot tell whether a server is listening on it: {}", io_text(&e)));
    if is_live(&dir.via_fd(name)).map_err(probe)? {
        return Err(refused("a server is listening on it".into()));
    }
    dir.remove(name).map_err(|cause| BindError::Io {
        action: "remove the stale socket",
        object: path.display().to_string(),
        cause,
    })?;
    Ok(true)
}

/// Whether a server listens on the unix socket at `path`. Connects without
/// blocking (a live server with a full backlog would block a plain
/// connect). Only ECONNREFUSED proves nobody is bound there; EPROTOTYPE
/// means a live socket of another type (datagram).
pub fn is_live(path: &Path) -> io::Result<bool> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
            Errno::ECONNREFUSED | Errno::ENOENT => Ok(false),
            Errno::EAGAIN | Errno::EINPROGRESS | Errno::EPROTOTYPE => Ok(true),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::tests::{bind_all, is_stream};
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    fn listen(value: &str) -> ListenSpec {
        ListenSpec::parse_listen(value).unwrap()
    }

    #[test]
    fn creates_unix_socket_world_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = ListenSpec::parse_path(path.to_str().unwrap());
        let l = &bind_all(&[spec], 0).unwrap()[0];
        assert_eq!(l.key, path.to_str().unwrap());
        assert_eq!(l.local, format!("unix {}", path.display()));
        assert_eq!(l.created_path.as_ref().map(OwnedPath::path), Some(path.as_path()));
        assert!(!l.replaced_stale);
        assert!(is_stream(l));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        UnixStream::connect(&path).unwrap();
        l.remove_file().unwrap();
        assert!(!path.exists());
        l.remove_file().unwrap(); // already gone is fine
    }

    #[test]
    fn dropping_a_listener_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap());
        assert!(path.exists());
    }

    #[test]
    fn replaces_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        drop(UnixListener::bind(&stream).unwrap());
        drop(UnixDatagram::bind(&dgram).unwrap());
        let specs = [&stream, &dgram].map(|p| ListenSpec::parse_path(p.to_str().unwrap()));
        let listeners = bind_all(&specs, 0).unwrap();
        assert!(listeners.iter().all(|l| l.replaced_stale));
        UnixStream::connect(&stream).unwrap();
        UnixStream::connect(&dgram).unwrap();
    }

    #[test]
    fn refuses_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        let _live_stream = UnixListener::bind(&stream).unwrap();
        let _live_dgram = UnixDatagram::bind(&dgram).unwrap();
        for path in [stream, dgram] {
            let err = bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("refusing to replace {}: a server is listening on it", path.display())
            );
            assert!(path.exists());
        }
    }

    #[test]
    fn refuses_regular_files_and_leaves_them_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("important.txt");
        fs::write(&path, "keep me").unwrap();
        let err = bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to replace {}: not a socket (remove it or choose another --path)",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn unix_mode_option_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = listen(&format!("unix:{}?mode=0660", path.display()));
        let _l = bind_all(&[spec], 0).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    }

    #[test]
    fn unix_owner_and_group_are_applied() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: changing a file's owner needs root");
            return;
        }
        let nobody = User::from_name("nobody").unwrap().expect("user nobody");
        let nogroup = Group::from_name("nogroup").unwrap().expect("group nogroup");
        let dir = tempfile::tempdir().unwrap();
        let by_name = dir.path().join("named.sock");
        let by_number = dir.path().join("numbered.sock");
        let specs = [
            listen(&format!("unix:{}?owner=nobody&group=nogroup&mode=0600", by_name.display())),
            listen(&format!("unix:{}?group={}", by_number.display(), nogroup.gid)),
        ];
        let _l = bind_all(&specs, 0).unwrap();
        let meta = fs::symlink_metadata(&by_name).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody.uid.as_raw(), nogroup.gid.as_raw()));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let meta = fs::symlink_metadata(&by_number).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, nogroup.gid.as_raw()), "owner unchanged");
    }

    #[test]
    fn unknown_owner_fails_before_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.sock");
        let path = dir.path().join("s.sock");
        let specs = [
            listen(&format!("unix:{}", first.display())),
            listen(&format!("unix:{}?owner=no-such-user-x", path.display())),
        ];
        let err = bind_all(&specs, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(r#"unknown user "no-such-user-x" in --listen unix:{}"#, path.display())
        );
        assert!(!path.exists() && !first.exists(), "all or nothing");
        let spec = listen(&format!("unix:{}?group=no-such-group-x", path.display()));
        let err = bind_all(&[spec], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(r#"unknown group "no-such-group-x" in --listen unix:{}"#, path.display())
        );
    }

    /// Non-blocking connects to a unix listener that nobody accepts on,
    /// until the kernel says the backlog is full (at most `limit`).
    fn connects_until_full(path: &Path, limit: usize) -> usize {
        let mut pending = Vec::new();
        while pending.len() < limit {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            socket.set_nonblocking(true).unwrap();
            match socket.connect(&SockAddr::unix(path).unwrap()) {
                Ok(()) => pending.push(socket),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("connect: {e}"),
            }
        }
        pending.len()
    }

    #[test]
    fn a_spec_backlog_overrides_the_global_one() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.sock");
        let global = dir.path().join("global.sock");
        let specs = [
            listen(&format!("unix:{}?backlog=2", small.display())),
            listen(&format!("unix:{}", global.display())),
        ];
        let _l = bind_all(&specs, 5).unwrap();
        // Linux queues backlog + 1 connections on a unix socket.
        assert_eq!(connects_until_full(&small, 50), 3);
        assert_eq!(connects_until_full(&global, 50), 6);
    }
}
