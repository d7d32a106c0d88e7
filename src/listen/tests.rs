use super::*;
use std::fs;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;

/// Binds every spec in order (no socket activation); see [`open_all`].
pub fn bind_all(specs: &[ListenSpec], backlog: i32) -> Result<Vec<Listener>, BindError> {
    open_all(specs, backlog, Vec::new()).map(|opened| opened.listeners)
}

/// TCP and unix sockets accept connections; UDP sockets do not.
pub fn is_stream(l: &Listener) -> bool {
    !matches!(l.spec.address, Address::Inet { udp: true, .. })
}

fn port_of(listener: &Listener) -> u16 {
    listener.socket.local_addr().unwrap().as_socket().unwrap().port()
}

#[test]
fn accepted_connections_inherit_tcp_nodelay_from_the_listener() {
    for (query, expected) in [("?nodelay=1", true), ("?nodelay=0", false), ("", false)] {
        let spec = ListenSpec::parse_listen(&format!("tcp://127.0.0.1:0{query}")).unwrap();
        let listener = bind_all(&[spec], 0).unwrap().remove(0);
        let _client = TcpStream::connect(("127.0.0.1", port_of(&listener))).unwrap();
        let (accepted, _) = listener.socket.accept().unwrap();
        assert_eq!(accepted.tcp_nodelay().unwrap(), expected, "{query:?}");
    }
    assert!(ListenSpec::parse_listen("tcp://127.0.0.1:0?nodelay=2").is_err());
    assert!(ListenSpec::parse_listen("udp://127.0.0.1:0?nodelay=1").is_err());
}

#[test]
fn binds_tcp_on_port_zero() {
    let specs = [ListenSpec::parse_port("127.0.0.1:0=7").unwrap()];
    let listeners = bind_all(&specs, 0).unwrap();
    let l = &listeners[0];
    let port = port_of(l);
    assert_ne!(port, 0);
    assert_eq!(l.key, format!("127.0.0.1:{port}"));
    assert_eq!(l.local, format!("tcp 127.0.0.1:{port}"));
    assert_eq!(l.spec, specs[0]);
    assert!(is_stream(l));
    assert!(l.socket.is_listener().unwrap());
    assert!(l.socket.reuse_address().unwrap());
    assert_eq!(l.created_path, None);
    let flags = nix::fcntl::fcntl(&l.socket, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0, "socket must stay close-on-exec");
    TcpStream::connect(("127.0.0.1", port)).unwrap();
}

#[test]
fn resolves_localhost_to_ipv4() {
    let specs = [ListenSpec::parse_port("localhost:0").unwrap()];
    let l = &bind_all(&specs, 0).unwrap()[0];
    let port = port_of(l);
    assert_eq!(l.key, format!("localhost:{port}"));
    assert_eq!(l.local, format!("tcp 127.0.0.1:{port}"));
}

#[test]
fn binds_udp_without_listening() {
    let specs = [ListenSpec::parse_port("127.0.0.1:u0").unwrap()];
    let l = &bind_all(&specs, 0).unwrap()[0];
    let port = port_of(l);
    assert_eq!(l.key, format!("127.0.0.1:{port}"));
    assert_eq!(l.local, format!("udp 127.0.0.1:{port}"));
    assert!(!is_stream(l));
    assert_eq!(l.socket.r#type().unwrap(), Type::DGRAM);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"x", ("127.0.0.1", port)).unwrap();
    let mut buf = [std::mem::MaybeUninit::new(0u8); 4];
    assert_eq!(l.socket.recv(&mut buf).unwrap(), 1);
}

#[test]
fn binds_ipv6_v6only() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: ::1 is not available");
        return;
    }
    let specs = [ListenSpec::parse_port("[::1]:0").unwrap()];
    let l = &bind_all(&specs, 0).unwrap()[0];
    let port = port_of(l);
    assert_eq!(l.key, format!("[::1]:{port}"));
    assert_eq!(l.local, format!("tcp [::1]:{port}"));
    assert!(l.socket.only_v6().unwrap());
}

#[test]
fn backlog_zero_and_explicit_both_listen() {
    for backlog in [0, 7] {
        let specs = [ListenSpec::parse_port("127.0.0.1:0").unwrap()];
        let l = &bind_all(&specs, backlog).unwrap()[0];
        assert!(l.socket.is_listener().unwrap(), "backlog {backlog}");
    }
}

#[test]
fn port_in_use_is_one_line_naming_the_address() {
    let first = bind_all(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], 0).unwrap();
    let port = port_of(&first[0]);
    let again = ListenSpec::parse_port(&format!("127.0.0.1:{port}")).unwrap();
    let err = bind_all(&[again], 0).unwrap_err();
    assert_eq!(err.to_string(), format!("cannot bind tcp 127.0.0.1:{port}: Address already in use"));
}

#[test]
fn failure_removes_files_created_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let busy = bind_all(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], 0).unwrap();
    let specs = [
        ListenSpec::parse_path(path.to_str().unwrap()),
        ListenSpec::parse_port(&format!("127.0.0.1:{}", port_of(&busy[0]))).unwrap(),
    ];
    assert!(bind_all(&specs, 0).is_err());
    assert!(!path.exists());
}

fn listen(value: &str) -> ListenSpec {
    ListenSpec::parse_listen(value).unwrap()
}

#[test]
fn binds_named_listen_specs_like_ports_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let specs = [
        listen("web=tcp://127.0.0.1:0"),
        listen("dns=udp://127.0.0.1:0"),
        listen(&format!("admin=unix:{}", path.display())),
    ];
    let listeners = bind_all(&specs, 0).unwrap();
    let (tcp, udp) = (port_of(&listeners[0]), port_of(&listeners[1]));
    assert_eq!(listeners[0].key, format!("127.0.0.1:{tcp}"));
    assert_eq!(listeners[0].local, format!("tcp 127.0.0.1:{tcp}"));
    assert_eq!(listeners[1].local, format!("udp 127.0.0.1:{udp}"));
    assert_eq!(listeners[2].key, path.to_str().unwrap());
    let names: Vec<_> = listeners.iter().map(|l| l.spec.name.as_deref()).collect();
    assert_eq!(names, [Some("web"), Some("dns"), Some("admin")]);
    assert!(listeners.iter().all(|l| l.inherited_fd.is_none()));
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777, "the --path default");
}

#[test]
fn a_shut_down_non_blocking_listener_is_repaired_once_per_generation_and_logged_once() {
    let mut listeners = bind_all(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], 0).unwrap();
    let port = port_of(&listeners[0]);
    let sabotage = |l: &Listener| {
        l.socket.shutdown(std::net::Shutdown::Read).unwrap();
        l.socket.set_nonblocking(true).unwrap();
    };
    assert!(check_all(&mut listeners, 0, 1, true).is_empty(), "a socket as bound needs nothing");
    sabotage(&listeners[0]);
    assert!(!listeners[0].socket.is_listener().unwrap());
    assert!(check_all(&mut listeners, 0, 1, false).is_empty(), "generation 1 was checked already");
    assert!(!listeners[0].socket.is_listener().unwrap(), "left as generation 1 made it");
    // Generation 2 while generation 1 serves: listening again, but
    // O_NONBLOCK is left to the workers that use it.
    let lines = check_all(&mut listeners, 0, 2, false);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("stopped listening") && lines[0].contains("left so"), "{lines:?}");
    let l = &listeners[0];
    assert!(l.socket.is_listener().unwrap() && l.socket.nonblocking().unwrap());
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // No worker left (a respawn): O_NONBLOCK cleared too.
    let lines = check_all(&mut listeners, 0, 2, true);
    assert!(lines.len() == 1 && lines[0].contains("O_NONBLOCK cleared"), "{lines:?}");
    assert!(!listeners[0].socket.nonblocking().unwrap());
    // The same sabotage twice: repaired both times, logged once.
    sabotage(&listeners[0]);
    assert_eq!(check_all(&mut listeners, 0, 3, true).len(), 1);
    sabotage(&listeners[0]);
    assert!(check_all(&mut listeners, 0, 4, true).is_empty(), "the same findings, not logged again");
    assert!(listeners[0].socket.is_listener().unwrap() && !listeners[0].socket.nonblocking().unwrap());
    assert!(broken(&listeners).is_empty());
}
