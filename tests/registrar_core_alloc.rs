//! Refreshing a binding allocates nothing per REGISTER in steady state: only the schedule's
//! block vectors (one per 64 ms block of expiry times, pooled once drained) and B-tree nodes
//! allocate, amortised over every refresh that lands in the block. Only the test's own thread
//! is counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use sipshard::config::Config;
use sipshard::registrar::{Registrar, RegistrarSink};
use sipshard::sip::Parser;

struct Counting;
thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static A: Counting = Counting;

struct Null;
impl RegistrarSink for Null {
    fn start_keepalive(&mut self, _: SocketAddr, _: &[u8], _: &[u8], _: u64) {}
}

fn text(buf: &mut Vec<u8>, k: usize, cseq: u32) {
    use std::io::Write;
    buf.clear();
    let _ = write!(
        buf,
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{k}x{cseq}\r\n\
         From: <sip:u{k}@example.com>;tag=1\r\nTo: <sip:u{k}@example.com>\r\nCall-ID: c{k}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:u{k}@192.0.2.10:5060>\r\nExpires: 120\r\n\
         User-Agent: Phone/1.0\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn refresh_allocates_nothing_per_request() {
    let mut cfg = Config::default();
    cfg.registrar.expiry_spread_percent = 0;
    let t0 = 1_000_000u64;
    let mut r = Registrar::new(0, &cfg, 9, t0);
    let mut p = Parser::new();
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(1024);
    let n = 1000;
    let mut measured = 0;
    for round in 0..4u32 {
        let now = t0 + u64::from(round) * 60_000;
        r.on_timers(now, &mut Null);
        let before = allocs();
        for k in 0..n {
            text(&mut buf, k, round + 1);
            let m = p.parse(&buf).unwrap();
            let o = r.on_register(&m, src, 1, b"Phone/1.0", now, &mut out);
            assert_eq!(o.status, 200);
        }
        measured = allocs() - before;
    }
    assert_eq!(r.len(), n);
    eprintln!("{measured} allocations for {n} refreshes");
    // Round 3 refreshes into a schedule block whose vector comes from the pool (blocks drained by
    // `on_timers` are kept), so nothing at all is allocated.
    assert_eq!(measured, 0, "allocations for {n} refreshes");
}
