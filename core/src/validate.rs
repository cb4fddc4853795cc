//! Plausibility of peer messages, checked before a message can change anything.
//!
//! The core trusts message *structure* (it asserts its own log invariants), so a message no
//! correct peer can produce must be refused at the door as a protocol violation: a forged
//! `term = u64::MAX` would otherwise be adopted and overflow the next election, and absurd
//! indexes would overflow `index + 1` arithmetic. Terms and indexes above [`MAX_TERM`] and
//! [`MAX_INDEX`] are refused outright (a cluster reaches neither in any lifetime: 2^62 elections
//! or entries), which leaves every `+ 1` in the core headroom. A term more than
//! [`MAX_TERM_JUMP`] ahead of the receiver's is refused too, so a forged peer cannot walk the
//! term to the ceiling with a few messages; an honest node gets that far ahead only after 2^32
//! elections in isolation (without Pre-Vote, ~13 years at ten elections a second).

use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};

use crate::message::{AppendResult, Message, SnapshotResult};
use crate::types::{Entry, Index, Term};

/// Most entries one AppendEntries may carry when decoded. An entry is ~80 bytes in memory but
/// can be 3 bytes on the wire, so without a bound a 16 MiB frame of empty entries would cost
/// ~430 MB to decode. Senders batch far fewer (`max_entries_per_msg`, 4096 in the node).
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1 << 16;

/// Highest term a message may carry.
pub const MAX_TERM: Term = 1 << 62;
/// Highest log index (or byte offset) a message may carry.
pub const MAX_INDEX: Index = 1 << 62;
/// How far ahead of the receiver's term a message's term may be.
pub const MAX_TERM_JUMP: Term = 1 << 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Implausible {
    #[error("{kind}: {field} {value} is above the limit of {limit}")]
    TooLarge {
        kind: &'static str,
        field: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{kind}: term {term} is more than {MAX_TERM_JUMP} ahead of local term {local}")]
    TermJump {
        kind: &'static str,
        term: Term,
        local: Term,
    },
    #[error("append entries malformed: {0}")]
    Append(&'static str),
    #[error("{kind}: {0}", kind = "Snapshot")]
    Snapshot(&'static str),
    #[error("{kind}: last log term {last_log_term} is above the message term {term}")]
    LogTermAboveTerm {
        kind: &'static str,
        last_log_term: Term,
        term: Term,
    },
}

impl Message {
    /// Checks what can be checked without the receiver's state: every term and index within
    /// its limit, and an append's entries contiguous after `prev_log_index` with terms that
    /// never decrease, start at or above `prev_log_term` and never exceed the message's term.
    pub fn check_shape(&self) -> Result<(), Implausible> {
        let kind = self.kind();
        let term = |field, value| bounded(kind, field, value, MAX_TERM);
        let index = |field, value| bounded(kind, field, value, MAX_INDEX);
        term("term", self.term())?;
        match self {
            Message::PreVote {
                term: t,
                last_log_index,
                last_log_term,
            }
            | Message::RequestVote {
                term: t,
                last_log_index,
                last_log_term,
                ..
            } => {
                index("last_log_index", *last_log_index)?;
                if last_log_term > t {
                    return Err(Implausible::LogTermAboveTerm {
                        kind,
                        last_log_term: *last_log_term,
                        term: *t,
                    });
                }
            }
            // Read contexts are opaque numbers the sender chose: any value is well formed.
            Message::PreVoteResponse { .. }
            | Message::RequestVoteResponse { .. }
            | Message::HeartbeatResponse { .. }
            | Message::TimeoutNow { .. }
            | Message::ReadIndex { .. } => {}
            Message::ReadIndexResponse { index: Some(i), .. } => index("read index", *i)?,
            Message::ReadIndexResponse { index: None, .. } => {}
            Message::AppendEntries {
                term: t,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                index("prev_log_index", *prev_log_index)?;
                index("leader_commit", *leader_commit)?;
                check_entries(*t, *prev_log_index, *prev_log_term, entries)?;
            }
            Message::AppendEntriesResponse { result, .. } => match result {
                AppendResult::Success { match_index } => index("match_index", *match_index)?,
                AppendResult::Reject {
                    rejected_prev,
                    conflict_term,
                    hint_index,
                } => {
                    index("rejected_prev", *rejected_prev)?;
                    index("hint_index", *hint_index)?;
                    if let Some(c) = conflict_term {
                        term("conflict_term", *c)?;
                    }
                }
            },
            Message::Heartbeat { commit, .. } => index("commit", *commit)?,
            Message::InstallSnapshot {
                term: t,
                meta,
                offset,
                data,
                ..
            } => {
                index("snapshot last_index", meta.last_index)?;
                index("offset", *offset)?;
                if meta.last_term > *t {
                    return Err(Implausible::Snapshot(
                        "snapshot term above the message term",
                    ));
                }
                if meta.membership.voters.is_empty() {
                    return Err(Implausible::Snapshot("snapshot without voters"));
                }
                index(
                    "offset + chunk length",
                    offset.saturating_add(data.len() as u64),
                )?;
            }
            Message::InstallSnapshotResponse {
                snapshot_index,
                result,
                ..
            } => {
                index("snapshot_index", *snapshot_index)?;
                match result {
                    SnapshotResult::Continue { next_offset } => index("next_offset", *next_offset)?,
                    SnapshotResult::Done { match_index } => index("match_index", *match_index)?,
                }
            }
        }
        Ok(())
    }

    /// [`Message::check_shape`] plus the one check that needs the receiver's term.
    pub fn check_plausible(&self, local_term: Term) -> Result<(), Implausible> {
        self.check_shape()?;
        let term = self.term();
        if term > local_term.saturating_add(MAX_TERM_JUMP) {
            return Err(Implausible::TermJump {
                kind: self.kind(),
                term,
                local: local_term,
            });
        }
        Ok(())
    }
}

/// Decodes a sequence of at most `max` elements, refusing a longer one before allocating for
/// it (postcard announces the length first), so an untrusted length field never sizes an
/// allocation beyond the bound.
pub struct BoundedSeq<T> {
    max: usize,
    what: &'static str,
    element: PhantomData<T>,
}

impl<T> BoundedSeq<T> {
    pub fn new(max: usize, what: &'static str) -> Self {
        BoundedSeq {
            max,
            what,
            element: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedSeq<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let too_many = || A::Error::custom(format!("more than {} {}", self.max, self.what));
        let announced = seq.size_hint().unwrap_or(0);
        if announced > self.max {
            return Err(too_many());
        }
        let mut out = Vec::with_capacity(announced.min(1024));
        while let Some(x) = seq.next_element()? {
            if out.len() == self.max {
                return Err(too_many());
            }
            out.push(x);
        }
        Ok(out)
    }
}

/// `deserialize_with` for [`Message::AppendEntries`]'s entries.
pub fn deserialize_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
    d.deserialize_seq(BoundedSeq::new(MAX_ENTRIES_PER_MESSAGE, "entries"))
}

fn bounded(
    kind: &'static str,
    field: &'static str,
    value: u64,
    limit: u64,
) -> Result<(), Implausible> {
    if value > limit {
        return Err(Implausible::TooLarge {
            kind,
            field,
            value,
            limit,
        });
    }
    Ok(())
}

fn check_entries(
    term: Term,
    prev_log_index: Index,
    prev_log_term: Term,
    entries: &[crate::types::Entry],
) -> Result<(), Implausible> {
    if prev_log_term > term {
        return Err(Implausible::Append("prev_log_term above the message term"));
    }
    let mut last_term = prev_log_term;
    let mut want = prev_log_index;
    for e in entries {
        want = want
            .checked_add(1)
            .filter(|&w| w <= MAX_INDEX)
            .ok_or(Implausible::Append("entry index beyond the index limit"))?;
        if e.index != want {
            return Err(Implausible::Append(
                "entries not contiguous after prev_log_index",
            ));
        }
        if e.term < last_term {
            return Err(Implausible::Append("entry terms go back"));
        }
        if e.term > term {
            return Err(Implausible::Append("entry term above the message term"));
        }
        last_term = e.term;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, EntryPayload};

    fn append(prev: u64, prev_term: u64, term: u64, entries: &[(u64, u64)]) -> Message {
        Message::AppendEntries {
            term,
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries: entries
                .iter()
                .map(|&(index, term)| Entry {
                    index,
                    term,
                    payload: EntryPayload::Noop,
                })
                .collect(),
            leader_commit: 0,
        }
    }

    #[test]
    fn malformed_appends_are_recognized() {
        let ok = |m: &Message| m.check_shape().is_ok();
        assert!(ok(&append(3, 1, 2, &[(4, 1), (5, 2)])));
        assert!(ok(&append(0, 0, 1, &[])));
        assert!(!ok(&append(3, 1, 2, &[(5, 2)])), "gap");
        assert!(!ok(&append(3, 1, 2, &[(4, 2), (5, 1)])), "term goes back");
        assert!(!ok(&append(3, 2, 2, &[(4, 1)])), "below prev term");
        assert!(!ok(&append(3, 1, 2, &[(4, 3)])), "above message term");
        assert!(!ok(&append(3, 3, 2, &[])), "prev term above message term");
        assert!(!ok(&append(u64::MAX, 1, 2, &[(0, 1)])), "overflow");
        assert!(
            !ok(&append(MAX_INDEX, 1, 2, &[(MAX_INDEX + 1, 1)])),
            "past the limit"
        );
        assert!(ok(&Message::Heartbeat {
            term: 1,
            commit: 9,
            ctx: 0
        }));
        assert!(!ok(&Message::Heartbeat {
            term: u64::MAX,
            commit: 9,
            ctx: 0,
        }));
    }

    #[test]
    fn an_oversized_entry_count_is_refused_before_allocating() {
        let ok = append(0, 0, 1, &[(1, 1), (2, 1)]);
        let bytes = postcard::to_allocvec(&ok).expect("encode");
        assert_eq!(postcard::from_bytes::<Message>(&bytes).expect("decode"), ok);
        // AppendEntries tag, term, prev index, prev term, then an entry count of 2^40.
        let hostile = [4u8, 1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0];
        assert!(postcard::from_bytes::<Message>(&hostile).is_err());
        let many: Vec<(u64, u64)> = (1..=MAX_ENTRIES_PER_MESSAGE as u64 + 1)
            .map(|i| (i, 1))
            .collect();
        let bytes = postcard::to_allocvec(&append(0, 0, 1, &many)).expect("encode");
        assert_eq!(
            postcard::from_bytes::<Message>(&bytes),
            Err(postcard::Error::SerdeDeCustom),
            "one entry over the bound"
        );
    }

    #[test]
    fn term_jumps_are_bounded_relative_to_the_local_term() {
        let hb = |term| Message::Heartbeat {
            term,
            commit: 0,
            ctx: 0,
        };
        assert!(hb(MAX_TERM_JUMP).check_plausible(0).is_ok());
        assert!(hb(MAX_TERM_JUMP + 1).check_plausible(0).is_err());
        assert!(hb(MAX_TERM_JUMP + 5).check_plausible(5).is_ok());
        assert!(hb(MAX_TERM).check_plausible(MAX_TERM).is_ok());
        assert!(hb(MAX_TERM + 1).check_plausible(MAX_TERM).is_err());
    }
}
