//! Timers for the protocol core: a hashed hierarchical timing wheel.
//!
//! Owns: the wheel, its entry slab and generation-checked handles.
//! Must not: read a clock, sleep, or lock. Time is passed in as [`Millis`] by the caller.
//!
//! SKELETON: the API below is the contract; the implementation is a placeholder (BTreeMap) to be
//! replaced by the hierarchical wheel without changing the API.

use std::collections::BTreeMap;

/// Milliseconds on the caller's monotonic clock. The whole protocol core counts time in this unit.
pub type Millis = u64;

/// Handle to a scheduled timer. Cancelling with a stale handle (already fired or cancelled) is a no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

pub struct TimerWheel<T> {
    now: Millis,
    next_id: u32,
    entries: BTreeMap<(Millis, u32), T>,
    by_id: std::collections::HashMap<u32, Millis>,
}

impl<T> TimerWheel<T> {
    /// A wheel whose current time is `now`.
    pub fn new(now: Millis) -> Self {
        Self {
            now,
            next_id: 0,
            entries: BTreeMap::new(),
            by_id: Default::default(),
        }
    }

    /// Schedule `value` to fire at `deadline` (a deadline in the past fires on the next `poll`).
    pub fn insert(&mut self, deadline: Millis, value: T) -> TimerHandle {
        let id = self.next_id;
        self.next_id += 1;
        let d = deadline.max(self.now);
        self.entries.insert((d, id), value);
        self.by_id.insert(id, d);
        TimerHandle {
            index: id,
            generation: 0,
        }
    }

    /// Cancel a timer; returns its value if it was still pending.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let d = self.by_id.remove(&handle.index)?;
        self.entries.remove(&(d, handle.index))
    }

    /// Advance to `now` and pop one expired timer (deadline <= now), earliest first.
    /// Call repeatedly until it returns None.
    pub fn poll(&mut self, now: Millis) -> Option<(TimerHandle, T)> {
        self.now = self.now.max(now);
        let (&(d, id), _) = self.entries.iter().next()?;
        if d > self.now {
            return None;
        }
        let v = self.entries.remove(&(d, id))?;
        self.by_id.remove(&id);
        Some((
            TimerHandle {
                index: id,
                generation: 0,
            },
            v,
        ))
    }

    /// The earliest pending deadline, if any (may be conservative: never later than the true one).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.entries.keys().next().map(|&(d, _)| d)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
