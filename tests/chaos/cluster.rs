//! Real `keyval` processes whose peer traffic all flows through [`Link`] proxies.
//!
//! Each node gets its own `--peers` list: itself at its real listen address (the address it
//! binds) and every other node at the proxy of the directed link towards it. The handshake names
//! node ids, not addresses, so nodes accept each other through the proxies; the cluster id is
//! given explicitly because the one derived from `--peers` would differ per node.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client::status_of;
use super::proxy::Link;
use crate::common::{free_ports, keyval_bin, signal, wait_until};
use keyval_core::Role;

pub struct Proc {
    pub id: u64,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
}

pub struct ChaosCluster {
    pub nodes: Vec<Proc>,
    /// `(from, to)` -> the proxy `from` dials to reach `to`.
    pub links: BTreeMap<(u64, u64), Link>,
    pub cluster_id: String,
    pub extra_args: Vec<String>,
}

impl ChaosCluster {
    /// Starts `n` nodes with data and logs under `dir`.
    pub fn start(n: usize, dir: &Path, cluster_id: &str, extra_args: &[&str]) -> ChaosCluster {
        let ports = free_ports(n);
        let ids: Vec<u64> = (1..=n as u64).collect();
        let mut links = BTreeMap::new();
        for &from in &ids {
            for &to in &ids {
                if from != to {
                    let target: SocketAddr = format!("127.0.0.1:{}", ports[(to - 1) as usize])
                        .parse()
                        .expect("loopback address");
                    links.insert((from, to), Link::start(target));
                }
            }
        }
        let nodes = ids
            .iter()
            .map(|&id| Proc {
                id,
                port: ports[(id - 1) as usize],
                data_dir: dir.join(format!("node{id}")),
                log: dir.join(format!("node{id}.log")),
                child: None,
                paused: false,
            })
            .collect();
        let mut c = ChaosCluster {
            nodes,
            links,
            cluster_id: cluster_id.to_string(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for id in ids {
            c.restart(id);
        }
        c
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|p| p.id).collect()
    }

    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.proc(id).port)
    }

    fn proc(&self, id: u64) -> &Proc {
        &self.nodes[(id - 1) as usize]
    }

    fn proc_mut(&mut self, id: u64) -> &mut Proc {
        &mut self.nodes[(id - 1) as usize]
    }

    fn peers_of(&self, id: u64) -> String {
        self.ids()
            .into_iter()
            .map(|j| {
                let port = if j == id {
                    self.proc(j).port
                } else {
                    self.links[&(id, j)].port
                };
                format!("{j}=127.0.0.1:{port}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The exact command line of node `id`, for the artifacts and for a human replaying one.
    pub fn command_line(&self, id: u64) -> Command {
        let p = self.proc(id);
        let mut cmd = Command::new(keyval_bin());
        cmd.args(["--id", &id.to_string(), "--listen", &self.addr(id)])
            .args(["--peers", &self.peers_of(id)])
            .args(["--cluster-id", &self.cluster_id])
            .arg("--data-dir")
            .arg(&p.data_dir)
            .args(&self.extra_args)
            .env("RUST_LOG", "info");
        cmd
    }

    /// Starts node `id` if it is not running; its stderr is appended to its log.
    pub fn restart(&mut self, id: u64) {
        self.start_node(id, None);
    }

    /// Starts node `id` with files limited to `kib` KiB (`ulimit -f`, with SIGXFSZ ignored so a
    /// write past the limit fails with EFBIG like a full disk, instead of killing the process).
    pub fn restart_with_file_limit(&mut self, id: u64, kib: u64) {
        self.start_node(id, Some(kib));
    }

    fn start_node(&mut self, id: u64, file_limit_kib: Option<u64>) {
        if self.is_running(id) {
            return;
        }
        let mut cmd = self.command_line(id);
        if let Some(kib) = file_limit_kib {
            let inner = cmd;
            cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                .arg(inner.get_program())
                .args(inner.get_args())
                .env("RUST_LOG", "info");
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.proc(id).log)
            .expect("open node log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn keyval");
        let p = self.proc_mut(id);
        p.child = Some(child);
        p.paused = false;
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        match &mut self.proc_mut(id).child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `kill -9`: no shutdown, no flush (the page cache survives; see the crash-consistency
    /// suite for lost unsynced writes).
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.proc_mut(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.proc_mut(id).paused = false;
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.proc(id).child.as_ref().map(Child::id)
    }

    pub fn pause(&mut self, id: u64) {
        if let Some(c) = &self.proc(id).child {
            signal(c.id(), "STOP");
            self.proc_mut(id).paused = true;
        }
    }

    pub fn resume(&mut self, id: u64) {
        if let Some(c) = &self.proc(id).child {
            signal(c.id(), "CONT");
        }
        self.proc_mut(id).paused = false;
    }

    /// Every node running and unpaused, every link clean.
    pub fn heal_all(&mut self) {
        for l in self.links.values() {
            l.heal();
        }
        for id in self.ids() {
            if self.proc(id).paused {
                self.resume(id);
            }
            self.restart(id);
        }
    }

    /// The node that says it leads, with the highest term among those that answer.
    pub fn leader(&self) -> Option<u64> {
        self.ids()
            .into_iter()
            .filter(|&id| !self.proc(id).paused && self.proc(id).child.is_some())
            .filter_map(|id| status_of(&self.addr(id), Duration::from_millis(300)))
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    pub fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.leader();
            found.is_some()
        });
        found
    }

    /// Nodes that exited on their own (not killed by the nemesis): always a finding.
    pub fn crashed(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for p in &mut self.nodes {
            if let Some(Ok(Some(status))) = p.child.as_mut().map(Child::try_wait) {
                out.push((p.id, status.to_string()));
            }
        }
        out
    }

    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|p| p.log.clone()).collect()
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for p in &mut self.nodes {
            if let Some(mut c) = p.child.take() {
                if p.paused {
                    signal(c.id(), "CONT");
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.links.clear();
    }
}
