use super::*;
use crate::listen::open_all;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;

fn given(fd: RawFd, name: Option<&str>, socket: impl Into<OwnedFd>) -> Inherited {
    Inherited { fd, name: name.map(str::to_owned), socket: Socket::from(socket.into()) }
}

fn tcp() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn udp() -> (std::net::UdpSocket, u16) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn spec(value: &str) -> ListenSpec {
    ListenSpec::parse_listen(value).unwrap()
}

fn port_of(socket: &Socket) -> u16 {
    socket.local_addr().unwrap().as_socket().unwrap().port()
}

#[test]
fn pairs_by_name_then_in_order() {
    let pair = |fd, by_name| Some(Pairing { fd, by_name });
    type Names<'a> = &'a [Option<&'a str>];
    let cases: &[(Names, Names, Vec<Option<Pairing>>)] = &[
        // Names find each other whatever the order.
        (&[Some("web"), Some("admin")], &[Some("admin"), Some("web")], vec![pair(1, true), pair(0, true)]),
        // Nothing named: in order; extra fds are left over.
        (&[None, None], &[None, None, None], vec![pair(0, false), pair(1, false)]),
        // More specs than fds: the rest are bound.
        (&[None, None], &[None], vec![pair(0, false), None]),
        // A named spec takes an unnamed fd, never one named otherwise.
        (&[Some("web")], &[None], vec![pair(0, false)]),
        (&[Some("web")], &[Some("admin")], vec![None]),
        (&[Some("web")], &[Some("admin"), None], vec![pair(1, false)]),
        // An unnamed spec takes what the names left, in order.
        (&[None, Some("web")], &[Some("web"), Some("http")], vec![pair(1, false), pair(0, true)]),
        (
            &[Some("a"), None, Some("b")],
            &[None, Some("b"), None],
            vec![pair(0, false), pair(2, false), pair(1, true)],
        ),
        // Duplicate names: first come, first served.
        (&[Some("x"), Some("x")], &[Some("x"), Some("x")], vec![pair(0, true), pair(1, true)]),
        (&[], &[None], vec![]),
        (&[None], &[], vec![None]),
    ];
    for (specs, fds, want) in cases {
        assert_eq!(&assign(specs, fds), want, "specs {specs:?}, fds {fds:?}");
    }
}

#[test]
fn adopts_by_name_keeps_order_of_specs_and_reports_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let (web, port) = tcp();
    let (stats, _) = udp();
    let admin = UnixListener::bind(&path).unwrap();
    let specs = [spec("web=tcp://127.0.0.1:8080"), spec(&format!("admin=unix:{}", path.display()))];
    let inherited =
        vec![given(3, Some("admin"), admin), given(4, Some("stats"), stats), given(5, Some("web"), web)];
    let opened = open_all(&specs, 0, inherited).unwrap();
    let [web, admin] = &opened.listeners[..] else { panic!("{opened:?}") };
    assert_eq!(web.inherited_fd, Some(5));
    assert_eq!(port_of(&web.socket), port, "the inherited socket itself");
    assert_eq!(web.key, format!("127.0.0.1:{port}"), "the real port");
    assert_eq!(web.local, format!("tcp 127.0.0.1:{port}"));
    assert_eq!(web.spec, specs[0]);
    assert_eq!(admin.inherited_fd, Some(3));
    assert_eq!(admin.key, path.to_str().unwrap());
    assert_eq!(admin.local, format!("unix {}", path.display()));
    assert_eq!(admin.created_path, None, "its manager owns the file");
    admin.remove_file().unwrap();
    assert!(path.exists());
    let unmatched: Vec<String> = opened.unmatched.iter().map(|i| i.to_string()).collect();
    assert_eq!(unmatched, ["fd 4 (stats)"]);
}

#[test]
fn specs_without_an_inherited_fd_are_bound() {
    let (web, port) = tcp();
    let specs = [spec("api=tcp://127.0.0.1:0"), spec("web=tcp://127.0.0.1:0")];
    let opened = open_all(&specs, 0, vec![given(3, Some("web"), web)]).unwrap();
    let [api, web] = &opened.listeners[..] else { panic!("{opened:?}") };
    assert_eq!(api.inherited_fd, None);
    assert_ne!(port_of(&api.socket), port);
    assert!(api.socket.is_listener().unwrap());
    assert_eq!((web.inherited_fd, port_of(&web.socket)), (Some(3), port));
    assert!(opened.unmatched.is_empty());
}

#[test]
fn unnamed_specs_take_unnamed_fds_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let (first, port) = tcp();
    let unix = UnixListener::bind(&path).unwrap();
    let specs = [
        ListenSpec::parse_port(&format!("127.0.0.1:{port}")).unwrap(),
        // Another spelling of the same file still pairs.
        ListenSpec::parse_path(&format!("{}/./a.sock", dir.path().display())),
    ];
    let inherited = vec![given(3, None, first), given(4, None, unix)];
    let opened = open_all(&specs, 0, inherited).unwrap();
    let fds: Vec<_> = opened.listeners.iter().map(|l| l.inherited_fd).collect();
    assert_eq!(fds, [Some(3), Some(4)]);
    assert_eq!(opened.listeners[0].key, format!("127.0.0.1:{port}"));
    assert_eq!(opened.listeners[1].key, format!("{}/./a.sock", dir.path().display()));
}

#[test]
fn a_socket_of_another_kind_is_refused_naming_both() {
    let (dns, port) = udp();
    let err = adopt_fds(&[spec("web=tcp://127.0.0.1:80")], vec![given(3, Some("web"), dns)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("inherited fd 3 (web) is udp 127.0.0.1:{port}, but listener web is tcp 127.0.0.1:80")
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let datagram = UnixDatagram::bind(&path).unwrap();
    let specs =
        [ListenSpec::parse_port("127.0.0.1:0").unwrap(), ListenSpec::parse_path(path.to_str().unwrap())];
    let (web, _) = tcp();
    let err = adopt_fds(&specs, vec![given(3, None, web), given(4, None, datagram)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "inherited fd 4 is a unix datagram socket on {0}, but listener 2 is unix {0} \
             (paired in order; give both the same name to pair them by name)",
            path.display()
        )
    );
}

#[test]
fn pairs_made_by_order_must_agree_on_port_and_file() {
    let (other, port) = tcp();
    let err = adopt_fds(&[ListenSpec::parse_port("127.0.0.1:1").unwrap()], vec![given(3, None, other)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "inherited fd 3 is tcp 127.0.0.1:{port}, but listener 1 is tcp 127.0.0.1:1 \
             (paired in order; give both the same name to pair them by name)"
        )
    );
    // By name, the name decides: the port in the spec is for running without systemd.
    let (other, port) = tcp();
    let (adopted, _) = adopt_fds(&[spec("web=tcp://0.0.0.0:1")], vec![given(3, Some("web"), other)]).unwrap();
    assert_eq!(adopted[0].as_ref().unwrap().key, format!("0.0.0.0:{port}"));

    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.sock");
    let unix = UnixListener::bind(&real).unwrap();
    let wanted = dir.path().join("wanted.sock");
    let err = adopt_fds(&[ListenSpec::parse_path(wanted.to_str().unwrap())], vec![given(3, None, unix)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "inherited fd 3 is unix {}, but listener 1 is unix {} \
             (paired in order; give both the same name to pair them by name)",
            real.display(),
            wanted.display()
        )
    );
}

#[test]
fn stream_sockets_must_listen() {
    let bound = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
    bound.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    let port = port_of(&bound);
    let err = adopt_fds(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], vec![given(3, None, bound)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "inherited fd 3 is tcp 127.0.0.1:{port} but does not listen: \
             pass listening sockets (not Accept=yes connections)"
        )
    );
    let (pair, _) = UnixStream::pair().unwrap();
    let err = open_all(&[], 0, vec![given(3, Some("conn"), pair)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inherited fd 3 (conn) is unix (unnamed) but does not listen: \
         pass listening sockets (not Accept=yes connections)"
    );
}

#[test]
fn without_specs_every_inherited_socket_is_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let (web, tcp_port) = tcp();
    let (dns, udp_port) = udp();
    let unix = UnixListener::bind(&path).unwrap();
    let inherited = vec![given(3, Some("web"), web), given(4, None, unix), given(5, Some("dns"), dns)];
    let opened = open_all(&[], 0, inherited).unwrap();
    let summary: Vec<(String, String, Option<&str>, Option<RawFd>)> = opened
        .listeners
        .iter()
        .map(|l| {
            let name = l.spec.name.as_deref();
            (l.key.clone(), l.local.clone(), name, l.inherited_fd)
        })
        .collect();
    let path_text = path.display().to_string();
    assert_eq!(
        summary,
        [
            (format!("127.0.0.1:{tcp_port}"), format!("tcp 127.0.0.1:{tcp_port}"), Some("web"), Some(3)),
            (path_text.clone(), format!("unix {path_text}"), None, Some(4)),
            (format!("127.0.0.1:{udp_port}"), format!("udp 127.0.0.1:{udp_port}"), Some("dns"), Some(5)),
        ]
    );
    assert!(opened.listeners.iter().all(|l| l.created_path.is_none()));
    assert_eq!(
        opened.listeners[1].spec.address,
        Address::Unix { path: PathBuf::from(&path), options: UnixOptions::default() }
    );
}

#[test]
fn ipv6_keys_get_brackets() {
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: ::1 is not available");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let opened = open_all(&[], 0, vec![given(3, None, listener)]).unwrap();
    assert_eq!(opened.listeners[0].key, format!("[::1]:{port}"));
    assert_eq!(opened.listeners[0].local, format!("tcp [::1]:{port}"));
}

#[test]
fn what_cannot_be_passed_on_is_refused() {
    let null = fs::File::open("/dev/null").unwrap();
    let err = open_all(&[], 0, vec![given(3, None, null)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "inherited fd 3 is not a socket: only tcp, udp and unix stream sockets can be passed on"
    );
    let null = fs::File::open("/dev/null").unwrap();
    let err = adopt_fds(&[spec("web=tcp://h:1")], vec![given(7, Some("web"), null)]).unwrap_err();
    assert_eq!(err.to_string(), "inherited fd 7 (web) is not a socket, but listener web is tcp h:1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let datagram = UnixDatagram::bind(&path).unwrap();
    let err = open_all(&[], 0, vec![given(3, None, datagram)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "inherited fd 3 is a unix datagram socket on {}: \
             only tcp, udp and unix stream sockets can be passed on",
            path.display()
        )
    );
}
