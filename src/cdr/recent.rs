//! The most recent CDRs in memory, for the management API's recent calls (`/api/v1/calls`).
//!
//! Owns: [`RecentCalls`], a bounded ring of finished calls' records (oldest dropped first) with
//! the wall-clock time of the shards' `Millis` 0, shared between the CDR writer thread (which
//! pushes every record it takes off its queue) and the admin thread (which takes a snapshot).
//! Runtime, like [`super::writer`]: it holds a `Mutex`, so shards must never touch it (they only
//! `emit` into the writer's queue). The lock is held for a push, or for copying out the ring's
//! `Arc`s (no formatting, no filtering under it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use super::csv::WallClock;
use super::CdrRecord;

/// A bounded ring of the last `capacity` CDRs. Cloning shares the ring.
#[derive(Clone, Debug)]
pub struct RecentCalls {
    inner: Arc<Mutex<Ring>>,
    capacity: usize,
    wall: WallClock,
}

#[derive(Debug, Default)]
struct Ring {
    records: VecDeque<Arc<CdrRecord>>,
    /// Records pushed since the start (the ring holds the last `capacity` of them).
    pushed: u64,
}

/// A copy of the ring's contents, newest first.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub newest_first: Vec<Arc<CdrRecord>>,
    /// Records pushed since the start.
    pub pushed: u64,
}

impl RecentCalls {
    /// An empty ring keeping at most `capacity` records; `wall` converts their `Millis`.
    pub fn new(capacity: usize, wall: WallClock) -> Self {
        RecentCalls {
            inner: Arc::new(Mutex::new(Ring {
                records: VecDeque::with_capacity(capacity.min(4096)),
                pushed: 0,
            })),
            capacity,
            wall,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The wall-clock time of the shards' `Millis` 0 (the same the CDR file uses).
    pub fn wall(&self) -> WallClock {
        self.wall
    }

    /// Adds `r` as the newest record, dropping the oldest when full. Returns the record that
    /// left the ring (or `r` itself with capacity 0) when nothing else holds it (no snapshot), so
    /// the writer can hand it back to the shards for reuse.
    pub fn push(&self, r: CdrRecord) -> Option<CdrRecord> {
        if self.capacity == 0 {
            return Some(r);
        }
        let r = Arc::new(r);
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let old = if g.records.len() >= self.capacity {
            g.records.pop_front()
        } else {
            None
        };
        g.records.push_back(r);
        g.pushed += 1;
        drop(g);
        old.and_then(|o| Arc::try_unwrap(o).ok())
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every record held, newest first (the lock is held only to copy the pointers).
    pub fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Snapshot {
            newest_first: g.records.iter().rev().cloned().collect(),
            pushed: g.pushed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::EndReason;

    fn rec(n: u64) -> CdrRecord {
        CdrRecord {
            call_id: format!("c{n}"),
            caller: "a".into(),
            callee: "b".into(),
            source: "127.0.0.1:5060".parse().unwrap(),
            caller_identity: "peer:p".into(),
            start: n,
            answer: None,
            end: n,
            attempts: Vec::new(),
            final_status: 404,
            end_reason: EndReason::NoRoute,
        }
    }

    #[test]
    fn keeps_the_last_capacity_newest_first() {
        let r = RecentCalls::new(3, WallClock::new(0));
        assert!(r.is_empty());
        for n in 0..5 {
            r.push(rec(n));
        }
        let s = r.snapshot();
        assert_eq!(s.pushed, 5);
        let ids: Vec<&str> = s.newest_first.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["c4", "c3", "c2"]);
        assert_eq!(r.clone().len(), 3, "clones share the ring");
    }

    #[test]
    fn push_returns_the_record_that_left_unless_a_snapshot_holds_it() {
        let r = RecentCalls::new(2, WallClock::new(0));
        assert_eq!(r.push(rec(0)), None);
        assert_eq!(r.push(rec(1)), None);
        assert_eq!(r.push(rec(2)).map(|c| c.call_id), Some("c0".into()));
        let held = r.snapshot();
        assert_eq!(r.push(rec(3)), None, "c1 is still in the snapshot");
        drop(held);
        assert_eq!(r.push(rec(4)).map(|c| c.call_id), Some("c2".into()));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let r = RecentCalls::new(0, WallClock::new(0));
        assert_eq!(r.push(rec(1)).map(|c| c.call_id), Some("c1".into()));
        assert!(r.is_empty());
        assert_eq!(r.snapshot().pushed, 0);
    }
}
