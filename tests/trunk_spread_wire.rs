//! 1,000 outbound registrations on the wire: the real binary registers 1,000 `[[trunks]]` to a
//! registrar this test controls (a UDP socket answering 200 OK to every REGISTER) that records
//! when each REGISTER arrives. All 1,000 arrive, none is left unanswered, the largest number of
//! first REGISTERs in any 100 ms window is bounded, and on SIGTERM all 1,000 unregister.
//!
//! The bound comes from the spread design (`trunk::SPREAD_STEP_MS`): trunk `i` of `n` makes its
//! first attempt in slot `i` of `n` equal slots of `min(retry_delay, n × 100 ms)`; with
//! `retry_delay = 30` (the minimum) that is 1,000 slots of 30 ms over 30 s, so a 100 ms window
//! overlaps at most 5 slots: at most 5 REGISTERs by design. The assertion allows 3× that for
//! the scheduling of a loaded 2-core test machine (a shard delayed by a few hundred ms sends
//! what fell due meanwhile in one batch); a design that sent them all together would put
//! hundreds in one window. The test takes about 30 s (the spread window).

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TRUNKS: usize = 1000;
const RETRY_DELAY_S: u64 = 30;
const SLOT_MS: u64 = RETRY_DELAY_S * 1000 / TRUNKS as u64;
/// Slots a 100 ms window can overlap, each with at most one first attempt.
const DESIGN_BOUND: usize = (100 / SLOT_MS as usize) + 2;

#[derive(Default)]
struct Seen {
    /// Arrival of the first REGISTER with Expires > 0, per Call-ID.
    first: HashMap<String, Instant>,
    /// Call-IDs that sent Expires: 0.
    unregistered: HashMap<String, Instant>,
    /// Every REGISTER datagram (retransmissions included).
    datagrams: usize,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// 200 OK to a REGISTER, granting 3600 s (no refresh during the test).
fn ok(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for l in req.split("\r\n").skip(1) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            "to" => {
                out.push_str(l);
                out.push_str(";tag=r1\r\n");
            }
            "contact" => {
                out.push_str(l);
                out.push_str(";expires=3600\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Expires: 3600\r\nContent-Length: 0\r\n\r\n");
    out
}

#[test]
fn a_thousand_trunks_register_without_bursts_and_unregister_on_shutdown() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // On SIGTERM the 1,000 unregisters leave together: room for all of them (a default-sized
    // buffer drops most, and their retransmissions may not all get through within the
    // shutdown bound on a loaded machine).
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(4 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, src)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !req.starts_with("REGISTER ") {
                    continue;
                }
                let call_id = header(&req, "Call-ID").unwrap_or("").to_string();
                let expires = header(&req, "Expires").unwrap_or("");
                {
                    let mut s = seen.lock().unwrap();
                    s.datagrams += 1;
                    if expires == "0" {
                        s.unregistered.entry(call_id).or_insert(at);
                    } else {
                        s.first.entry(call_id).or_insert(at);
                    }
                }
                let _ = sock.send_to(ok(&req).as_bytes(), src);
            }
        })
    };

    let dir = TempDir::new("trunk-1000");
    let mut cfg = String::with_capacity(TRUNKS * 160);
    cfg.push_str("[server]\nshutdown_timeout_ms = 15000\n");
    for i in 0..TRUNKS {
        cfg.push_str(&format!(
            "[[trunks]]\nname = \"t{i}\"\nregistrar = \"127.0.0.1\"\nport = {port}\n\
             username = \"u{i}\"\npassword = \"p\"\nretry_delay = {RETRY_DELAY_S}\n"
        ));
    }
    let cfg = dir.write("b.toml", &cfg);
    let started = Instant::now();
    let server = start_server(2, &["--config", &cfg]);

    // The spread window is 30 s; allow 20 s more before giving up.
    let deadline = Instant::now() + Duration::from_secs(RETRY_DELAY_S + 20);
    while seen.lock().unwrap().first.len() < TRUNKS && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let (mut times, datagrams) = {
        let s = seen.lock().unwrap();
        (s.first.values().copied().collect::<Vec<_>>(), s.datagrams)
    };
    assert_eq!(times.len(), TRUNKS, "every trunk's REGISTER arrived");

    let (code, lines, err, _) = server.terminate(Duration::from_secs(25));
    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert_eq!(t["trunk_registrations"], TRUNKS as u64, "{t:?}");
    assert_eq!(t["trunk_failures"], 0, "{t:?}");
    let unregistered = seen.lock().unwrap().unregistered.len();
    assert_eq!(unregistered, TRUNKS, "every trunk unregistered on SIGTERM");

    times.sort_unstable();
    let (mut worst, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= Duration::from_millis(100) {
            lo += 1;
        }
        worst = worst.max(hi - lo + 1);
    }
    let spread = times[TRUNKS - 1].duration_since(times[0]);
    eprintln!(
        "figure: {TRUNKS} trunks, retry_delay {RETRY_DELAY_S} s: first REGISTERs over {:.1} s, \
         at most {worst} in any 100 ms (design bound {DESIGN_BOUND}); {datagrams} datagrams \
         before shutdown; first to last registered {:.1} s after start",
        spread.as_secs_f64(),
        times[TRUNKS - 1].duration_since(started).as_secs_f64()
    );
    assert!(
        worst <= 3 * DESIGN_BOUND,
        "{worst} REGISTERs in one 100 ms window (design bound {DESIGN_BOUND})"
    );
    // Spread over the window, not sent together: the last first attempt comes at least
    // 90 % of the window after the first.
    assert!(
        spread >= Duration::from_millis(RETRY_DELAY_S * 900),
        "first REGISTERs span only {spread:?}"
    );
}
