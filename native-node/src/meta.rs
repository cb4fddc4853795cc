//! The cluster identity a data directory belongs to: cluster id, this node's id, and the members.
//!
//! Written once, on first start, and read on every later start: after that the persisted
//! membership wins over `--peers` (SPEC), so restarting a node with a stale flag cannot quietly
//! change who it talks to, and a data directory copied to another node id is refused.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use keyval_core::{Membership, NodeId};
use serde::{Deserialize, Serialize};

const META_FILE: &str = "cluster.json";

/// The meaning of the log and snapshots in a data directory. 2: client sessions are opened
/// through the log and writes of unknown sessions are refused; reads are not in the log.
/// A directory of format 1 (before sessions) replays differently, so it is refused rather
/// than replayed into a different state.
pub const STATE_FORMAT: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub members: BTreeMap<NodeId, String>,
    /// Absent in directories written before it existed: format 1.
    #[serde(default = "format_one")]
    pub state_format: u32,
    /// For a node that entered with `--join`: the configuration the cluster handed it, which
    /// its Raft node starts from (then `members` holds the addresses it named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<JoinedConfig>,
    /// Set when this node learnt that it was removed from the cluster: it never serves again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

/// The configuration a joining node was admitted with, and the log index that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedConfig {
    pub membership: Membership,
    pub index: u64,
}

fn format_one() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt cluster identity file {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("data directory belongs to node {found} of cluster {cluster}, not node {wanted}")]
    WrongNode {
        found: NodeId,
        wanted: NodeId,
        cluster: String,
    },
    #[error(
        "node {node} was removed from cluster {cluster} ({reason}); it will not serve again: wipe {} and add it under a new id",
        path.display()
    )]
    Removed {
        node: NodeId,
        cluster: String,
        reason: String,
        path: PathBuf,
    },
    #[error(
        "data directory {} holds no cluster identity: start with --peers (a new cluster) or --join (after `kvctl member add`)",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("data directory belongs to cluster {found}, but --cluster-id says {wanted}")]
    WrongCluster { found: String, wanted: String },
    #[error(
        "data directory {} holds state format {found}; this build reads only format {STATE_FORMAT} \
         (client sessions through the log): recreate the node's data directory and let it catch up from the cluster",
        path.display()
    )]
    StateFormat { path: PathBuf, found: u32 },
}

/// A stable id for a cluster from its initial member list: every node started with the same
/// `--peers` derives the same id, and clusters started with different lists refuse each other.
pub fn derive_cluster_id(members: &BTreeMap<NodeId, String>) -> String {
    // FNV-1a over the canonical (sorted) list: stable across builds and platforms, unlike
    // std's hashers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in members {
        for b in format!("{id}={addr};").bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("kv-{h:016x}")
}

/// Loads the identity from `data_dir`, or creates it from the flags on first start.
/// Returns the identity and whether it was just created.
pub fn load_or_init(
    data_dir: &Path,
    node_id: NodeId,
    flag_members: &BTreeMap<NodeId, String>,
    flag_cluster_id: Option<&str>,
    fsync: bool,
) -> Result<(ClusterMeta, bool), MetaError> {
    match load(data_dir, node_id, flag_cluster_id)? {
        Some(meta) => {
            if !flag_members.is_empty() && &meta.members != flag_members && meta.joined.is_none() {
                tracing::warn!(
                    persisted = ?meta.members,
                    flag = ?flag_members,
                    "--peers differs from the membership persisted in the data directory; using the persisted one"
                );
            }
            Ok((meta, false))
        }
        None if flag_members.is_empty() => Err(MetaError::Empty {
            path: data_dir.to_path_buf(),
        }),
        None => {
            let meta = ClusterMeta {
                cluster_id: flag_cluster_id
                    .map(str::to_string)
                    .unwrap_or_else(|| derive_cluster_id(flag_members)),
                node_id,
                members: flag_members.clone(),
                state_format: STATE_FORMAT,
                joined: None,
                removed: None,
            };
            save(data_dir, &meta, fsync)?;
            Ok((meta, true))
        }
    }
}

/// The identity of a node admitted by `--join`, written before its first start.
pub fn init_joined(
    data_dir: &Path,
    node_id: NodeId,
    cluster_id: String,
    joined: JoinedConfig,
    fsync: bool,
) -> Result<ClusterMeta, MetaError> {
    let meta = ClusterMeta {
        cluster_id,
        node_id,
        members: joined.membership.addresses.clone(),
        state_format: STATE_FORMAT,
        joined: Some(joined),
        removed: None,
    };
    save(data_dir, &meta, fsync)?;
    Ok(meta)
}

/// Records for good that this node was removed, so a restart refuses to serve.
pub fn mark_removed(data_dir: &Path, meta: &ClusterMeta, reason: &str) -> Result<(), MetaError> {
    let mut meta = meta.clone();
    meta.removed = Some(reason.to_string());
    save(data_dir, &meta, true)
}

/// Writes the identity (atomically; fsynced unless `fsync` is off).
pub fn save(data_dir: &Path, meta: &ClusterMeta, fsync: bool) -> Result<(), MetaError> {
    write_atomically(data_dir, &data_dir.join(META_FILE), meta, fsync)
}

/// Reads the identity in `data_dir`, if there is one, and checks it against the flags.
/// A node marked removed is refused here.
pub fn load(
    data_dir: &Path,
    node_id: NodeId,
    flag_cluster_id: Option<&str>,
) -> Result<Option<ClusterMeta>, MetaError> {
    let path = data_dir.join(META_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: ClusterMeta =
                serde_json::from_slice(&bytes).map_err(|e| MetaError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if meta.state_format != STATE_FORMAT {
                return Err(MetaError::StateFormat {
                    path: data_dir.to_path_buf(),
                    found: meta.state_format,
                });
            }
            if meta.node_id != node_id {
                return Err(MetaError::WrongNode {
                    found: meta.node_id,
                    wanted: node_id,
                    cluster: meta.cluster_id,
                });
            }
            if !meta.members.contains_key(&node_id) {
                return Err(MetaError::Corrupt {
                    path,
                    reason: format!("node {node_id} is not among its members"),
                });
            }
            if let Some(wanted) = flag_cluster_id
                && wanted != meta.cluster_id
            {
                return Err(MetaError::WrongCluster {
                    found: meta.cluster_id,
                    wanted: wanted.to_string(),
                });
            }
            if let Some(reason) = meta.removed {
                return Err(MetaError::Removed {
                    node: node_id,
                    cluster: meta.cluster_id,
                    reason,
                    path: data_dir.to_path_buf(),
                });
            }
            Ok(Some(meta))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetaError::Io {
            op: "read",
            path,
            source,
        }),
    }
}

/// Write to a temporary file, fsync, rename over, fsync the directory: a crash leaves either
/// no identity (first start again, same result) or the whole one, never half a file.
fn write_atomically(
    dir: &Path,
    path: &Path,
    meta: &ClusterMeta,
    fsync: bool,
) -> Result<(), MetaError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| MetaError::Io {
            op,
            path: p,
            source,
        }
    };
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(meta).map_err(|e| MetaError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(&json).map_err(io("write", &tmp))?;
    if fsync {
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    if fsync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> BTreeMap<NodeId, String> {
        crate::config::parse_peers(s).expect("peers")
    }

    #[test]
    fn identity_is_derived_persisted_and_enforced() {
        let m = members("1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3");
        let m_shuffled = members("3=127.0.0.1:3,1=127.0.0.1:1,2=127.0.0.1:2");
        assert_eq!(derive_cluster_id(&m), derive_cluster_id(&m_shuffled));
        assert_ne!(
            derive_cluster_id(&m),
            derive_cluster_id(&members("1=127.0.0.1:1"))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, created) = load_or_init(dir.path(), 1, &m, None, false).expect("init");
        assert!(created);
        // Later starts keep the persisted membership even with another --peers.
        let other = members("1=127.0.0.1:1");
        let (b, created) = load_or_init(dir.path(), 1, &other, None, false).expect("load");
        assert!(!created);
        assert_eq!(a, b);
        assert!(matches!(
            load_or_init(dir.path(), 2, &m, None, false),
            Err(MetaError::WrongNode { .. })
        ));
        assert!(matches!(
            load_or_init(dir.path(), 1, &m, Some("other"), false),
            Err(MetaError::WrongCluster { .. })
        ));
        // A node that learnt it was removed never starts again from this directory.
        mark_removed(dir.path(), &a, "removed at index 9").expect("mark");
        let err = load_or_init(dir.path(), 1, &m, None, false).expect_err("refused");
        assert!(matches!(err, MetaError::Removed { .. }), "{err}");
        assert!(err.to_string().contains("removed at index 9"), "{err}");
    }

    #[test]
    fn a_joined_node_keeps_what_the_cluster_handed_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Without an identity and without --peers there is nothing to start from.
        let err = load_or_init(dir.path(), 4, &BTreeMap::new(), None, false).expect_err("empty");
        assert!(matches!(err, MetaError::Empty { .. }), "{err}");
        let addrs = members("1=127.0.0.1:1,4=127.0.0.1:4");
        let mut m = Membership::bootstrap([1], addrs);
        m.learners.insert(4);
        let view = JoinedConfig {
            membership: m,
            index: 7,
        };
        let meta = init_joined(dir.path(), 4, "kv-x".into(), view.clone(), false).expect("init");
        let (back, created) =
            load_or_init(dir.path(), 4, &BTreeMap::new(), None, false).expect("load");
        assert!(!created);
        assert_eq!(back, meta);
        assert_eq!(back.joined, Some(view));
        assert_eq!(back.cluster_id, "kv-x");
    }

    /// A joined node's identity written before the configuration named learners to promote
    /// still loads (none to promote); one that names them keeps them.
    #[test]
    fn a_joined_configuration_without_learners_to_promote_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = r#"{"cluster_id":"kv-x","node_id":4,"members":{"1":"127.0.0.1:1","4":"127.0.0.1:4"},"state_format":2,"joined":{"membership":{"voters":[1],"outgoing":[],"learners":[4],"learners_next":[],"auto_leave":false,"addresses":{"1":"127.0.0.1:1","4":"127.0.0.1:4"},"removed":[]},"index":7}}"#;
        std::fs::write(dir.path().join(META_FILE), old).expect("write");
        let (meta, _) = load_or_init(dir.path(), 4, &BTreeMap::new(), None, false).expect("load");
        let joined = meta.joined.expect("joined");
        assert_eq!(joined.membership.to_string(), "voters=[n1] learners=[n4]");
        assert!(joined.membership.promote_when_caught_up.is_empty());

        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = joined.membership.clone();
        m.promote_when_caught_up.insert(4);
        let view = JoinedConfig {
            membership: m,
            index: 7,
        };
        init_joined(dir.path(), 4, "kv-x".into(), view.clone(), false).expect("init");
        let (back, _) = load_or_init(dir.path(), 4, &BTreeMap::new(), None, false).expect("load");
        assert_eq!(back.joined, Some(view));
    }

    #[test]
    fn a_data_directory_of_an_older_state_format_is_refused() {
        let m = members("1=127.0.0.1:1");
        let dir = tempfile::tempdir().expect("tempdir");
        let old = r#"{"cluster_id":"kv-1","node_id":1,"members":{"1":"127.0.0.1:1"}}"#;
        std::fs::write(dir.path().join(META_FILE), old).expect("write");
        let err = load_or_init(dir.path(), 1, &m, None, false).expect_err("refused");
        assert!(
            matches!(err, MetaError::StateFormat { found: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("recreate"), "{err}");
    }
}
