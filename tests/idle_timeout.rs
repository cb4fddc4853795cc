//! Idle connections cannot hold a node's connection slots: a client connection that sends
//! nothing, or stops halfway through an HTTP request or a WebSocket frame, is closed after
//! `--idle-timeout-ms`, while a client that keeps talking is served throughout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use keyval_core::ReadConsistency;
use native_node::wire::{self, ClientFrame, ServerFrame};

/// The shortest idle timeout the node accepts.
const IDLE_MS: u64 = native_node::config::MIN_IDLE_TIMEOUT_MS;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    s
}

/// Completes a WebSocket upgrade to `/client` by hand, so the test can then misbehave below the
/// WebSocket library.
fn upgraded(port: u16) -> TcpStream {
    let mut s = connect(port);
    let request = format!(
        "GET /client HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).expect("send upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read upgrade answer"), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads until the node closes the connection (EOF or reset) and returns how long that took
/// from `since`; None if it stayed open for the whole read timeout.
fn closed_after(mut s: TcpStream, since: Instant) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            // A WebSocket close frame, if the node sends one, is not the end yet.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(since.elapsed()),
        }
    }
}

/// A client that reads a key every 300 ms on one WebSocket connection, for `how_long`; returns
/// the replies it got.
fn busy_client(port: u16, how_long: Duration) -> usize {
    let (mut ws, _) =
        tungstenite::client::connect(format!("ws://127.0.0.1:{port}/client")).expect("ws");
    let started = Instant::now();
    let mut replies = 0;
    let mut seq = 0;
    while started.elapsed() < how_long {
        seq += 1;
        let read = ClientFrame::Read {
            client_id: 7,
            seq,
            key: b"k".to_vec(),
            consistency: ReadConsistency::Linearizable,
        };
        ws.send(tungstenite::Message::Binary(wire::encode(&read).into()))
            .expect("the busy client's connection stays open");
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => {
                if matches!(
                    wire::decode::<ServerFrame>(&b),
                    Ok(ServerFrame::Reply { .. })
                ) {
                    replies += 1;
                }
            }
            other => panic!("busy client: {other:?} after {:?}", started.elapsed()),
        }
        thread::sleep(Duration::from_millis(300));
    }
    replies
}

#[test]
fn idle_and_half_sent_connections_are_closed_while_a_busy_client_is_served() {
    let c = Cluster::start_with(1, &["--idle-timeout-ms", &IDLE_MS.to_string()]);
    let port = c.nodes[0].port;
    ok(&c, &["put", "k", "v"]);

    let busy = thread::spawn(move || busy_client(port, Duration::from_millis(IDLE_MS + 3_000)));

    let started = Instant::now();
    // Connects and never sends a byte.
    let silent = connect(port);
    // Stops in the middle of its HTTP request's headers.
    let mut half_request = connect(port);
    half_request
        .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ")
        .expect("send");
    // Upgrades, then sends the first 6 of a 16-byte masked binary frame's 22 bytes.
    let mut half_frame = upgraded(port);
    half_frame
        .write_all(&[0x82, 0x80 | 16, 1, 2, 3, 4])
        .expect("send");

    let waits: Vec<_> = [
        ("silent connection", silent),
        ("half an HTTP request", half_request),
        ("half a WebSocket frame", half_frame),
    ]
    .into_iter()
    .map(|(what, s)| thread::spawn(move || (what, closed_after(s, started))))
    .collect();
    for w in waits {
        let (what, closed) = w.join().expect("reader");
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after 30 s"));
        assert!(
            closed >= Duration::from_millis(IDLE_MS - 100),
            "{what}: closed after {closed:?}, before the idle timeout of {IDLE_MS} ms"
        );
        assert!(
            closed < Duration::from_millis(IDLE_MS + 5_000),
            "{what}: closed only after {closed:?} (idle timeout {IDLE_MS} ms)"
        );
    }

    let replies = busy.join().expect("busy client");
    assert!(replies >= 20, "the busy client got only {replies} replies");
    ok(&c, &["put", "k", "after"]);
    assert_eq!(ok(&c, &["get", "k"])["value"], "after");
}
