//! The timer wheel as the transaction layer uses it: public API only, simulated clock.

use sipshard::timer::{Millis, TimerHandle, TimerWheel};

/// SS_SIP_RESEND_INTERVAL default, in ms.
const RESEND: [Millis; 10] = [500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ev {
    Resend { tx: u32, n: usize },
    Fail { tx: u32 },
}

/// Schedule the next resend (or the failure) of `tx` from the previous deadline, not from `now`.
fn schedule(w: &mut TimerWheel<Ev>, tx: u32, n: usize, from: Millis) -> TimerHandle {
    let at = from + RESEND[n];
    if n + 1 < RESEND.len() {
        w.insert(at, Ev::Resend { tx, n: n + 1 })
    } else {
        w.insert(at, Ev::Fail { tx })
    }
}

/// Drive `w` by polling at the given times; returns (time of the poll, deadline, event).
fn drive(
    w: &mut TimerWheel<Ev>,
    polls: impl IntoIterator<Item = Millis>,
) -> Vec<(Millis, Millis, Ev)> {
    let mut log = Vec::new();
    for now in polls {
        while let Some((_, deadline, ev)) = w.poll_with_deadline(now) {
            log.push((now, deadline, ev));
            if let Ev::Resend { tx, n } = ev {
                schedule(w, tx, n, deadline);
            }
        }
    }
    log
}

#[test]
fn resend_timeline_is_exact_with_a_coarse_clock() {
    // The runtime wakes up late and irregularly; the timeline of deadlines stays exact.
    let mut w = TimerWheel::new(0);
    schedule(&mut w, 7, 0, 0);
    let polls = (0..=40).map(|s| s * 997);
    let log = drive(&mut w, polls);
    let deadlines: Vec<Millis> = log.iter().map(|e| e.1).collect();
    assert_eq!(
        deadlines,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(log.last().unwrap().2, Ev::Fail { tx: 7 });
    for (now, deadline, _) in &log {
        assert!(deadline <= now, "fired early");
        assert!(now - deadline < 997, "fired more than one wake-up late");
    }
    assert!(w.is_empty());
}

#[test]
fn stall_delivers_overdue_timers_in_order() {
    // Transactions started 100 ms apart; the shard stalls for a minute, then polls once.
    let mut w = TimerWheel::new(0);
    for tx in 0..5u32 {
        let start = Millis::from(tx) * 100;
        w.insert(start + 500, Ev::Resend { tx, n: 1 });
        w.insert(start + 1500, Ev::Fail { tx });
    }
    let log = drive(&mut w, [60_000]);
    let deadlines: Vec<Millis> = log.iter().map(|e| e.1).collect();
    // The overdue timers come out in deadline order, then the resends scheduled while draining:
    // their deadlines (from 500 + 1000 ms on) are in the past, so they count as due at 60 000,
    // after everything that was due earlier, in the order they were scheduled.
    assert_eq!(
        deadlines,
        vec![
            500, 600, 700, 800, 900, 1500, 1600, 1700, 1800, 1900, 60_000, 60_000, 60_000, 60_000,
            60_000
        ]
    );
    let events: Vec<Ev> = log.iter().map(|e| e.2).collect();
    assert_eq!(events[5], Ev::Fail { tx: 0 });
    assert_eq!(events[10], Ev::Resend { tx: 0, n: 2 });
    assert_eq!(events[14], Ev::Resend { tx: 4, n: 2 });
    // The chain goes on from the time it was actually handled.
    // (next_deadline may report earlier, never later.)
    assert!(w.next_deadline().unwrap() <= 62_000);
    assert_eq!(drive(&mut w, [61_999]), vec![]);
    let next = drive(&mut w, [62_000]);
    assert_eq!(next.len(), 5);
    assert_eq!(next[0], (62_000, 62_000, Ev::Resend { tx: 0, n: 3 }));
}

#[test]
fn response_cancels_the_pending_resend() {
    let mut w = TimerWheel::new(0);
    let h = schedule(&mut w, 1, 0, 0);
    let other = schedule(&mut w, 2, 0, 0);
    assert_eq!(w.cancel(h), Some(Ev::Resend { tx: 1, n: 1 }));
    assert_eq!(w.cancel(h), None);
    let log = drive(&mut w, [500]);
    assert_eq!(log, vec![(500, 500, Ev::Resend { tx: 2, n: 1 })]);
    assert_eq!(w.cancel(other), None, "fired handle is stale");
    assert_eq!(w.len(), 1);
    assert!(w.next_deadline().unwrap() <= 1500);
}
