//! Deterministic mutation testing: every corpus message (RFC 4475 plus a built-in INVITE) is
//! mutated (bit flips, byte insert/delete, truncation, duplicated header lines, huge numbers) and
//! run through parse + validate + every accessor + response/ACK/CANCEL building. Nothing may
//! panic, and the output stays proportional to the input.

use std::path::PathBuf;

use sipshard::sip::{
    parse_auth, write_ack, write_cancel, write_response, HeaderKind, Message, Parser,
    ResponseOptions,
};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>;expires=60;q=0.7, *\r\n\
Authorization: Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"84a4cc6f3082121f32b42a2187831a9e\", uri=\"sip:bob@biloxi.example.com\", response=\"7587245234b3434cc3412213e5f113a5432\"\r\n\
Require: 100rel, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut v = vec![("builtin-invite".to_string(), INVITE.to_vec())];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/rfc4475");
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            let mut files: Vec<_> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("dat"))
                .collect();
            files.sort();
            for p in files {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                v.push((name, std::fs::read(&p).unwrap()));
            }
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("RFC 4475 corpus missing at {}", dir.display())
        }
        Err(_) => eprintln!("notice: RFC 4475 corpus missing; mutating the built-in INVITE only"),
    }
    v
}

/// Touches every accessor; returns a number so the work cannot be optimised away.
fn exercise(m: &Message, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> usize {
    let mut n = 0;
    let _ = m.validate();
    n += m.headers().count();
    n += m
        .vias()
        .map(|v| v.params().count() + v.host().len())
        .sum::<usize>();
    for c in m.contacts() {
        n += c.params().count();
        let _ = c.expires();
        let _ = c.q();
        let _ = c.uri().user_unescaped(scratch);
        n += c.uri().param_iter().count();
    }
    for kind in [HeaderKind::Route, HeaderKind::RecordRoute] {
        n += m.name_addrs(kind).filter(|r| r.is_ok()).count();
    }
    n += m.tokens(HeaderKind::Require).count();
    for kind in [HeaderKind::Authorization, HeaderKind::WwwAuthenticate] {
        if let Some(v) = m.header(kind) {
            if let Ok(a) = parse_auth(v) {
                n += a.params_raw.len();
            }
        }
    }
    if let Some(u) = m.request_uri() {
        let _ = u.user_unescaped(scratch);
        let _ = u.param("transport");
    }
    n += m.body().len();
    if m.can_respond() {
        let opts = ResponseOptions {
            source: Some("198.51.100.7:4242".parse().unwrap()),
            to_tag: Some(b"x1"),
            headers: &[("Server", b"sipshard")],
            body: b"",
        };
        write_response(out, m, 400, "Bad Request", &opts);
        // Response size is bounded by the request's size plus a constant.
        assert!(out.len() <= m.buf().len() * 2 + 512, "response too large");
    }
    n
}

fn mutate(rng: &mut Rng, src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(src);
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let b = [
                    b'\r', b'\n', b' ', b';', b',', b'"', b'<', b'>', b':', b'%', b'\\', 0, 0xff,
                ][rng.below(13)];
                out.insert(i, b);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out.remove(i);
            }
            3 => {
                let i = rng.below(len + 1);
                out.truncate(i);
            }
            4 => {
                // Duplicate a header line.
                let lines: Vec<usize> = out
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                if lines.len() >= 2 {
                    let k = rng.below(lines.len() - 1);
                    let line = out[lines[k]..lines[k + 1]].to_vec();
                    let at = lines[rng.below(lines.len())];
                    out.splice(at..at, line);
                }
            }
            5 => {
                // Replace a digit run with a huge number.
                if let Some(i) = (0..len)
                    .map(|k| (k + rng.below(len)) % len)
                    .find(|&k| out[k].is_ascii_digit())
                {
                    let huge = b"99999999999999999999999999999999999999";
                    out.splice(i..i + 1, huge.iter().copied());
                }
            }
            6 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            _ => {
                // Splice a random slice of the message into another place.
                if len > 2 {
                    let a = rng.below(len);
                    let b = (a + rng.below(64)).min(len);
                    let piece = out[a..b].to_vec();
                    let at = rng.below(len);
                    out.splice(at..at, piece);
                }
            }
        }
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let corpus = corpus();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut parser = Parser::new();
    let mut parser2 = Parser::new();
    let (mut out, mut scratch, mut buf) = (Vec::new(), Vec::new(), Vec::new());
    let mut parsed = 0usize;
    let mut total = 0usize;
    for (_, msg) in &corpus {
        for _ in 0..400 {
            mutate(&mut rng, msg, &mut buf);
            total += 1;
            if let Ok(m) = parser.parse(&buf) {
                parsed += 1;
                exercise(&m, &mut out, &mut scratch);
                // ACK/CANCEL building with the mutant as our INVITE and the original as response.
                if let Ok(orig) = parser2.parse(msg) {
                    let _ = write_cancel(&mut out, &m);
                    let _ = write_ack(&mut out, &m, &orig);
                }
            }
        }
    }
    // Most mutants still look like SIP; the test must really have exercised the parser.
    assert!(
        parsed * 2 > total,
        "only {parsed} of {total} mutants parsed"
    );
}

#[test]
fn every_truncation_is_handled() {
    let corpus = corpus();
    let mut parser = Parser::new();
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let names = [
        "builtin-invite",
        "wsinv",
        "longreq",
        "mpart01",
        "esc01",
        "intmeth",
    ];
    let mut checked = 0;
    for (name, msg) in corpus.iter().filter(|(n, _)| names.contains(&n.as_str())) {
        for cut in 0..msg.len() {
            let part = &msg[..cut];
            if let Ok(m) = parser.parse(part) {
                exercise(&m, &mut out, &mut scratch);
                // A truncated message is never accepted as complete unless the cut falls
                // after the framed end (for messages with trailing bytes) .
                if m.validate().is_ok() {
                    assert!(m.framed_len() <= cut, "{name} cut at {cut}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= INVITE.len());
}

#[test]
fn huge_inputs_are_linear() {
    // Many header lines, long folded values and many commas: must finish and be rejected or
    // accepted without blowing up.
    let mut msg = INVITE[..INVITE.len() - 25].to_vec();
    for _ in 0..2000 {
        msg.extend_from_slice(b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKx,,;;\r\n");
    }
    msg.extend_from_slice(b"X: ");
    for _ in 0..5000 {
        msg.extend_from_slice(b"\"a,\\\"b\" <,>,\r\n ");
    }
    msg.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let mut p = Parser::new();
    let m = p.parse(&msg).unwrap();
    assert!(m.vias().len() >= 2000);
    assert!(m.validate().is_err());
    let mut out = Vec::new();
    write_response(
        &mut out,
        &m,
        400,
        "Bad Request",
        &ResponseOptions::default(),
    );
    assert!(out.len() < msg.len() * 2);
}
