//! The cheapest possible SIP responder, to measure the kernel's floor cost per request on a
//! machine: one thread blocked in `recv_from`, the request's start line swapped for
//! `SIP/2.0 200 OK`, everything else sent back as it came (so sipp matches it), one `send_to`.
//! No parsing, no state, no epoll. What it costs per request is what any UDP server pays here
//! before doing any SIP work (docs/performance.md uses it).
//!
//!     cargo run --release --example floor_responder -- 127.0.0.1:5095 60
//!
//! Arguments: address (default 127.0.0.1:5095), lifetime in seconds (default 60; it exits after).
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5095".into());
    let lifetime: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let sock = UdpSocket::bind(&addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    println!("floor_responder on {}", sock.local_addr()?);
    let end = Instant::now() + Duration::from_secs(lifetime);
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65536);
    let mut answered: u64 = 0;
    while Instant::now() < end {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let req = &buf[..n];
        let Some(eol) = req.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        if req.starts_with(b"SIP/2.0") {
            continue;
        }
        out.clear();
        out.extend_from_slice(b"SIP/2.0 200 OK");
        out.extend_from_slice(&req[eol..]);
        if sock.send_to(&out, src).is_ok() {
            answered += 1;
        }
    }
    println!("answered {answered}");
    Ok(())
}
