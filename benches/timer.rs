//! Timing wheel benches, each with about a million live timers present (a busy shard: transactions'
//! resend timers, bindings' expiries, keepalives).
//!
//! Run briefly on a shared machine:
//! `cargo bench --bench timer -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sipshard::timer::{Millis, TimerWheel};

const LIVE: u64 = 1_000_000;
/// Timers live about this long (ms): roughly one hour of spread, like registration expiries.
const SPREAD: u64 = 3_600_000;

/// Cheap deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A wheel at time `now` holding `LIVE` timers with deadlines spread over `spread` ms ahead.
fn populated(now: Millis, spread: u64, rng: &mut Rng) -> TimerWheel<u64> {
    let mut w = TimerWheel::with_capacity(now, LIVE as usize + 1024);
    for i in 0..LIVE {
        w.insert(now + 1 + rng.next() % spread, i);
    }
    w
}

fn insert_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = 1_000_000;

    // Typical transaction timers: 0.5 s .. 32 s ahead, inserted then cancelled (a response arrived).
    let mut w = populated(now, SPREAD, &mut rng);
    g.bench_function("insert_cancel_1M_live", |b| {
        b.iter(|| {
            let h = w.insert(now + 500 + rng.next() % 31_500, 7);
            black_box(w.cancel(black_box(h)))
        })
    });
    assert_eq!(w.len(), LIVE as usize);

    let mut w = TimerWheel::with_capacity(now, 1024);
    g.bench_function("insert_cancel_empty", |b| {
        b.iter(|| {
            let h = w.insert(now + 500 + rng.next() % 31_500, 7);
            black_box(w.cancel(black_box(h)))
        })
    });
    g.finish();
}

fn insert_expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);

    // Steady state: each iteration is one ms of time; one timer is inserted about 1000 s ahead and
    // about one expires (after cascading down through the levels). The live count stays near 1M.
    g.throughput(Throughput::Elements(1));
    let mut now: Millis = 1_000_000;
    let mut w = populated(now, LIVE, &mut rng);
    let mut fired = 0u64;
    g.bench_function("insert_expire_1M_live", |b| {
        b.iter(|| {
            w.insert(now + LIVE - 32 + rng.next() % 64, 1);
            now += 1;
            while let Some((_, v)) = w.poll(now) {
                fired += black_box(v);
            }
        })
    });
    // (Skipped when a filter left the bench out.)
    if fired > 0 {
        assert!(
            (w.len() as u64).abs_diff(LIVE) < 10_000,
            "live count drifted"
        );
    }

    // Bursts: 1000 transaction timers inserted in one ms (a re-registration storm), then the wheel
    // is driven to fire all of them, with 1M other timers present.
    g.throughput(Throughput::Elements(1000));
    let mut now: Millis = 1_000_000;
    let mut w = populated(now, SPREAD * 100, &mut rng);
    g.bench_function("burst_1000_insert_expire_1M_live", |b| {
        b.iter(|| {
            for i in 0..1000u64 {
                w.insert(now + 500 + rng.next() % 31_500, i);
            }
            let end = now + 32_001;
            let mut n = 0;
            while let Some(t) = w.next_deadline().filter(|&t| t <= end) {
                while let Some((_, v)) = w.poll(t) {
                    n += 1;
                    black_box(v);
                }
            }
            now = end;
            n
        })
    });
    g.finish();
}

fn cascade(c: &mut Criterion) {
    // Worst single poll: 100k timers that sit in one level-3 slot (a 262 s span) are re-filed at
    // once when the wheel reaches that slot. This is the latency a shard sees at such a boundary.
    let mut g = c.benchmark_group("timer");
    const N: u64 = 100_000;
    g.throughput(Throughput::Elements(N));
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let span: Millis = 1 << 18; // width of a level-3 slot
    g.bench_function("cascade_100k_one_poll", |b| {
        b.iter_batched(
            || {
                let mut w = TimerWheel::with_capacity(0, N as usize);
                // Shuffle the free list, so that list order is not slab order (as in a
                // long-running shard, where the cascade walk jumps around memory).
                let mut hs: Vec<_> = (0..N).map(|i| w.insert(1, i)).collect();
                for i in (1..hs.len()).rev() {
                    hs.swap(i, rng.next() as usize % (i + 1));
                }
                for h in hs {
                    w.cancel(h);
                }
                for i in 0..N {
                    w.insert(span + rng.next() % span, i);
                }
                w
            },
            |mut w| {
                // Reaching the slot start cascades all N; at most a few fire at exactly `span`.
                let mut n = 0;
                while w.poll(span).is_some() {
                    n += 1;
                }
                black_box((n, w.next_deadline()));
                w
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, insert_cancel, insert_expire, cascade);
criterion_main!(benches);
