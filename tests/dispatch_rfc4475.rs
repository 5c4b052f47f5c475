//! What the server answers to each RFC 4475 torture message (the sans-IO core, driven directly):
//! the status of the single response, or no response at all. Expectations follow INDEX.md in
//! ../shared/testdata/rfc4475. INVITEs are proxied (issue 4): the sender is an IP account, so
//! the proxy answers 100 Trying at once, then 404 because no route is configured, or 480 when
//! the called user is an account with no binding; the final status is what is checked.
//!
//! The REGISTER files' users have IP-mode accounts, each for its own source address, and each
//! file is sent from its user's address, so the registrar answers without a digest round trip;
//! regaut01 comes from an address with no account.

mod common;

use std::net::SocketAddr;

use sipshard::config::Config;
use sipshard::dispatch::{Core, Dispatcher, Mail, Outbox, ShardId, Shared};
use sipshard::sip::Parser;

#[derive(Default)]
struct Recorder {
    sent: Vec<(SocketAddr, Vec<u8>)>,
    mail: Vec<(ShardId, Mail)>,
}

impl Outbox<Mail> for Recorder {
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]) {
        self.sent.push((dst, data.to_vec()));
    }
    fn mail(&mut self, shard: ShardId, mail: Mail) {
        self.mail.push((shard, mail));
    }
}

/// (file, expected status; None = dropped without an answer)
const EXPECTED: &[(&str, Option<u16>)] = &[
    // 3.1.1 valid messages: accepted; answered by method at this stage.
    ("wsinv.dat", Some(481)), // INVITE with a To tag: in-dialog, but no such dialog here
    ("intmeth.dat", Some(501)), // unknown method
    ("esc01.dat", Some(404)), // INVITE: 100, no route
    // REGISTER for `null-%00-null`: no account can hold a NUL, so an authenticating registrar
    // challenges it. Its two distinct contacts are checked in tests/registrar_core.rs.
    ("escnull.dat", Some(401)),
    ("esc02.dat", Some(501)), // RE%47IST%45R is an unknown method, not REGISTER
    ("lwsdisp.dat", Some(200)), // OPTIONS
    ("longreq.dat", Some(480)), // INVITE to `user`, an account with no binding: 100, 480
    ("dblreq.dat", Some(200)), // REGISTER; the trailing INVITE bytes are ignored (one answer)
    ("semiuri.dat", Some(200)), // OPTIONS
    ("transports.dat", Some(200)), // OPTIONS
    ("mpart01.dat", Some(405)), // MESSAGE
    ("unreason.dat", None),   // a response nobody asked for
    ("noreason.dat", None),   // a response nobody asked for
    // 3.1.2 invalid messages
    ("badinv01.dat", Some(400)),
    ("clerr.dat", Some(400)),
    ("ncl.dat", Some(400)),
    ("scalar02.dat", Some(400)),
    ("scalarlg.dat", None), // invalid response: discarded
    ("quotbal.dat", Some(400)),
    ("ltgtruri.dat", Some(400)),
    ("lwsruri.dat", Some(400)),
    ("lwsstart.dat", Some(400)),
    ("trws.dat", Some(400)),
    ("escruri.dat", Some(400)),
    ("baddate.dat", Some(480)), // Date is ignored: an INVITE to the unregistered `user`
    ("regbadct.dat", Some(400)),
    ("badaspec.dat", Some(400)),
    ("baddn.dat", Some(400)),
    ("badvers.dat", Some(505)),
    ("mismatch01.dat", Some(400)),
    ("mismatch02.dat", Some(501)),
    ("bigcode.dat", None), // invalid response: discarded
    // 3.2 transaction layer
    ("badbranch.dat", Some(400)),
    // 3.3 application layer
    ("insuf.dat", Some(400)),
    ("unkscm.dat", Some(416)),
    ("novelsc.dat", Some(416)),
    ("unksm2.dat", Some(400)), // REGISTER whose To (the AOR) is not a SIP URI
    ("bext01.dat", Some(420)),
    ("invut.dat", Some(480)), // a proxy forwards it; `user` is not registered
    ("regaut01.dat", Some(401)), // unknown auth scheme: a fresh Digest challenge
    ("multi01.dat", Some(400)),
    ("mcl01.dat", Some(400)),
    ("bcast.dat", None), // response with broadcast Via: dropped, never forwarded
    ("zeromf.dat", Some(483)), // OPTIONS for a user with Max-Forwards 0
    ("cparam01.dat", Some(200)),
    ("cparam02.dat", Some(200)),
    ("regescrt.dat", Some(200)),
    ("sdp01.dat", Some(480)), // a proxy does not look at the body; `user` not registered
    // 3.4 backward compatibility
    ("inv2543.dat", Some(404)), // accepted with RFC 2543 transaction matching; no route
];

/// The default source address, and one with no account.
const SRC: &str = "192.0.2.77:5099";
const OTHER_SRC: &str = "198.51.100.5:5060";

/// The REGISTER files' users, each with the address its IP-mode account allows.
const USERS: &[(&str, &str, &[&str])] = &[
    ("watson", "192.0.2.77", &["cparam01.dat", "cparam02.dat"]),
    ("user", "192.0.2.78", &["regescrt.dat", "regbadct.dat"]),
    ("j.user", "192.0.2.79", &["dblreq.dat"]),
];

/// Where a corpus file is sent from.
fn source_of(file: &str) -> SocketAddr {
    if file == "regaut01.dat" {
        return OTHER_SRC.parse().unwrap();
    }
    let ip = USERS
        .iter()
        .find(|(_, _, files)| files.contains(&file))
        .map_or("192.0.2.77", |u| u.1);
    format!("{ip}:5099").parse().unwrap()
}

fn config() -> Config {
    let mut toml = String::from("[registrar]\n");
    for (user, ip, _) in USERS {
        toml.push_str(&format!(
            "[[registrar.accounts]]\nuser = \"{user}\"\nauth_mode = \"ip\"\nallowed = [\"{ip}\"]\n"
        ));
    }
    Config::from_toml_str(&toml).expect("test config")
}

/// Sends one datagram to a fresh one-shard core; returns the responses.
fn answer(cfg: &Config, data: &[u8], src: SocketAddr) -> Vec<Vec<u8>> {
    let shared = Shared::new(cfg, [7; 32], 42).expect("accounts");
    let mut core = Dispatcher::new(0, 1, cfg, &shared, 0);
    let mut rec = Recorder::default();
    core.on_datagram(0, src, data, &mut rec);
    assert!(rec.mail.is_empty(), "a single shard hands nothing over");
    rec.sent.into_iter().map(|(_, d)| d).collect()
}

fn contacts_of(resp: &[u8]) -> String {
    String::from_utf8_lossy(resp)
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_corpus_message_gets_the_expected_answer() {
    let Some(dir) = common::rfc4475_dir() else {
        return;
    };
    let cfg = config();
    let mut parser = Parser::new();
    let mut failures = Vec::new();
    for &(file, expected) in EXPECTED {
        let data = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let sent = answer(&cfg, &data, source_of(file));
        // A proxied INVITE gets 100 Trying first: the final is what the table lists.
        let sent: Vec<Vec<u8>> = match sent.as_slice() {
            [first, _] if first.starts_with(b"SIP/2.0 100 ") => sent[1..].to_vec(),
            _ => sent,
        };
        let got = match sent.as_slice() {
            [] => None,
            [resp] => {
                let msg = parser
                    .parse(resp)
                    .unwrap_or_else(|e| panic!("{file}: our response does not parse: {e:?}"));
                // A 400 echoes what it can of a broken request (e.g. no CSeq when it overflowed).
                if msg.status() != Some(400) {
                    assert!(
                        msg.validate().is_ok(),
                        "{file}: our response is invalid:\n{}",
                        String::from_utf8_lossy(resp)
                    );
                }
                msg.status()
            }
            many => panic!("{file}: {} responses to one datagram", many.len()),
        };
        if got != expected {
            failures.push(format!("{file}: expected {expected:?}, got {got:?}"));
        }
    }
    // test.dat is not in any section: no SIP version in its request line. Any 2xx would be wrong.
    let data = std::fs::read(dir.join("test.dat")).expect("test.dat");
    for r in &answer(&cfg, &data, SRC.parse().unwrap()) {
        let st = parser.parse(r).ok().and_then(|m| m.status());
        assert!(st.is_some_and(|s| s >= 400), "test.dat: answered {st:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_covers_every_file_in_the_folder() {
    let Some(dir) = common::rfc4475_dir() else {
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dat") && n != "test.dat")
        .collect();
    names.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed, "every .dat file needs an expected answer");
}

#[test]
fn bad_extension_lists_the_required_tokens() {
    let Some(dir) = common::rfc4475_dir() else {
        return;
    };
    let data = std::fs::read(dir.join("bext01.dat")).unwrap();
    let sent = answer(&config(), &data, SRC.parse().unwrap());
    let text = String::from_utf8_lossy(&sent[0]).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("Unsupported:"))
        .expect("Unsupported header");
    assert!(line.contains("nothingSupportsThis"), "{line}");
    assert!(line.contains("nothingSupportsThisEither"), "{line}");
}

#[test]
fn register_cases_store_what_rfc_4475_says() {
    let Some(dir) = common::rfc4475_dir() else {
        return;
    };
    let cfg = config();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    // cparam01: `unknownparam` is a contact-param, not kept in the binding.
    let r = answer(&cfg, &read("cparam01.dat"), source_of("cparam01.dat"));
    let c = contacts_of(&r[0]);
    assert!(
        c.contains("gw1.example.net") && !c.contains("unknownparam"),
        "{c}"
    );
    // cparam02: `unknownparam` is a URI parameter, kept.
    let r = answer(&cfg, &read("cparam02.dat"), source_of("cparam02.dat"));
    let c = contacts_of(&r[0]);
    assert!(c.contains("gw1.example.net;unknownparam"), "{c}");
    // regescrt: the escaped Route header stays in the contact URI.
    let r = answer(&cfg, &read("regescrt.dat"), source_of("regescrt.dat"));
    let c = contacts_of(&r[0]);
    assert!(c.contains("?Route=%3Csip:sip.example.com%3E"), "{c}");
    // regaut01: a fresh Digest challenge.
    let r = answer(&cfg, &read("regaut01.dat"), source_of("regaut01.dat"));
    let text = String::from_utf8_lossy(&r[0]).to_string();
    assert!(text.contains("WWW-Authenticate: Digest "), "{text}");
}
