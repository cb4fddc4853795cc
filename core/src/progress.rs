//! What a leader knows about each follower's log, and how many appends it may have in flight.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::snapshot::Snapshot;

use crate::types::Index;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Next index unknown: one append at a time until one succeeds.
    Probe,
    /// Follower known to match: appends are pipelined up to the inflight window.
    Replicate,
    /// Follower needs entries the leader compacted: the leader's snapshot is sent chunk by
    /// chunk, a bounded window of them outstanding, until the follower reports it done.
    Snapshot,
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: Index,
    pub next_index: Index,
    pub state: ProgressState,
    /// In Probe: an append is outstanding, wait for its answer or the next heartbeat response.
    pub probe_sent: bool,
    /// Last index of each unacknowledged append in Replicate, oldest first.
    inflight: VecDeque<Index>,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Leader ticks since an append to this follower was last acknowledged while some were
    /// outstanding. Appends lost in bulk (a dropped connection) would otherwise be freed one
    /// per heartbeat response; past an election timeout the leader probes again instead.
    pub stalled_ticks: u32,
    /// In Snapshot: last index of the snapshot being sent. Kept after the transfer until the
    /// follower's log has caught up past the leader's next compaction point, which waits for
    /// it (see `RaftNode::compaction_would_strand_a_follower`).
    pub pending_snapshot: Index,
    /// After a snapshot transfer: the leader's last index when it was first seen done, the
    /// backlog the follower replays by appends before compaction stops waiting for it (0:
    /// not set).
    pub catch_up_to: Index,
    /// In Snapshot: the snapshot being sent. The transfer pins it, so the leader taking a newer
    /// snapshot meanwhile does not restart it (which, with a busy leader, could repeat forever).
    pub transfer: Option<Arc<Snapshot>>,
    /// In Snapshot: the byte offset of the next chunk to send.
    pub snapshot_offset: u64,
    /// In Snapshot: the follower holds every byte before this offset (its best answer).
    pub snapshot_acked: u64,
    /// In Snapshot: the offset the follower's latest answer asked for. Below `snapshot_acked`
    /// when it lost its partial transfer (a restart): a stall resumes from here.
    pub snapshot_last_reply: u64,
    /// In Snapshot: the chunk marked done was sent (nothing is left to send unless a rewind).
    pub snapshot_done_sent: bool,
    /// In Snapshot: heartbeat responses in a row that came without transfer progress. After
    /// two, chunks (or answers) were lost: sending resumes from `snapshot_acked`.
    pub snapshot_stalled: u8,
}

impl Progress {
    pub fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            stalled_ticks: 0,
            pending_snapshot: 0,
            catch_up_to: 0,
            transfer: None,
            snapshot_offset: 0,
            snapshot_acked: 0,
            snapshot_last_reply: 0,
            snapshot_done_sent: false,
            snapshot_stalled: 0,
        }
    }

    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            // The window is checked by the sender, which knows the chunk size.
            ProgressState::Snapshot => false,
        }
    }

    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Records an append covering up to `last`: Replicate advances optimistically, Probe waits.
    pub fn on_sent(&mut self, last: Index, carried_entries: bool) {
        match self.state {
            ProgressState::Replicate => {
                if carried_entries {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// Returns false for a stale acknowledgement (reordered or duplicated).
    pub fn on_success(&mut self, match_index: Index) -> bool {
        let advanced = match_index > self.match_index;
        self.stalled_ticks = 0;
        if advanced {
            self.match_index = match_index;
        }
        self.next_index = self.next_index.max(match_index + 1);
        while self.inflight.front().is_some_and(|&i| i <= match_index) {
            self.inflight.pop_front();
        }
        match self.state {
            ProgressState::Probe => self.become_replicate(),
            // The follower holds everything the snapshot covers (it installed it, or caught up
            // some other way): plain appends take over from here.
            ProgressState::Snapshot if self.match_index >= self.pending_snapshot => {
                self.become_replicate()
            }
            _ => {}
        }
        advanced
    }

    /// Starts sending the snapshot ending at `index` from its first byte.
    pub fn become_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = snapshot.meta.last_index;
        self.catch_up_to = 0;
        self.transfer = Some(snapshot);
        self.snapshot_offset = 0;
        self.snapshot_acked = 0;
        self.snapshot_last_reply = 0;
        self.snapshot_done_sent = false;
        self.snapshot_stalled = 0;
        self.probe_sent = false;
        self.stalled_ticks = 0;
        self.inflight.clear();
    }

    pub fn become_probe(&mut self, next_index: Index) {
        self.state = ProgressState::Probe;
        self.stalled_ticks = 0;
        self.transfer = None;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.inflight.clear();
    }

    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.transfer = None;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Counts a leader tick while appends are outstanding. A follower that answers heartbeats
    /// but not appends for an election timeout lost them (in bulk, e.g. with a dropped
    /// connection): the leader then probes it again instead of freeing one slot per beat.
    pub fn tick_stalled(&mut self) {
        if self.state == ProgressState::Replicate && !self.inflight.is_empty() {
            self.stalled_ticks = self.stalled_ticks.saturating_add(1);
        } else {
            self.stalled_ticks = 0;
        }
    }

    /// A heartbeat response proves the follower alive: let one more append through so a lost
    /// append can never stall replication forever (etcd does the same).
    pub fn on_heartbeat_response(&mut self) {
        self.recent_active = true;
        match self.state {
            ProgressState::Probe => self.probe_sent = false,
            ProgressState::Replicate => {
                self.inflight.pop_front();
            }
            // Not a resend trigger by itself (that started duplicate chunk streams): only a
            // transfer that made no progress over two heartbeats resumes from what the
            // follower acknowledged.
            ProgressState::Snapshot => {
                self.snapshot_stalled = self.snapshot_stalled.saturating_add(1);
                if self.snapshot_stalled >= 2 {
                    self.rewind_snapshot();
                }
            }
        }
    }

    /// Whether another chunk of `chunk_bytes` may go out under a window of `window` chunks.
    pub fn snapshot_window_open(&self, chunk_bytes: u64, window: usize) -> bool {
        let in_flight = self.snapshot_offset.saturating_sub(self.snapshot_acked);
        !self.snapshot_done_sent && in_flight < chunk_bytes.saturating_mul(window as u64)
    }

    /// The follower answered that it holds everything before `next_offset`.
    pub fn on_snapshot_progress(&mut self, next_offset: u64) {
        self.snapshot_last_reply = next_offset;
        if next_offset > self.snapshot_acked {
            self.snapshot_acked = next_offset;
            self.snapshot_stalled = 0;
        }
        if self.snapshot_offset < self.snapshot_acked {
            self.snapshot_offset = self.snapshot_acked;
        }
    }

    /// Sends again from the offset the follower last asked for.
    fn rewind_snapshot(&mut self) {
        self.snapshot_acked = self.snapshot_last_reply;
        self.snapshot_offset = self.snapshot_last_reply;
        self.snapshot_done_sent = false;
        self.snapshot_stalled = 0;
    }
}
