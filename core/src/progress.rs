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
    /// chunk, one outstanding at a time, until the follower reports it done.
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
    /// In Snapshot: last index of the snapshot being sent.
    pub pending_snapshot: Index,
    /// In Snapshot: the snapshot being sent. The transfer pins it, so the leader taking a newer
    /// snapshot meanwhile does not restart it (which, with a busy leader, could repeat forever).
    pub transfer: Option<Arc<Snapshot>>,
    /// In Snapshot: the byte offset of the next chunk to send.
    pub snapshot_offset: u64,
    /// In Snapshot: a chunk is outstanding; the next goes out on its answer, or (if it or the
    /// answer was lost) after the next heartbeat response.
    pub snapshot_sent: bool,
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
            transfer: None,
            snapshot_offset: 0,
            snapshot_sent: false,
        }
    }

    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot => self.snapshot_sent,
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
        self.transfer = Some(snapshot);
        self.snapshot_offset = 0;
        self.snapshot_sent = false;
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
            // The chunk or its answer may be lost: send again from the last known offset
            // (the follower answers a duplicate with the offset it really wants).
            ProgressState::Snapshot => self.snapshot_sent = false,
        }
    }
}
