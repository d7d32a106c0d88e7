//! Where the drill sends its load: the listeners a supervisor has.
//!
//! handover says where it listens in its `status` reply; for a
//! start_server-compatible program they are its `--port` and `--path`
//! values, port 0 replaced by a free port found here, as start_server
//! cannot bind port 0 itself.
use std::ffi::OsString;
use std::net::{TcpListener, ToSocketAddrs};
use std::path::PathBuf;

use crate::drill::load::Target;
use crate::error::{Error, Result};
use crate::listen::{Address, ListenSpec};

/// A stream listener's load target from its status `address`
/// (`tcp 127.0.0.1:8080`, `unix /run/app.sock`); None for UDP.
pub fn target(address: &str) -> Option<Target> {
    match address.split_once(' ')? {
        ("tcp", addr) => addr.parse().ok().map(Target::Tcp),
        ("unix", path) => Some(Target::Unix(PathBuf::from(path))),
        _ => None,
    }
}

/// A start_server command line's `--port` and `--path` listeners, and the
/// command line with each port 0 replaced by a free port.
pub fn signal_listeners(args: &[OsString]) -> Result<(Vec<OsString>, Vec<Target>), Error> {
    let (mut out, mut targets) = (Vec::with_capacity(args.len()), Vec::new());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            out.push(arg.clone());
            out.extend(iter.by_ref().cloned());
            break;
        }
        let Some(name) = text.strip_prefix("--").map(|n| n.split('=').next().unwrap_or(n)) else {
            out.push(arg.clone());
            continue;
        };
        let inline = text.split_once('=').map(|(_, value)| OsString::from(value));
        let separate = (inline.is_none() && crate::cli::takes_value(name)).then(|| iter.next().cloned());
        let value = inline.clone().or(separate.flatten());
        let value = match (name, value) {
            ("port", Some(value)) => OsString::from(port_listener(&value.to_string_lossy(), &mut targets)?),
            ("path", Some(value)) => {
                targets.push(Target::Unix(PathBuf::from(&value)));
                value
            }
            (_, value) => {
                out.push(arg.clone());
                out.extend(value.filter(|_| inline.is_none()));
                continue;
            }
        };
        out.push(format!("--{name}").into());
        out.push(value);
    }
    Ok((out, targets))
}

/// One `--port` value: its target (TCP only), and the value to pass on.
fn port_listener(value: &str, targets: &mut Vec<Target>) -> Result<String, Error> {
    let spec = ListenSpec::parse_port(value).map_err(|e| Error::usage(format!("{e}")))?;
    let Address::Inet { host, port, udp } = &spec.address else { return Ok(value.into()) };
    if *udp {
        return Ok(value.into());
    }
    let bind_host = host.as_deref().unwrap_or("0.0.0.0");
    let port = match port {
        0 => TcpListener::bind((bind_host, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::runtime(format!("no free port on {bind_host}: {e}")))?
            .port(),
        &port => port,
    };
    let connect_host = match bind_host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        other => other,
    };
    let address = (connect_host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::usage(format!("cannot resolve {connect_host} (--port {value})")))?;
    targets.push(Target::Tcp(address));
    let pin = spec.pin.map_or(String::new(), |fd| format!("={fd}"));
    Ok(format!("{}{pin}", spec.key(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn start_server_listeners_become_targets_and_port_0_a_free_port() {
        let args = strings(&[
            "--port",
            "127.0.0.1:0",
            "--interval=1",
            "--path=/tmp/x.sock",
            "--port=8081=5",
            "--port",
            "127.0.0.1:u53",
            "--",
            "app",
            "--port",
            "0",
        ]);
        let (out, targets) = signal_listeners(&args).unwrap();
        let out: Vec<String> = out.into_iter().map(|a| a.into_string().unwrap()).collect();
        let Target::Tcp(first) = targets[0] else { panic!("{targets:?}") };
        assert_ne!(first.port(), 0);
        assert_eq!(first.ip().to_string(), "127.0.0.1");
        assert_eq!(
            out,
            [
                "--port",
                &format!("127.0.0.1:{}", first.port()),
                "--interval=1",
                "--path",
                "/tmp/x.sock",
                "--port",
                "8081=5",
                "--port",
                "127.0.0.1:u53",
                "--",
                "app",
                "--port",
                "0"
            ]
        );
        assert_eq!(targets.len(), 3, "{targets:?}");
        assert_eq!(targets[1], Target::Unix("/tmp/x.sock".into()));
        assert_eq!(targets[2], Target::Tcp("127.0.0.1:8081".parse().unwrap()));
    }

    #[test]
    fn a_bad_port_is_a_usage_error() {
        let e = signal_listeners(&strings(&["--port", "nope:x", "--", "app"])).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("--port"), "{}", e.message);
    }

    #[test]
    fn status_addresses_are_targets() {
        assert_eq!(target("tcp 127.0.0.1:4000"), Some(Target::Tcp("127.0.0.1:4000".parse().unwrap())));
        assert_eq!(target("tcp [::1]:4000"), Some(Target::Tcp("[::1]:4000".parse().unwrap())));
        assert_eq!(target("unix /tmp/a b.sock"), Some(Target::Unix("/tmp/a b.sock".into())));
        assert_eq!(target("udp 127.0.0.1:53"), None);
        assert_eq!(target("tcp nonsense"), None);
    }
}
