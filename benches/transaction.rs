//! Transaction layer: matching with 100k live transactions, and create+terminate cost.
//!
//! Run briefly: `cargo bench --bench transaction -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use sipshard::config::TransactionTimers;
use sipshard::transaction::*;

const N: usize = 100_000;

struct NullSink(u64);

impl TxSink for NullSink {
    fn send(&mut self, _dst: SocketAddr, data: &[u8]) {
        self.0 = self.0.wrapping_add(data.len() as u64);
    }
    fn event(&mut self, _ev: TxEvent) {
        self.0 = self.0.wrapping_add(1);
    }
}

fn branches(n: usize, salt: u64) -> Vec<[u8; BRANCH_LEN]> {
    (0..n)
        .map(|i| {
            let mut b = [0u8; BRANCH_LEN];
            make_branch(
                3,
                salt ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                &mut b,
            );
            b
        })
        .collect()
}

/// A visiting order that defeats the cache (a stride coprime with N).
fn order(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7_919) % n).collect()
}

fn setup() -> (
    TransactionLayer,
    Vec<[u8; BRANCH_LEN]>,
    Vec<[u8; BRANCH_LEN]>,
) {
    let dst: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let src: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let mut layer = TransactionLayer::new(&TransactionTimers::default(), 0);
    layer.reserve(2 * N + 16);
    let mut sink = NullSink(0);
    let request = vec![b'x'; 700];
    let cb = branches(N, 1);
    let sb = branches(N, 2);
    for b in &cb {
        let req = ClientRequest {
            method: b"OPTIONS",
            branch: b,
            dst,
            bytes: &request,
            token: 0,
        };
        layer.start_client(req, 0, &mut sink).unwrap();
    }
    for b in &sb {
        let req = RequestInfo {
            method: b"INVITE",
            key: ServerKey::Rfc3261 {
                branch: b,
                sent_by: b"198.51.100.7:5060",
            },
            reply_to: src,
        };
        let RequestOutcome::New(id) = layer.on_request(&req, 0, &mut sink) else {
            panic!()
        };
        layer
            .respond(id, 180, b"SIP/2.0 180 Ringing ...", 0, &mut sink)
            .unwrap();
    }
    assert_eq!(layer.len(), 2 * N);
    (layer, cb, sb)
}

fn bench(c: &mut Criterion) {
    let (mut layer, cb, sb) = setup();
    // Probe keys laid out in visiting order (as a fresh datagram would be: hot in cache), while
    // the transactions they hit are spread over the slab.
    let ord = order(N);
    let cprobe: Vec<[u8; BRANCH_LEN]> = ord.iter().map(|&k| cb[k]).collect();
    let sprobe: Vec<[u8; BRANCH_LEN]> = ord.iter().map(|&k| sb[k]).collect();
    let mut sink = NullSink(0);
    let mut g = c.benchmark_group("transaction_100k_live");

    let mut i = 0;
    g.bench_function("client_response_match_180", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            let r = ResponseInfo {
                branch: &cprobe[i],
                cseq_method: b"OPTIONS",
                status: 180,
            };
            black_box(layer.on_response(&r, 1, &mut sink, |_, _| {}))
        })
    });

    let src: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let mut i = 0;
    g.bench_function("server_retransmission_absorb_resend", |b| {
        b.iter(|| {
            i = (i + 1) % N;
            let req = RequestInfo {
                method: b"INVITE",
                key: ServerKey::Rfc3261 {
                    branch: &sprobe[i],
                    sent_by: b"198.51.100.7:5060",
                },
                reply_to: src,
            };
            black_box(layer.on_request(&req, 1, &mut sink))
        })
    });

    let stray = branches(1024, 99);
    let mut i = 0;
    g.bench_function("response_no_match", |b| {
        b.iter(|| {
            i = (i + 1) % stray.len();
            let r = ResponseInfo {
                branch: &stray[i],
                cseq_method: b"INVITE",
                status: 200,
            };
            black_box(layer.on_response(&r, 1, &mut sink, |_, _| {}))
        })
    });

    let dst: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let request = vec![b'x'; 700];
    let mut buf = [0u8; BRANCH_LEN];
    let mut n: u64 = 1 << 40;
    g.bench_function("client_invite_create_terminate", |b| {
        b.iter(|| {
            n += 1;
            let branch = make_branch(3, n, &mut buf);
            let req = ClientRequest {
                method: b"INVITE",
                branch,
                dst,
                bytes: &request,
                token: n,
            };
            let id = layer.start_client(req, 1, &mut sink).unwrap();
            black_box(layer.terminate(id))
        })
    });

    let mut n: u64 = 1 << 41;
    g.bench_function("client_options_create_200_cleanup", |b| {
        // Start, final response, then Timer K fires (time advances 5 s per iteration).
        let mut now = 10;
        b.iter(|| {
            n += 1;
            now += 5_001;
            let branch = make_branch(3, n, &mut buf);
            let req = ClientRequest {
                method: b"OPTIONS",
                branch,
                dst,
                bytes: &request,
                token: n,
            };
            layer.start_client(req, now, &mut sink).unwrap();
            let r = ResponseInfo {
                branch,
                cseq_method: b"OPTIONS",
                status: 200,
            };
            black_box(layer.on_response(&r, now, &mut sink, |_, _| {}));
            black_box(layer.on_timers(now + 5_000, &mut sink))
        })
    });
    g.finish();
    black_box(sink.0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
