//! Traces and logs of real `keyval` processes: request spans exported over OTLP/HTTP to an
//! in-process collector (`--otlp-endpoint`), and `--log-format json`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// What the collector received: (request line, body) per HTTP request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector: accepts POSTs, keeps their bodies, answers 200 with an
/// empty (valid) protobuf response.
fn start_collector() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::default();
    let store = received.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            let store = store.clone();
            thread::spawn(move || serve_collector_conn(conn, store));
        }
    });
    (port, received)
}

fn serve_collector_conn(conn: TcpStream, store: Received) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        store
            .lock()
            .expect("lock")
            .push((request_line.trim_end().to_string(), body));
        let reply =
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn client_request_spans_reach_an_otlp_collector() {
    let (port, received) = start_collector();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut c = Cluster::start_with(3, &["--otlp-endpoint", &endpoint]);
    ok(&c, &["put", "traced-key", "v"]);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    // SIGTERM flushes the batch of spans before the process exits.
    assert_eq!(c.terminate(leader).and_then(|s| s.code()), Some(0));
    let stages: [&[u8]; 7] = [
        b"client_request",
        b"propose",
        b"persist",
        b"replicate",
        b"apply",
        b"reply",
        b"keyval::request",
    ];
    let exported = wait_until(Duration::from_secs(10), || {
        let got = received.lock().expect("lock");
        stages
            .iter()
            .all(|s| got.iter().any(|(_, body)| contains(body, s)))
    });
    let got = received.lock().expect("lock");
    assert!(
        exported,
        "the collector got {} requests without every stage span: {:?}",
        got.len(),
        got.iter().map(|(l, b)| (l, b.len())).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .all(|(line, _)| line.starts_with("POST /v1/traces ")),
        "{:?}",
        got.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
    assert!(got
        .iter()
        .any(|(_, b)| contains(b, b"service.name") && contains(b, b"keyval")));
}

#[test]
fn without_otlp_endpoint_nothing_is_sent_and_text_logs_stay_text() {
    // A collector nobody was told about must hear nothing; the log stays plain text.
    let (_, received) = start_collector();
    let c = Cluster::start(1);
    ok(&c, &["put", "k", "v"]);
    let log = c.nodes[0].log_text();
    assert!(log.contains("serving"), "{log}");
    assert!(
        !log.trim_start().starts_with('{'),
        "text logs by default: {log}"
    );
    assert!(received.lock().expect("lock").is_empty());
}
