//! What a leader knows about each follower's log, and how many appends it may have in flight.

use std::collections::VecDeque;

use crate::types::Index;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Next index unknown: one append at a time until one succeeds.
    Probe,
    /// Follower known to match: appends are pipelined up to the inflight window.
    Replicate,
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
        }
    }

    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
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
        if self.state == ProgressState::Probe {
            self.become_replicate();
        }
        advanced
    }

    pub fn become_probe(&mut self, next_index: Index) {
        self.state = ProgressState::Probe;
        self.stalled_ticks = 0;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.inflight.clear();
    }

    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Counts a leader tick; true when outstanding appends have gone unanswered for `limit`
    /// ticks, i.e. they were lost and the follower must be probed again.
    pub fn tick_stalled(&mut self, limit: u32) -> bool {
        let outstanding = match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => !self.inflight.is_empty(),
        };
        if !outstanding {
            self.stalled_ticks = 0;
            return false;
        }
        self.stalled_ticks += 1;
        self.stalled_ticks >= limit
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
        }
    }
}
