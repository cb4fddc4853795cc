//! `keyval` settings: command-line flags over an optional TOML file over defaults.
//!
//! Every flag can also be set in the file given by `--config` (same names, with `_` for `-`);
//! a flag on the command line wins over the file. The result is validated once, up front, so a
//! bad setting stops the node with one clear line before it touches its data directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use keyval_core::NodeId;
use serde::Deserialize;

pub use crate::telemetry::LogFormat;
use crate::tls::TlsFiles;

#[derive(Debug, Parser)]
#[command(
    name = "keyval",
    version,
    about = "A KeyVal server node (Raft key-value store)"
)]
pub struct Args {
    /// This node's id; must appear in --peers.
    #[arg(long)]
    pub id: Option<NodeId>,
    /// Address to listen on for peers, clients, /metrics, /healthz and /events.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Every initial member, itself included: ID=HOST:PORT,... The membership persisted in the
    /// data directory wins after the first start.
    #[arg(long)]
    pub peers: Option<String>,
    /// Join a running cluster instead of starting one (after `kvctl member add ID ADDR`):
    /// HOST:PORT,... of its members. Not with --peers. Only the first start needs it: the
    /// membership is then persisted in the data directory.
    #[arg(long)]
    pub join: Option<String>,
    /// Directory for the WAL, the snapshots, the cluster identity and the lock file.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of these settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve the built playground from this directory at `/`.
    #[arg(long)]
    pub ui: Option<PathBuf>,
    /// Leader heartbeat interval in milliseconds [default: 50].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Lower bound of the randomized election timeout in milliseconds [default: 300].
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Length of one Raft tick in milliseconds [default: 10].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Applied entries since the last snapshot that trigger a snapshot and log compaction
    /// [default: 10000]; 0 never compacts (the log then grows forever).
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// Size at which a WAL segment is sealed and a new one started [default: 64 MiB]. Disk is
    /// reclaimed in whole segments once a snapshot covers them, so smaller segments free space
    /// sooner at the cost of more files and fsyncs. At least 4096.
    #[arg(long)]
    pub wal_segment_bytes: Option<u64>,
    /// Cluster identity checked in every peer handshake [default: derived from --peers].
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Skip fsync (benchmarks only: a crash can then lose acknowledged writes).
    #[arg(long)]
    pub unsafe_no_fsync: bool,
    /// Answer `--consistency lease` reads from the leader's lease, without a round trip. Turn
    /// it on for every node of the cluster: it assumes clocks drift apart by less than
    /// --lease-drift-margin-pct over an election timeout.
    #[arg(long)]
    pub lease_reads: bool,
    /// Part of the election timeout a lease gives up for clock drift, in percent [default: 10].
    #[arg(long)]
    pub lease_drift_margin_pct: Option<u32>,
    /// Client-facing TLS certificate (PEM) [default: the peer certificate].
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Key of --cert-file (PEM).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA (PEM) that signs client certificates.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require a client certificate signed by --trusted-ca-file from every client.
    #[arg(long)]
    pub client_cert_auth: bool,
    /// This node's peer certificate (PEM); its SAN must hold the DNS name node-<ID>. With the
    /// peer key and CA it turns TLS on: the port then serves only TLS.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Key of --peer-cert-file (PEM).
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// CA (PEM) that signs every node's peer certificate (mutual TLS between nodes).
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Do not serve the live event stream /events (it streams keys and values).
    #[arg(long)]
    pub disable_events: bool,
    /// Log line format on stderr [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Export the spans of client requests to this OpenTelemetry collector, over OTLP/HTTP
    /// (protobuf): http://HOST:4318 (or the full .../v1/traces URL). Off by default.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Close a connection after this many milliseconds without a byte in either direction,
    /// and a client connection after this long without a frame from the client: one that never
    /// sends its HTTP request, stops halfway through a request or a frame, or sends nothing
    /// after its upgrade [default: 120000; 10000..=86400000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
}

/// Applied entries between snapshots unless configured: at ~300 bytes an entry, a few MB of WAL
/// per snapshot, and a restart replays at most this many entries after the snapshot.
pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 10_000;

/// State bytes per InstallSnapshot message: the core's maximum (1 MiB). With the frame's
/// envelope this stays far below the 16 MiB peer frame limit even when the transport batches
/// it with up to 4 MiB of appends, and a lost chunk costs one round trip of 1 MiB.
pub const SNAPSHOT_CHUNK_BYTES: usize = keyval_core::snapshot::MAX_SNAPSHOT_CHUNK_BYTES;

/// A client connection silent this long is closed, so idle connections cannot hold the bounded
/// client slots forever.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 120_000;
/// The timeout applies to every connection (see `idle_io`), peer connections included, whose
/// dialer pings a quiet one every 5 s (`transport::PEER_KEEPALIVE`): twice that leaves a lost
/// ping's worth of margin.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 10_000;

/// Heartbeats per (minimum) election timeout. Below this, one delayed or lost heartbeat makes a
/// follower campaign, and the cluster churns through elections under ordinary jitter.
pub const MIN_ELECTION_HEARTBEAT_RATIO: u64 = 3;

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<NodeId>,
    listen: Option<SocketAddr>,
    peers: Option<String>,
    join: Option<String>,
    data_dir: Option<PathBuf>,
    ui: Option<PathBuf>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    tick_ms: Option<u64>,
    snapshot_threshold: Option<u64>,
    wal_segment_bytes: Option<u64>,
    cluster_id: Option<String>,
    unsafe_no_fsync: Option<bool>,
    lease_reads: Option<bool>,
    lease_drift_margin_pct: Option<u32>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
    peer_cert_file: Option<PathBuf>,
    peer_key_file: Option<PathBuf>,
    peer_trusted_ca_file: Option<PathBuf>,
    disable_events: Option<bool>,
    log_format: Option<LogFormat>,
    otlp_endpoint: Option<String>,
    idle_timeout_ms: Option<u64>,
}

/// Validated settings the node runs with.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// The initial members (`--peers`); empty with `--join`.
    pub peers: BTreeMap<NodeId, String>,
    /// Members to ask for the cluster identity on a first start (`--join`).
    pub join: Option<Vec<String>>,
    pub data_dir: PathBuf,
    pub ui: Option<PathBuf>,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub tick: Duration,
    pub snapshot_threshold: u64,
    pub wal_segment_bytes: u64,
    pub cluster_id: Option<String>,
    pub fsync: bool,
    pub lease_reads: bool,
    pub lease_drift_margin_pct: u32,
    /// TLS files; `None` serves plain HTTP/WebSocket (the default, for local clusters).
    pub tls: Option<TlsFiles>,
    pub events_enabled: bool,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    /// See [`Args::idle_timeout_ms`].
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting --{0} (flag or config file)")]
    Missing(&'static str),
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid --peers entry {entry:?}: {reason}")]
    Peer { entry: String, reason: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Parses `1=127.0.0.1:7001,2=...` into id -> address.
pub fn parse_peers(s: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |reason: &str| ConfigError::Peer {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| bad("the id is not a number"))?;
        if id == 0 {
            return Err(bad("node ids start at 1"));
        }
        let addr = addr.trim();
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("the address needs a port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad("expected HOST:PORT"));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(bad("duplicate node id"));
        }
    }
    if out.is_empty() {
        return Err(ConfigError::Invalid("--peers lists no node".into()));
    }
    Ok(out)
}

/// Parses `HOST:PORT,...` of `--join`.
pub fn parse_join(s: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ok = entry
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "invalid --join endpoint {entry:?}: expected HOST:PORT"
            )));
        }
        out.push(entry.to_string());
    }
    if out.is_empty() {
        return Err(ConfigError::Invalid("--join lists no endpoint".into()));
    }
    Ok(out)
}

impl NodeConfig {
    pub fn from_args(args: Args) -> Result<NodeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let id = args.id.or(file.id).ok_or(ConfigError::Missing("id"))?;
        let listen = args
            .listen
            .or(file.listen)
            .ok_or(ConfigError::Missing("listen"))?;
        let join = match args.join.or(file.join) {
            Some(j) => Some(parse_join(&j)?),
            None => None,
        };
        let peers_s = args.peers.or(file.peers);
        let peers = match (&join, peers_s) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--join and --peers exclude each other: --peers starts a new cluster, --join enters a running one".into(),
                ));
            }
            (Some(_), None) => BTreeMap::new(),
            (None, None) => return Err(ConfigError::Missing("peers (or --join)")),
            (None, Some(peers_s)) => {
                let peers = parse_peers(&peers_s)?;
                if !peers.contains_key(&id) {
                    return Err(ConfigError::Invalid(format!(
                        "--id {id} is not listed in --peers ({peers_s})"
                    )));
                }
                peers
            }
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .ok_or(ConfigError::Missing("data-dir"))?;
        let heartbeat_ms = args.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(50);
        let election_ms = args
            .election_timeout_ms
            .or(file.election_timeout_ms)
            .unwrap_or(300);
        let tick_ms = args.tick_ms.or(file.tick_ms).unwrap_or(10);
        if tick_ms == 0 || tick_ms > 1000 {
            return Err(ConfigError::Invalid(format!(
                "--tick-ms must be in 1..=1000, got {tick_ms}"
            )));
        }
        if heartbeat_ms < tick_ms {
            return Err(ConfigError::Invalid(format!(
                "--heartbeat-ms ({heartbeat_ms}) must be at least --tick-ms ({tick_ms})"
            )));
        }
        if election_ms < heartbeat_ms.saturating_mul(MIN_ELECTION_HEARTBEAT_RATIO) {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout-ms ({election_ms}) must be at least {MIN_ELECTION_HEARTBEAT_RATIO} times --heartbeat-ms ({heartbeat_ms}), so one lost heartbeat does not start an election"
            )));
        }
        if election_ms > 60_000 {
            return Err(ConfigError::Invalid(format!(
                "--election-timeout-ms ({election_ms}) is over a minute"
            )));
        }
        let snapshot_threshold = args
            .snapshot_threshold
            .or(file.snapshot_threshold)
            .unwrap_or(DEFAULT_SNAPSHOT_THRESHOLD);
        let wal_segment_bytes = args
            .wal_segment_bytes
            .or(file.wal_segment_bytes)
            .unwrap_or(64 << 20);
        if !(4096..=1 << 40).contains(&wal_segment_bytes) {
            return Err(ConfigError::Invalid(format!(
                "--wal-segment-bytes must be in 4096..=2^40, got {wal_segment_bytes}"
            )));
        }
        let cluster_id = args.cluster_id.or(file.cluster_id);
        if let Some(c) = &cluster_id
            && (c.is_empty() || c.len() > 128)
        {
            return Err(ConfigError::Invalid(
                "--cluster-id must be 1 to 128 characters".into(),
            ));
        }
        let lease_drift_margin_pct = args
            .lease_drift_margin_pct
            .or(file.lease_drift_margin_pct)
            .unwrap_or(10);
        if lease_drift_margin_pct >= 100 {
            return Err(ConfigError::Invalid(format!(
                "--lease-drift-margin-pct must be below 100, got {lease_drift_margin_pct}"
            )));
        }
        let tls = tls_files(
            args.peer_cert_file.or(file.peer_cert_file),
            args.peer_key_file.or(file.peer_key_file),
            args.peer_trusted_ca_file.or(file.peer_trusted_ca_file),
            args.cert_file.or(file.cert_file),
            args.key_file.or(file.key_file),
            args.trusted_ca_file.or(file.trusted_ca_file),
            args.client_cert_auth || file.client_cert_auth.unwrap_or(false),
        )?;
        let idle_timeout_ms = args
            .idle_timeout_ms
            .or(file.idle_timeout_ms)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_MS);
        if !(MIN_IDLE_TIMEOUT_MS..=86_400_000).contains(&idle_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "--idle-timeout-ms must be in {MIN_IDLE_TIMEOUT_MS}..=86400000, got {idle_timeout_ms}"
            )));
        }
        let otlp_endpoint = args.otlp_endpoint.or(file.otlp_endpoint);
        if let Some(e) = &otlp_endpoint {
            crate::telemetry::traces_url(e).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(NodeConfig {
            id,
            listen,
            peers,
            join,
            data_dir,
            ui: args.ui.or(file.ui),
            heartbeat: Duration::from_millis(heartbeat_ms),
            election_timeout: Duration::from_millis(election_ms),
            tick: Duration::from_millis(tick_ms),
            snapshot_threshold,
            wal_segment_bytes,
            cluster_id,
            fsync: !(args.unsafe_no_fsync || file.unsafe_no_fsync.unwrap_or(false)),
            lease_reads: args.lease_reads || file.lease_reads.unwrap_or(false),
            lease_drift_margin_pct,
            tls,
            events_enabled: !(args.disable_events || file.disable_events.unwrap_or(false)),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            otlp_endpoint,
            idle_timeout: Duration::from_millis(idle_timeout_ms),
        })
    }

    /// The core's tunables: milliseconds become ticks, and message batches are sized so a busy
    /// leader moves thousands of small entries per append without any frame nearing the limit.
    pub fn raft_config(&self) -> keyval_core::Config {
        let tick = self.tick.as_millis().max(1) as u64;
        let heartbeat_ticks = (self.heartbeat.as_millis() as u64).div_ceil(tick).max(1) as u32;
        let election_ticks = ((self.election_timeout.as_millis() as u64) / tick)
            .max(heartbeat_ticks as u64 + 1) as u32;
        keyval_core::Config {
            heartbeat_ticks,
            election_ticks,
            max_inflight_msgs: 128,
            max_entries_per_msg: 4096,
            max_bytes_per_msg: 1 << 20,
            snapshot_threshold: self.snapshot_threshold,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            lease_reads: self.lease_reads,
            lease_drift_margin_pct: self.lease_drift_margin_pct,
            ..keyval_core::Config::default()
        }
    }
}

/// TLS is on when the three peer files are given; client-facing settings need it on.
fn tls_files(
    peer_cert: Option<PathBuf>,
    peer_key: Option<PathBuf>,
    peer_ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_cert_auth: bool,
) -> Result<Option<TlsFiles>, ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
    if cert.is_some() != key.is_some() {
        return invalid("--cert-file and --key-file go together");
    }
    if client_cert_auth && client_ca.is_none() {
        return invalid("--client-cert-auth needs --trusted-ca-file");
    }
    match (peer_cert, peer_key, peer_ca) {
        (Some(peer_cert), Some(peer_key), Some(peer_ca)) => Ok(Some(TlsFiles {
            peer_cert,
            peer_key,
            peer_ca,
            cert,
            key,
            client_ca,
            client_cert_auth,
        })),
        (None, None, None) => {
            if cert.is_some() || client_ca.is_some() {
                return invalid(
                    "client TLS needs peer TLS too (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file): the port serves either TLS or plain",
                );
            }
            Ok(None)
        }
        _ => invalid("--peer-cert-file, --peer-key-file and --peer-trusted-ca-file go together"),
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        // toml's messages span several lines; the contract is one line.
        message: e.message().replace('\n', " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec![
            "keyval",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:7001",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002",
            "--data-dir",
            "d",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).expect("parse")
    }

    #[test]
    fn defaults_become_ticks() {
        let c = NodeConfig::from_args(args(&[])).expect("valid");
        let r = c.raft_config();
        assert_eq!((r.heartbeat_ticks, r.election_ticks), (5, 30));
        assert!(r.validate().is_ok());
        assert!(c.fsync);
        assert_eq!(r.snapshot_threshold, DEFAULT_SNAPSHOT_THRESHOLD);
        assert_eq!(r.snapshot_chunk_bytes, 1 << 20);
        let c = NodeConfig::from_args(args(&[
            "--snapshot-threshold",
            "50",
            "--wal-segment-bytes",
            "8192",
        ]))
        .expect("valid");
        assert_eq!(c.raft_config().snapshot_threshold, 50);
        assert_eq!(c.wal_segment_bytes, 8192);
        assert!(NodeConfig::from_args(args(&["--wal-segment-bytes", "100"])).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(NodeConfig::from_args(args(&["--heartbeat-ms", "300"])).is_err());
        let ratio = NodeConfig::from_args(args(&[
            "--heartbeat-ms",
            "100",
            "--election-timeout-ms",
            "150",
        ]));
        assert!(
            ratio
                .as_ref()
                .is_err_and(|e| e.to_string().contains("3 times")),
            "an election timeout under 3 heartbeats is refused: {ratio:?}"
        );
        assert!(
            NodeConfig::from_args(args(&[
                "--heartbeat-ms",
                "100",
                "--election-timeout-ms",
                "300"
            ]))
            .is_ok()
        );
        assert!(parse_peers("1=a").is_err());
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        let mut a = args(&[]);
        a.id = Some(9);
        assert!(NodeConfig::from_args(a).is_err());
    }

    #[test]
    fn tls_settings_are_checked_together() {
        let c = NodeConfig::from_args(args(&[])).expect("valid");
        assert!(c.tls.is_none() && c.events_enabled);
        let peer = [
            "--peer-cert-file",
            "n.pem",
            "--peer-key-file",
            "n.key",
            "--peer-trusted-ca-file",
            "ca.pem",
        ];
        let c = NodeConfig::from_args(args(&peer)).expect("valid");
        let tls = c.tls.expect("tls on");
        assert_eq!(tls.peer_ca, PathBuf::from("ca.pem"));
        assert!(tls.cert.is_none() && !tls.client_cert_auth);
        assert!(
            NodeConfig::from_args(args(&peer[..4])).is_err(),
            "no peer CA"
        );
        assert!(
            NodeConfig::from_args(args(&["--cert-file", "c.pem", "--key-file", "c.key"])).is_err()
        );
        let mut auth = peer.to_vec();
        auth.push("--client-cert-auth");
        assert!(
            NodeConfig::from_args(args(&auth)).is_err(),
            "needs a client CA"
        );
        auth.extend(["--trusted-ca-file", "cca.pem"]);
        assert!(
            NodeConfig::from_args(args(&auth))
                .expect("valid")
                .tls
                .expect("on")
                .client_cert_auth
        );
        let c = NodeConfig::from_args(args(&["--disable-events"])).expect("valid");
        assert!(!c.events_enabled);
    }

    #[test]
    fn the_idle_timeout_has_a_default_a_flag_a_file_key_and_bounds() {
        let c = NodeConfig::from_args(args(&[])).expect("valid");
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        let c = NodeConfig::from_args(args(&["--idle-timeout-ms", "10000"])).expect("valid");
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "idle_timeout_ms = 15000\n").expect("write");
        let p = path.to_string_lossy().to_string();
        let c = NodeConfig::from_args(args(&["--config", &p])).expect("valid");
        assert_eq!(c.idle_timeout, Duration::from_secs(15));
        for bad in ["0", "9999", "86400001"] {
            let e = NodeConfig::from_args(args(&["--idle-timeout-ms", bad])).unwrap_err();
            assert!(e.to_string().contains("--idle-timeout-ms"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_settings_apply_under_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "heartbeat_ms = 20\nelection_timeout_ms = 200\n").expect("write");
        let p = path.to_string_lossy().to_string();
        let c =
            NodeConfig::from_args(args(&["--config", &p, "--heartbeat-ms", "30"])).expect("valid");
        assert_eq!(c.heartbeat, Duration::from_millis(30));
        assert_eq!(c.election_timeout, Duration::from_millis(200));
        std::fs::write(
            &path,
            "log_format = \"json\"\notlp_endpoint = \"http://c:4318\"\n",
        )
        .expect("write");
        let c = NodeConfig::from_args(args(&["--config", &p])).expect("valid");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://c:4318"));
        let c =
            NodeConfig::from_args(args(&["--config", &p, "--log-format", "text"])).expect("valid");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(NodeConfig::from_args(args(&["--otlp-endpoint", "grpc://c:4317"])).is_err());
        std::fs::write(&path, "bogus = 1\n").expect("write");
        assert!(NodeConfig::from_args(args(&["--config", &p])).is_err());
    }
}
