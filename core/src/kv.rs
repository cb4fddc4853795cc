//! The replicated key-value state machine and the client protocol it answers.
//!
//! Apply is deterministic: the same committed entries give the same state and results on every
//! node. Each client numbers its requests; the state machine remembers the latest result per
//! client, so a retried request (same client, same sequence number) is answered from memory
//! instead of applied twice. That is what lets clients retry after a timeout without turning one
//! `delete` into two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Index, NodeId};

pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Client sessions remembered for deduplication; the least recently used is forgotten first.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl KvOp {
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put { key, .. } | KvOp::Get { key } | KvOp::Delete { key } => key,
        }
    }

    pub fn size_hint(&self) -> usize {
        match self {
            KvOp::Put { key, value } => key.len() + value.len() + 8,
            KvOp::Get { key } | KvOp::Delete { key } => key.len() + 4,
        }
    }

    /// Refuses keys and values over the documented limits before they reach the log.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.key().len() > MAX_KEY_BYTES {
            return Err(ClientError::TooLarge {
                what: "key".into(),
                size: self.key().len(),
                limit: MAX_KEY_BYTES,
            });
        }
        if let KvOp::Put { value, .. } = self {
            if value.len() > MAX_VALUE_BYTES {
                return Err(ClientError::TooLarge {
                    what: "value".into(),
                    size: value.len(),
                    limit: MAX_VALUE_BYTES,
                });
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientRequest {
    pub client_id: u64,
    /// Strictly increasing per client; a retry reuses the number of the request it retries.
    pub seq: u64,
    pub op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvResult {
    Put,
    Get(Option<Vec<u8>>),
    Delete { deleted: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    /// Definite: this node did not propose the request.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    /// Indeterminate: the request was proposed but this node lost leadership before it
    /// committed. It may still commit under the next leader; retry with the same sequence number.
    #[error("leadership lost while the request was pending; outcome unknown")]
    LeadershipLost,
    /// Definite: the leader has too many uncommitted entries; back off and retry.
    #[error("leader is overloaded ({uncommitted} uncommitted entries); retry later")]
    Busy { uncommitted: u64 },
    /// Definite: refused before proposing.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    /// Indeterminate: a later request of the same client superseded this one in the
    /// deduplication table, so whether this one was applied before that is no longer known.
    #[error("stale request: sequence number already superseded")]
    Stale,
}

impl ClientError {
    /// True when the request certainly did not and will not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ClientError::LeadershipLost | ClientError::Stale)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReply {
    pub client_id: u64,
    pub seq: u64,
    pub outcome: Result<KvResult, ClientError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    result: KvResult,
    last_index: Index,
}

/// What applying one request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied(KvResult),
    /// Already applied under the same sequence number: here is the remembered result.
    Duplicate(KvResult),
    /// Older than the client's latest request; ignored.
    Stale,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: BTreeMap<u64, Session>,
    /// `last_index -> client_id`, to find the least recently used session in O(log n).
    session_lru: BTreeMap<Index, u64>,
    applied_index: Index,
}

impl KvStore {
    pub fn applied_index(&self) -> Index {
        self.applied_index
    }

    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.data.get(key)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.data.iter()
    }

    /// The remembered answer for a request that was already applied, if any.
    pub fn cached(&self, client_id: u64, seq: u64) -> Option<ApplyOutcome> {
        let s = self.sessions.get(&client_id)?;
        if seq == s.seq {
            Some(ApplyOutcome::Duplicate(s.result.clone()))
        } else if seq < s.seq {
            Some(ApplyOutcome::Stale)
        } else {
            None
        }
    }

    /// Marks `index` applied without a command (no-op entries).
    pub fn apply_noop(&mut self, index: Index) {
        self.advance(index);
    }

    pub fn apply(&mut self, index: Index, req: &ClientRequest) -> ApplyOutcome {
        self.advance(index);
        if let Some(outcome) = self.cached(req.client_id, req.seq) {
            return outcome;
        }
        let result = match &req.op {
            KvOp::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                KvResult::Put
            }
            KvOp::Get { key } => KvResult::Get(self.data.get(key).cloned()),
            KvOp::Delete { key } => KvResult::Delete {
                deleted: self.data.remove(key).is_some(),
            },
        };
        self.remember(index, req, result.clone());
        ApplyOutcome::Applied(result)
    }

    fn advance(&mut self, index: Index) {
        assert_eq!(
            index,
            self.applied_index + 1,
            "state machine must apply entries in order without gaps"
        );
        self.applied_index = index;
    }

    fn remember(&mut self, index: Index, req: &ClientRequest, result: KvResult) {
        if let Some(old) = self.sessions.insert(
            req.client_id,
            Session {
                seq: req.seq,
                result,
                last_index: index,
            },
        ) {
            self.session_lru.remove(&old.last_index);
        }
        self.session_lru.insert(index, req.client_id);
        while self.sessions.len() > MAX_SESSIONS {
            let Some((_, oldest)) = self.session_lru.pop_first() else {
                break;
            };
            self.sessions.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client_id: u64, seq: u64, op: KvOp) -> ClientRequest {
        ClientRequest { client_id, seq, op }
    }

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn put_get_delete() {
        let mut kv = KvStore::default();
        assert_eq!(
            kv.apply(1, &req(1, 1, put("a", "1"))),
            ApplyOutcome::Applied(KvResult::Put)
        );
        assert_eq!(
            kv.apply(2, &req(1, 2, KvOp::Get { key: "a".into() })),
            ApplyOutcome::Applied(KvResult::Get(Some(b"1".to_vec())))
        );
        assert_eq!(
            kv.apply(3, &req(1, 3, KvOp::Delete { key: "a".into() })),
            ApplyOutcome::Applied(KvResult::Delete { deleted: true })
        );
        assert_eq!(
            kv.apply(4, &req(1, 4, KvOp::Delete { key: "a".into() })),
            ApplyOutcome::Applied(KvResult::Delete { deleted: false })
        );
        assert_eq!(kv.applied_index(), 4);
    }

    #[test]
    fn retried_request_is_applied_once() {
        let mut kv = KvStore::default();
        kv.apply(1, &req(7, 1, put("a", "1")));
        let del = req(7, 2, KvOp::Delete { key: "a".into() });
        assert_eq!(
            kv.apply(2, &del),
            ApplyOutcome::Applied(KvResult::Delete { deleted: true })
        );
        assert_eq!(
            kv.apply(3, &del),
            ApplyOutcome::Duplicate(KvResult::Delete { deleted: true })
        );
        assert_eq!(kv.apply(4, &req(7, 1, put("a", "x"))), ApplyOutcome::Stale);
        assert_eq!(kv.get(b"a"), None);
    }

    #[test]
    fn sessions_are_bounded_least_recently_used_first() {
        let mut kv = KvStore::default();
        for c in 0..(MAX_SESSIONS as u64 + 5) {
            kv.apply(c + 1, &req(c, 1, put("k", "v")));
        }
        assert_eq!(kv.sessions.len(), MAX_SESSIONS);
        assert!(kv.cached(0, 1).is_none(), "oldest session must be evicted");
        assert!(kv.cached(MAX_SESSIONS as u64 + 4, 1).is_some());
    }

    #[test]
    fn limits_are_enforced() {
        let big_key = KvOp::Get {
            key: vec![0; MAX_KEY_BYTES + 1],
        };
        assert!(matches!(
            big_key.validate(),
            Err(ClientError::TooLarge { .. })
        ));
        let big_value = KvOp::Put {
            key: b"k".to_vec(),
            value: vec![0; MAX_VALUE_BYTES + 1],
        };
        assert!(big_value.validate().is_err());
        assert!(put("k", "v").validate().is_ok());
    }
}
