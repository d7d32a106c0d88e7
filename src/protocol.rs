//! Wire formats of the environment handed to a worker.
//!
//! Every fd-passing protocol handover speaks is encoded here, as pure
//! functions over already-placed fds, with every variable name as a
//! constant. No I/O happens in this module.
//!
//! Invariants:
//! - `SERVER_STARTER_PORT` and `EINHORN_FD_COUNT` are always set, even
//!   with no listeners (empty value, count 0), so workers can tell that
//!   they run under a supervisor.
//! - `LISTEN_FDS`/`LISTEN_FDNAMES` are set only when the listeners sit at
//!   exactly 3, 4, ... in order: systemd's protocol cannot say anything
//!   else. `LISTEN_PID` is never produced here: it must be the worker's own
//!   pid, so the spawn module writes it after fork.
//! - Keys and names are written as given, without escaping: a unix path
//!   containing `;` or `=` breaks `SERVER_STARTER_PORT`, as in start_server.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub const SERVER_STARTER_PORT: &str = "SERVER_STARTER_PORT";
pub const SERVER_STARTER_GENERATION: &str = "SERVER_STARTER_GENERATION";
pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_PID: &str = "LISTEN_PID";
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
pub const EINHORN_CHILD_INDEX: &str = "EINHORN_CHILD_INDEX";
pub const HANDOVER_WORKER_INDEX: &str = "HANDOVER_WORKER_INDEX";
pub const EINHORN_FD_COUNT: &str = "EINHORN_FD_COUNT";
/// Followed by the listener's index: `EINHORN_FD_0`, `EINHORN_FD_1`, ...
pub const EINHORN_FD_PREFIX: &str = "EINHORN_FD_";
pub const EINHORN_SOCK_PATH: &str = "EINHORN_SOCK_PATH";
pub const EINHORN_SOCK_FD: &str = "EINHORN_SOCK_FD";
pub const EINHORN_MASTER_PID: &str = "EINHORN_MASTER_PID";
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";
pub const ENVDIR: &str = "ENVDIR";
pub const ENABLE_AUTO_RESTART: &str = "ENABLE_AUTO_RESTART";
pub const AUTO_RESTART_INTERVAL: &str = "AUTO_RESTART_INTERVAL";
pub const KILL_OLD_DELAY: &str = "KILL_OLD_DELAY";

/// The first fd of systemd socket activation (`SD_LISTEN_FDS_START`).
pub const FIRST_LISTEN_FD: i32 = 3;
/// systemd's name for a passed fd that has none.
pub const UNNAMED_FD: &str = "unknown";

/// One listener as the worker sees it, in command-line order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    /// The `SERVER_STARTER_PORT` key (`8080`, `host:8080`, `[::1]:8080`, a path).
    pub key: &'a str,
    /// The LISTEN_FDNAMES entry, `unknown` when `None`.
    pub name: Option<&'a str>,
    /// The fd number in the worker.
    pub fd: i32,
}

/// The listener variables for a worker, in a stable order:
/// Where einhorn-speaking workers send `worker:ack`; they check that the
/// master pid is their parent before they do.
pub fn einhorn_env(socket: &str, master_pid: u32) -> Vec<(String, String)> {
    vec![(EINHORN_SOCK_PATH.into(), socket.into()), (EINHORN_MASTER_PID.into(), master_pid.to_string())]
}

/// Which of the generation's `--workers` this one is (0-based), in
/// einhorn's variable and handover's own.
pub fn worker_index_env(index: usize) -> Vec<(String, String)> {
    [EINHORN_CHILD_INDEX, HANDOVER_WORKER_INDEX]
        .iter()
        .map(|name| (name.to_string(), index.to_string()))
        .collect()
}

/// `SERVER_STARTER_PORT`, then `LISTEN_FDS` and `LISTEN_FDNAMES` when
/// systemd's protocol applies, then `EINHORN_FD_COUNT` and `EINHORN_FD_n`.
pub fn listener_env(slots: &[Slot]) -> Vec<(String, String)> {
    let server_starter = slots.iter().map(|s| format!("{}={}", s.key, s.fd)).collect::<Vec<_>>().join(";");
    let mut env = vec![(SERVER_STARTER_PORT.to_owned(), server_starter)];
    if speaks_systemd(slots) {
        let names = slots.iter().map(|s| s.name.unwrap_or(UNNAMED_FD)).collect::<Vec<_>>().join(":");
        env.push((LISTEN_FDS.to_owned(), slots.len().to_string()));
        env.push((LISTEN_FDNAMES.to_owned(), names));
    }
    env.push((EINHORN_FD_COUNT.to_owned(), slots.len().to_string()));
    for (index, slot) in slots.iter().enumerate() {
        env.push((format!("{EINHORN_FD_PREFIX}{index}"), slot.fd.to_string()));
    }
    env
}

/// Whether the slots can be announced with systemd socket activation: at
/// least one, at fds 3, 4, ... in order. The spawn module sets
/// `LISTEN_PID` exactly when this holds.
pub fn speaks_systemd(slots: &[Slot]) -> bool {
    !slots.is_empty() && (FIRST_LISTEN_FD..).zip(slots).all(|(expected, slot)| slot.fd == expected)
}

pub fn generation_env(generation: u64) -> (&'static str, String) {
    (SERVER_STARTER_GENERATION, generation.to_string())
}

/// Variables a worker must never inherit from the supervisor's own
/// environment: handover re-defines them for the worker (or deliberately
/// leaves them out), or they belong to the supervisor's own manager.
pub fn is_supervisor_private(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let fixed = [
        LISTEN_FDS,
        LISTEN_PID,
        LISTEN_FDNAMES,
        NOTIFY_SOCKET,
        WATCHDOG_USEC,
        WATCHDOG_PID,
        EINHORN_FD_COUNT,
        EINHORN_SOCK_PATH,
        EINHORN_SOCK_FD,
        EINHORN_MASTER_PID,
    ];
    let einhorn_fd = name
        .strip_prefix(EINHORN_FD_PREFIX.as_bytes())
        .is_some_and(|index| !index.is_empty() && index.iter().all(u8::is_ascii_digit));
    einhorn_fd || fixed.iter().any(|v| v.as_bytes() == name)
}

/// Places listeners on worker fds: a pinned listener gets its pin, the
/// others get 3, 4, 5, ... in order, skipping every pinned number.
pub fn place(pins: &[Option<i32>]) -> Result<Vec<i32>, String> {
    let mut pinned = HashSet::new();
    for &fd in pins.iter().flatten() {
        if fd < 0 {
            return Err(format!("cannot pin a listener to fd {fd}"));
        }
        if !pinned.insert(fd) {
            return Err(format!("two listeners are pinned to fd {fd} (check the =FD suffixes)"));
        }
    }
    let mut free = (FIRST_LISTEN_FD..).filter(|fd| !pinned.contains(fd));
    Ok(pins.iter().map(|pin| pin.unwrap_or_else(|| free.next().expect("fd numbers are unbounded"))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &'static str, fd: i32) -> Slot<'static> {
        Slot { key, name: None, fd }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tcp_ipv6_and_unix_from_fd_3() {
        let slots = [slot("127.0.0.1:18010", 3), slot("[::1]:18011", 4), slot("/tmp/s.sock", 5)];
        assert_eq!(
            listener_env(&slots),
            env(&[
                ("SERVER_STARTER_PORT", "127.0.0.1:18010=3;[::1]:18011=4;/tmp/s.sock=5"),
                ("LISTEN_FDS", "3"),
                ("LISTEN_FDNAMES", "unknown:unknown:unknown"),
                ("EINHORN_FD_COUNT", "3"),
                ("EINHORN_FD_0", "3"),
                ("EINHORN_FD_1", "4"),
                ("EINHORN_FD_2", "5"),
            ])
        );
    }

    #[test]
    fn no_listeners_still_announces_the_supervisor() {
        assert_eq!(listener_env(&[]), env(&[("SERVER_STARTER_PORT", ""), ("EINHORN_FD_COUNT", "0")]));
        assert!(!speaks_systemd(&[]));
    }

    #[test]
    fn single_bare_port() {
        assert_eq!(
            listener_env(&[slot("8080", 3)]),
            env(&[
                ("SERVER_STARTER_PORT", "8080=3"),
                ("LISTEN_FDS", "1"),
                ("LISTEN_FDNAMES", "unknown"),
                ("EINHORN_FD_COUNT", "1"),
                ("EINHORN_FD_0", "3"),
            ])
        );
    }

    #[test]
    fn names_fill_listen_fdnames() {
        let slots = [
            Slot { key: "8080", name: Some("http"), fd: 3 },
            slot("8443", 4),
            Slot { key: "/run/app.sock", name: Some("admin"), fd: 5 },
        ];
        let vars = listener_env(&slots);
        assert!(vars.contains(&("LISTEN_FDNAMES".into(), "http:unknown:admin".into())));
        assert!(vars.contains(&("SERVER_STARTER_PORT".into(), "8080=3;8443=4;/run/app.sock=5".into())));
    }

    #[test]
    fn pinned_layouts_skip_systemd_unless_contiguous_from_3() {
        // `18034=9`, then an unpinned listener at 3: not expressible for systemd.
        let slots = [slot("18034", 9), slot("127.0.0.1:18035", 3)];
        assert_eq!(
            listener_env(&slots),
            env(&[
                ("SERVER_STARTER_PORT", "18034=9;127.0.0.1:18035=3"),
                ("EINHORN_FD_COUNT", "2"),
                ("EINHORN_FD_0", "9"),
                ("EINHORN_FD_1", "3"),
            ])
        );
        // Pinned to stdin.
        let stdin = [slot("127.0.0.1:18035", 0)];
        assert_eq!(
            listener_env(&stdin),
            env(&[
                ("SERVER_STARTER_PORT", "127.0.0.1:18035=0"),
                ("EINHORN_FD_COUNT", "1"),
                ("EINHORN_FD_0", "0"),
            ])
        );
        // Out of order, or a gap.
        assert!(!speaks_systemd(&[slot("a", 4), slot("b", 3)]));
        assert!(!speaks_systemd(&[slot("a", 3), slot("b", 5)]));
        // Pins that happen to be 3, 4 in order are fine.
        assert!(speaks_systemd(&[slot("a", 3), slot("b", 4)]));
    }

    #[test]
    fn generation() {
        assert_eq!(generation_env(1), ("SERVER_STARTER_GENERATION", "1".to_owned()));
        assert_eq!(generation_env(42), ("SERVER_STARTER_GENERATION", "42".to_owned()));
    }

    #[test]
    fn supervisor_private_variables() {
        let private = [
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "EINHORN_FD_COUNT",
            "EINHORN_FD_0",
            "EINHORN_FD_17",
        ];
        for name in private {
            assert!(is_supervisor_private(OsStr::new(name)), "{name}");
        }
        let inherited = [
            "PATH",
            "SERVER_STARTER_PORT",
            "SERVER_STARTER_GENERATION",
            "ENVDIR",
            "KILL_OLD_DELAY",
            "EINHORN_FD_",
            "EINHORN_FD_X",
            "EINHORN_FD_1a",
            "LISTEN_FDS_EXTRA",
            "listen_fds",
        ];
        for name in inherited {
            assert!(!is_supervisor_private(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn placement() {
        assert_eq!(place(&[]), Ok(vec![]));
        assert_eq!(place(&[None, None, None]), Ok(vec![3, 4, 5]));
        assert_eq!(place(&[Some(9), None]), Ok(vec![9, 3]));
        assert_eq!(place(&[None, Some(3), None]), Ok(vec![4, 3, 5]));
        assert_eq!(place(&[None, None, Some(4)]), Ok(vec![3, 5, 4]));
        assert_eq!(place(&[Some(0), None]), Ok(vec![0, 3]));
        assert_eq!(place(&[Some(3), Some(4)]), Ok(vec![3, 4]));
    }

    #[test]
    fn placement_errors() {
        assert_eq!(
            place(&[Some(5), None, Some(5)]),
            Err("two listeners are pinned to fd 5 (check the =FD suffixes)".to_owned())
        );
        assert_eq!(place(&[Some(-1)]), Err("cannot pin a listener to fd -1".to_owned()));
    }
}
