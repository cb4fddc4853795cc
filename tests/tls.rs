//! TLS process tests: a 3-node cluster with mutual TLS between nodes, end to end through kvctl;
//! forged peers refused with the cluster undisturbed; certificates rotated live.
//!
//! Each test starts its own cluster on ephemeral loopback ports with a fresh throwaway PKI
//! (tests/common/pki.rs). About 15 s for the file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Ca, Pki};
use common::*;
use keyval_core::{Envelope, Message};
use native_node::wire::{self, PeerFrame};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client that trusts `ca` and presents `stem.pem/.key` from the PKI dir, if given.
fn tls_config(pki: &Pki, ca: &str, identity: Option<&str>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path(ca)).expect("ca") {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(stem) => {
            let certs = CertificateDer::pem_file_iter(pki.path(&format!("{stem}.pem")))
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert pem");
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{stem}.key"))).expect("key");
            b.with_client_auth_cert(certs, key).expect("client auth")
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects with TLS asking for `server_name` (`node-N` selects the peer side of the port).
fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>, server_name: &str) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let name = ServerName::try_from(server_name.to_string()).expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client connection");
    rustls::StreamOwned::new(conn, tcp)
}

/// A `/raft` WebSocket over TLS that introduces itself as node `from` to node 1; returns the
/// node's first answer (or the error that ended the attempt).
fn forged_hello(stream: Tls, cluster_id: &str, from: u64) -> Result<PeerFrame, String> {
    let (mut ws, _) = tungstenite::client::client("ws://127.0.0.1/raft", stream)
        .map_err(|e| format!("upgrade: {e}"))?;
    let hello = PeerFrame::Hello {
        cluster_id: cluster_id.into(),
        from,
        to: 1,
    };
    ws.send(tungstenite::Message::Binary(wire::encode(&hello).into()))
        .map_err(|e| format!("send: {e}"))?;
    match ws.read().map_err(|e| format!("read: {e}"))? {
        tungstenite::Message::Binary(b) => wire::decode(&b).map_err(|e| e.to_string()),
        other => Err(format!("unexpected {other:?}")),
    }
}

fn cluster_id(c: &Cluster) -> String {
    let text = std::fs::read_to_string(c.nodes[0].data_dir.join("cluster.json")).expect("meta");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["cluster_id"].as_str().expect("cluster id").to_string()
}

/// (term, leader) as each node reports it.
fn terms_and_leaders(c: &Cluster) -> Vec<(u64, Option<u64>)> {
    c.status()
        .values()
        .map(|row| (row["term"].as_u64().expect("term"), row["leader"].as_u64()))
        .collect()
}

fn http_over_tls(stream: &mut Tls, path: &str) -> String {
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn tls_cluster_serves_only_tls_and_refuses_forged_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    for id in 1..=3 {
        pki.node(id);
    }
    // Hostile credentials: a node-2 certificate from a CA nobody trusts, a peer-CA certificate
    // for node 9 (not node 2), and a client certificate.
    pki.issue(Ca::Rogue, "rogue-node-2", &["node-2"]);
    pki.issue(Ca::Peer, "node-9", &["node-9"]);
    pki.issue(Ca::Client, "client", &["kvctl-client"]);
    let client_ca = pki.path("client-ca.pem").to_string_lossy().to_string();
    let c = Cluster::start_tls(3, &["--trusted-ca-file", &client_ca], dir.path());
    let port = c.nodes[0].port;

    // End to end through kvctl with --cacert.
    ok(&c, &["put", "k", "v"]);
    assert_eq!(
        ok(&c, &["get", "k"]),
        json!({"ok": true, "found": true, "value": "v"})
    );
    // Status answers no longer carry the cluster id (nor does the text form).
    let st = ok(&c, &["status"]);
    let id = cluster_id(&c);
    assert!(!st.to_string().contains(&id), "{st}");
    // Without --cacert kvctl cannot talk to a TLS node: a definite failure.
    let (code, _, _) = kvctl_json(&c.endpoints(), &["--timeout-ms", "1500", "get", "k"]);
    assert_eq!(code, Some(3));

    // Plain HTTP on the TLS port gets no HTTP answer, /metrics and /healthz included.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1 200"));
    // Over TLS they answer.
    let mut t = tls_connect(port, tls_config(&pki, "peer-ca.pem", None), "localhost");
    assert!(http_over_tls(&mut t, "/healthz").starts_with("HTTP/1.1 200"));

    let before = terms_and_leaders(&c);
    let (_, leader) = before[0];
    let leader = leader.expect("a leader before the forgeries");
    assert!(before.iter().all(|&(_, l)| l == Some(leader)), "{before:?}");

    // 1. A plain WebSocket to /raft: no TLS, no answer.
    let plain = tungstenite::client::connect(format!("ws://127.0.0.1:{port}/raft"));
    assert!(plain.is_err(), "plain /raft must fail on a TLS port");

    // 2. Wrong CA: the handshake (or the first read after it) fails.
    let rogue = tls_connect(
        port,
        tls_config(&pki, "peer-ca.pem", Some("rogue-node-2")),
        "node-1",
    );
    let answer = forged_hello(rogue, &id, 2);
    assert!(answer.is_err(), "rogue CA got {answer:?}");

    // 3. Right CA, wrong name: the TLS handshake passes, the Hello claiming node 2 is refused.
    let wrong_name = tls_connect(
        port,
        tls_config(&pki, "peer-ca.pem", Some("node-9")),
        "node-1",
    );
    match forged_hello(wrong_name, &id, 2) {
        Ok(PeerFrame::Refused { reason }) => assert!(reason.contains("node-2"), "{reason}"),
        other => panic!("a node-9 certificate speaking for node 2 got {other:?}"),
    }

    // 4. A client certificate on /raft and /events: 403 on the client side of the port...
    for path in ["/raft", "/events"] {
        let client = tls_connect(
            port,
            tls_config(&pki, "peer-ca.pem", Some("client")),
            "localhost",
        );
        let refused = tungstenite::client::client(format!("ws://127.0.0.1{path}"), client);
        match refused {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                assert_eq!(r.status().as_u16(), 403, "{path}")
            }
            other => panic!("a client certificate on {path} got {:?}", other.map(|_| ())),
        }
    }
    // ... and no handshake on the peer side.
    let as_peer = tls_connect(
        port,
        tls_config(&pki, "peer-ca.pem", Some("client")),
        "node-1",
    );
    assert!(forged_hello(as_peer, &id, 2).is_err());

    // 5. The leader's own credential, presented to a follower, sending a u64::MAX term: the
    // core refuses it. The real leader's connection stays open beside it, so this one closing
    // must not make the follower think its leader died.
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    let member = tls_connect(
        c.nodes[follower as usize - 1].port,
        tls_config(&pki, "peer-ca.pem", Some(&format!("node-{leader}"))),
        &format!("node-{follower}"),
    );
    let (mut ws, _) = tungstenite::client::client("ws://127.0.0.1/raft", member).expect("ws");
    let hello = PeerFrame::Hello {
        cluster_id: id.clone(),
        from: leader,
        to: follower,
    };
    ws.send(tungstenite::Message::Binary(wire::encode(&hello).into()))
        .expect("hello");
    let welcome = ws.read().expect("welcome");
    assert!(matches!(
        welcome,
        tungstenite::Message::Binary(ref b) if matches!(wire::decode(b), Ok(PeerFrame::Welcome { node }) if node == follower)
    ));
    let hostile = PeerFrame::Raft(vec![Envelope {
        from: leader,
        to: follower,
        msg: Message::Heartbeat {
            term: u64::MAX,
            commit: u64::MAX,
            ctx: u64::MAX,
        },
    }]);
    ws.send(tungstenite::Message::Binary(wire::encode(&hostile).into()))
        .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    drop(ws);
    // The follower keeps its leader throughout (it used to drop it and campaign at once, as
    // if the leader had died, until the leader's next heartbeat).
    let follower_port = c.nodes[follower as usize - 1].port;
    let watch_until = std::time::Instant::now() + Duration::from_millis(400);
    while std::time::Instant::now() < watch_until {
        let mut t = tls_connect(
            follower_port,
            tls_config(&pki, "peer-ca.pem", None),
            "localhost",
        );
        let metrics = http_over_tls(&mut t, "/metrics");
        assert!(
            metrics.contains("keyval_server_has_leader 1"),
            "the follower lost its leader when a second connection in the leader's name closed"
        );
    }

    // The cluster is undisturbed: same term, same leader, still serving.
    assert_eq!(
        terms_and_leaders(&c),
        before,
        "forged peers disturbed the cluster"
    );
    ok(&c, &["put", "k2", "v2"]);
    assert_eq!(terms_and_leaders(&c), before);
    let log = c.nodes[0].log_text();
    assert!(log.contains("does not name node-2"), "refusal logged");
}

#[test]
fn certificates_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    for id in 1..=3 {
        pki.node(id);
    }
    let c = Cluster::start_tls(3, &[], dir.path());
    let port = c.nodes[0].port;
    let served = || {
        let mut t = tls_connect(port, tls_config(&pki, "peer-ca.pem", None), "localhost");
        let _ = http_over_tls(&mut t, "/healthz");
        t.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    };
    let old = served();
    let new = pki.node(1);
    assert_ne!(old, new);
    assert!(
        wait_until(Duration::from_secs(10), || served() == new),
        "node 1 still serves its old certificate"
    );
    // Peers dial node 1 against its new certificate; the cluster keeps working.
    ok(&c, &["put", "after-rotation", "yes"]);
    assert!(c.nodes[0].log_text().contains("reloaded TLS certificates"));
}
