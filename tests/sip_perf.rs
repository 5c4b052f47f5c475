//! Load-tolerant parse timing (the machine is shared): the best of many short batches.
//! Run: `cargo test --release --test sip_perf -- --ignored --nocapture`. Ignored by default
//! because timing asserts do not belong in a debug test run.

use std::time::Instant;

use sipshard::sip::Parser;

/// Same message as in `benches/sip.rs`.
const INVITE: &[u8] = b"INVITE sip:+15551234567@gw1.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-524287-1---c1a2b3c4d5e6f708;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:+15557654321@198.51.100.23:5060;transport=udp>\r\n\
To: <sip:+15551234567@gw1.example.net>\r\n\
From: \"Caller Name\" <sip:+15557654321@pbx.example.com>;tag=8f2b3c41\r\n\
Call-ID: 7d9a1c0e5b3f4a2d8e6c1b0a9f8e7d6c@198.51.100.23\r\n\
CSeq: 1 INVITE\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 110\r\n\
\r\n\
v=0\r\n\
o=- 3912003 3912003 IN IP4 198.51.100.23\r\n\
s=-\r\n\
c=IN IP4 198.51.100.23\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8\r\n\
";

#[test]
#[ignore]
fn parse_invite_best_of_batches() {
    let mut p = Parser::new();
    assert_eq!(p.parse(INVITE).unwrap().validate(), Ok(()));
    let mut best = f64::MAX;
    for _ in 0..300 {
        let t = Instant::now();
        for _ in 0..1000 {
            let m = p.parse(std::hint::black_box(INVITE)).unwrap();
            std::hint::black_box(m.validate().is_ok());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    println!(
        "parse+validate {} B INVITE: best batch {best:.0} ns/msg",
        INVITE.len()
    );
    assert!(best < 1000.0, "{best} ns");
}
