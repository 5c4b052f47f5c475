use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Poll at `now` until nothing is due; returns (value, effective deadline) in firing order.
fn drain<T>(w: &mut TimerWheel<T>, now: Millis) -> Vec<(T, Millis)> {
    let mut out = Vec::new();
    while let Some((_, d, v)) = w.poll_with_deadline(now) {
        out.push((v, d));
    }
    w.check_invariants();
    out
}

fn values<T>(fired: Vec<(T, Millis)>) -> Vec<T> {
    fired.into_iter().map(|(v, _)| v).collect()
}

#[test]
fn empty_wheel() {
    let mut w: TimerWheel<u32> = TimerWheel::new(5);
    assert!(w.is_empty());
    assert_eq!(w.len(), 0);
    assert_eq!(w.next_deadline(), None);
    assert!(w.poll(u64::MAX).is_none());
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn never_early_and_exact() {
    let mut w = TimerWheel::new(0);
    w.insert(1500, "b");
    w.insert(500, "a");
    assert_eq!(w.len(), 2);
    assert!(w.poll(499).is_none());
    assert_eq!(values(drain(&mut w, 500)), vec!["a"]);
    assert!(w.poll(1499).is_none());
    assert_eq!(drain(&mut w, 1500), vec![("b", 1500)]);
    assert!(w.is_empty());
}

#[test]
fn same_ms_entries_fire_in_insertion_order() {
    let mut w = TimerWheel::new(10);
    for i in 0..100u32 {
        w.insert(7000, i);
    }
    // Some go in after the wheel has moved on, so they are filed on a lower level than the first.
    assert!(w.poll(6000).is_none());
    for i in 100..150u32 {
        w.insert(7000, i);
    }
    assert!(w.poll(6999).is_none());
    assert_eq!(values(drain(&mut w, 7000)), (0..150).collect::<Vec<_>>());
}

#[test]
fn cascades_across_level_boundaries() {
    // Deadlines on both sides of each level boundary, seen from a start that is not aligned.
    for start in [0u64, 1, 63, 4090, 262_143, (1 << 36) - 3] {
        let mut w = TimerWheel::new(start);
        let mut deadlines = Vec::new();
        for level in 1..6u32 {
            let boundary = (start >> (6 * level) << (6 * level)) + (1u64 << (6 * level));
            for d in [
                boundary - 1,
                boundary,
                boundary + 1,
                boundary + 64,
                2 * boundary,
            ] {
                deadlines.push(d);
            }
        }
        for (i, &d) in deadlines.iter().enumerate() {
            w.insert(d, i);
        }
        w.check_invariants();
        // Group by deadline: indices in insertion order.
        let mut by_deadline: BTreeMap<Millis, Vec<usize>> = BTreeMap::new();
        for (i, &d) in deadlines.iter().enumerate() {
            by_deadline.entry(d).or_default().push(i);
        }
        for (&d, want) in &by_deadline {
            // Exactly at its deadline, not one ms before (earlier ones already fired).
            if d > start {
                assert!(w.poll(d - 1).is_none(), "early at {d}");
            }
            let fired = drain(&mut w, d);
            assert!(fired.iter().all(|&(_, fd)| fd == d));
            assert_eq!(&values(fired), want, "at {d}");
        }
        assert!(w.is_empty());
    }
}

#[test]
fn cancel_after_fire_and_double_cancel_are_noops() {
    let mut w = TimerWheel::new(0);
    let a = w.insert(10, 'a');
    let b = w.insert(20, 'b');
    let (fired, v) = w.poll(10).unwrap();
    assert_eq!((fired, v), (a, 'a'));
    assert!(!w.contains(a));
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.cancel(b), Some('b'));
    assert_eq!(w.cancel(b), None);
    assert!(w.is_empty());
    assert!(w.poll(1000).is_none());
}

#[test]
fn stale_handle_after_slot_reuse() {
    let mut w = TimerWheel::new(0);
    let a = w.insert(100, 1);
    assert_eq!(w.cancel(a), Some(1));
    let b = w.insert(200, 2);
    assert_eq!(b.index, a.index, "slab entry reused");
    assert_ne!(a, b);
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.deadline(a), None);
    assert_eq!(w.deadline(b), Some(200));
    // And a fired handle is stale once its entry is reused too.
    assert_eq!(w.poll(200), Some((b, 2)));
    let c = w.insert(300, 3);
    assert_eq!(c.index, b.index);
    assert_eq!(w.cancel(b), None);
    assert_eq!(w.cancel(c), Some(3));
}

#[test]
fn entry_retired_at_last_generation() {
    let mut w = TimerWheel::new(0);
    let a = w.insert(5, 'a');
    w.entries[a.index as usize].generation = u32::MAX;
    let a = TimerHandle {
        index: a.index,
        generation: u32::MAX,
    };
    assert_eq!(w.cancel(a), Some('a'));
    let b = w.insert(5, 'b');
    assert_ne!(b.index, a.index, "retired entry must not be reused");
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.cancel(b), Some('b'));
    w.check_invariants();
}

#[test]
fn far_future_deadlines() {
    let ten_years: Millis = 10 * 365 * 24 * 3600 * 1000;
    let now = 1_700_000_000_000; // a wall-clock-like start
    let mut w = TimerWheel::new(now);
    let ds = [
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 62) + 12345,
        now + ten_years,
        now + 1,
    ];
    for (i, &d) in ds.iter().enumerate() {
        w.insert(d, i);
    }
    w.check_invariants();
    assert!(w.next_deadline().unwrap() <= now + 1);
    assert_eq!(values(drain(&mut w, now + 1)), vec![5]);
    assert!(w.next_deadline().unwrap() <= now + ten_years);
    assert_eq!(
        values(drain(&mut w, now + ten_years - 1)),
        Vec::<usize>::new()
    );
    assert_eq!(values(drain(&mut w, now + ten_years)), vec![4]);
    assert_eq!(values(drain(&mut w, u64::MAX - 2)), vec![3, 2]);
    assert_eq!(values(drain(&mut w, u64::MAX)), vec![1, 0]);
    assert!(w.is_empty());
}

#[test]
fn time_jump_keeps_deadline_order() {
    // A transaction's resend timers at 0.5 s .. 31.5 s, plus others, all overdue after a stall.
    let mut w = TimerWheel::new(0);
    let schedule = [
        500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ];
    for (i, &d) in schedule.iter().enumerate().rev() {
        w.insert(d, i);
    }
    for k in 0..1000u64 {
        w.insert(k * 37 % 40_000, 100 + k as usize);
    }
    let fired = drain(&mut w, 3_600_000);
    assert_eq!(fired.len(), 1010);
    assert!(fired.windows(2).all(|p| p[0].1 <= p[1].1), "out of order");
    let resends: Vec<usize> = fired.iter().map(|f| f.0).filter(|&v| v < 100).collect();
    assert_eq!(resends, (0..10).collect::<Vec<_>>());
}

#[test]
fn past_deadline_fires_on_next_poll_at_current_time() {
    let mut w = TimerWheel::new(0);
    w.insert(5000, 'x');
    assert!(w.poll(1000).is_none());
    w.insert(10, 'p'); // in the past
    assert_eq!(w.next_deadline(), Some(1000));
    assert_eq!(drain(&mut w, 1000), vec![('p', 1000)]);
    // Time never goes back: a poll with an older `now` counts as the latest one.
    w.insert(900, 'q');
    assert_eq!(drain(&mut w, 3), vec![('q', 1000)]);
    assert_eq!(w.len(), 1);
}

#[test]
fn past_deadline_orders_after_due_entries() {
    // While draining at 2000, a timer inserted "in the past" is due at 2000, after those due earlier.
    let mut w = TimerWheel::new(0);
    w.insert(1000, 1);
    w.insert(1500, 2);
    w.insert(2000, 4);
    assert_eq!(w.poll(2000).map(|x| x.1), Some(1));
    w.insert(100, 3);
    assert_eq!(values(drain(&mut w, 2000)), vec![2, 4, 3]);
}

#[test]
fn next_deadline_makes_progress() {
    let mut w = TimerWheel::new(123);
    let mut x = 88172645463325252u64;
    for i in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let d = 123 + x % [100, 10_000, 10_000_000, 1 << 40][i % 4];
        w.insert(d, d);
    }
    let mut wakeups = 0;
    let mut last = 0;
    while let Some(t) = w.next_deadline() {
        wakeups += 1;
        assert!(wakeups < 10_000, "busy loop");
        let before = w.len();
        let fired = drain(&mut w, t);
        for (v, d) in &fired {
            assert_eq!(*v, *d);
            assert!(*d >= last, "order");
            last = *d;
        }
        let progressed = !fired.is_empty() || w.next_deadline().map_or(true, |n| n > t);
        assert!(progressed, "no progress at {t}");
        assert_eq!(before - fired.len(), w.len());
    }
    assert!(w.is_empty());
}

#[test]
fn next_deadline_is_exact_on_level_zero_and_conservative_above() {
    let mut w = TimerWheel::new(0);
    w.insert(40, ());
    assert_eq!(w.next_deadline(), Some(40));
    let mut w = TimerWheel::new(0);
    w.insert(5000, ());
    let t = w.next_deadline().unwrap();
    assert!(t <= 5000 && t > 0);
}

#[test]
fn no_allocation_after_growth() {
    let mut w = TimerWheel::with_capacity(0, 1000);
    let cap = w.entries.capacity();
    let mut hs = Vec::new();
    for round in 0..50u64 {
        for i in 0..1000u64 {
            hs.push(w.insert(round * 1000 + i * 7, i));
        }
        for h in hs.drain(..).step_by(2) {
            w.cancel(h);
        }
        drain(&mut w, round * 1000 + 10_000);
    }
    assert_eq!(w.entries.capacity(), cap);
    assert!(w.entries.len() <= 1000);
}

#[test]
fn reserve_grows_once() {
    let mut w = TimerWheel::new(0);
    w.reserve(500);
    let cap = w.entries.capacity();
    assert!(cap >= 500);
    for i in 0..500 {
        w.insert(i, i);
    }
    assert_eq!(w.entries.capacity(), cap);
}

// ---- Property test against a reference model ----

#[derive(Clone, Debug)]
enum Op {
    /// Insert at now + delta (or now - delta if `past`).
    Insert { delta: u64, past: bool },
    /// Cancel the n-th handle ever issued (modulo), pending or not.
    Cancel(usize),
    /// Poll at now + advance and drain.
    Poll(u64),
    /// Poll at the wheel's own next_deadline and drain.
    PollNext,
}

fn delta() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..70,
        3 => 0u64..5_000,
        2 => 0u64..400_000,
        1 => 0u64..(1 << 30),
        1 => 0u64..(1 << 50),
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (delta(), prop::bool::weighted(0.1)).prop_map(|(delta, past)| Op::Insert { delta, past }),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => delta().prop_map(Op::Poll),
        1 => Just(Op::PollNext),
    ]
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1_000_000,
        any::<u64>().prop_map(|x| x >> 4),
        (0u64..100_000).prop_map(|x| u64::MAX - x),
    ]
}

/// Reference: pending timers keyed by (effective deadline, insertion sequence).
struct Model {
    now: Millis,
    pending: BTreeMap<(Millis, u64), u64>,
    key_of: HashMap<u64, (Millis, u64)>,
}

impl Model {
    fn poll(&mut self, now: Millis) -> Option<(u64, Millis)> {
        let (&(d, s), &id) = self.pending.iter().next()?;
        if d > now {
            return None;
        }
        self.pending.remove(&(d, s));
        self.key_of.remove(&id);
        Some((id, d))
    }
}

fn run(start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w: TimerWheel<u64> = TimerWheel::new(start);
    let mut m = Model {
        now: start,
        pending: BTreeMap::new(),
        key_of: HashMap::new(),
    };
    let mut handles: Vec<TimerHandle> = Vec::new();
    let mut seq = 0u64;
    let mut last_fired = 0u64;

    let mut poll_and_compare = |w: &mut TimerWheel<u64>,
                                m: &mut Model,
                                now: Millis,
                                handles: &[TimerHandle]|
     -> Result<usize, TestCaseError> {
        m.now = m.now.max(now);
        let mut n = 0;
        loop {
            let got = w.poll_with_deadline(now);
            let want = m.poll(m.now);
            match (got, want) {
                (None, None) => break,
                (Some((h, d, v)), Some((id, md))) => {
                    prop_assert_eq!((v, d), (id, md), "fired timer or order differs");
                    prop_assert_eq!(h, handles[v as usize]);
                    prop_assert!(d <= m.now, "early");
                    prop_assert!(d >= last_fired, "deadline order went back");
                    last_fired = d;
                    n += 1;
                }
                (got, want) => {
                    prop_assert!(false, "wheel {:?} vs model {:?}", got, want);
                }
            }
        }
        w.check_invariants();
        Ok(n)
    };

    for op in ops {
        match op {
            Op::Insert { delta, past } => {
                let d = if past {
                    m.now.saturating_sub(delta)
                } else {
                    m.now.saturating_add(delta)
                };
                let id = handles.len() as u64;
                let h = w.insert(d, id);
                handles.push(h);
                let key = (d.max(m.now), seq);
                seq += 1;
                m.pending.insert(key, id);
                m.key_of.insert(id, key);
                prop_assert_eq!(w.deadline(h), Some(key.0));
            }
            Op::Cancel(n) => {
                if handles.is_empty() {
                    continue;
                }
                let id = (n % handles.len()) as u64;
                let want = m.key_of.remove(&id).map(|k| {
                    m.pending.remove(&k);
                    id
                });
                prop_assert_eq!(w.cancel(handles[id as usize]), want);
            }
            Op::Poll(advance) => {
                let now = m.now.saturating_add(advance);
                poll_and_compare(&mut w, &mut m, now, &handles)?;
            }
            Op::PollNext => {
                let Some(t) = w.next_deadline() else {
                    prop_assert!(m.pending.is_empty());
                    continue;
                };
                let true_min = m.pending.keys().next().map(|k| k.0);
                prop_assert!(Some(t) <= true_min, "next_deadline late");
                let fired = poll_and_compare(&mut w, &mut m, t, &handles)?;
                let later = w.next_deadline().map_or(true, |n| n > t.max(m.now));
                prop_assert!(fired > 0 || later, "no progress at next_deadline");
            }
        }
        prop_assert_eq!(w.len(), m.pending.len());
        prop_assert_eq!(w.is_empty(), m.pending.is_empty());
        if let Some(t) = w.next_deadline() {
            let true_min = m.pending.keys().next().map(|k| k.0);
            prop_assert!(
                Some(t) <= true_min,
                "next_deadline later than the earliest timer"
            );
        } else {
            prop_assert!(m.pending.is_empty());
        }
    }
    // Everything left fires, in order, by the end of time.
    poll_and_compare(&mut w, &mut m, u64::MAX, &handles)?;
    prop_assert!(w.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_model(start in start(), ops in prop::collection::vec(op(), 1..300)) {
        run(start, ops)?;
    }
}
