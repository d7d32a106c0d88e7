//! The bounds that keep one client from locking others out: idle
//! connections, full tables, clients that do not read, clients that wait.
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (_dir, path, mut server) = bound();
    let mut idle = Client::connect(&path);
    let mut busy = Client::connect(&path);
    busy.send("{\"command\":\"restart\"}\n");
    let got = requests(&mut server, 1);
    assert_eq!(server.conns.len(), 2);
    let deadline = server.next_deadline(Instant::now()).expect("the idle connection has a deadline");
    let (_, logs) = server.service(deadline - Duration::from_millis(1));
    assert!(logs.is_empty(), "{logs:?}");
    assert_eq!(server.conns.len(), 2, "closed before its time");
    server.service(deadline);
    assert_eq!(server.conns.len(), 1, "the idle one goes, the one awaiting a reply stays");
    assert_eq!(idle.reply(), None);
    assert_eq!(server.next_deadline(Instant::now()), None, "a connection owed a reply has no idle deadline");
    server.reply(got[0].0, &json!({"ok": true}));
    assert_eq!(busy.reply(), Some(json!({"ok": true})));
}

#[test]
fn a_full_table_makes_room_for_a_new_client() {
    let (_dir, path, mut server) = bound();
    let _idle: Vec<Client> = (0..MAX_CONNECTIONS).map(|_| Client::connect(&path)).collect();
    pump(&mut server, |s, _| s.conns.len() == MAX_CONNECTIONS);
    let mut late = Client::connect(&path);
    late.send("{\"command\":\"status\"}\n");
    let got = requests(&mut server, 1);
    server.reply(got[0].0, &json!({"ok": true}));
    assert_eq!(late.reply(), Some(json!({"ok": true})));
    assert_eq!(server.conns.len(), MAX_CONNECTIONS, "the oldest idle connection made room");
}

#[test]
fn a_client_that_does_not_read_its_replies_is_dropped() {
    let (_dir, path, mut server) = bound();
    let client = Client::connect(&path);
    client.stream.set_nonblocking(false).unwrap();
    (&client.stream).write_all("{\"command\":\"status\"}\n".repeat(MAX_PENDING).as_bytes()).unwrap();
    let mut got = Vec::new();
    while got.len() < MAX_PENDING {
        let (requests, logs) = server.service(Instant::now());
        assert!(logs.is_empty(), "{logs:?}");
        got.extend(requests);
    }
    let big = json!({"ok": true, "pad": "x".repeat(60_000)});
    for (id, _) in got {
        server.reply(id, &big);
    }
    assert_eq!(server.conns.len(), 0, "more than {MAX_OUTPUT} bytes unread: dropped");
    let (_, logs) = server.service(Instant::now());
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].contains("does not read its replies"), "{logs:?}");
}

#[test]
fn requests_wait_while_their_client_leaves_its_replies_unread() {
    let (_dir, path, mut server) = bound();
    let client = Client::connect(&path);
    (&client.stream).write_all(b"{\"command\":\"status\"}\n").unwrap();
    let first = requests(&mut server, 1);
    server.reply(first[0].0, &json!({"ok": true, "pad": "x".repeat(MAX_OUTPUT / 2)}));
    (&client.stream).write_all("{\"command\":\"status\"}\n".repeat(10).as_bytes()).unwrap();
    // Unread replies beyond REPLY_ROOM: the next requests are not taken.
    for _ in 0..20 {
        let (requests, _) = server.service(Instant::now());
        assert!(requests.is_empty(), "{} more taken", requests.len());
    }
    // Once it reads, they are.
    client.stream.set_nonblocking(true).unwrap();
    let (mut taken, mut buf, start) = (0, vec![0u8; 1 << 16], Instant::now());
    while taken < 10 {
        assert!(start.elapsed() < Duration::from_secs(10), "{taken} of 10 taken");
        let _ = std::io::Read::read(&mut &client.stream, &mut buf);
        taken += server.service(Instant::now()).0.len();
    }
}

#[test]
fn a_client_that_stops_reading_is_closed_when_it_takes_nothing_for_the_idle_timeout() {
    let (_dir, path, mut server) = bound();
    let client = Client::connect(&path);
    (&client.stream).write_all("{\"command\":\"status\"}\n".repeat(MAX_PENDING).as_bytes()).unwrap();
    let mut got = Vec::new();
    while got.len() < MAX_PENDING {
        got.extend(server.service(Instant::now()).0);
    }
    // Replies the socket buffer cannot hold: they wait for a reader.
    let big = json!({"ok": true, "pad": "x".repeat(8000)});
    got.iter().for_each(|&(id, _)| server.reply(id, &big));
    assert_eq!(server.conns.len(), 1, "under the output bound: kept for now");
    let deadline =
        server.next_deadline(Instant::now()).expect("owed no reply still to be made: it has a deadline");
    server.service(deadline);
    assert_eq!(server.conns.len(), 0, "took nothing for the idle timeout: closed");
}

#[test]
fn waiting_clients_are_bounded_apart_and_status_and_stop_still_get_in() {
    let (_dir, path, mut server) = bound();
    let mut waiting: Vec<Client> = (0..MAX_WAITING).map(|_| Client::connect(&path)).collect();
    waiting.iter_mut().for_each(|c| c.send("{\"command\":\"restart\"}\n"));
    let restarts = requests(&mut server, MAX_WAITING);
    assert!(restarts.iter().all(|&(_, c)| c == Command::Restart), "{restarts:?}");

    let mut late = Client::connect(&path);
    late.send("{\"command\":\"upgrade\"}\n{\"command\":\"status\"}\n");
    let got = requests(&mut server, 1);
    assert_eq!(got.iter().map(|&(_, c)| c).collect::<Vec<_>>(), [Command::Status], "the upgrade was refused");
    server.reply(got[0].0, &json!({"ok": true}));
    let refused = late.reply().unwrap();
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap();
    let text = format!("too many clients are waiting: {MAX_WAITING} wait for");
    assert!(error.starts_with(&text), "{refused}");
    assert_eq!(late.reply(), Some(json!({"ok": true})), "its status is answered all the same");

    // Every other slot taken by clients that say nothing.
    let idle: Vec<Client> = (0..MAX_CONNECTIONS).map(|_| Client::connect(&path)).collect();
    pump(&mut server, |s, _| s.conns.len() == MAX_CONNECTIONS);
    let mut status = Client::connect(&path);
    status.send("{\"command\":\"status\"}\n");
    let got = requests(&mut server, 1);
    assert_eq!(got[0].1, Command::Status);
    server.reply(got[0].0, &json!({"ok": true, "n": 1}));
    assert_eq!(status.reply(), Some(json!({"ok": true, "n": 1})));

    let mut stop = Client::connect(&path);
    stop.send("{\"command\":\"stop\"}\n");
    let got = requests(&mut server, 1);
    assert_eq!(got[0].1, Command::Stop, "the first stop goes through the bound");
    server.reply(got[0].0, &json!({"ok": true}));
    assert_eq!(stop.reply(), Some(json!({"ok": true})));
    assert_eq!(server.conns.len(), MAX_CONNECTIONS, "idle clients made room; the waiting ones stay");
    for (client, &(id, _)) in waiting.iter_mut().zip(&restarts) {
        assert!(client.nothing_yet());
        server.reply(id, &json!({"ok": false}));
        assert_eq!(client.reply(), Some(json!({"ok": false})));
    }
    drop(idle);
}

#[test]
fn a_follower_takes_no_request_sent_along_with_follow() {
    let (_dir, path, mut server) = bound();
    let client = Client::connect(&path);
    (&client.stream).write_all(b"{\"command\":\"follow\"}\n{\"command\":\"status\"}\n").unwrap();
    let got = requests(&mut server, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, Command::Follow);
    for _ in 0..10 {
        assert!(server.service(Instant::now()).0.is_empty());
    }
}
