//! Harness for process-level tests: real `keyval` processes on ephemeral loopback ports, temp
//! data directories, `kvctl` as a subprocess. Every process is killed when its owner drops, and
//! every wait is bounded, so a broken node fails a test instead of hanging the suite.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod pki;

/// Directory holding `keyval` and `kvctl`: the profile dir the test executable lives under
/// (`target/<profile>/deps/<test>` -> `target/<profile>`). Builds them once if missing.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        if !dir.join("keyval").exists() || !dir.join("kvctl").exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "native-node", "--bins"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "cargo build -p native-node --bins failed");
        }
        dir
    })
}

pub fn keyval_bin() -> PathBuf {
    bin_dir().join("keyval")
}

pub fn kvctl_bin() -> PathBuf {
    bin_dir().join("kvctl")
}

/// `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Waits for `cond` up to `timeout`, polling; returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    cond()
}

/// Waits for a child to exit, up to `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// Started with `--join` (a node added after the cluster started) instead of `--peers`.
    pub joins: bool,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A cluster of `keyval` processes in a temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub peers: String,
    pub extra_args: Vec<String>,
    /// With TLS: the directory holding `peer-ca.pem` and `node-<ID>.pem/.key` (see pki.rs);
    /// every node gets its own peer certificate flags and kvctl trusts the peer CA.
    pub tls_dir: Option<PathBuf>,
}

impl Cluster {
    /// Starts `n` nodes and waits until one of them leads.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        Self::start_full(n, extra_args, None)
    }

    /// Starts `n` nodes with TLS, certificates from `tls_dir`.
    pub fn start_tls(n: usize, extra_args: &[&str], tls_dir: &Path) -> Cluster {
        Self::start_full(n, extra_args, Some(tls_dir.to_path_buf()))
    }

    fn start_full(n: usize, extra_args: &[&str], tls_dir: Option<PathBuf>) -> Cluster {
        // Ports picked here can be taken by someone else before the node binds them: retry.
        for attempt in 0..5 {
            let mut c = Self::spawn(n, extra_args, tls_dir.clone());
            sleep(Duration::from_millis(200));
            let bound = (0..n).all(|i| c.nodes[i].is_running());
            if bound && c.wait_leader(Duration::from_secs(15)).is_some() {
                return c;
            }
            eprintln!("cluster start attempt {attempt} failed; retrying with other ports");
            c.dump_logs();
        }
        panic!("could not start a {n}-node cluster");
    }

    fn spawn(n: usize, extra_args: &[&str], tls_dir: Option<PathBuf>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(n);
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| Node {
                id: i as u64 + 1,
                port,
                data_dir: dir.path().join(format!("node{}", i + 1)),
                log: dir.path().join(format!("node{}.log", i + 1)),
                child: None,
                joins: false,
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            tls_dir,
        };
        for id in 1..=n as u64 {
            c.restart(id);
        }
        c
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_ref(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(Node::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Endpoints of the given nodes only.
    pub fn endpoints_of(&self, ids: &[u64]) -> String {
        ids.iter()
            .map(|&id| self.node_ref(id).addr())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A slot for a new node `id` (a free port, its data dir and log), not started: add it with
    /// `kvctl member add ID ADDR`, then [`Cluster::restart`] starts it with `--join`.
    pub fn add_slot(&mut self, id: u64) -> String {
        assert!(
            self.nodes.iter().all(|n| n.id != id),
            "node {id} already has a slot"
        );
        let port = free_ports(1)[0];
        self.nodes.push(Node {
            id,
            port,
            data_dir: self.dir.path().join(format!("node{id}")),
            log: self.dir.path().join(format!("node{id}.log")),
            child: None,
            joins: true,
        });
        self.node_ref(id).addr()
    }

    /// Forgets node `id` (after removing it from the cluster): it is killed and no longer
    /// among the endpoints.
    pub fn drop_slot(&mut self, id: u64) {
        self.kill9(id);
        self.nodes.retain(|n| n.id != id);
    }

    /// The command line that (re)starts node `id`.
    pub fn keyval_cmd(&self, id: u64) -> Command {
        let node = self.node_ref(id);
        let mut cmd = Command::new(keyval_bin());
        cmd.args(["--id", &id.to_string(), "--listen", &node.addr()]);
        if node.joins {
            let others: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.id != id)
                .map(Node::addr)
                .collect();
            cmd.args(["--join", &others.join(",")]);
        } else {
            cmd.args(["--peers", &self.peers]);
        }
        cmd.arg("--data-dir")
            .arg(&node.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info");
        if let Some(dir) = &self.tls_dir {
            cmd.arg("--peer-cert-file")
                .arg(dir.join(format!("node-{id}.pem")))
                .arg("--peer-key-file")
                .arg(dir.join(format!("node-{id}.key")))
                .arg("--peer-trusted-ca-file")
                .arg(dir.join("peer-ca.pem"));
        }
        cmd
    }

    /// kvctl flags this cluster needs (TLS trust), before the command.
    pub fn client_flags(&self) -> Vec<String> {
        match &self.tls_dir {
            Some(dir) => vec![
                "--cacert".into(),
                dir.join("peer-ca.pem").to_string_lossy().to_string(),
            ],
            None => Vec::new(),
        }
    }

    /// Starts node `id` (again), appending its stderr to its log file.
    pub fn restart(&mut self, id: u64) {
        let mut cmd = self.keyval_cmd(id);
        let node = self.node_ref(id);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("open log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn keyval");
        self.node(id).child = Some(child);
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.node(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self, id: u64) -> Option<ExitStatus> {
        let mut c = self.node(id).child.take()?;
        signal(c.id(), "TERM");
        let status = wait_exit(&mut c, Duration::from_secs(10));
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status
    }

    /// Runs kvctl against this cluster with `-o json`.
    pub fn kvctl(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let flags = self.client_flags();
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        kvctl_json(&self.endpoints(), &all)
    }

    /// Status rows of every endpoint, by node id (reachable ones only).
    pub fn status(&self) -> BTreeMap<u64, Value> {
        let (_, v, _) = self.kvctl(&["--timeout-ms", "1000", "status"]);
        v["nodes"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["reachable"] == Value::Bool(true))
                    .filter_map(|r| Some((r["id"].as_u64()?, r.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The id a majority of reachable nodes agree leads (and that node says it leads).
    pub fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let mut found = None;
        wait_until(timeout, || {
            let st = self.status();
            found = st
                .values()
                .find(|r| r["role"] == "leader")
                .and_then(|r| r["id"].as_u64());
            found.is_some()
        });
        found
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let text = n.log_text();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("---- node {} log (last {} lines) ----", n.id, tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs kvctl with `-o json` against `endpoints`; returns (exit code, parsed stdout, stderr).
pub fn kvctl_json(endpoints: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = kvctl_raw(&[&["--endpoints", endpoints, "-o", "json"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs kvctl with exactly these arguments, bounded by a watchdog.
/// A kvctl command with `args`, not yet spawned (the caller wires its stdio).
pub fn kvctl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(kvctl_bin());
    cmd.args(args).env_remove("KVCTL_ENDPOINTS");
    cmd
}

/// A plain HTTP/1.1 GET on a node's port; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

pub fn kvctl_raw(args: &[&str]) -> Output {
    let mut child = kvctl_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvctl");
    // kvctl bounds itself with --timeout-ms; this only catches a hang.
    let status = wait_exit(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut stderr);
    }
    let status = child.wait().expect("wait kvctl");
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A plain HTTP/1.1 GET on loopback: (status code, body), or None when the node does not answer.
pub fn http_status(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// Writes/reads through kvctl and checks success; returns the JSON.
pub fn ok(c: &Cluster, args: &[&str]) -> Value {
    let (code, v, err) = c.kvctl(args);
    assert_eq!(code, Some(0), "kvctl {args:?} failed: {v} {err}");
    v
}
