//! What travels in WebSocket binary frames between nodes and between clients and nodes.
//!
//! Every frame is one version byte followed by the postcard encoding of one of the frame enums
//! below. The version byte lets a future node refuse an old peer with a clear message instead of
//! misreading it; postcard is compact and is what the core's types already derive. Frames are
//! size-limited on read (the WebSocket layer refuses larger ones before buffering them), and a
//! frame that fails to decode is refused, never trusted.

use keyval_core::{
    ClientReply, ClientRequest, Envelope, Membership, NodeId, NodeStatus, ReadConsistency,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// 2: snapshots carry the whole membership and entries may be configuration changes.
pub const WIRE_VERSION: u8 = 2;

/// Largest peer frame accepted: room for an append of `max_bytes_per_msg` plus one 1 MiB value,
/// with a wide margin. Anything larger is refused by the WebSocket reader.
pub const MAX_PEER_FRAME_BYTES: usize = 16 << 20;

/// Largest client frame: a 1 KiB key and a 1 MiB value plus headers.
pub const MAX_CLIENT_FRAME_BYTES: usize = 2 << 20;

/// WebSocket read buffer. tungstenite zero-fills the free part of this buffer before every
/// read, so its 128 KiB default costs a 128 KiB memset per small frame (18% of a busy leader's
/// CPU when measured); 16 KiB keeps large frames at a few syscalls per 100 KiB.
pub const READ_BUFFER_BYTES: usize = 16 << 10;

/// Peer-to-peer frames on `/raft`. A connection starts with `Hello` from the dialer, answered by
/// `Welcome` or `Refused`; afterwards only `Raft` frames flow, dialer to listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    Hello {
        cluster_id: String,
        from: NodeId,
        to: NodeId,
    },
    Welcome {
        node: NodeId,
    },
    Refused {
        reason: String,
    },
    /// Messages batched by the sender's peer task: one frame per wake-up, not per message.
    /// Decoding is bounded by count and by in-memory size, see [`deserialize_batch`].
    Raft(#[serde(deserialize_with = "deserialize_batch")] Vec<Envelope>),
    /// The first frame of a node started with `--join`: it knows its id and address but not
    /// the cluster id yet. Answered by `Joined` (then the connection closes), `Removed` or
    /// `Refused`. With TLS on it comes over the peer handshake, so the certificate must name
    /// `node-<from>`; the cluster id is only ever handed to a node that proves (by
    /// certificate, or without TLS by claiming an added id at its added address) that it was
    /// added.
    Join {
        from: NodeId,
        address: String,
    },
    /// The answer to an accepted `Join`: the cluster id and the applied configuration with
    /// the index of the entry that produced it (the joining node's Raft node starts from it).
    Joined {
        cluster_id: String,
        membership: Box<Membership>,
        index: u64,
    },
    /// The distinct refusal (etcd's HTTP 410) for a node that was a member and was removed:
    /// the node that receives it stops serving instead of retrying forever.
    Removed {
        node: NodeId,
        reason: String,
    },
}

impl PeerFrame {
    pub fn refused(reason: impl Into<String>) -> PeerFrame {
        PeerFrame::Refused {
            reason: reason.into(),
        }
    }

    /// The answer to any traffic from a removed node (etcd answers 410 Gone).
    /// It names no cluster id: it may go to a node that cannot prove who it is.
    pub fn removed(node: NodeId) -> PeerFrame {
        PeerFrame::Removed {
            node,
            reason: format!(
                "node {node} was removed from the cluster and may not rejoin it (node ids are never reused): wipe its data directory and add it under a new id"
            ),
        }
    }
}

/// Most messages in one peer frame: a sender batches at most its queue (4096) per frame.
pub const MAX_ENVELOPES_PER_FRAME: usize = 8192;

/// Most memory the messages of one decoded peer frame may take. The wire size alone does not
/// bound it: a 5-byte heartbeat is a 104-byte `Envelope`, a 3-byte entry an 80-byte `Entry`.
pub const MAX_DECODED_FRAME_BYTES: usize = 64 << 20;

/// In-memory size of one decoded envelope: the struct plus what its vectors hold.
pub fn decoded_size(env: &Envelope) -> usize {
    use keyval_core::{EntryPayload, Message};
    let heap = match &env.msg {
        Message::AppendEntries { entries, .. } => entries
            .iter()
            .map(|e| {
                std::mem::size_of_val(e)
                    + match &e.payload {
                        EntryPayload::Command(req) => req.op.size_hint(),
                        EntryPayload::Noop => 0,
                        EntryPayload::ConfChange(_) => e.size_hint(),
                    }
            })
            .sum(),
        Message::InstallSnapshot { meta, data, .. } => {
            let m = &meta.membership;
            let ids = m.members().len() + m.removed.len();
            let addresses: usize = m.addresses.values().map(|a| 8 + a.len()).sum();
            data.len() + ids * 8 + addresses
        }
        _ => 0,
    };
    std::mem::size_of::<Envelope>() + heap
}

/// Decodes a batch of envelopes one at a time, refusing it as soon as it exceeds
/// [`MAX_ENVELOPES_PER_FRAME`] or [`MAX_DECODED_FRAME_BYTES`]; each envelope's own entries are
/// bounded by the core (`MAX_ENTRIES_PER_MESSAGE`), so no frame costs much more than the limit.
fn deserialize_batch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Envelope>, D::Error> {
    struct Batch;
    impl<'de> serde::de::Visitor<'de> for Batch {
        type Value = Vec<Envelope>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {MAX_ENVELOPES_PER_FRAME} peer messages")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            use serde::de::Error;
            let announced = seq.size_hint().unwrap_or(0);
            if announced > MAX_ENVELOPES_PER_FRAME {
                return Err(A::Error::custom(format!(
                    "{announced} messages in one frame, over the limit of {MAX_ENVELOPES_PER_FRAME}"
                )));
            }
            let mut out = Vec::with_capacity(announced.min(1024));
            let mut bytes = 0usize;
            while let Some(env) = seq.next_element::<Envelope>()? {
                bytes = bytes.saturating_add(decoded_size(&env));
                if bytes > MAX_DECODED_FRAME_BYTES || out.len() == MAX_ENVELOPES_PER_FRAME {
                    return Err(A::Error::custom(format!(
                        "frame decodes to over {MAX_DECODED_FRAME_BYTES} bytes or {MAX_ENVELOPES_PER_FRAME} messages"
                    )));
                }
                out.push(env);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Batch)
}

/// Client to node, on `/client`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// A write under a session, or the opening of one (`KvOp::OpenSession`). A `Get` here is
    /// a linearizable read (the form older clients send).
    Request(ClientRequest),
    Status,
    /// A read by one of the read paths. `(client_id, seq)` only tag the reply; reads need no
    /// session.
    Read {
        client_id: u64,
        seq: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        consistency: ReadConsistency,
    },
    /// Ask the leader to hand leadership to `to` (None: its most caught-up voter). Answered
    /// with [`ServerFrame::Transfer`] once the transfer ended, within an election timeout.
    TransferLeader {
        to: Option<NodeId>,
    },
    /// A membership request; the reply is `ServerFrame::Member` with the same tag.
    Member {
        tag: u64,
        op: MemberOp,
    },
}

/// How a leadership transfer ended, as the node that was asked saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferOutcome {
    /// `leader` leads now, in a later term than the one the request found.
    Done { leader: NodeId },
    /// The node asked is not the leader: ask `leader`.
    NotLeader { leader: Option<LeaderHint> },
    /// Refused, or aborted without the target taking over; one line saying why. Leadership
    /// did not move because of this request.
    Failed { reason: String },
}

/// Where the leader is, so a client can follow a redirect without a second round trip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    pub id: NodeId,
    pub address: Option<String>,
}

/// A node's status plus what a client needs to map ids to endpoints. The cluster id is not in
/// it: without TLS it is the only credential a peer shows, so clients are not handed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub status: NodeStatus,
    pub members: Vec<(NodeId, String)>,
    /// Voters, learners and the joint state.
    pub membership: MembershipView,
}

/// Node to client, on `/client`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    Reply {
        reply: ClientReply,
        leader: Option<LeaderHint>,
    },
    Status(StatusReply),
    /// The node could not understand a frame; the connection is closed after this.
    Error {
        reason: String,
    },
    Transfer(TransferOutcome),
    /// The answer to a `ClientFrame::Member` with the same tag.
    Member {
        tag: u64,
        outcome: Result<MembershipView, MemberError>,
        leader: Option<LeaderHint>,
    },
}

/// A membership request of `kvctl member ...`. Every one goes to the leader (a follower
/// answers `NotLeader` with a hint), so `list` shows the newest applied membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOp {
    List,
    /// Adds `id` at `address` as a learner; unless `learner`, the leader promotes it to voter
    /// once it has caught up.
    Add {
        id: NodeId,
        address: String,
        learner: bool,
    },
    Promote {
        id: NodeId,
    },
    Remove {
        id: NodeId,
    },
}

/// Why a membership request did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MemberError {
    #[error("node {node} is not the leader")]
    NotLeader { node: NodeId },
    /// Refused before anything was proposed: certainly not applied.
    #[error("{0}")]
    Refused(String),
    /// Proposed, then the outcome became unknown (leadership lost before it applied).
    #[error("{0}")]
    Indeterminate(String),
    /// Refused for now, nothing proposed: an earlier change is not applied yet, the new leader
    /// has not committed in its term, or leadership is being handed over. Clients retry.
    #[error("{0}")]
    Busy(String),
}

/// How one member takes part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    Voter,
    Learner,
}

impl MemberRole {
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }
}

/// One member as clients and joining nodes see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    pub id: NodeId,
    pub address: String,
    pub role: MemberRole,
    /// A learner that any leader promotes to voter once it has caught up (added without
    /// `--learner`; see `Membership::promote_when_caught_up`).
    #[serde(default)]
    pub auto_promote: bool,
}

/// The applied membership, in the form that travels: members with addresses and roles, the
/// outgoing voters while a joint configuration is in force, and the ids removed for good.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    /// Log index of the configuration (0: the bootstrap one).
    pub index: u64,
    pub members: Vec<MemberRow>,
    /// Voters of the old configuration while joint (empty otherwise).
    pub outgoing: Vec<NodeId>,
    pub removed: Vec<NodeId>,
}

impl MembershipView {
    pub fn joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Voter)
            .map(|m| m.id)
    }

    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Learner)
            .map(|m| m.id)
    }

    pub fn address_of(&self, id: NodeId) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.address.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("unsupported wire version {got} (this build speaks version {WIRE_VERSION})")]
    Version { got: u8 },
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
}

pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    // Encoding into a Vec only fails for types serde cannot describe, which ours are not;
    // an empty body would then be refused by the receiver instead of crashing the sender.
    postcard::to_extend(frame, vec![WIRE_VERSION]).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { got: version });
    }
    let (frame, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyval_core::{KvOp, Message};

    #[test]
    fn round_trips_and_refuses_garbage() {
        let f = PeerFrame::Raft(vec![Envelope {
            from: 1,
            to: 2,
            msg: Message::Heartbeat {
                term: 3,
                commit: 4,
                ctx: 5,
            },
        }]);
        let bytes = encode(&f);
        assert_eq!(decode::<PeerFrame>(&bytes).expect("decode"), f);
        assert!(matches!(decode::<PeerFrame>(&[]), Err(WireError::Empty)));
        assert!(matches!(
            decode::<PeerFrame>(&[9, 0]),
            Err(WireError::Version { got: 9 })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<PeerFrame>(&trailing).is_err());
        let c = ClientFrame::Request(ClientRequest {
            client_id: 1,
            seq: 2,
            op: KvOp::Get { key: b"k".to_vec() },
        });
        assert_eq!(decode::<ClientFrame>(&encode(&c)).expect("decode"), c);
        // A frame of many tiny messages that would decode to far more memory than its size.
        let heartbeats = PeerFrame::Raft(vec![
            Envelope {
                from: 1,
                to: 2,
                msg: Message::Heartbeat {
                    term: 3,
                    commit: 4,
                    ctx: 5
                },
            };
            MAX_ENVELOPES_PER_FRAME + 1
        ]);
        assert!(decode::<PeerFrame>(&encode(&heartbeats)).is_err());
        // A count prefix of 2^35 messages is refused before anything is allocated for it.
        let hostile = [WIRE_VERSION, 3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(decode::<PeerFrame>(&hostile).is_err());
        // Random bytes never panic.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..2000usize {
            let buf: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .chain(std::iter::once(WIRE_VERSION))
                .rev()
                .collect();
            let _ = decode::<PeerFrame>(&buf);
            let _ = decode::<ClientFrame>(&buf);
        }
    }
}
