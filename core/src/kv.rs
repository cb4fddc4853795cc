//! The replicated key-value state machine and the client protocol it answers.
//!
//! Apply is deterministic: the same committed entries give the same state and results on every
//! node.
//!
//! # Sessions: exactly-once writes at any client count (Raft thesis §6.3)
//! A client first opens a session through the log ([`KvOp::OpenSession`]); its id is the log
//! index of that entry, so ids are unique and never reused. Every write then carries
//! `(session id, seq)`; the state machine remembers the latest sequence number and result per
//! session, so a retry (same session, same seq) is answered from memory instead of applied twice.
//!
//! Memory is bounded in bytes ([`SESSION_BYTES`] each, [`KvStore::session_limit_bytes`] in all):
//! past the bound the least recently used session is forgotten, deterministically, on every
//! node alike (by log index, never a node's clock). What makes that safe is that an unknown
//! session is *refused* ([`ClientError::SessionExpired`]), never treated as new: a retry whose
//! session was forgotten cannot be applied a second time. The client reports that request as
//! indeterminate (its first attempt may have applied) and opens a new session.
//!
//! Reads never enter the log and never touch sessions: they are answered from the state machine
//! by the read paths in [`crate::read`].

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use crate::types::{Index, NodeId};

pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// What one remembered session costs, for the byte bound: its id, sequence number, last-used
/// index and result, plus the map's overhead.
pub const SESSION_BYTES: u64 = 64;
/// Default bound on the memory of the session table (~260,000 sessions).
pub const DEFAULT_SESSION_LIMIT_BYTES: u64 = 16 << 20;

/// How fresh a read must be. Only `Linearizable` and `Lease` are linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// ReadIndex (thesis §6.4): the leader confirms with a heartbeat round to a quorum that it
    /// still leads, then answers once it has applied its commit index. Followers ask the leader
    /// for that index and answer from their own state once they have applied it.
    #[default]
    Linearizable,
    /// The leader answers without a round trip while its lease holds (a quorum acknowledged
    /// heartbeats it sent less than an election timeout minus a clock-drift margin ago).
    /// Assumes clocks that drift apart by less than the margin.
    Lease,
    /// Any node answers from its own state machine right away: possibly stale, never
    /// linearizable.
    Serializable,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Lease => "lease",
            ReadConsistency::Serializable => "serializable",
        }
    }

    pub const ALL: [ReadConsistency; 3] = [
        ReadConsistency::Linearizable,
        ReadConsistency::Lease,
        ReadConsistency::Serializable,
    ];
}

impl std::str::FromStr for ReadConsistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReadConsistency::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!("unknown consistency {s:?} (linearizable, lease or serializable)")
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// A linearizable read ([`ReadConsistency::Linearizable`]); it is served by ReadIndex and
    /// never enters the log.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Opens a session: the answer is [`KvResult::Session`] with the new session's id. Its
    /// `client_id` is only a correlation token for the reply.
    OpenSession,
}

impl KvOp {
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put { key, .. } | KvOp::Get { key } | KvOp::Delete { key } => key,
            KvOp::OpenSession => &[],
        }
    }

    pub fn size_hint(&self) -> usize {
        match self {
            KvOp::Put { key, value } => key.len() + value.len() + 8,
            KvOp::Get { key } | KvOp::Delete { key } => key.len() + 4,
            KvOp::OpenSession => 1,
        }
    }

    /// Whether this operation changes state and so needs a session.
    pub fn is_write(&self) -> bool {
        matches!(self, KvOp::Put { .. } | KvOp::Delete { .. })
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
    Get(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Delete {
        deleted: bool,
    },
    /// A session was opened; use `id` as the client id of the writes that follow.
    Session {
        id: u64,
    },
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
    /// Indeterminate: the request's sequence number is older than one already answered for this
    /// session. The older request may have been applied before the newer one superseded it.
    #[error("stale request: sequence number already superseded")]
    Stale,
    /// Indeterminate: the session is unknown (never opened, or forgotten to bound memory). A
    /// retry of a request that was applied before the session was forgotten must not apply
    /// again, so it is refused; the first attempt may or may not have applied. Open a new session.
    #[error("session expired or unknown; the request may or may not have been applied")]
    SessionExpired,
    /// Definite (reads have no effect): the node could not confirm the read: it lost
    /// leadership, the leader it asked did not answer in time, or it has not yet committed an
    /// entry of its term. Retry, possibly at another node.
    #[error("read not confirmed: {reason}; retry")]
    ReadNotConfirmed { reason: String },
    /// Definite: a lease read asked of a node whose lease reads are off.
    #[error("lease reads are disabled on this node (enable lease_reads on every node)")]
    LeaseReadsDisabled,
    /// Definite: the leader is handing leadership to node `to` and accepts no writes (and no
    /// lease reads) until the transfer ends, within an election timeout. Retry at `to`.
    #[error("leadership is being transferred to node {to}; retry there")]
    TransferInProgress { to: NodeId },
}

impl ClientError {
    /// True when the request certainly did not and will not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(
            self,
            ClientError::LeadershipLost | ClientError::Stale | ClientError::SessionExpired
        )
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
    /// None until the session's first write applies.
    result: Option<KvResult>,
    last_index: Index,
}

/// What applying one request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied(KvResult),
    /// Already applied under the same sequence number: here is the remembered result.
    Duplicate(KvResult),
    /// Older than the session's latest request; ignored.
    Stale,
    /// The session is unknown or was forgotten; nothing was applied.
    SessionExpired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    // Persistent maps (imbl): `clone` is O(1) and later writes copy only the nodes they touch,
    // so a snapshot can be encoded from a copy off the node loop while the original keeps
    // taking writes. A `BTreeMap` would need a full copy (or an encode) on the loop instead;
    // an `Arc<BTreeMap>` with copy-on-write would copy the whole map at the first write after
    // the snapshot, the same stall. They serialize exactly as `BTreeMap`s (a postcard map), so
    // snapshot files are unchanged.
    #[serde(serialize_with = "encode_data", deserialize_with = "decode_data")]
    data: OrdMap<Vec<u8>, Vec<u8>>,
    #[serde(deserialize_with = "decode_ord_map")]
    sessions: OrdMap<u64, Session>,
    /// `last_index -> session id`, to find the least recently used session in O(log n).
    #[serde(deserialize_with = "decode_ord_map")]
    session_lru: OrdMap<Index, u64>,
    applied_index: Index,
    /// Bound on the session table's memory. Part of the replicated state (snapshots carry it),
    /// because every node must forget the same sessions at the same index.
    session_limit_bytes: u64,
}

/// Decodes a persistent map by way of a `BTreeMap`. imbl's own visitor preallocates from the
/// length the input claims, so a snapshot (from the disk or a peer) claiming 2^40 entries
/// aborted the process; serde's `BTreeMap` visitor allocates only as entries actually arrive.
fn decode_ord_map<'de, D, K, V>(d: D) -> Result<OrdMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + Ord + Clone,
    V: Deserialize<'de> + Clone,
{
    let map = std::collections::BTreeMap::<K, V>::deserialize(d)?;
    Ok(map.into_iter().collect())
}

/// The key-value map as a map of byte strings (see `serde_bytes` in the workspace manifest):
/// the same postcard bytes as a map of `Vec<u8>`s, without a call per byte.
fn encode_data<S: serde::Serializer>(
    data: &OrdMap<Vec<u8>, Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(
        data.iter()
            .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))),
    )
}

/// Decodes the key-value map by way of a `BTreeMap` of byte strings (see [`decode_ord_map`]).
fn decode_data<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<OrdMap<Vec<u8>, Vec<u8>>, D::Error> {
    let map =
        std::collections::BTreeMap::<serde_bytes::ByteBuf, serde_bytes::ByteBuf>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k.into_vec(), v.into_vec()))
        .collect())
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::with_session_limit(DEFAULT_SESSION_LIMIT_BYTES)
    }
}

impl KvStore {
    /// An empty store whose session table holds at most `bytes` (at least one session).
    pub fn with_session_limit(bytes: u64) -> Self {
        KvStore {
            data: OrdMap::new(),
            sessions: OrdMap::new(),
            session_lru: OrdMap::new(),
            applied_index: 0,
            session_limit_bytes: bytes.max(SESSION_BYTES),
        }
    }

    pub fn session_limit_bytes(&self) -> u64 {
        self.session_limit_bytes
    }

    /// Sessions remembered now, and the bytes they are accounted at.
    pub fn session_usage(&self) -> (usize, u64) {
        let n = self.sessions.len();
        (n, n as u64 * SESSION_BYTES)
    }

    /// Whether writes of this session would be accepted now.
    pub fn has_session(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

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

    /// What a write of this session and sequence number would meet: the remembered answer of
    /// a request already applied, a refusal, or None when it would apply.
    pub fn cached(&self, client_id: u64, seq: u64) -> Option<ApplyOutcome> {
        let Some(s) = self.sessions.get(&client_id) else {
            return Some(ApplyOutcome::SessionExpired);
        };
        match (seq.cmp(&s.seq), &s.result) {
            (std::cmp::Ordering::Equal, Some(r)) => Some(ApplyOutcome::Duplicate(r.clone())),
            (std::cmp::Ordering::Greater, _) => None,
            _ => Some(ApplyOutcome::Stale),
        }
    }

    /// Marks `index` applied without a command (no-op entries).
    pub fn apply_noop(&mut self, index: Index) {
        self.advance(index);
    }

    pub fn apply(&mut self, index: Index, req: &ClientRequest) -> ApplyOutcome {
        self.apply_with(index, req, false)
    }

    /// `recreate_forgotten` is the pre-session behaviour kept only as a test mutation: an
    /// unknown session is silently recreated, so a retry of a forgotten write applies twice.
    pub(crate) fn apply_with(
        &mut self,
        index: Index,
        req: &ClientRequest,
        recreate_forgotten: bool,
    ) -> ApplyOutcome {
        self.advance(index);
        match &req.op {
            KvOp::OpenSession => {
                self.open_session(index);
                return ApplyOutcome::Applied(KvResult::Session { id: index });
            }
            // Reads are not proposed; an old log may hold one. It changes nothing.
            KvOp::Get { key } => return ApplyOutcome::Applied(KvResult::Get(self.read(key))),
            KvOp::Put { .. } | KvOp::Delete { .. } => {}
        }
        match self.cached(req.client_id, req.seq) {
            Some(ApplyOutcome::SessionExpired) if recreate_forgotten => {
                self.open_session_with_id(req.client_id, index)
            }
            Some(outcome) => return outcome,
            None => {}
        }
        let result = match &req.op {
            KvOp::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                KvResult::Put
            }
            KvOp::Delete { key } => KvResult::Delete {
                deleted: self.data.remove(key).is_some(),
            },
            KvOp::Get { .. } | KvOp::OpenSession => unreachable!("handled above"),
        };
        self.remember(index, req, result.clone());
        ApplyOutcome::Applied(result)
    }

    /// The value of `key` in the state as of [`KvStore::applied_index`].
    pub fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.data.get(key).cloned()
    }

    fn advance(&mut self, index: Index) {
        assert_eq!(
            index,
            self.applied_index + 1,
            "state machine must apply entries in order without gaps"
        );
        self.applied_index = index;
    }

    fn open_session(&mut self, index: Index) {
        self.open_session_with_id(index, index);
    }

    fn open_session_with_id(&mut self, id: u64, index: Index) {
        self.touch(id, index, 0, None);
        self.forget_least_recently_used(id);
    }

    fn remember(&mut self, index: Index, req: &ClientRequest, result: KvResult) {
        self.touch(req.client_id, index, req.seq, Some(result));
    }

    fn touch(&mut self, id: u64, index: Index, seq: u64, result: Option<KvResult>) {
        let session = Session {
            seq,
            result,
            last_index: index,
        };
        if let Some(old) = self.sessions.insert(id, session) {
            self.session_lru.remove(&old.last_index);
        }
        self.session_lru.insert(index, id);
    }

    /// Forgets sessions, least recently used first, until the table fits its byte bound; `keep`
    /// (the session just opened) is never the one forgotten.
    fn forget_least_recently_used(&mut self, keep: u64) {
        while self.sessions.len() as u64 * SESSION_BYTES > self.session_limit_bytes {
            let Some((&at, &oldest)) = self.session_lru.iter().find(|(_, &id)| id != keep) else {
                break;
            };
            self.session_lru.remove(&at);
            self.sessions.remove(&oldest);
        }
        debug_assert_eq!(self.sessions.len(), self.session_lru.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How keys, values and the store were encoded before they were byte strings: every
    /// `Vec<u8>` a sequence of u8s. WAL records, snapshot files and peers of older builds use it.
    mod per_byte {
        use std::collections::BTreeMap;

        use serde::{Deserialize, Serialize};

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub enum KvOp {
            Put { key: Vec<u8>, value: Vec<u8> },
            Get { key: Vec<u8> },
            Delete { key: Vec<u8> },
            OpenSession,
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub enum KvResult {
            Put,
            Get(Option<Vec<u8>>),
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        pub struct Data(pub BTreeMap<Vec<u8>, Vec<u8>>);
    }

    #[test]
    fn byte_strings_encode_exactly_as_the_per_byte_form_did() {
        let value: Vec<u8> = (0..=255).collect();
        let pairs = [
            (
                KvOp::Put {
                    key: b"k".to_vec(),
                    value: value.clone(),
                },
                per_byte::KvOp::Put {
                    key: b"k".to_vec(),
                    value: value.clone(),
                },
            ),
            (
                KvOp::Get { key: vec![0; 300] },
                per_byte::KvOp::Get { key: vec![0; 300] },
            ),
            (
                KvOp::Delete { key: Vec::new() },
                per_byte::KvOp::Delete { key: Vec::new() },
            ),
        ];
        for (new, old) in pairs {
            let bytes = postcard::to_allocvec(&new).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
            assert_eq!(postcard::from_bytes::<per_byte::KvOp>(&bytes).unwrap(), old);
            assert_eq!(postcard::from_bytes::<KvOp>(&bytes).unwrap(), new);
        }
        for (new, old) in [
            (
                KvResult::Get(Some(value.clone())),
                per_byte::KvResult::Get(Some(value.clone())),
            ),
            (KvResult::Get(None), per_byte::KvResult::Get(None)),
        ] {
            let bytes = postcard::to_allocvec(&new).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
            assert_eq!(postcard::from_bytes::<KvResult>(&bytes).unwrap(), new);
        }

        // A whole store: the snapshot files of older builds decode, and new ones are the same.
        let mut store = KvStore::default();
        let mut old = std::collections::BTreeMap::new();
        for i in 0..50u32 {
            let (k, v) = (i.to_be_bytes().to_vec(), vec![i as u8; i as usize]);
            store.data.insert(k.clone(), v.clone());
            old.insert(k, v);
        }
        let bytes = postcard::to_allocvec(&store).unwrap();
        let data_len = postcard::to_allocvec(&per_byte::Data(old.clone())).unwrap();
        assert!(
            bytes.starts_with(&data_len),
            "the map leads the store's encoding"
        );
        let decoded: KvStore = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, store);
    }

    fn req(client_id: u64, seq: u64, op: KvOp) -> ClientRequest {
        ClientRequest { client_id, seq, op }
    }

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    /// Opens a session at `index` and returns its id.
    fn open(kv: &mut KvStore, index: Index) -> u64 {
        match kv.apply(index, &req(999, 0, KvOp::OpenSession)) {
            ApplyOutcome::Applied(KvResult::Session { id }) => id,
            other => panic!("open session: {other:?}"),
        }
    }

    #[test]
    fn put_delete_and_read() {
        let mut kv = KvStore::default();
        let s = open(&mut kv, 1);
        assert_eq!(
            s, 1,
            "a session's id is the index of the entry that opened it"
        );
        assert_eq!(
            kv.apply(2, &req(s, 1, put("a", "1"))),
            ApplyOutcome::Applied(KvResult::Put)
        );
        assert_eq!(kv.read(b"a"), Some(b"1".to_vec()));
        assert_eq!(
            kv.apply(3, &req(s, 2, KvOp::Delete { key: "a".into() })),
            ApplyOutcome::Applied(KvResult::Delete { deleted: true })
        );
        assert_eq!(
            kv.apply(4, &req(s, 3, KvOp::Delete { key: "a".into() })),
            ApplyOutcome::Applied(KvResult::Delete { deleted: false })
        );
        assert_eq!(kv.applied_index(), 4);
    }

    #[test]
    fn retried_request_is_applied_once() {
        let mut kv = KvStore::default();
        let s = open(&mut kv, 1);
        kv.apply(2, &req(s, 1, put("a", "1")));
        let del = req(s, 2, KvOp::Delete { key: "a".into() });
        assert_eq!(
            kv.apply(3, &del),
            ApplyOutcome::Applied(KvResult::Delete { deleted: true })
        );
        assert_eq!(
            kv.apply(4, &del),
            ApplyOutcome::Duplicate(KvResult::Delete { deleted: true })
        );
        assert_eq!(kv.apply(5, &req(s, 1, put("a", "x"))), ApplyOutcome::Stale);
        assert_eq!(kv.get(b"a"), None);
    }

    #[test]
    fn writes_without_a_session_are_refused() {
        let mut kv = KvStore::default();
        assert_eq!(
            kv.apply(1, &req(42, 1, put("a", "1"))),
            ApplyOutcome::SessionExpired
        );
        assert_eq!(kv.get(b"a"), None);
    }

    /// The defect of the LRU table this replaced: once enough other clients had come and gone,
    /// a retry of a forgotten session's write was applied a second time and could erase a later
    /// write of someone else. Now the forgotten session is refused instead.
    #[test]
    fn a_retry_of_a_forgotten_session_is_never_applied_again() {
        let mut kv = KvStore::with_session_limit(3 * SESSION_BYTES);
        let a = open(&mut kv, 1);
        let del = req(a, 1, KvOp::Delete { key: "k".into() });
        kv.apply(2, &req(a, 0, KvOp::OpenSession)); // another session opened
        let b = 2;
        assert_eq!(
            kv.apply(3, &req(b, 1, put("k", "first"))),
            ApplyOutcome::Applied(KvResult::Put)
        );
        assert_eq!(
            kv.apply(4, &del),
            ApplyOutcome::Applied(KvResult::Delete { deleted: true })
        );
        // Others open sessions until `a` is forgotten; then `b` writes again.
        for i in 5..10 {
            open(&mut kv, i);
        }
        assert!(
            !kv.has_session(a),
            "the least recently used session is forgotten"
        );
        let c = open(&mut kv, 10);
        assert_eq!(
            kv.apply(11, &req(c, 1, put("k", "later"))),
            ApplyOutcome::Applied(KvResult::Put)
        );
        // The delete's answer was lost; the client retries it.
        assert_eq!(kv.apply(12, &del), ApplyOutcome::SessionExpired);
        assert_eq!(kv.get(b"k"), Some(&b"later".to_vec()));
        // With the old behaviour (kept as a test mutation) the retry erases the later write.
        let mut old = kv.clone();
        old.apply_with(13, &del, true);
        assert_eq!(old.get(b"k"), None);
    }

    #[test]
    fn session_memory_is_bounded_in_bytes() {
        let limit = 100 * SESSION_BYTES;
        let mut kv = KvStore::with_session_limit(limit);
        for i in 1..=1_000 {
            open(&mut kv, i);
        }
        let (n, bytes) = kv.session_usage();
        assert_eq!(n, 100);
        assert!(bytes <= limit);
        assert!(kv.has_session(1_000) && !kv.has_session(1));
    }

    #[test]
    fn a_used_session_outlives_idle_ones() {
        let mut kv = KvStore::with_session_limit(2 * SESSION_BYTES);
        let a = open(&mut kv, 1);
        let b = open(&mut kv, 2);
        kv.apply(3, &req(a, 1, put("x", "1"))); // `a` is now the most recently used
        open(&mut kv, 4);
        assert!(kv.has_session(a) && !kv.has_session(b));
    }

    #[test]
    fn consistency_names_round_trip() {
        for c in ReadConsistency::ALL {
            assert_eq!(c.name().parse::<ReadConsistency>(), Ok(c));
        }
        assert!("strong".parse::<ReadConsistency>().is_err());
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
