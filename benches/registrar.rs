//! Registrar bindings core: REGISTER cost with 1M live bindings (parse excluded), bytes per
//! binding (RSS delta for 1,000,000 bindings) and the longest `on_timers` call while 1M expire.
//!
//! `cargo bench --bench registrar` prints the report lines first (`registrar report: ...`),
//! then the criterion timings.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sipshard::config::Config;
use sipshard::registrar::{Registrar, RegistrarSink};
use sipshard::sip::Parser;

const N: usize = 1_000_000;
const T0: u64 = 10_000_000;

struct NullSink(u64);

impl RegistrarSink for NullSink {
    fn start_keepalive(&mut self, _: SocketAddr, request: &[u8], _: &[u8], _: u64) {
        self.0 += request.len() as u64;
    }
}

/// A typical desk-phone REGISTER for user `k` (20-ish byte AOR, 40-ish byte contact, 32-byte
/// Call-ID, a User-Agent).
fn register(buf: &mut Vec<u8>, k: usize, cseq: u32, expires: u32) {
    use std::io::Write;
    buf.clear();
    let ip = format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255);
    let _ = write!(
        buf,
        "REGISTER sip:sip.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{k:x}x{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{k}@sip.example.com>;tag={k:08x}\r\n\
         To: <sip:{k}@sip.example.com>\r\nCall-ID: {k:016x}{k:016x}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{k}@{ip}:5060;transport=udp>\r\nExpires: {expires}\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
    );
}

fn src_of(k: usize) -> SocketAddr {
    SocketAddr::from(([10, (k >> 16) as u8, (k >> 8) as u8, k as u8], 5060))
}

fn fill(r: &mut Registrar, n: usize, expires: u32, now: u64) {
    let mut p = Parser::new();
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    for k in 0..n {
        register(&mut buf, k, 1, expires);
        let m = p.parse(&buf).expect("parse");
        let o = r.on_register(
            &m,
            src_of(k),
            1,
            m.header_by_name("User-Agent").unwrap_or(b""),
            now,
            &mut out,
        );
        assert_eq!(o.status, 200);
    }
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes per binding, then the longest on_timers call while they all expire.
fn report() {
    let cfg = Config::default();
    let before = rss_bytes();
    let mut r = Registrar::new(0, &cfg, 1, T0);
    let t = Instant::now();
    fill(&mut r, N, 3600, T0);
    let took = t.elapsed();
    let after = rss_bytes();
    println!(
        "registrar report: {} bindings, RSS delta {} bytes = {:.0} bytes/binding; filled in {:?} ({:.0} ns/REGISTER incl. parse)",
        N,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / N as f64,
        took,
        took.as_nanos() as f64 / N as f64
    );
    drain(&mut r, T0 + 3_600_000, "1M bindings, 5 % spread");
    drop(r);

    // Worst case: no spread, every binding registered in the same ms → one expiry instant.
    let mut cfg0 = Config::default();
    cfg0.registrar.expiry_spread_percent = 0;
    let mut r = Registrar::new(0, &cfg0, 1, T0);
    fill(&mut r, N, 3600, T0);
    drain(&mut r, T0 + 3_600_000, "1M bindings, same expiry ms");
}

/// CPU time of this thread (immune to preemption on a shared box).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn drain(r: &mut Registrar, until: u64, what: &str) {
    let mut sink = NullSink(0);
    let mut now = T0;
    let mut wall = Vec::new();
    let mut cpu_longest = Duration::ZERO;
    let start = Instant::now();
    while let Some(d) = r.next_deadline() {
        // A runtime wakes at the deadline; its clock moves on by at least 1 ms per wake-up.
        now = d.max(now + 1).min(until.max(now + 1));
        let (t, c) = (Instant::now(), thread_cpu());
        let ev = r.on_timers(now, &mut sink);
        let spent = thread_cpu() - c;
        if spent > cpu_longest {
            cpu_longest = spent;
            if std::env::var("REG_DEBUG").is_ok() {
                eprintln!(
                    "call {} at {} events {} took {:?} left {}",
                    wall.len(),
                    now - T0,
                    ev,
                    spent,
                    r.len()
                );
            }
        }
        wall.push(t.elapsed());
        if r.is_empty() {
            break;
        }
    }
    let total = start.elapsed();
    wall.sort();
    let pct = |p: f64| wall[((wall.len() as f64 - 1.0) * p) as usize];
    println!(
        "registrar report: expiry of {what}: {} calls, longest on_timers: {:?} thread CPU, {:?} wall \
         (wall p99.9 {:?}, p99 {:?}); total {:?}, left {}",
        wall.len(),
        cpu_longest,
        wall.last().copied().unwrap_or_default(),
        pct(0.999),
        pct(0.99),
        total,
        r.len()
    );
}

fn bench_register(c: &mut Criterion) {
    let cfg = Config::default();
    let mut r = Registrar::new(0, &cfg, 1, T0);
    fill(&mut r, N, 3600, T0);
    let mut p = Parser::new();
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    let mut g = c.benchmark_group("registrar_1M_live");
    let mut next_new = N;
    g.bench_function("on_register_new", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                register(&mut buf, next_new, 1, 3600);
                let m = p.parse(&buf).expect("parse");
                let t = Instant::now();
                let o = r.on_register(&m, src_of(next_new), 1, b"ua", T0 + 1, &mut out);
                total += t.elapsed();
                black_box(o);
                next_new += 1;
            }
            total
        })
    });
    let mut k = 0usize;
    let mut cseq = 2u32;
    g.bench_function("on_register_refresh", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                register(&mut buf, k, cseq, 3600);
                let m = p.parse(&buf).expect("parse");
                let t = Instant::now();
                let o = r.on_register(
                    &m,
                    src_of(k),
                    1,
                    b"Yealink SIP-T46S 66.86.0.15",
                    T0 + 2,
                    &mut out,
                );
                total += t.elapsed();
                debug_assert_eq!(o.refreshed, 1);
                black_box(o);
                k += 1;
                if k == N {
                    k = 0;
                    cseq += 1;
                }
            }
            total
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    report();
    bench_register(&mut c);
    c.final_summary();
}
