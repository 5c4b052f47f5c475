//! Matching a retransmitted request or a repeated response allocates nothing.
//! (Creating transactions is not checked here: slots and timers may still grow.) Only the test's
//! own thread is counted, so the test harness's threads cannot disturb the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use sipshard::config::TransactionTimers;
use sipshard::transaction::*;

struct Counting;
thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down has no thread-locals left; don't count it.
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

struct Null(u64);
impl TxSink for Null {
    fn send(&mut self, _: SocketAddr, d: &[u8]) {
        self.0 += d.len() as u64;
    }
    fn event(&mut self, _: TxEvent) {
        self.0 += 1;
    }
}

#[test]
fn hot_paths_do_not_allocate() {
    let dst: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    let mut layer = TransactionLayer::new(&TransactionTimers::default(), 0);
    let mut sink = Null(0);
    let mut b = [0u8; BRANCH_LEN];
    let mut branches = Vec::new();
    for i in 0..1000u64 {
        let br = make_branch(0, i, &mut b).to_vec();
        let req = ClientRequest {
            method: b"INVITE",
            branch: &br,
            dst,
            bytes: &[b'i'; 500],
            token: i,
        };
        layer.start_client(req, 0, &mut sink).unwrap();
        let sreq = RequestInfo {
            method: b"INVITE",
            key: ServerKey::Rfc3261 {
                branch: &br,
                sent_by: b"10.1.1.1:5060",
            },
            reply_to: dst,
        };
        let RequestOutcome::New(id) = layer.on_request(&sreq, 0, &mut sink) else {
            panic!()
        };
        layer.respond(id, 180, &[b'r'; 300], 0, &mut sink).unwrap();
        branches.push(br);
    }
    // First 180 on each client moves it to Proceeding (timer changes); afterwards steady state.
    for br in &branches {
        let r = ResponseInfo {
            branch: br,
            cseq_method: b"INVITE",
            status: 180,
        };
        layer.on_response(&r, 1, &mut sink, |_, _| {});
    }
    let before = allocs();
    for round in 0..10 {
        for br in &branches {
            let r = ResponseInfo {
                branch: br,
                cseq_method: b"INVITE",
                status: 180,
            };
            assert!(matches!(
                layer.on_response(&r, 2 + round, &mut sink, |_, _| {}),
                ResponseOutcome::Pass { .. }
            ));
            let sreq = RequestInfo {
                method: b"INVITE",
                key: ServerKey::Rfc3261 {
                    branch: br,
                    sent_by: b"10.1.1.1:5060",
                },
                reply_to: dst,
            };
            assert!(matches!(
                layer.on_request(&sreq, 2 + round, &mut sink),
                RequestOutcome::Retransmission { resent: true, .. }
            ));
            let stray = ResponseInfo {
                branch: b"z9hG4bK-nobody",
                cseq_method: b"INVITE",
                status: 200,
            };
            assert_eq!(
                layer.on_response(&stray, 2, &mut sink, |_, _| {}),
                ResponseOutcome::NoMatch
            );
        }
    }
    assert_eq!(allocs() - before, 0);
    assert!(sink.0 > 0);
}
