//! The admin side's queries on one shard holding 1,000,000 bindings: a page of the management
//! table (`RegistrarQuery::List`: one pass with a bounded top-k heap), one `Scan` slice of the
//! export walk, and a whole export walk. CPU time of the shard thread per mail: how long a query
//! keeps that shard from its traffic.
//!
//! `cargo bench --bench admin_queries` (1,000,000 bindings); in test mode (`cargo test
//! --benches`) it runs on 10,000 bindings as a smoke test.

use std::net::SocketAddr;
use std::time::Duration;

use sipshard::config::Config;
use sipshard::dispatch::query::build;
use sipshard::dispatch::{OwnedListFilter, RegisterPath, RegistrarQuery, RegistrarReply, Shared};
use sipshard::sip::Parser;

const T0: u64 = 10_000_000;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn fill(reg: &mut RegisterPath, n: usize) {
    use std::io::Write;
    let mut p = Parser::new();
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    for k in 0..n {
        buf.clear();
        let ip = format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255);
        let _ = write!(
            buf,
            "REGISTER sip:sip.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{k:x}x1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{k}@sip.example.com>;tag={k:08x}\r\n\
             To: <sip:{k}@sip.example.com>\r\nCall-ID: {k:016x}{k:016x}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:{k}@{ip}:5060;transport=udp>\r\nExpires: 3600\r\n\
             User-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n"
        );
        let m = p.parse(&buf).expect("parse");
        let src = SocketAddr::from(([10, (k >> 16) as u8, (k >> 8) as u8, k as u8], 5060));
        let o = reg.registrar.on_register(
            &m,
            src,
            sipshard::registrar::accounts::NO_ACCOUNT,
            b"Yealink SIP-T46S 66.86.0.15",
            T0,
            &mut out,
        );
        assert_eq!(o.status, 200);
    }
}

/// Runs `q` `times` times; the longest CPU time of one answer, and the last reply.
fn worst(
    reg: &mut RegisterPath,
    times: usize,
    q: impl Fn() -> RegistrarQuery,
) -> (Duration, RegistrarReply) {
    let mut longest = Duration::ZERO;
    let mut last = None;
    for _ in 0..times {
        let t = thread_cpu();
        let r = build(reg, q(), T0 + 1000);
        longest = longest.max(thread_cpu() - t);
        last = Some(r);
    }
    (longest, last.unwrap())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 1_000_000 } else { 10_000 };
    let mut cfg = Config::default();
    cfg.registrar.require_auth = false;
    let shared = Shared::new(&cfg, [3; 32], 7).expect("shared");
    let mut reg = RegisterPath::new(0, &cfg, &shared, T0);
    fill(&mut reg, n);

    let all = OwnedListFilter::default();
    let (first, r) = worst(&mut reg, 5, || RegistrarQuery::List {
        filter: all.clone(),
        offset: 0,
        limit: 100,
    });
    let RegistrarReply::Rows { rows, total } = r else {
        panic!("rows")
    };
    assert_eq!((rows.len(), total), (100, n));
    let (deep, _) = worst(&mut reg, 3, || RegistrarQuery::List {
        filter: all.clone(),
        offset: 10_000 - 100,
        limit: 100,
    });
    let filtered = OwnedListFilter {
        number: Some(b"12345"[..].into()),
        ..Default::default()
    };
    let (narrow, _) = worst(&mut reg, 5, || RegistrarQuery::List {
        filter: filtered.clone(),
        offset: 0,
        limit: 100,
    });
    let (slice, _) = worst(&mut reg, 20, || RegistrarQuery::Scan {
        from: 0,
        limit: 1000,
    });
    // A whole export walk, slice by slice.
    let mut from = Some(0);
    let mut rows = 0;
    let mut longest = Duration::ZERO;
    let mut sum = Duration::ZERO;
    while let Some(f) = from {
        let t = thread_cpu();
        let r = build(
            &mut reg,
            RegistrarQuery::Scan {
                from: f,
                limit: 1000,
            },
            T0 + 1000,
        );
        let d = thread_cpu() - t;
        longest = longest.max(d);
        sum += d;
        let RegistrarReply::Scanned { rows: r, next } = r else {
            panic!("scanned")
        };
        rows += r.len();
        from = next;
    }
    assert_eq!(rows, n);
    println!(
        "admin queries on one shard with {n} bindings (shard-thread CPU per mail, worst of runs): \
         list page 1 (limit 100) {first:?}; list rows 9900..10000 {deep:?}; list number=12345* {narrow:?}; \
         scan slice of 1000 {slice:?}; whole export walk {sum:?} in {} mails, longest {longest:?}",
        n.div_ceil(1000)
    );
}
