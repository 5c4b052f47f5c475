//! Parses one load-test message many times, for counting instructions per message with callgrind
//! (deterministic, unlike timings on a shared machine). See docs/performance.md, "Parser cost per
//! message":
//!
//! ```sh
//! cargo build --release --example parse_cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/parse_cost register 10000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'parse_only|parse_and_use'
//! ```
//!
//! `parse_only` is `Parser::parse` + `Message::validate`; `parse_and_use` adds what the server
//! reads of every message (top Via branch, From/To tags, CSeq, Contact URIs and expires).
//! Divide the inclusive count by the repetitions. Without arguments: every message once, checked.

use std::hint::black_box;

use sipshard::sip::Parser;

#[path = "../benches/common/load_messages.rs"]
mod load_messages;
use load_messages::{BENCH_MESSAGES, LOAD_MESSAGES};

#[inline(never)]
fn parse_only(p: &mut Parser, msg: &[u8]) -> bool {
    let m = p.parse(black_box(msg)).unwrap();
    m.validate().is_ok()
}

#[inline(never)]
fn parse_and_use(p: &mut Parser, msg: &[u8]) -> usize {
    let m = p.parse(black_box(msg)).unwrap();
    let mut n = usize::from(m.validate().is_ok());
    n += m.top_via().and_then(|v| v.branch()).map_or(0, <[u8]>::len);
    n += m.from().and_then(|f| f.tag()).map_or(0, <[u8]>::len);
    n += m.to().and_then(|t| t.tag()).map_or(0, <[u8]>::len);
    n += m.cseq().map_or(0, |c| c.seq as usize);
    for c in m.contacts() {
        n += c.uri().host().len() + c.expires().unwrap_or(0) as usize;
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut p = Parser::new();
    if args.is_empty() {
        for (name, msg) in LOAD_MESSAGES.iter().chain(BENCH_MESSAGES) {
            assert!(parse_only(&mut p, msg), "{name} must be valid");
            println!("{name}: {} bytes, valid", msg.len());
        }
        return;
    }
    let name = args[0].as_str();
    let reps: usize = args
        .get(1)
        .map_or(10_000, |r| r.parse().expect("repetitions"));
    let msg = LOAD_MESSAGES
        .iter()
        .chain(BENCH_MESSAGES)
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown message {name}"))
        .1;
    let mut ok = 0;
    for _ in 0..reps {
        ok += usize::from(parse_only(&mut p, msg));
    }
    let mut used = 0;
    for _ in 0..reps {
        used += parse_and_use(&mut p, msg);
    }
    assert_eq!(ok, reps, "{name} must be valid");
    println!("{name}: {reps} parses, {used}");
}
