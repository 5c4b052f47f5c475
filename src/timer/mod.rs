//! Timers for the protocol core: a hashed hierarchical timing wheel.
//!
//! Owns: the wheel, its entry slab and generation-checked handles.
//! Must not: read a clock, sleep, or lock; it imports no other sipshard module. Time is passed in
//! as [`Millis`] by the caller.
//!
//! # Semantics
//! - A timer inserted with a deadline earlier than the wheel's current time (the latest time passed
//!   to [`TimerWheel::new`] or [`TimerWheel::poll`]) is due at that current time: it fires on the
//!   next `poll`. Call this the *effective* deadline.
//! - `poll(now)` returns one due timer per call (effective deadline <= now), earliest effective
//!   deadline first, never early. Across calls the effective deadlines it returns never decrease,
//!   however far `now` jumps. Timers with the same effective deadline fire in insertion order.
//!   A `now` earlier than a previous one is treated as the previous one (time never goes back).
//! - A handle is valid until its timer fires or is cancelled; after that it is stale and
//!   [`TimerWheel::cancel`] with it is a no-op returning `None`, even when the slab entry has been
//!   reused (the handle carries a generation).
//! - [`TimerWheel::next_deadline`] may be early (it reports the start of the earliest occupied slot,
//!   which on the upper levels precedes the deadlines in it), never late. Polling at the time it
//!   reports always makes progress: either a timer fires or the next reported deadline is later.
//!
//! # Structure
//! Levels of 64 slots; level `L` slots are `64^L` ms wide, so level 0 has 1 ms resolution and 11
//! levels cover the whole `u64` range (no overflow list). A timer lives on the level of the highest
//! 6-bit digit in which its deadline differs from the wheel's position (`elapsed`), in the slot
//! named by its deadline's digit on that level. Each level has a `u64` occupancy bitmask and the
//! wheel keeps a bitmask of non-empty levels, so finding the next expiring slot is a couple of
//! `trailing_zeros`. When the wheel reaches an upper-level slot it re-files ("cascades") its timers
//! onto lower levels; a level-0 slot holds timers of exactly one deadline.
//!
//! Entries live in a slab (`Vec` + free list) addressed by `u32` index; each slot is an intrusive
//! doubly linked list (head and tail indices), so insert and cancel are O(1) and, once the slab has
//! grown, allocate nothing. An entry is the value plus 24 bytes (40 bytes for a `u64` value).
//!
//! # Costs to know
//! A timer is touched once per level it descends (at most 3 times for a deadline within 4.6 h), so
//! long timers cost a few cache misses each over their life. Cascading happens all at once when the
//! wheel reaches an upper-level slot: every timer in that slot is re-filed in that one `poll`, about
//! 30 ns each when the slab fits in cache (100k timers: 3 ms) and up to ~170 ns when it does not
//! (1M timers in a shuffled 40 MB slab: 168 ms in one poll on the 2-core dev box). Registration
//! expiries an hour ahead mostly sit on level 3 (262 s slots, so 1M bindings give ~70k per
//! cascade), but at a level-4 boundary (every 4.6 h) up to all of them can cascade in one poll.
//! Sharding divides it; if it matters, the fix is to cascade a slot incrementally ahead of time.

#[cfg(test)]
mod tests;

/// Milliseconds on the caller's monotonic clock. The whole protocol core counts time in this unit.
pub type Millis = u64;

/// Handle to a scheduled timer. Cancelling with a stale handle (already fired or cancelled) is a no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

/// Bits of the deadline consumed per level.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Levels needed for any `u64` deadline: ceil(64 / 6).
const LEVELS: usize = 11;
/// "No entry" in the intrusive lists and the free list.
const NIL: u32 = u32::MAX;
/// `Entry::list` of an entry that is in no list (free or retired).
const UNLINKED: u16 = u16::MAX;

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

struct Entry<T> {
    /// `Some` while the timer is pending.
    value: Option<T>,
    /// Effective deadline.
    deadline: Millis,
    prev: u32,
    /// Next in the slot list while pending; next free entry while free.
    next: u32,
    /// Bumped every time the entry is released, which makes old handles stale.
    generation: u32,
    /// `level * SLOTS + slot` while pending, `UNLINKED` otherwise.
    list: u16,
}

/// A hashed hierarchical timing wheel with 1 ms resolution. See the module docs for semantics.
pub struct TimerWheel<T> {
    /// Latest time seen (from `new` or `poll`); inserts earlier than this are clamped to it.
    now: Millis,
    /// Position of the wheel: every pending entry has `deadline >= elapsed`, and is filed relative
    /// to it. `elapsed <= now`.
    elapsed: Millis,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
    occupied: [u64; LEVELS],
    /// Bit `l` is set iff `occupied[l] != 0`.
    levels: u16,
    lists: Box<[List; LEVELS * SLOTS]>,
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
}

/// Level on which a deadline is filed, relative to the wheel position `elapsed`.
#[inline]
fn level_for(elapsed: Millis, deadline: Millis) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / LEVEL_BITS) as usize
}

/// Slot of `deadline` on `level`.
#[inline]
fn slot_for(deadline: Millis, level: usize) -> usize {
    ((deadline >> (level as u32 * LEVEL_BITS)) & (SLOTS as u64 - 1)) as usize
}

/// Earliest time covered by `slot` of `level`, for a wheel positioned at `elapsed`.
#[inline]
fn slot_start(elapsed: Millis, level: usize, slot: usize) -> Millis {
    let shift = level as u32 * LEVEL_BITS;
    let region_bits = shift + LEVEL_BITS;
    let base = if region_bits >= 64 {
        0
    } else {
        elapsed & !((1u64 << region_bits) - 1)
    };
    base + ((slot as u64) << shift)
}

impl<T> TimerWheel<T> {
    /// A wheel whose current time is `now`.
    pub fn new(now: Millis) -> Self {
        Self::with_capacity(now, 0)
    }

    /// A wheel whose current time is `now`, with room for `capacity` timers before the slab grows.
    pub fn with_capacity(now: Millis, capacity: usize) -> Self {
        Self {
            now,
            elapsed: now,
            occupied: [0; LEVELS],
            levels: 0,
            lists: Box::new([EMPTY_LIST; LEVELS * SLOTS]),
            entries: Vec::with_capacity(capacity),
            free_head: NIL,
            len: 0,
        }
    }

    /// Make room for at least `additional` more timers without growing the slab.
    pub fn reserve(&mut self, additional: usize) {
        // Entries not pending are free for reuse (but for the rare retired ones; see `release`).
        let free = self.entries.len() - self.len;
        self.entries.reserve(additional.saturating_sub(free));
    }

    /// Schedule `value` to fire at `deadline` (a deadline in the past fires on the next `poll`).
    ///
    /// Panics if more than `u32::MAX - 1` slab entries would be needed.
    pub fn insert(&mut self, deadline: Millis, value: T) -> TimerHandle {
        let deadline = deadline.max(self.now);
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let e = &mut self.entries[index as usize];
            self.free_head = e.next;
            e.value = Some(value);
            e.deadline = deadline;
            index
        } else {
            let index = self.entries.len();
            assert!(index < NIL as usize, "timer slab full");
            self.entries.push(Entry {
                value: Some(value),
                deadline,
                prev: NIL,
                next: NIL,
                generation: 0,
                list: UNLINKED,
            });
            index as u32
        };
        self.link(index);
        self.len += 1;
        TimerHandle {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancel a timer; returns its value if it was still pending.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        self.live(handle)?;
        self.unlink(handle.index);
        Some(self.release(handle.index).2)
    }

    /// Advance to `now` and pop one expired timer (deadline <= now), earliest first.
    /// Call repeatedly until it returns None.
    pub fn poll(&mut self, now: Millis) -> Option<(TimerHandle, T)> {
        self.poll_with_deadline(now).map(|(h, _, v)| (h, v))
    }

    /// As [`poll`](Self::poll), also returning the timer's effective deadline (its deadline, or the
    /// wheel's time at insertion if that was later). Useful to schedule the next timer of a series
    /// from the previous deadline rather than from `now`, so that lateness does not accumulate.
    pub fn poll_with_deadline(&mut self, now: Millis) -> Option<(TimerHandle, Millis, T)> {
        self.now = self.now.max(now);
        let now = self.now;
        loop {
            let Some((level, slot, start)) = self.next_expiration() else {
                self.elapsed = now;
                return None;
            };
            if start > now {
                // Nothing is due; moving the position forward keeps every entry validly filed,
                // since no occupied slot starts at or before `now`.
                self.elapsed = now;
                return None;
            }
            debug_assert!(start >= self.elapsed);
            self.elapsed = start;
            if level == 0 {
                let index = self.lists[slot].head;
                self.unlink(index);
                return Some(self.release(index));
            }
            self.cascade(level, slot);
        }
    }

    /// The earliest pending deadline, if any (may be conservative: never later than the true one).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.next_expiration().map(|(_, _, start)| start)
    }

    /// The effective deadline of a pending timer; `None` for a stale handle.
    pub fn deadline(&self, handle: TimerHandle) -> Option<Millis> {
        self.live(handle).map(|e| e.deadline)
    }

    /// Whether the handle's timer is still pending.
    pub fn contains(&self, handle: TimerHandle) -> bool {
        self.live(handle).is_some()
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn live(&self, handle: TimerHandle) -> Option<&Entry<T>> {
        let e = self.entries.get(handle.index as usize)?;
        (e.generation == handle.generation && e.list != UNLINKED).then_some(e)
    }

    /// Earliest occupied slot: (level, slot, start time). The lowest non-empty level always holds
    /// it: an upper-level slot only holds deadlines beyond the current span of every lower level.
    #[inline]
    fn next_expiration(&self) -> Option<(usize, usize, Millis)> {
        if self.levels == 0 {
            return None;
        }
        let level = self.levels.trailing_zeros() as usize;
        let slot = self.occupied[level].trailing_zeros() as usize;
        debug_assert!(
            slot >= slot_for(self.elapsed, level) + usize::from(level > 0),
            "slot behind the wheel position"
        );
        Some((level, slot, slot_start(self.elapsed, level, slot)))
    }

    /// File a pending entry at the tail of its slot list, relative to `elapsed`.
    #[inline]
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        debug_assert!(deadline >= self.elapsed);
        let level = level_for(self.elapsed, deadline);
        let slot = slot_for(deadline, level);
        let id = level * SLOTS + slot;
        let tail = self.lists[id].tail;
        {
            let e = &mut self.entries[index as usize];
            e.prev = tail;
            e.next = NIL;
            e.list = id as u16;
        }
        if tail == NIL {
            self.lists[id].head = index;
            self.occupied[level] |= 1 << slot;
            self.levels |= 1 << level;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[id].tail = index;
    }

    /// Remove a pending entry from its slot list (it stays marked as pending).
    #[inline]
    fn unlink(&mut self, index: u32) {
        let (id, prev, next) = {
            let e = &self.entries[index as usize];
            (e.list as usize, e.prev, e.next)
        };
        if prev == NIL {
            self.lists[id].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[id].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if prev == NIL && next == NIL {
            self.clear_slot_bit(id);
        }
    }

    #[inline]
    fn clear_slot_bit(&mut self, id: usize) {
        let (level, slot) = (id / SLOTS, id % SLOTS);
        self.occupied[level] &= !(1 << slot);
        if self.occupied[level] == 0 {
            self.levels &= !(1 << level);
        }
    }

    /// Release an unlinked pending entry: take its value, make its handles stale, recycle it.
    #[inline]
    fn release(&mut self, index: u32) -> (TimerHandle, Millis, T) {
        let free_head = self.free_head;
        let e = &mut self.entries[index as usize];
        let handle = TimerHandle {
            index,
            generation: e.generation,
        };
        let value = e.value.take().expect("pending entry has a value");
        let deadline = e.deadline;
        e.list = UNLINKED;
        // At the last generation the entry is retired instead of recycled: reusing it would wrap
        // the generation and revive ancient handles.
        if e.generation != u32::MAX {
            e.generation += 1;
            e.next = free_head;
            self.free_head = index;
        }
        self.len -= 1;
        (handle, deadline, value)
    }

    /// Re-file every entry of an upper-level slot relative to the (just advanced) position.
    fn cascade(&mut self, level: usize, slot: usize) {
        let id = level * SLOTS + slot;
        let mut index = self.lists[id].head;
        self.lists[id] = EMPTY_LIST;
        self.clear_slot_bit(id);
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.link(index);
            debug_assert!((self.entries[index as usize].list as usize) < level * SLOTS);
            index = next;
        }
    }
}

#[cfg(test)]
impl<T> TimerWheel<T> {
    /// Check every structural invariant; panics with a message on the first violation.
    fn check_invariants(&self) {
        assert!(self.elapsed <= self.now, "elapsed ahead of now");
        let mut linked = 0usize;
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let id = level * SLOTS + slot;
                let list = self.lists[id];
                let bit = self.occupied[level] & (1 << slot) != 0;
                assert_eq!(bit, list.head != NIL, "occupancy bit of {level}/{slot}");
                let (mut prev, mut index) = (NIL, list.head);
                while index != NIL {
                    let e = &self.entries[index as usize];
                    assert_eq!(e.list as usize, id, "entry filed elsewhere");
                    assert_eq!(e.prev, prev, "broken prev link");
                    assert!(e.value.is_some(), "linked entry without value");
                    assert_eq!(slot_for(e.deadline, level), slot, "wrong slot");
                    let start = slot_start(self.elapsed, level, slot);
                    assert!(start <= e.deadline, "entry before its slot");
                    if level + 1 < LEVELS {
                        let width = 1u64 << (level as u32 * LEVEL_BITS);
                        assert!(e.deadline - start < width, "entry beyond its slot");
                    }
                    assert!(
                        slot >= slot_for(self.elapsed, level) + usize::from(level > 0),
                        "slot behind the position"
                    );
                    linked += 1;
                    prev = index;
                    index = e.next;
                }
                assert_eq!(list.tail, prev, "tail of {level}/{slot}");
            }
            assert_eq!(
                self.levels & (1 << level) != 0,
                self.occupied[level] != 0,
                "level bit {level}"
            );
        }
        assert_eq!(linked, self.len, "len");
        let mut free = 0usize;
        let mut index = self.free_head;
        while index != NIL {
            let e = &self.entries[index as usize];
            assert!(e.list == UNLINKED && e.value.is_none(), "free entry in use");
            free += 1;
            assert!(free <= self.entries.len(), "free list cycle");
            index = e.next;
        }
        assert!(free + linked <= self.entries.len());
    }
}

impl<T> std::fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.now)
            .field("elapsed", &self.elapsed)
            .field("len", &self.len)
            .field("slab", &self.entries.len())
            .finish()
    }
}
