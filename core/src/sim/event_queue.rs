//! The simulator's event queue: actions in virtual-time order, ties broken by scheduling order.
//!
//! The heap holds only `(time, seq, slot)` keys; the actions themselves sit in a slab the keys
//! point into. An action carries whole messages (a snapshot chunk's metadata holds a
//! configuration), so a heap of actions moved a few hundred bytes per sift step on every push
//! and pop: about a seventh of the simulator's time went to `memmove` in the heap alone. The
//! order is the same as a heap of `(time, seq, action)`: `seq` is unique, so `slot` never
//! decides anything and a seed replays exactly as before.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// `(time, seq, slot)`: ordered by time, then by the order in which actions were scheduled.
type Key = (u64, u64, usize);

#[derive(Debug)]
pub(super) struct EventQueue<A> {
    heap: BinaryHeap<Reverse<Key>>,
    /// Scheduled actions by slot; `None` marks a free slot (listed in `free`).
    slots: Vec<Option<A>>,
    free: Vec<usize>,
    next_seq: u64,
}

impl<A> Default for EventQueue<A> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }
}

impl<A> EventQueue<A> {
    pub(super) fn push(&mut self, time: u64, action: A) {
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                debug_assert!(self.slots[s].is_none(), "a free slot is occupied");
                self.slots[s] = Some(action);
                s
            }
            None => {
                self.slots.push(Some(action));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((time, self.next_seq, slot)));
    }

    /// The earliest action and its time.
    pub(super) fn pop(&mut self) -> Option<(u64, A)> {
        let Reverse((time, _, slot)) = self.heap.pop()?;
        let action = self.slots[slot]
            .take()
            .expect("every key in the heap points at a scheduled action");
        self.free.push(slot);
        Some((time, action))
    }

    pub(super) fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }

    /// Every scheduled action with its time, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &A)> + '_ {
        self.heap
            .iter()
            .filter_map(|Reverse((t, _, slot))| self.slots[*slot].as_ref().map(|a| (*t, a)))
    }

    /// Takes every action for which `remove` holds off the queue and returns them; the others
    /// keep their time and place in the order.
    pub(super) fn remove_where(&mut self, mut remove: impl FnMut(&A) -> bool) -> Vec<A> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for Reverse(key) in std::mem::take(&mut self.heap).into_vec() {
            let slot = key.2;
            if self.slots[slot].as_ref().is_some_and(&mut remove) {
                if let Some(a) = self.slots[slot].take() {
                    removed.push(a);
                }
                self.free.push(slot);
            } else {
                kept.push(Reverse(key));
            }
        }
        self.heap = BinaryHeap::from(kept);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_with_ties_in_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(5, "b");
        q.push(3, "a");
        q.push(5, "c");
        assert_eq!(q.pop(), Some((3, "a")));
        q.push(5, "d"); // reuses a's slot, still after b and c
        q.push(4, "e");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(4, "e"), (5, "b"), (5, "c"), (5, "d")]);
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn removed_actions_leave_the_rest_in_order() {
        let mut q = EventQueue::default();
        for (t, a) in [(2, 1), (1, 2), (2, 3), (1, 4), (3, 5)] {
            q.push(t, a);
        }
        let mut removed = q.remove_where(|&a| a % 2 == 1);
        removed.sort();
        assert_eq!(removed, vec![1, 3, 5]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.iter().count(), 2);
        q.push(1, 6);
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(1, 2), (1, 4), (1, 6)]);
    }
}
