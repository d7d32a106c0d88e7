//! The observer against this test process's own threads, and the parsers
//! against texts as the kernel writes them.
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use super::*;

mod fuzz;

fn listener() -> (TcpListener, Listener) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let inode = File::from(socket.as_fd().try_clone_to_owned().unwrap()).metadata().unwrap().ino();
    let listener = Listener { fd: socket.as_raw_fd(), inode, tcp: Some(socket.local_addr().unwrap()) };
    (socket, listener)
}

/// Look at this process until `want` holds (a thread takes a moment to block).
fn until(listeners: &[Listener], want: impl Fn(&Report) -> bool) -> Report {
    let start = Instant::now();
    loop {
        let report = look(&[std::process::id() as i32], listeners);
        if want(&report) || start.elapsed() > Duration::from_secs(10) {
            return report;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_thread_blocked_in_accept_is_seen_waiting_on_the_listener() {
    let (socket, listener) = listener();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || drop(socket.accept()));
    let report = until(std::slice::from_ref(&listener), |r| r.seen.is_some());
    let expected = Seen::Waiting { call: Call("accept4"), fd: listener.fd };
    let accept = Seen::Waiting { call: Call("accept"), fd: listener.fd };
    let seen = report.seen.map(|(_, seen)| seen);
    assert!(seen == Some(expected) || seen == Some(accept), "{report:?}");
    drop(TcpStream::connect(addr));
    thread.join().unwrap();
}

/// A thread blocked in poll on `fillers` entries of a pipe, then the
/// listener, is seen waiting on the listener.
fn seen_in_poll(fillers: usize) {
    let (socket, listener) = listener();
    let addr = socket.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (filler, _keep) = nix::unistd::pipe().unwrap();
        let mut fds = vec![nix::poll::PollFd::new(filler.as_fd(), nix::poll::PollFlags::POLLIN); fillers];
        fds.push(nix::poll::PollFd::new(socket.as_fd(), nix::poll::PollFlags::POLLIN));
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16));
    });
    let report = until(std::slice::from_ref(&listener), |r| r.seen.is_some());
    let seen = report.seen.map(|(_, seen)| seen);
    assert!(
        matches!(seen, Some(Seen::Waiting { call: Call("poll") | Call("ppoll"), fd }) if fd == listener.fd),
        "{report:?}"
    );
    drop(TcpStream::connect(addr));
    thread.join().unwrap();
}

#[test]
fn a_thread_in_poll_on_the_listener_is_seen_waiting() {
    seen_in_poll(0);
}

#[test]
fn a_listener_at_the_end_of_a_large_poll_set_is_seen() {
    // 5000 entries (more than one chunk), the listener last; poll takes
    // no more than RLIMIT_NOFILE entries.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (entries, (soft, hard)) = (5000, getrlimit(Resource::RLIMIT_NOFILE).unwrap());
    assert!(hard >= entries, "RLIMIT_NOFILE's hard limit {hard} is below {entries}");
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(entries), hard).unwrap();
    seen_in_poll(entries as usize - 1);
}

#[test]
fn a_held_connection_from_the_listener_is_seen_accepted() {
    let (socket, listener) = listener();
    let client = TcpStream::connect(socket.local_addr().unwrap()).unwrap();
    let (accepted, _) = socket.accept().unwrap();
    let report = until(std::slice::from_ref(&listener), |r| r.seen.is_some());
    // The client end is ours too, but its local address is not the listener's.
    assert_eq!(report.seen.map(|(_, seen)| seen), Some(Seen::Accepted { fd: listener.fd }), "{report:?}");
    drop((client, accepted));
}

#[test]
fn a_socket_of_its_own_on_the_listeners_address_is_named() {
    let (socket, mut listener) = listener();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    let own = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    own.bind(&addr.into()).unwrap();
    own.listen(1).unwrap();
    // The inherited listener is another socket (here: gone).
    listener.inode = u64::MAX;
    let report = look(&[std::process::id() as i32], std::slice::from_ref(&listener));
    // (Another test's listener of this process may be named first.)
    let bind = report.own_bind.expect("own bind");
    assert_eq!(bind.fd, listener.fd, "{report:?}");
    assert_eq!(bind.pid, std::process::id() as i32);
    drop(own);
}

#[test]
fn a_listening_socket_of_its_own_on_another_port_is_named_too() {
    let (_socket, mut listener) = listener();
    let own = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.inode = u64::MAX - 1;
    let report = look(&[std::process::id() as i32], std::slice::from_ref(&listener));
    assert!(report.own_bind.is_some(), "{report:?}");
    drop(own);
}

#[test]
fn nothing_is_seen_in_a_process_that_is_gone() {
    let (_socket, listener) = listener();
    assert_eq!(look(&[i32::MAX], &[listener]), Report { looked: 1, ..Report::default() });
}

#[test]
fn descendants_start_with_the_process() {
    let me = std::process::id() as i32;
    assert_eq!(descendants(me).first(), Some(&me));
}

#[test]
fn reads_a_blocked_tasks_call_and_arguments() {
    let text =
        "270 0xfb 0x7ffe59510120 0x0 0x0 0x7ffe59510030 0x7ffe59510040 0x7ffe59510000 0x7fd913250aec\n";
    assert_eq!(
        parse::syscall(text),
        Some((270, [0xfb, 0x7ffe59510120, 0, 0, 0x7ffe59510030, 0x7ffe59510040]))
    );
    assert_eq!(parse::syscall("running\n"), None);
    assert_eq!(parse::syscall("-1 0x7ffe59510000 0x7fd913250aec\n"), None);
}

#[test]
fn reads_epoll_targets_with_their_inodes() {
    let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t18\ntfd:        3 events:       19 data:                3  pos:0 ino:1d5078b sdev:9\ntfd: 7 events: 4 data: 0 pos:0\n";
    assert_eq!(parse::epoll_targets(text), vec![(3, 0x19, 0x1d5078b)]);
}

#[test]
fn a_connection_comes_through_a_listener_on_its_port_and_address() {
    let any = "0.0.0.0:80".parse().unwrap();
    let local = "127.0.0.1:80".parse().unwrap();
    assert!(parse::came_through(local, any));
    assert!(parse::came_through("[::ffff:127.0.0.1]:80".parse().unwrap(), local));
    assert!(!parse::came_through("127.0.0.2:80".parse().unwrap(), local));
    assert!(!parse::came_through("127.0.0.1:81".parse().unwrap(), any));
}

#[test]
fn reads_fd_sets_and_poll_sets() {
    let mut set = vec![0u8; 16];
    set[0] = 0b1000_1000;
    set[1] = 0b0000_0001;
    assert_eq!(parse::fd_set(&set, 64), vec![3, 7, 8]);
    assert_eq!(parse::fd_set(&set, 8), vec![3, 7]);
    let mut poll = Vec::new();
    poll.extend_from_slice(&5i32.to_ne_bytes());
    poll.extend_from_slice(&1i16.to_ne_bytes());
    poll.extend_from_slice(&0i16.to_ne_bytes());
    poll.extend_from_slice(&[1, 2, 3]);
    assert_eq!(parse::pollfds(&poll), vec![(5, 1)]);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn decodes_the_calls_of_x86_64() {
    let args = [3, 0x1000, 2, 0, 0, 0];
    assert_eq!(calls::decode(43, &args), Some(Wait::Fd(Call("accept"), 3)));
    assert_eq!(calls::decode(281, &args), Some(Wait::Epoll(Call("epoll_pwait"), 3)));
    assert_eq!(calls::decode(7, &args), Some(Wait::Poll(Call("poll"), 3, 0x1000)));
    assert_eq!(calls::decode(270, &args), Some(Wait::Select(Call("pselect6"), 0x1000, 3)));
    assert_eq!(calls::decode(230, &args), None);
    assert_eq!(Call("epoll_pwait").name(), "epoll_pwait");
}
