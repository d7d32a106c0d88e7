//! The probe: a worker that reports, as one JSON line, exactly what it
//! inherited from its supervisor: environment, fds, signal mask and
//! dispositions, process ids, cwd, argv.
//!
//! It is the check that the supervisor encodes the hand-off correctly, so it
//! shares no code with `src/` nor with `support/`: it decodes the variables
//! itself and inspects every fd through `/proc` without adopting any (no
//! `unsafe`). Sockets are described from `/proc/net/{tcp,tcp6,udp,udp6,unix}`
//! (matched by inode), close-on-exec from `/proc/self/fdinfo/N`.
//!
//! Order: everything is read first; then, last, the `listenfd` crate is
//! asked to take the systemd fds (it marks them close-on-exec and unsets
//! `LISTEN_FDS`/`LISTEN_PID`, hence last; the sockets it returns stay open
//! until exit); then the SIGTERM handler is installed; then the JSON line is
//! printed on stdout (and, with `--out FILE`, written to FILE.tmp and renamed
//! to FILE); then `--notify` sends READY=1. Unless `--exit`, it waits for
//! SIGTERM or SIGINT and exits 0 (so a supervisor does not respawn it);
//! HUP, USR1, USR2, QUIT, WINCH, TTIN and TTOU are noted on stderr.
//!
//! Limits, because the Rust runtime acts before `main`:
//! - SIGPIPE is always ignored by then: bit 0x1000 of `sig_ignored` says
//!   nothing about what the supervisor passed down; every other bit does.
//! - fds 0, 1 and 2, if closed, were reopened on `/dev/null`.
//!
//! `null` means "variable absent". Run: `handover --port 0 --
//! target/debug/examples/probe --out /tmp/probe.json`.
use std::collections::{BTreeMap, HashMap};
use std::env;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;
use signal_hook::consts::signal::{
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::Signals;

#[derive(Parser)]
#[command(name = "probe", about = "Report what a supervisor handed down, as one JSON line")]
struct Opts {
    /// Also write the JSON line to FILE (atomically: FILE.tmp, then rename).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 0 right after reporting instead of waiting for SIGTERM.
    #[arg(long)]
    exit: bool,
    /// Also report this environment variable (repeatable).
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// Send READY=1 to $NOTIFY_SOCKET after reporting.
    #[arg(long)]
    notify: bool,
    /// Ignored (repeatable): its VALUE shows up in `argv`, so a test can see
    /// what the supervisor did to an argument (`{fd}` placeholders).
    #[arg(long = "tag", value_name = "VALUE")]
    _tag: Vec<String>,
}

/// Always reported in `env`, with `--env` names added.
const ENV_SELECTED: [&str; 5] =
    ["SERVER_STARTER_GENERATION", "ENVDIR", "ENABLE_AUTO_RESTART", "AUTO_RESTART_INTERVAL", "KILL_OLD_DELAY"];

#[derive(Serialize)]
struct Report {
    pid: u32,
    ppid: i32,
    pgid: i32,
    generation: Option<String>,
    cwd: Option<String>,
    argv: Vec<String>,
    server_starter_port: Option<String>,
    server_starter: Option<Vec<PortEntry>>,
    listen_fds: Option<String>,
    listen_pid: Option<String>,
    listen_pid_matches: bool,
    listen_fdnames: Option<Vec<String>>,
    listenfd_ok: Option<bool>,
    einhorn: Option<Vec<Option<i32>>>,
    notify_socket: Option<String>,
    fds: Vec<FdReport>,
    sig_blocked: Option<String>,
    sig_ignored: Option<String>,
    env: BTreeMap<String, Option<String>>,
}

#[derive(Serialize)]
struct PortEntry {
    key: String,
    /// `null` when the text after the last `=` is not a number.
    fd: Option<i32>,
}

#[derive(Serialize)]
struct FdReport {
    fd: i32,
    target: String,
    cloexec: Option<bool>,
    socket: Option<SocketReport>,
}

#[derive(Clone, Serialize)]
struct SocketReport {
    /// `inet`, `inet6`, `unix`, or `unknown` (not in the tables read).
    family: &'static str,
    /// `stream`, `dgram`, `seqpacket`, or `null` when unknown.
    r#type: Option<&'static str>,
    /// `127.0.0.1:8080`, `[::1]:8080`, a path, `@abstract`, `""` (unnamed).
    local: Option<String>,
    listening: bool,
}

fn main() {
    let opts = Opts::parse();
    let pid = std::process::id();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let status_field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim().to_string())
    };
    let var = |name: &str| env::var_os(name).map(|v| v.to_string_lossy().into_owned());

    let listen_fds = var("LISTEN_FDS");
    let listen_pid = var("LISTEN_PID");
    let mut env_report = BTreeMap::new();
    for name in ENV_SELECTED.iter().copied().chain(opts.env.iter().map(String::as_str)) {
        env_report.insert(name.to_string(), var(name));
    }
    let server_starter_port = var("SERVER_STARTER_PORT");
    let mut report = Report {
        pid,
        ppid: nix::unistd::getppid().as_raw(),
        pgid: nix::unistd::getpgrp().as_raw(),
        generation: var("SERVER_STARTER_GENERATION"),
        cwd: env::current_dir().ok().map(|p| p.to_string_lossy().into_owned()),
        argv: env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
        server_starter: server_starter_port.as_deref().map(parse_server_starter),
        server_starter_port,
        listen_pid_matches: listen_pid.as_deref() == Some(pid.to_string().as_str()),
        listen_fdnames: var("LISTEN_FDNAMES").map(|names| match names.as_str() {
            "" => Vec::new(),
            names => names.split(':').map(str::to_string).collect(),
        }),
        listen_fds,
        listen_pid,
        listenfd_ok: None,
        einhorn: var("EINHORN_FD_COUNT").map(|count| {
            let count: usize = count.trim().parse().unwrap_or(0);
            (0..count).map(|i| var(&format!("EINHORN_FD_{i}")).and_then(|fd| fd.parse().ok())).collect()
        }),
        notify_socket: var("NOTIFY_SOCKET"),
        fds: list_fds(pid),
        sig_blocked: status_field("SigBlk"),
        sig_ignored: status_field("SigIgn"),
        env: env_report,
    };

    // Last: listenfd changes the fds (CLOEXEC) and the environment. The
    // sockets it took stay open until exit.
    let mut _taken = Vec::new();
    if let Some(n) = &report.listen_fds {
        let (ok, taken) = listenfd_check(n.trim().parse().ok());
        report.listenfd_ok = Some(ok);
        _taken = taken;
    }

    let signals = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGWINCH, SIGTTIN, SIGTTOU];
    let mut signals = Signals::new(signals).unwrap_or_else(|e| {
        eprintln!("probe: cannot install signal handlers: {e}");
        std::process::exit(1)
    });

    let line = serde_json::to_string(&report).expect("the report is plain data");
    println!("{line}");
    if let Some(out) = &opts.out
        && let Err(e) = write_atomically(out, &line)
    {
        eprintln!("probe: cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
    if opts.notify {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }
    if opts.exit {
        return;
    }
    for signal in signals.forever() {
        if signal == SIGTERM || signal == SIGINT {
            return;
        }
        let name = signal_hook::low_level::signal_name(signal).unwrap_or("?");
        eprintln!("probe: pid {pid} got {name}");
    }
}

/// `KEY=FD;KEY=FD`, split at the last `=` of each item (the fd is digits,
/// a unix path may contain `=`); the empty string is no sockets.
fn parse_server_starter(value: &str) -> Vec<PortEntry> {
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split(';')
        .map(|item| match item.rsplit_once('=') {
            Some((key, fd)) => PortEntry { key: key.to_string(), fd: fd.parse().ok() },
            None => PortEntry { key: item.to_string(), fd: None },
        })
        .collect()
}

/// Every open fd, except the one `read_dir` itself holds on `/proc/self/fd`.
fn list_fds(pid: u32) -> Vec<FdReport> {
    let own_dir = [format!("/proc/{pid}/fd"), "/proc/self/fd".to_string()];
    let mut found = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // Read the link while the listing is open, to recognise its fd.
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if !own_dir.contains(&target) {
                found.push((fd, target));
            }
        }
    }
    found.sort();
    let sockets = socket_table();
    found
        .into_iter()
        .map(|(fd, target)| {
            let socket = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
                .map(|inode| {
                    sockets.get(&inode).cloned().unwrap_or(SocketReport {
                        family: "unknown",
                        r#type: None,
                        local: None,
                        listening: false,
                    })
                });
            FdReport { fd, cloexec: cloexec(fd), target, socket }
        })
        .collect()
}

/// From the octal `flags:` line of `/proc/self/fdinfo/N` (O_CLOEXEC = 02000000).
fn cloexec(fd: i32) -> Option<bool> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    let flags = u32::from_str_radix(flags.trim(), 8).ok()?;
    Some(flags & 0o2_000_000 != 0)
}

/// inode -> description, from this network namespace's socket tables.
fn socket_table() -> HashMap<u64, SocketReport> {
    let mut table = HashMap::new();
    let inet = [
        ("tcp", "inet", "stream"),
        ("tcp6", "inet6", "stream"),
        ("udp", "inet", "dgram"),
        ("udp6", "inet6", "dgram"),
    ];
    for (file, family, kind) in inet {
        let text = fs::read_to_string(format!("/proc/net/{file}")).unwrap_or_default();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for fields in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Ok(inode) = inode.parse() else { continue };
            table.insert(
                inode,
                SocketReport {
                    family,
                    r#type: Some(kind),
                    local: decode_inet(local),
                    listening: kind == "stream" && *state == "0A",
                },
            );
        }
    }
    // Num RefCount Protocol Flags Type St Inode [Path]
    let text = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    for fields in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
        let (Some(flags), Some(kind), Some(inode)) = (fields.get(3), fields.get(4), fields.get(6)) else {
            continue;
        };
        let (Ok(flags), Ok(kind), Ok(inode)) =
            (u32::from_str_radix(flags, 16), u32::from_str_radix(kind, 16), inode.parse())
        else {
            continue;
        };
        let kind = match kind {
            1 => Some("stream"),
            2 => Some("dgram"),
            5 => Some("seqpacket"),
            _ => None,
        };
        table.insert(
            inode,
            SocketReport {
                family: "unix",
                r#type: kind,
                local: Some(fields.get(7..).unwrap_or_default().join(" ")),
                listening: flags & 0x0001_0000 != 0, // __SO_ACCEPTCON
            },
        );
    }
    table
}

/// `0100007F:1F90` -> `127.0.0.1:8080`; 32 hex digits -> `[::1]:8080`.
/// The kernel prints the address as 32-bit words in host byte order and the
/// port as a plain (big-endian) number.
fn decode_inet(text: &str) -> Option<String> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port).to_string())
}

/// Whether the `listenfd` crate accepts the systemd fds: it must find
/// `expected` of them and take each as some kind of socket.
fn listenfd_check(expected: Option<usize>) -> (bool, Vec<OwnedFd>) {
    let mut listenfd = listenfd::ListenFd::from_env();
    let mut ok = expected == Some(listenfd.len());
    let mut taken = Vec::new();
    for i in 0..listenfd.len() {
        let fd: Option<OwnedFd> = if let Ok(Some(s)) = listenfd.take_tcp_listener(i) {
            Some(s.into())
        } else if let Ok(Some(s)) = listenfd.take_unix_listener(i) {
            Some(s.into())
        } else if let Ok(Some(s)) = listenfd.take_udp_socket(i) {
            Some(s.into())
        } else if let Ok(Some(s)) = listenfd.take_unix_datagram(i) {
            Some(s.into())
        } else {
            None
        };
        ok &= fd.is_some();
        taken.extend(fd);
    }
    (ok, taken)
}

fn write_atomically(path: &PathBuf, line: &str) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    fs::write(&tmp, format!("{line}\n"))?;
    fs::rename(&tmp, path)
}
