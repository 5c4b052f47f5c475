//! Test only: the differential test of the parser's fast paths. Every fast path handles only
//! the common valid case and hands anything else to the general step-by-step code, so the
//! results must never differ: here every accessor of a parsed [`Message`](super::Message)
//! (`validate()` included) is compared between the parser's two modes, fast paths on (as built)
//! and off ([`general_paths_only`], the test-only switch read by every fast-path entry point),
//! for the RFC 4475 corpus, the load-test messages and deterministic mutations of both.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::text::{fast_paths, general_paths_only};

#[path = "../../benches/common/load_messages.rs"]
mod load_messages;

/// Everything the public API of a parsed message shows, as text.
macro_rules! dump {
    ($parsed:expr) => {{
        let mut o = String::new();
        match $parsed {
            Err(e) => {
                let _ = write!(o, "Err({e:?})");
            }
            Ok(m) => {
                let _ = write!(
                    o,
                    "validate={:?} respond={} req={} method={:?} ruri={:?} status={:?} \
                     reason={:?} version={:?}\n",
                    m.validate(),
                    m.can_respond(),
                    m.is_request(),
                    m.method().map(|x| x.as_bytes()),
                    m.request_uri_bytes(),
                    m.status(),
                    m.reason(),
                    m.version()
                );
                if let Some(u) = m.request_uri() {
                    let _ = write!(
                        o,
                        "ruri: {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}\n",
                        u.as_bytes(),
                        u.scheme(),
                        u.scheme_bytes(),
                        u.user(),
                        u.password(),
                        u.host(),
                        u.port(),
                        u.params(),
                        u.headers()
                    );
                }
                for h in m.headers() {
                    let _ = write!(
                        o,
                        "h: {} {:?} {:?} {:?}\n",
                        h.kind.name(),
                        h.name,
                        h.value,
                        h.line
                    );
                }
                for v in m.vias() {
                    let _ = write!(
                        o,
                        "via: {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}\n",
                        v.as_bytes(),
                        v.protocol(),
                        v.version(),
                        v.transport(),
                        v.host(),
                        v.port(),
                        v.branch(),
                        v.received(),
                        v.maddr(),
                        v.ttl(),
                        format!("{:?}", v.rport()),
                        v.params_raw()
                    );
                }
                let nas = m
                    .from()
                    .into_iter()
                    .chain(m.to())
                    .chain(m.contacts());
                for n in nas {
                    let u = n.uri();
                    let _ = write!(
                        o,
                        "na: {:?} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}\n",
                        n.as_bytes(),
                        n.display_name(),
                        n.has_angle_brackets(),
                        n.tag(),
                        n.expires(),
                        n.q(),
                        u.as_bytes(),
                        u.scheme(),
                        u.user(),
                        u.password(),
                        u.host(),
                        u.port(),
                        u.params(),
                        u.headers(),
                        n.params().collect::<Vec<_>>()
                    );
                }
                let _ = write!(
                    o,
                    "call-id={:?} cseq={:?} mf={:?} exp={:?} cl={:?} ct={:?} star={} body={:?} \
                     off={} framed={}",
                    m.call_id(),
                    m.cseq().map(|c| (c.seq, c.method.as_bytes())),
                    m.max_forwards(),
                    m.expires(),
                    m.content_length(),
                    m.content_type(),
                    m.contact_star(),
                    m.body(),
                    m.body_offset(),
                    m.framed_len()
                );
            }
        }
        o
    }};
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/rfc4475");
    let mut out = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "dat") {
                    out.push(std::fs::read(&p).unwrap());
                }
            }
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("RFC 4475 corpus missing at {}", dir.display())
        }
        Err(_) => {
            eprintln!("notice: RFC 4475 corpus missing; differential test on load messages only")
        }
    }
    out.sort();
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes that matter to the parser, for mutations.
const INTERESTING: &[u8] = b"\r\n \t:;,=@<>\"?[]%/.-_0aAsS9\\";

fn mutate(rng: &mut Rng, msg: &[u8]) -> Vec<u8> {
    let mut v = msg.to_vec();
    for _ in 0..1 + rng.below(4) {
        if v.is_empty() {
            v.push(b'x');
        }
        let k = rng.below(v.len());
        let c = if rng.below(5) == 0 {
            rng.next() as u8
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        };
        match rng.below(6) {
            0 => v[k] = c,
            1 => v.insert(k, c),
            2 => {
                v.remove(k);
            }
            3 => {
                // Duplicate a slice (e.g. a header line).
                let e = (k + 1 + rng.below(60)).min(v.len());
                let piece = v[k..e].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, piece);
            }
            4 => v.truncate(k),
            _ => {
                // Change the case of a run.
                let e = (k + 1 + rng.below(12)).min(v.len());
                for b in &mut v[k..e] {
                    *b ^= if b.is_ascii_alphabetic() { 0x20 } else { 0 };
                }
            }
        }
    }
    v
}

#[test]
fn fast_paths_answer_as_the_general_code() {
    let mut msgs = corpus();
    let corpus_len = msgs.len();
    let load = load_messages::LOAD_MESSAGES
        .iter()
        .chain(load_messages::BENCH_MESSAGES);
    msgs.extend(load.map(|(_, m)| m.to_vec()));
    let mut p = super::Parser::new();
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let mut compared = 0;
    for (i, msg) in msgs.iter().enumerate() {
        // Load messages are mutated more: they are the fast paths' home ground.
        let rounds = if i < corpus_len { 300 } else { 3000 };
        for r in 0..=rounds {
            let m = if r == 0 {
                msg.clone()
            } else {
                mutate(&mut rng, msg)
            };
            assert!(fast_paths());
            let fast = dump!(p.parse(&m));
            // The same parser (its tables reused), accessors called in general mode too.
            let general = general_paths_only(|| {
                assert!(!fast_paths());
                dump!(p.parse(&m))
            });
            assert_eq!(fast, general, "input {:?}", String::from_utf8_lossy(&m));
            compared += 1;
        }
    }
    assert!(compared >= 30_000, "{compared}");
}
