//! Black-box tests: the real binary on a loopback port, spoken to over UDP.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The `key=value` pairs of the shutdown line.
fn request(
    method: &str,
    server: SocketAddr,
    me: SocketAddr,
    call_id: &str,
    branch: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} sip:bob@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{me}>;tag=a1\r\n\
         To: <sip:bob@{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn options_is_answered_200_with_received_and_rport() {
    let server = start_server(2, &[]);
    let c = client();
    let me = c.local_addr().unwrap();
    let req = options_request(server.addr, me, "opt-1@test", "z9hG4bK-opt-1");
    c.send_to(req.as_bytes(), server.addr).unwrap();
    let resp = recv_text(&c, Duration::from_secs(3)).expect("a response");
    assert_eq!(status_of(&resp), Some(200), "{resp}");
    assert_eq!(header(&resp, "Call-ID"), Some("opt-1@test"));
    let via = header(&resp, "Via").unwrap();
    assert!(via.contains("branch=z9hG4bK-opt-1"), "{via}");
    assert!(via.contains(&format!("rport={}", me.port())), "{via}");
    assert!(header(&resp, "To").unwrap().contains(";tag="), "{resp}");
    assert!(header(&resp, "Allow").unwrap().contains("OPTIONS"));
    let (code, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(totals(&lines)["options_answered"], 1);
}

#[test]
fn invite_from_an_unknown_caller_gets_403_retransmitted_until_ack_and_cancel_without_invite_gets_481(
) {
    // No peers and no accounts: the proxy refuses the caller (403, issue 4) through the INVITE
    // server transaction, so the final is re-sent until the ACK.
    let server = start_server(1, &[]);
    let c = client();
    let me = c.local_addr().unwrap();
    let inv = request("INVITE", server.addr, me, "inv-1@test", "z9hG4bK-inv-1", 1);
    c.send_to(inv.as_bytes(), server.addr).unwrap();
    let first = recv_text(&c, Duration::from_secs(3)).expect("403");
    assert_eq!(status_of(&first), Some(403), "{first}");
    assert!(header(&first, "Warning").is_some());
    // No ACK yet: the final response is re-sent on the resend schedule (first after 0.5 s).
    let again = recv_text(&c, Duration::from_secs(3)).expect("retransmitted 403");
    assert_eq!(again, first, "the retransmission is the same response");
    // A retransmitted INVITE is absorbed and answered with the same 403.
    c.send_to(inv.as_bytes(), server.addr).unwrap();
    let absorbed = recv_text(&c, Duration::from_secs(3)).expect("403 again");
    assert_eq!(status_of(&absorbed), Some(403));
    let to = header(&first, "To").unwrap();
    let ack = format!(
        "ACK sip:bob@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-inv-1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@{me}>;tag=a1\r\nTo: {to}\r\nCall-ID: inv-1@test\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        s = server.addr
    );
    c.send_to(ack.as_bytes(), server.addr).unwrap();
    let cancel = request(
        "CANCEL",
        server.addr,
        me,
        "nothing@test",
        "z9hG4bK-nothing",
        1,
    );
    c.send_to(cancel.as_bytes(), server.addr).unwrap();
    // Any 403 still in flight from before the ACK is skipped; the CANCEL's answer is 481.
    let resp = loop {
        let r = recv_text(&c, Duration::from_secs(3)).expect("481");
        if status_of(&r) != Some(403) {
            break r;
        }
    };
    assert_eq!(status_of(&resp), Some(481), "{resp}");
    let (code, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let t = totals(&lines);
    assert_eq!(t["acks_absorbed"], 1, "{t:?}");
    assert_eq!(t["calls_forbidden"], 1, "{t:?}");
    assert!(t["tx_retransmissions_sent"] >= 1, "{t:?}");
    assert!(t["tx_retransmissions_absorbed"] >= 1, "{t:?}");
}

#[test]
fn requests_landing_on_the_wrong_shard_are_handed_to_their_owner() {
    // One client socket is one 4-tuple, so without the steering program the kernel sends all of
    // it to one shard; with 4 shards most Call-IDs belong to another one, which must answer
    // from the same address.
    let dir = TempDir::new("handover");
    let cfg = dir.write("nosteer.toml", "[server]\nreuseport_steering = \"Off\"\n");
    let server = start_server(4, &["--config", &cfg]);
    let c = client();
    let me = c.local_addr().unwrap();
    let n = 200;
    let mut seen = std::collections::HashSet::new();
    // In waves of 25, so the client's own receive buffer (default size) never overflows.
    for wave in 0..n / 25 {
        for i in wave * 25..(wave + 1) * 25 {
            // MESSAGE outside a dialog is not served: 405 from the owner shard.
            let req = request(
                "MESSAGE",
                server.addr,
                me,
                &format!("handover-{i}@test"),
                &format!("z9hG4bK-h{i}"),
                1,
            );
            c.send_to(req.as_bytes(), server.addr).unwrap();
        }
        while seen.len() < (wave + 1) * 25 {
            let mut buf = [0u8; 4096];
            let (len, from) = c.recv_from(&mut buf).expect("all answered");
            assert_eq!(from, server.addr, "answers come from the server's address");
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            assert_eq!(status_of(&text), Some(405), "{text}");
            seen.insert(header(&text, "Call-ID").unwrap().to_string());
        }
    }
    let (code, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let t = totals(&lines);
    assert!(
        t["handed_out"] > 0 && t["handed_out"] == t["handed_in"],
        "{t:?}"
    );
    assert_eq!(t["rejected_405"], n as u64, "{t:?}");
}

#[test]
fn malformed_requests_get_400_and_garbage_is_dropped_and_counted() {
    let server = start_server(1, &[]);
    let c = client();
    let me = c.local_addr().unwrap();
    let bad = format!(
        "OPTIONS sip:x@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bad\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:x@y>\r\nCall-ID: bad@test\r\nCSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        s = server.addr
    );
    c.send_to(bad.as_bytes(), server.addr).unwrap();
    let resp = recv_text(&c, Duration::from_secs(3)).expect("400");
    assert_eq!(status_of(&resp), Some(400), "{resp}");
    let warning = header(&resp, "Warning").expect("a Warning says what was wrong");
    assert!(
        warning.starts_with("399 sipshard \"") && warning.to_lowercase().contains("cseq"),
        "{warning}"
    );
    c.send_to(b"\x16\x03\x01 this is not SIP at all", server.addr)
        .unwrap();
    c.send_to(b"\r\n\r\n", server.addr).unwrap();
    // A probe after the garbage proves the server went on and orders the counters.
    let probe = options_request(server.addr, me, "after-garbage@test", "z9hG4bK-after");
    c.send_to(probe.as_bytes(), server.addr).unwrap();
    let resp = recv_text(&c, Duration::from_secs(3)).expect("200 after garbage");
    assert_eq!(status_of(&resp), Some(200));
    let (code, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let t = totals(&lines);
    assert_eq!(t["rejected_400"], 1, "{t:?}");
    assert_eq!(t["drop_not_sip"], 1, "{t:?}");
    assert_eq!(t["drop_keepalive"], 1, "{t:?}");
    assert_eq!(t["dropped"], 2, "{t:?}");
}

#[test]
fn sigterm_stops_the_server_within_the_bound() {
    let server = start_server(2, &[]);
    let (code, lines, err, took) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("sipshard stopped")),
        "{lines:?}"
    );
}

#[test]
fn a_second_server_on_a_port_in_use_refuses_to_start() {
    let first = start_server(2, &[]);
    let port = first.addr.to_string();
    let second = start_with_args(&["run", "--listen", &port, "--shards", "2"]);
    let err = match second {
        Ok(_) => panic!("a second server started on {port}"),
        Err(e) => e,
    };
    assert!(err.contains("already in use"), "{err}");
    assert!(!err.contains("status Some(0)"), "{err}");
    // The first one still serves.
    let c = client();
    let req = options_request(
        first.addr,
        c.local_addr().unwrap(),
        "still@test",
        "z9hG4bK-still",
    );
    c.send_to(req.as_bytes(), first.addr).unwrap();
    assert_eq!(
        recv_text(&c, Duration::from_secs(3))
            .as_deref()
            .and_then(status_of),
        Some(200)
    );
}

/// Small deterministic generator so the mutation run is the same every time.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn the_server_survives_the_rfc4475_corpus_and_mutations_of_it() {
    let Some(dir) = rfc4475_dir() else { return };
    let server = start_server(2, &[]);
    let c = client();
    let me = c.local_addr().unwrap();
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    files.sort();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0u64;
    for (round, f) in files.iter().cycle().take(files.len() * 40).enumerate() {
        let mut m = f.clone();
        if round >= files.len() {
            for _ in 0..1 + rng.below(8) {
                match rng.below(5) {
                    0 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] ^= 1 << rng.below(8);
                    }
                    1 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m.remove(i);
                    }
                    2 => {
                        let i = rng.below(m.len() + 1);
                        m.insert(
                            i,
                            [b':', b';', b',', b'<', b'"', b'\r', b'\n', b'%', 0, 0xff]
                                [rng.below(10)],
                        );
                    }
                    3 => m.truncate(rng.below(m.len() + 1)),
                    _ => {
                        let i = rng.below(m.len() + 1);
                        m.splice(
                            i..i,
                            b"\r\nCSeq: 99999999999 INVITE\r\nVia: SIP/2.0/UDP [::1;;,"
                                .iter()
                                .copied(),
                        );
                    }
                }
            }
        }
        c.send_to(&m, server.addr).unwrap();
        sent += 1;
        // Drain what came back so the client's queue never overflows.
        c.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 65536];
        while c.recv_from(&mut buf).is_ok() {}
        c.set_nonblocking(false).unwrap();
    }
    // Still alive and answering.
    let probe = options_request(server.addr, me, "alive@test", "z9hG4bK-alive");
    c.send_to(probe.as_bytes(), server.addr).unwrap();
    let alive = loop {
        let Some(r) = recv_text(&c, Duration::from_secs(5)) else {
            let (code, _, err, _) = server.terminate(Duration::from_secs(10));
            panic!("no answer after the corpus; exit {code:?}; stderr: {err}");
        };
        if header(&r, "Call-ID") == Some("alive@test") {
            break r;
        }
    };
    assert_eq!(status_of(&alive), Some(200));
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let t = totals(&lines);
    assert_eq!(t["datagrams"], sent + 1, "every datagram was seen: {t:?}");
    assert_eq!(t["core_panics"], 0, "{t:?}");
}
