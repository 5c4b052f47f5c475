//! The proxy core (issue 4) driven through the dispatcher, sans-IO, with a simulated clock:
//! exact millisecond timelines of failover, the trying and ringing timeouts, CANCEL, digest on
//! INVITE, dialog routing of ACK/BYE without Route headers, gateway health and the CDRs.

use std::net::SocketAddr;

use crossbeam_channel::Receiver;
use sipshard::cdr::{AttemptOutcome, CdrRecord, CdrSender, EndReason};
use sipshard::config::Config;
use sipshard::dispatch::{Core, Dispatcher, Mail, Outbox, ProxyMail, Shared};
use sipshard::sip::digest::{write_authorization, Credentials};
use sipshard::sip::parse_auth;
use sipshard::timer::Millis;
use sipshard::transaction::make_branch;

const LOCAL: &str = "203.0.113.1:5060";
const CALLER: &str = "198.51.100.1:5060";
const GW1: &str = "192.0.2.1:5080";
const GW2: &str = "192.0.2.2:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct Rec {
    now: Millis,
    sent: Vec<(Millis, SocketAddr, String)>,
    mail: Vec<(usize, Mail)>,
}

impl Outbox<Mail> for Rec {
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]) {
        self.sent
            .push((self.now, dst, String::from_utf8_lossy(data).into_owned()));
    }
    fn mail(&mut self, shard: usize, mail: Mail) {
        self.mail.push((shard, mail));
    }
}

struct H {
    d: Dispatcher,
    out: Rec,
    now: Millis,
    cdr: Receiver<CdrRecord>,
    /// Records handed back to the proxy for reuse, as the CDR writer does.
    used: crossbeam_channel::Sender<CdrRecord>,
}

const BASE: &str = "[[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\n\
[[gateways]]\nname = \"gw2\"\naddress = \"192.0.2.2:5080\"\n\
[[routes]]\nprefix = \"\"\ngateways = [\"gw1\", \"gw2\"]\n\
[[peers]]\nname = \"carrier\"\naddress = \"198.51.100.1\"\n";

impl H {
    fn new(extra: &str) -> H {
        Self::with(&format!("{BASE}{extra}"))
    }

    fn with(toml: &str) -> H {
        let config = Config::from_toml_str(toml).expect("config");
        let mut shared = Shared::new(&config, [3; 32], 77).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(100);
        let (used_tx, used_rx) = crossbeam_channel::bounded(100);
        shared.cdr = CdrSender::with_used(tx, used_rx);
        let mut d = Dispatcher::new(0, 1, &config, &shared, 0);
        d.set_local_addr(addr(LOCAL));
        H {
            d,
            out: Rec::default(),
            now: 0,
            cdr: rx,
            used: used_tx,
        }
    }

    fn recv(&mut self, from: &str, data: &str) {
        self.out.now = self.now;
        self.d
            .on_datagram(self.now, addr(from), data.as_bytes(), &mut self.out);
        assert!(self.out.mail.is_empty(), "one shard: no mail");
    }

    /// Fires every timer due up to `t`, in order, and leaves the clock at `t`.
    fn advance_to(&mut self, t: Millis) {
        while let Some(d) = self.d.next_deadline() {
            if d > t {
                break;
            }
            self.now = self.now.max(d);
            self.out.now = self.now;
            self.d.on_timers(self.now, &mut self.out);
        }
        self.now = t;
    }

    /// Everything sent so far to `to`, with the time: (ms, first line).
    fn lines_to(&self, to: &str) -> Vec<(Millis, String)> {
        self.out
            .sent
            .iter()
            .filter(|(_, d, _)| *d == addr(to))
            .map(|(t, _, m)| (*t, m.lines().next().unwrap_or("").to_string()))
            .collect()
    }

    /// The last message sent to `to` whose first line starts with `start`.
    fn last_to(&self, to: &str, start: &str) -> String {
        self.out
            .sent
            .iter()
            .rev()
            .find(|(_, d, m)| *d == addr(to) && m.starts_with(start))
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("nothing starting with {start:?} sent to {to}"))
    }

    /// The next CDR; the record itself goes back to the proxy for reuse (as the writer does),
    /// so the next call's CDR overwrites it.
    fn cdr(&self) -> CdrRecord {
        let r = self.cdr.try_recv().expect("a CDR");
        let copy = r.clone();
        self.used.try_send(r).expect("room for a used record");
        copy
    }

    fn counter(&self, name: &str) -> u64 {
        self.d
            .counters()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }
}

fn invite(call_id: &str, number: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{number}@203.0.113.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\n\
From: <sip:alice@198.51.100.1>;tag=a1\r\nTo: <sip:{number}@203.0.113.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.1:5060>\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

fn header_lines<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .collect()
}

/// A gateway's response to a request it received (all Vias, From, To with `tag`, Call-ID, CSeq).
fn response(req: &str, status: &str, tag: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for v in header_lines(req, "Via") {
        r.push_str(v);
        r.push_str("\r\n");
    }
    for h in ["From", "To", "Call-ID", "CSeq"] {
        let line = header_lines(req, h)[0];
        r.push_str(line);
        if h == "To" {
            if let Some(t) = tag {
                r.push_str(";tag=");
                r.push_str(t);
            }
        }
        r.push_str("\r\n");
    }
    if status.starts_with('2') {
        r.push_str("Contact: <sip:gw@192.0.2.2:5080>\r\n");
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

/// A request from the caller in the dialog of `call_id` (no Route: as sipp's uac sends it).
fn in_dialog(method: &str, call_id: &str, to_tag: &str, cseq: u32, branch: &str) -> String {
    format!(
        "{method} sip:gw@192.0.2.2:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{branch}\r\nMax-Forwards: 70\r\n\
From: <sip:alice@198.51.100.1>;tag=a1\r\nTo: <sip:1555@203.0.113.1>;tag={to_tag}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn starts(lines: &[(Millis, String)], start: &str) -> Vec<Millis> {
    lines
        .iter()
        .filter(|(_, l)| l.starts_with(start))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn failover_timeline_with_gateway_1_silent_then_dialog_and_cdr() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("c1", "15551234", ""));
    assert_eq!(h.lines_to(CALLER)[0], (0, "SIP/2.0 100 Trying".to_string()));
    h.advance_to(10_000);
    // gw1 got the INVITE at 0, 0.5, 1.5, 3.5, 7.5 s; at 10 s the call moved to gw2.
    assert_eq!(
        starts(&h.lines_to(GW1), "INVITE"),
        vec![0, 500, 1500, 3500, 7500]
    );
    assert_eq!(starts(&h.lines_to(GW2), "INVITE"), vec![10_000]);
    let inv = h.last_to(GW2, "INVITE");
    assert!(
        inv.starts_with("INVITE sip:15551234@192.0.2.2:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKsS0000"),
        "{inv}"
    );
    assert!(
        inv.contains("Record-Route: <sip:203.0.113.1:5060;lr;s=0>\r\n"),
        "{inv}"
    );
    assert!(inv.contains("Max-Forwards: 69\r\n"), "{inv}");
    assert_eq!(header_lines(&inv, "Via").len(), 2);

    h.now = 10_100;
    h.recv(GW2, &response(&inv, "200 OK", Some("g2")));
    let ok = h.last_to(CALLER, "SIP/2.0 200");
    assert_eq!(
        header_lines(&ok, "Via").len(),
        1,
        "our Via is removed: {ok}"
    );
    assert!(ok.contains("branch=z9hG4bK-c1"), "{ok}");
    // ACK and BYE without Route headers reach gw2 by the dialog state.
    h.now = 10_200;
    h.recv(CALLER, &in_dialog("ACK", "c1", "g2", 1, "ack1"));
    let ack = h.last_to(GW2, "ACK");
    assert!(ack.contains("Max-Forwards: 69"), "{ack}");
    h.now = 15_000;
    h.recv(CALLER, &in_dialog("BYE", "c1", "g2", 2, "bye1"));
    let bye = h.last_to(GW2, "BYE");
    h.now = 15_050;
    h.recv(GW2, &response(&bye, "200 OK", None));
    let ok = h.last_to(CALLER, "SIP/2.0 200");
    assert!(ok.contains("CSeq: 2 BYE"), "{ok}");

    let cdr = h.cdr();
    assert_eq!(cdr.call_id, "c1");
    assert_eq!(cdr.caller, "alice");
    assert_eq!(cdr.callee, "15551234");
    assert_eq!(cdr.source, addr(CALLER));
    assert_eq!(cdr.caller_identity, "peer:carrier");
    assert_eq!(
        (cdr.start, cdr.answer, cdr.end, cdr.duration_ms()),
        (0, Some(10_100), 15_000, 4_900)
    );
    assert_eq!(cdr.final_status, 200);
    assert_eq!(cdr.end_reason, EndReason::CallerHangup);
    assert_eq!(cdr.attempts.len(), 2);
    let (a, b) = (&cdr.attempts[0], &cdr.attempts[1]);
    assert_eq!(
        (
            a.target.as_str(),
            a.destination,
            a.started,
            a.ended,
            a.outcome
        ),
        ("gw1", addr(GW1), 0, 10_000, AttemptOutcome::NoResponse)
    );
    assert_eq!(
        (b.target.as_str(), b.started, b.ended, b.outcome),
        ("gw2", 10_000, 10_100, AttemptOutcome::Answered)
    );
    assert_eq!(b.called, "15551234");
    assert_eq!(h.counter("calls_live"), 0, "the call's slot is freed");
}

#[test]
fn immediate_failover_on_503_with_strip_and_prepend() {
    let mut h = H::with(
        "[[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\nstrip_digits = 1\nprepend = \"00\"\n\
         [[gateways]]\nname = \"gw2\"\naddress = \"192.0.2.2:5080\"\n\
         [[routes]]\nprefix = \"1\"\ngateways = [\"gw1\", \"gw2\"]\n\
         [[peers]]\nname = \"carrier\"\naddress = \"198.51.100.1\"\n",
    );
    h.recv(CALLER, &invite("c2", "15551234", ""));
    let inv = h.last_to(GW1, "INVITE");
    assert!(
        inv.starts_with("INVITE sip:005551234@192.0.2.1:5080 "),
        "{inv}"
    );
    h.now = 40;
    h.recv(GW1, &response(&inv, "503 Service Unavailable", Some("x")));
    assert_eq!(
        starts(&h.lines_to(GW1), "ACK"),
        vec![40],
        "the 503 is ACKed"
    );
    assert_eq!(starts(&h.lines_to(GW2), "INVITE"), vec![40]);
    assert!(h
        .last_to(GW2, "INVITE")
        .starts_with("INVITE sip:15551234@192.0.2.2:5080 "));
    // Nothing but the 100 went to the caller.
    assert_eq!(h.lines_to(CALLER).len(), 1);
}

#[test]
fn busy_goes_back_to_the_caller_without_failover() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("c3", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 30;
    h.recv(GW1, &response(&inv, "486 Busy Here", Some("x")));
    assert!(h.lines_to(GW2).is_empty());
    let busy = h.last_to(CALLER, "SIP/2.0 486");
    assert_eq!(header_lines(&busy, "Via").len(), 1);
    let cdr = h.cdr();
    assert_eq!(cdr.final_status, 486);
    assert_eq!(cdr.end_reason, EndReason::Rejected);
    assert_eq!(cdr.attempts[0].outcome, AttemptOutcome::Rejected(486));
    // The caller's ACK for the 486 is absorbed by the server transaction.
    let ack = "ACK sip:1555@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-c3\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@198.51.100.1>;tag=a1\r\nTo: <sip:1555@203.0.113.1>;tag=x\r\n\
Call-ID: c3\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let before = h.out.sent.len();
    h.recv(CALLER, ack);
    assert_eq!(h.out.sent.len(), before);
}

#[test]
fn no_gateway_left() {
    // 502 then 503: the best response of the context (RFC 3261 §16.7 step 6) is the 502 (same
    // class; a 503 is the last choice since it would go up as 500).
    let mut h = H::new("");
    h.recv(CALLER, &invite("c4", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 10;
    h.recv(GW1, &response(&inv, "502 Bad Gateway", Some("x")));
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 20;
    h.recv(GW2, &response(&inv2, "503 Service Unavailable", Some("y")));
    let last = h.last_to(CALLER, "SIP/2.0 502");
    assert!(last.contains("CSeq: 1 INVITE"), "{last}");
    assert!(last.contains("tag=x"), "gateway 1's 502 itself: {last}");
    assert!(starts(&h.lines_to(CALLER), "SIP/2.0 503").is_empty());
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::AllGatewaysFailed);
    assert_eq!(cdr.final_status, 502);
    assert_eq!(
        cdr.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![AttemptOutcome::Rejected(502), AttemptOutcome::Rejected(503)]
    );

    // Both silent: every attempt timed out, which counts as 408 (§16.8): our 408 with a Warning
    // that says why, at 20 s.
    let mut h = H::new("");
    h.recv(CALLER, &invite("c5", "1555", ""));
    h.advance_to(30_000);
    // The final is re-sent until the caller's ACK (INVITE server transaction).
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 408")[0], 20_000);
    let r = h.last_to(CALLER, "SIP/2.0 408");
    assert!(r.contains("Warning: 399 sipshard \"no gateway left"), "{r}");
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::AllGatewaysFailed);
    assert_eq!(cdr.final_status, 408);
}

#[test]
fn trying_timeout_cancels_and_moves_on() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("c6", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 50;
    h.recv(GW1, &response(&inv, "100 Trying", None));
    h.advance_to(20_049);
    assert!(starts(&h.lines_to(GW1), "CANCEL").is_empty());
    h.advance_to(20_050);
    assert_eq!(starts(&h.lines_to(GW1), "CANCEL"), vec![20_050]);
    assert_eq!(starts(&h.lines_to(GW2), "INVITE"), vec![20_050]);
    let cancel = h.last_to(GW1, "CANCEL");
    let inv_via = header_lines(&inv, "Via")[0];
    assert_eq!(header_lines(&cancel, "Via"), vec![inv_via], "same branch");
    assert!(cancel.contains("CSeq: 1 CANCEL"), "{cancel}");
    // The INVITE was re-sent only until the 100.
    assert_eq!(starts(&h.lines_to(GW1), "INVITE"), vec![0]);
}

#[test]
fn ringing_timeout_cancels_and_fails_with_no_answer() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("c7", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 50;
    h.recv(GW1, &response(&inv, "180 Ringing", Some("r")));
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 180"), vec![50]);
    h.advance_to(200_000);
    // The CANCEL (re-sent: gw1 does not answer it) goes at the ringing timeout.
    assert_eq!(starts(&h.lines_to(GW1), "CANCEL")[0], 120_050);
    assert!(h.lines_to(GW2).is_empty(), "no failover after ringing");
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 480")[0], 120_050);
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::NoAnswer);
    assert_eq!(cdr.attempts[0].outcome, AttemptOutcome::RingingTimeout);
    assert_eq!(cdr.final_status, 480);
}

#[test]
fn caller_cancel() {
    let mut h = H::new("");
    let inv0 = invite("c8", "1555", "");
    h.recv(CALLER, &inv0);
    let inv = h.last_to(GW1, "INVITE");
    h.now = 50;
    h.recv(GW1, &response(&inv, "180 Ringing", Some("r")));
    h.now = 3000;
    let cancel = inv0
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    h.recv(CALLER, &cancel);
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 200"), vec![3000]);
    assert_eq!(starts(&h.lines_to(GW1), "CANCEL"), vec![3000]);
    let c = h.last_to(GW1, "CANCEL");
    h.now = 3010;
    h.recv(GW1, &response(&c, "200 OK", Some("r")));
    h.recv(GW1, &response(&inv, "487 Request Terminated", Some("r")));
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 487"), vec![3010]);
    assert!(h.lines_to(GW2).is_empty());
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::CallerCancel);
    assert_eq!(cdr.final_status, 487);
    assert_eq!(cdr.attempts[0].outcome, AttemptOutcome::CancelledByCaller);
}

#[test]
fn digest_on_invite_407_then_accepted() {
    let mut h = H::with(
        "[registrar]\n[[registrar.accounts]]\nuser = \"1001\"\npassword = \"secret\"\n\
         [[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\n\
         [[routes]]\nprefix = \"\"\ngateways = [\"gw1\"]\n",
    );
    let phone = "198.51.100.9:5062";
    let inv = invite("c9", "1555", "")
        .replace("198.51.100.1:5060", "198.51.100.9:5062")
        .replace("alice", "1001");
    h.recv(phone, &inv);
    let challenge = h.last_to(phone, "SIP/2.0 407");
    assert!(h.lines_to(GW1).is_empty());
    let value = header_lines(&challenge, "Proxy-Authenticate")[0]
        .split_once(": ")
        .unwrap()
        .1
        .to_string();
    let parsed = parse_auth(value.as_bytes()).unwrap();
    let mut auth = Vec::new();
    write_authorization(
        &mut auth,
        &parsed,
        &Credentials {
            username: b"1001",
            password: b"secret",
            method: b"INVITE",
            digest_uri: b"sip:1555@203.0.113.1:5060",
            cnonce: b"abc",
            nc: 1,
        },
    )
    .unwrap();
    let auth = String::from_utf8(auth).unwrap();
    let inv2 = inv
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace("branch=z9hG4bK-c9", "branch=z9hG4bK-c9b")
        .replace(
            "Content-Length",
            &format!("Proxy-Authorization: {auth}\r\nContent-Length"),
        );
    h.now = 100;
    h.recv(phone, &inv2);
    assert_eq!(starts(&h.lines_to(GW1), "INVITE"), vec![100]);
    let fwd = h.last_to(GW1, "INVITE");
    assert!(!fwd.contains("Proxy-Authorization"), "{fwd}");
    // A wrong password: 403, counted.
    let bad = inv2
        .replace("Call-ID: c9", "Call-ID: c10")
        .replace("branch=z9hG4bK-c9b", "branch=z9hG4bK-c10")
        .replace("response=\"", "response=\"0");
    h.recv(phone, &bad);
    assert!(h.last_to(phone, "SIP/2.0 403").contains("Call-ID: c10"));
    assert_eq!(h.counter("calls_forbidden"), 1);
    assert_eq!(h.counter("calls_challenged"), 1);
}

/// The proxy reuses records the writer is done with: every field of the next call's CDR is
/// overwritten (fewer attempts, no answer, no identity), nothing of the last call shows.
#[test]
fn reused_cdr_records_carry_nothing_of_the_previous_call() {
    let mut h = H::new("[routing]\ninvite_auth = false\n");
    // Call 1: gw1 503 (failover), gw2 answers, caller hangs up.
    h.recv(CALLER, &invite("first-call-with-a-long-id", "15551234", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 40;
    h.recv(GW1, &response(&inv, "503 Service Unavailable", Some("x")));
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 100;
    h.recv(GW2, &response(&inv2, "200 OK", Some("g2")));
    h.now = 200;
    h.recv(
        CALLER,
        &in_dialog("ACK", "first-call-with-a-long-id", "g2", 1, "a1"),
    );
    h.now = 5_000;
    h.recv(
        CALLER,
        &in_dialog("BYE", "first-call-with-a-long-id", "g2", 2, "b1"),
    );
    let first = h.cdr();
    assert_eq!(first.attempts.len(), 2);
    assert_eq!(first.answer, Some(100));
    assert_eq!(first.caller_identity, "peer:carrier");
    // Call 2: refused (403) from an unknown source: the reused record has no attempts.
    h.now = 6_000;
    h.recv("198.51.100.50:5060", &invite("c2", "1555", ""));
    let second = h.cdr();
    let expect = CdrRecord {
        call_id: "c2".into(),
        caller: "alice".into(),
        callee: "1555".into(),
        source: addr("198.51.100.50:5060"),
        caller_identity: String::new(),
        start: 6_000,
        answer: None,
        end: 6_000,
        attempts: Vec::new(),
        final_status: 403,
        end_reason: EndReason::Forbidden,
    };
    assert_eq!(second, expect);
    // Call 3: one attempt, busy.
    h.now = 7_000;
    h.recv(CALLER, &invite("c3", "42", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 7_030;
    h.recv(GW1, &response(&inv, "486 Busy Here", Some("x")));
    let third = h.cdr();
    let expect = CdrRecord {
        call_id: "c3".into(),
        caller: "alice".into(),
        callee: "42".into(),
        source: addr(CALLER),
        caller_identity: "peer:carrier".into(),
        start: 7_000,
        answer: None,
        end: 7_030,
        attempts: vec![sipshard::cdr::CdrAttempt {
            target: "gw1".into(),
            destination: addr(GW1),
            called: "42".into(),
            started: 7_000,
            ended: 7_030,
            outcome: AttemptOutcome::Rejected(486),
        }],
        final_status: 486,
        end_reason: EndReason::Rejected,
    };
    assert_eq!(third, expect);
    assert_eq!(h.counter("cdr_emitted"), 3);
}

#[test]
fn unknown_caller_is_forbidden_without_invite_auth() {
    let mut h = H::new("[routing]\ninvite_auth = false\n");
    h.recv("198.51.100.50:5060", &invite("c11", "1555", ""));
    let r = h.last_to("198.51.100.50:5060", "SIP/2.0 403");
    assert!(r.contains("Warning: 399 sipshard"), "{r}");
    assert!(h.lines_to(GW1).is_empty());
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::Forbidden);
    assert_eq!(cdr.final_status, 403);
}

#[test]
fn no_route_404_or_403() {
    let toml = |status: u16| {
        format!(
            "[routing]\nno_route_status = {status}\n\
             [[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\n\
             [[routes]]\nprefix = \"44\"\ngateways = [\"gw1\"]\n\
             [[peers]]\nname = \"carrier\"\naddress = \"198.51.100.1\"\n"
        )
    };
    let mut h = H::with(&toml(404));
    h.recv(CALLER, &invite("c12", "3312345", ""));
    assert_eq!(
        starts(&h.lines_to(CALLER), "SIP/2.0"),
        vec![0, 0],
        "100 then the final"
    );
    h.last_to(CALLER, "SIP/2.0 404");
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::NoRoute);
    assert!(cdr.attempts.is_empty());
    h.recv(CALLER, &invite("c13", "4412345", ""));
    assert_eq!(starts(&h.lines_to(GW1), "INVITE"), vec![0]);

    let mut h = H::with(&toml(403));
    h.recv(CALLER, &invite("c14", "3312345", ""));
    h.last_to(CALLER, "SIP/2.0 403");
}

#[test]
fn max_forwards_zero_is_483_and_our_own_via_is_482() {
    let mut h = H::new("");
    h.recv(
        CALLER,
        &invite("c15", "1555", "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    h.last_to(CALLER, "SIP/2.0 483");
    assert!(h.lines_to(GW1).is_empty());

    let mut branch = [0u8; sipshard::transaction::BRANCH_LEN];
    let b = make_branch(0, 12345, &mut branch);
    let ours = format!(
        "Via: SIP/2.0/UDP 203.0.113.1:5060;branch={}\r\n",
        std::str::from_utf8(b).unwrap()
    );
    let looped = invite("c16", "1555", "").replace("Max-Forwards", &format!("{ours}Max-Forwards"));
    h.recv(CALLER, &looped);
    h.last_to(CALLER, "SIP/2.0 482");
    assert!(h.lines_to(GW1).is_empty());
}

#[test]
fn gateway_marked_down_skipped_and_back_up_after_a_probe() {
    let mut h = H::new("[routing]\ngateway_down_after = 2\ngateway_probe_interval = 5\n");
    for (i, call) in ["d1", "d2"].iter().enumerate() {
        h.now = i as Millis * 100;
        h.recv(CALLER, &invite(call, "1555", ""));
        let inv = h.last_to(GW1, "INVITE");
        h.recv(GW1, &response(&inv, "500 Server Internal Error", Some("x")));
    }
    let stats = h.d.gateway_stats();
    assert!(!stats[0].up && stats[0].health_owner);
    assert_eq!(stats[0].counters.marked_down, 1);
    assert_eq!(stats[0].counters.fail_status, 2);
    // The third call skips gw1.
    h.now = 1000;
    let gw1_invites = starts(&h.lines_to(GW1), "INVITE").len();
    h.recv(CALLER, &invite("d3", "1555", ""));
    assert_eq!(starts(&h.lines_to(GW1), "INVITE").len(), gw1_invites);
    assert_eq!(starts(&h.lines_to(GW2), "INVITE").last(), Some(&1000));
    assert_eq!(h.d.gateway_stats()[0].counters.skipped_down, 1);
    // A probe 5 s after it went down (at 100 ms); its answer brings gw1 back.
    h.advance_to(5_100);
    assert_eq!(starts(&h.lines_to(GW1), "OPTIONS"), vec![5_100]);
    let probe = h.last_to(GW1, "OPTIONS");
    h.now = 5_120;
    h.recv(GW1, &response(&probe, "200 OK", Some("p")));
    let stats = h.d.gateway_stats();
    assert!(stats[0].up);
    assert_eq!(stats[0].counters.marked_up, 1);
    h.recv(CALLER, &invite("d4", "1555", ""));
    assert_eq!(starts(&h.lines_to(GW1), "INVITE").last(), Some(&5_120));
}

#[test]
fn unanswered_probe_keeps_the_gateway_down_and_probes_again() {
    let mut h = H::new(
        "[sip]\nresend_interval = [0.5, 1]\n[routing]\ngateway_down_after = 1\ngateway_probe_interval = 5\n",
    );
    h.recv(CALLER, &invite("p1", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&inv, "503 Service Unavailable", Some("x")));
    h.advance_to(12_000);
    // Probe at 5 s, re-sent at 5.5 s, failed at 6.5 s; next probe at 10 s.
    assert_eq!(
        starts(&h.lines_to(GW1), "OPTIONS"),
        vec![5_000, 5_500, 10_000, 10_500]
    );
    assert!(!h.d.gateway_stats()[0].up);
}

#[test]
fn ringing_then_answer_stay_in_order_and_late_2xx_is_forwarded() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("o1", "1555", ""));
    h.advance_to(10_000);
    let inv1 = h.last_to(GW1, "INVITE");
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 10_010;
    h.recv(GW2, &response(&inv2, "180 Ringing", Some("g2")));
    // gw1 answers late (its attempt timed out at 10 s): the 2xx still goes to the caller.
    h.now = 10_020;
    h.recv(GW1, &response(&inv1, "200 OK", Some("g1")));
    let caller: Vec<String> = h.lines_to(CALLER).into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        caller,
        vec![
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK"
        ]
    );
    assert_eq!(h.counter("late_2xx_forwarded"), 1);
    // gw2 is CANCELed: the call was answered elsewhere.
    assert_eq!(starts(&h.lines_to(GW2), "CANCEL"), vec![10_020]);
    // The dialog follows gw1's answer.
    h.now = 10_100;
    h.recv(CALLER, &in_dialog("ACK", "o1", "g1", 1, "ack"));
    assert_eq!(starts(&h.lines_to(GW1), "ACK").last(), Some(&10_100));
}

#[test]
fn bye_from_the_callee_goes_to_the_caller() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("b1", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&inv, "180 Ringing", Some("g1")));
    h.now = 500;
    h.recv(GW1, &response(&inv, "200 OK", Some("g1")));
    // 180 then 200, in arrival order.
    assert_eq!(
        starts(&h.lines_to(CALLER), "SIP/2.0 1").len() + 1,
        starts(&h.lines_to(CALLER), "SIP/2.0").len()
    );
    h.recv(CALLER, &in_dialog("ACK", "b1", "g1", 1, "a"));
    h.now = 9_500;
    let bye = "BYE sip:alice@198.51.100.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK-gwbye\r\n\
Route: <sip:203.0.113.1:5060;lr;s=0>\r\nMax-Forwards: 70\r\n\
From: <sip:1555@203.0.113.1>;tag=g1\r\nTo: <sip:alice@198.51.100.1>;tag=a1\r\n\
Call-ID: b1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    h.recv(GW1, bye);
    let fwd = h.last_to(CALLER, "BYE");
    assert!(!fwd.contains("Route:"), "our Route is popped: {fwd}");
    h.recv(CALLER, &response(&fwd, "200 OK", None));
    let ok = h.last_to(GW1, "SIP/2.0 200");
    assert!(ok.contains("CSeq: 1 BYE"), "{ok}");
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::CalleeHangup);
    assert_eq!((cdr.answer, cdr.end), (Some(500), 9_500));
}

#[test]
fn in_dialog_request_for_no_dialog_is_481() {
    let mut h = H::new("");
    h.recv(CALLER, &in_dialog("BYE", "nothing", "x", 2, "b"));
    h.last_to(CALLER, "SIP/2.0 481");
}

#[test]
fn max_calls_limits_a_gateway() {
    let mut h = H::with(
        "[[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\nmax_calls = 1\n\
         [[gateways]]\nname = \"gw2\"\naddress = \"192.0.2.2:5080\"\n\
         [[routes]]\nprefix = \"\"\ngateways = [\"gw1\", \"gw2\"]\n\
         [[peers]]\nname = \"carrier\"\naddress = \"198.51.100.1\"\n",
    );
    h.recv(CALLER, &invite("m1", "1555", ""));
    h.recv(CALLER, &invite("m2", "1555", ""));
    assert_eq!(starts(&h.lines_to(GW1), "INVITE").len(), 1);
    assert_eq!(starts(&h.lines_to(GW2), "INVITE").len(), 1);
    assert_eq!(h.d.gateway_stats()[0].active_calls, 1);
    assert_eq!(h.d.gateway_stats()[0].counters.skipped_full, 1);
    // m1 is refused by gw1: the slot is free again and the next call may use gw1.
    let inv = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&inv, "486 Busy Here", Some("x")));
    assert_eq!(h.d.gateway_stats()[0].active_calls, 0);
    h.recv(CALLER, &invite("m3", "1555", ""));
    assert_eq!(starts(&h.lines_to(GW1), "INVITE").len(), 2);
}

#[test]
fn registered_user_gets_the_call_on_its_contact() {
    let mut h = H::new("[registrar]\nrequire_auth = \"Off\"\n[[registrar.accounts]]\nuser = \"2001\"\npassword = \"pw\"\n");
    let reg = "REGISTER sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5070;branch=z9hG4bK-r1\r\n\
Max-Forwards: 70\r\nFrom: <sip:2001@203.0.113.1>;tag=r\r\nTo: <sip:2001@203.0.113.1>\r\n\
Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@198.51.100.20:5070>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n";
    h.recv("198.51.100.20:5070", reg);
    h.last_to("198.51.100.20:5070", "SIP/2.0 200");
    h.recv(CALLER, &invite("u1", "2001", ""));
    let inv = h.last_to("198.51.100.20:5070", "INVITE");
    assert!(
        inv.starts_with("INVITE sip:2001@198.51.100.20:5070 SIP/2.0"),
        "{inv}"
    );
    assert!(h.lines_to(GW1).is_empty());
    h.recv("198.51.100.20:5070", &response(&inv, "200 OK", Some("u")));
    h.last_to(CALLER, "SIP/2.0 200");
}

/// Two shards: the gateway's health owner learns outcomes by mail and tells the other shard.
#[test]
fn health_is_shared_across_shards_by_mail() {
    let config =
        Config::from_toml_str(&format!("{BASE}[routing]\ngateway_down_after = 1\n")).unwrap();
    let shared = Shared::new(&config, [3; 32], 77).unwrap();
    let mut d: Vec<Dispatcher> = (0..2)
        .map(|s| {
            let mut d = Dispatcher::new(s, 2, &config, &shared, 0);
            d.set_local_addr(addr(LOCAL));
            d
        })
        .collect();
    let owner = d
        .iter()
        .position(|x| x.gateway_stats()[0].health_owner)
        .unwrap();
    let other = 1 - owner;
    // A Call-ID owned by the other shard.
    let call_id = (0..100)
        .map(|i| format!("hc{i}"))
        .find(|c| sipshard::dispatch::owner_of_call_id(c.as_bytes(), 2) == other)
        .unwrap();
    let mut out = Rec::default();
    d[other].on_datagram(
        0,
        addr(CALLER),
        invite(&call_id, "1555", "").as_bytes(),
        &mut out,
    );
    let inv = out
        .sent
        .iter()
        .find(|(_, dst, m)| *dst == addr(GW1) && m.starts_with("INVITE"))
        .unwrap()
        .2
        .clone();
    d[other].on_datagram(
        5,
        addr(GW1),
        response(&inv, "503 Service Unavailable", Some("x")).as_bytes(),
        &mut out,
    );
    // The outcome goes to the owner by mail; the owner marks gw1 down and tells the other.
    let mails: Vec<(usize, Mail)> = out.mail.drain(..).collect();
    assert!(mails.iter().any(|(s, m)| *s == owner
        && matches!(
            m,
            Mail::Proxy(ProxyMail::GatewayResult {
                gateway: 0,
                ok: false
            })
        )));
    for (s, m) in mails {
        d[s].on_mail(5, m, &mut out);
    }
    assert!(!d[owner].gateway_stats()[0].up);
    let mails: Vec<(usize, Mail)> = out.mail.drain(..).collect();
    assert!(mails.iter().any(|(s, m)| *s == other
        && matches!(
            m,
            Mail::Proxy(ProxyMail::GatewayState {
                gateway: 0,
                up: false
            })
        )));
    for (s, m) in mails {
        d[s].on_mail(6, m, &mut out);
    }
    assert!(!d[other].gateway_stats()[0].up);
}

#[test]
fn registrar_tokens_never_look_like_proxy_tokens() {
    use sipshard::registrar::bindings::BindingId;
    use sipshard::routing::is_proxy_token;
    for generation in [0, 1, 0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, u32::MAX] {
        let id = BindingId {
            index: u32::MAX,
            generation,
        };
        assert!(!is_proxy_token(id.to_u64()), "generation {generation:#x}");
    }
}

/// Two shards wired by their mail, delivered in order until none is left.
struct Cluster {
    d: Vec<Dispatcher>,
    out: Rec,
    mails_seen: Vec<String>,
}

impl Cluster {
    fn new(toml: &str) -> Cluster {
        let config = Config::from_toml_str(toml).unwrap();
        let shared = Shared::new(&config, [3; 32], 77).unwrap();
        let d = (0..2)
            .map(|s| {
                let mut d = Dispatcher::new(s, 2, &config, &shared, 0);
                d.set_local_addr(addr(LOCAL));
                d
            })
            .collect();
        Cluster {
            d,
            out: Rec::default(),
            mails_seen: Vec::new(),
        }
    }

    fn recv(&mut self, shard: usize, from: &str, data: &str) {
        self.d[shard].on_datagram(0, addr(from), data.as_bytes(), &mut self.out);
        while !self.out.mail.is_empty() {
            let mails: Vec<(usize, Mail)> = self.out.mail.drain(..).collect();
            for (s, m) in mails {
                let kind = match &m {
                    Mail::Datagram { .. } => "datagram",
                    Mail::Proxy(ProxyMail::Locate { .. }) => "locate",
                    Mail::Proxy(ProxyMail::Located { .. }) => "located",
                    Mail::Proxy(_) => "health",
                    _ => "other",
                };
                self.mails_seen.push(format!("{kind}->{s}"));
                self.d[s].on_mail(0, m, &mut self.out);
            }
        }
    }

    fn last_to(&self, to: &str, start: &str) -> String {
        self.out
            .sent
            .iter()
            .rev()
            .find(|(_, d, m)| *d == addr(to) && m.starts_with(start))
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("nothing starting with {start:?} sent to {to}"))
    }
}

#[test]
fn registered_user_on_another_shard_is_located_by_mail() {
    let mut c = Cluster::new(&format!(
        "{BASE}[registrar]\nrequire_auth = \"Off\"\n[[registrar.accounts]]\nuser = \"2001\"\npassword = \"pw\"\n"
    ));
    let aor_owner = sipshard::registrar::bindings::owner_of_aor(b"2001@203.0.113.1", 2);
    let phone = "198.51.100.20:5070";
    let reg = "REGISTER sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5070;branch=z9hG4bK-r1\r\n\
Max-Forwards: 70\r\nFrom: <sip:2001@203.0.113.1>;tag=r\r\nTo: <sip:2001@203.0.113.1>\r\n\
Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@198.51.100.20:5070>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n";
    c.recv(0, phone, reg);
    c.last_to(phone, "SIP/2.0 200");
    // A call whose Call-ID belongs to the other shard: the contacts come by mail.
    let call_id = (0..100)
        .map(|i| format!("loc{i}"))
        .find(|id| sipshard::dispatch::owner_of_call_id(id.as_bytes(), 2) != aor_owner)
        .unwrap();
    c.mails_seen.clear();
    c.recv(0, CALLER, &invite(&call_id, "2001", ""));
    assert!(
        c.mails_seen.contains(&format!("locate->{aor_owner}"))
            && c.mails_seen
                .contains(&format!("located->{}", 1 - aor_owner)),
        "{:?}",
        c.mails_seen
    );
    let inv = c.last_to(phone, "INVITE");
    assert!(
        inv.starts_with("INVITE sip:2001@198.51.100.20:5070 SIP/2.0"),
        "{inv}"
    );
    // Two contacts of equal q: both rung in parallel; the first 2xx wins, the other is CANCELed.
    let reg2 = reg
        .replace("198.51.100.20:5070", "198.51.100.21:5071")
        .replace("reg1", "reg2");
    c.recv(0, "198.51.100.21:5071", &reg2);
    let call2 = (100..200)
        .map(|i| format!("loc{i}"))
        .find(|id| sipshard::dispatch::owner_of_call_id(id.as_bytes(), 2) != aor_owner)
        .unwrap();
    c.recv(0, CALLER, &invite(&call2, "2001", ""));
    let a = c.last_to(phone, "INVITE");
    let b = c.last_to("198.51.100.21:5071", "INVITE");
    assert!(a.contains(&call2) && b.contains(&call2));
    let owner = sipshard::dispatch::owner_of_call_id(call2.as_bytes(), 2);
    c.recv(
        owner,
        "198.51.100.21:5071",
        &response(&b, "180 Ringing", Some("b")),
    );
    c.recv(owner, phone, &response(&a, "180 Ringing", Some("a")));
    c.recv(
        owner,
        "198.51.100.21:5071",
        &response(&b, "200 OK", Some("b")),
    );
    assert!(c.last_to(CALLER, "SIP/2.0 200").contains(&call2));
    assert!(c.last_to(phone, "CANCEL").contains(&call2));
}

/// A lost location lookup (the owner's mailbox was full) does not hold the call forever: after
/// `LOCATE_TIMEOUT_MS` the caller gets 503 and the CDR says `lookup_timeout`; a lookup answered
/// in time leaves nothing behind to fire later.
#[test]
fn a_lost_location_lookup_fails_the_call_with_503_after_the_timeout() {
    use sipshard::routing::proxy::LOCATE_TIMEOUT_MS;
    let config = Config::from_toml_str(&format!(
        "{BASE}[registrar]\nrequire_auth = \"Off\"\n[[registrar.accounts]]\nuser = \"2001\"\npassword = \"pw\"\n"
    ))
    .unwrap();
    let mut shared = Shared::new(&config, [3; 32], 77).unwrap();
    let (cdr_tx, cdr_rx) = crossbeam_channel::bounded(10);
    shared.cdr = CdrSender::new(cdr_tx);
    let aor_owner = sipshard::registrar::bindings::owner_of_aor(b"2001@203.0.113.1", 2);
    let caller_shard = 1 - aor_owner;
    let mut d = Dispatcher::new(caller_shard, 2, &config, &shared, 0);
    d.set_local_addr(addr(LOCAL));
    let call_id = (0..100)
        .map(|i| format!("lost{i}"))
        .find(|id| sipshard::dispatch::owner_of_call_id(id.as_bytes(), 2) == caller_shard)
        .unwrap();
    let mut out = Rec::default();
    d.on_datagram(
        0,
        addr(CALLER),
        invite(&call_id, "2001", "").as_bytes(),
        &mut out,
    );
    // The lookup went to the owner shard, and is lost: nothing is delivered.
    assert!(
        matches!(
            out.mail.as_slice(),
            [(s, Mail::Proxy(ProxyMail::Locate { .. }))] if *s == aor_owner
        ),
        "one Locate mail to the owner"
    );
    out.mail.clear();
    assert_eq!(d.next_deadline(), Some(LOCATE_TIMEOUT_MS));
    let finals = |out: &Rec| {
        out.sent
            .iter()
            .filter(|(_, to, m)| *to == addr(CALLER) && m.starts_with("SIP/2.0 5"))
            .count()
    };
    d.on_timers(LOCATE_TIMEOUT_MS - 1, &mut out);
    assert_eq!(finals(&out), 0, "nothing before the timeout");
    out.now = LOCATE_TIMEOUT_MS;
    d.on_timers(LOCATE_TIMEOUT_MS, &mut out);
    let answer = out
        .sent
        .iter()
        .find(|(_, to, m)| *to == addr(CALLER) && m.starts_with("SIP/2.0 503"))
        .map(|(t, _, m)| (*t, m.clone()))
        .expect("503 to the caller");
    assert_eq!(answer.0, LOCATE_TIMEOUT_MS);
    assert!(answer.1.contains(&call_id), "{}", answer.1);
    let r = cdr_rx.try_recv().expect("a CDR");
    assert_eq!(
        (r.end_reason, r.final_status),
        (EndReason::LookupTimeout, 503)
    );
    assert!(r.attempts.is_empty());
    assert_eq!(
        sipshard::cdr::csv::end_reason_name(r.end_reason),
        "lookup_timeout"
    );

    // Answered in time: the Located mail starts the call; the old deadline fires and does
    // nothing to it.
    let call2 = (100..200)
        .map(|i| format!("lost{i}"))
        .find(|id| sipshard::dispatch::owner_of_call_id(id.as_bytes(), 2) == caller_shard)
        .unwrap();
    let t0 = 10_000;
    out.now = t0;
    d.on_datagram(
        t0,
        addr(CALLER),
        invite(&call2, "2001", "").as_bytes(),
        &mut out,
    );
    let token = match out.mail.pop() {
        Some((_, Mail::Proxy(ProxyMail::Locate { token, .. }))) => token,
        _ => panic!("a Locate mail"),
    };
    d.on_mail(
        t0 + 1,
        Mail::Proxy(ProxyMail::Located {
            token,
            contacts: Vec::new(),
        }),
        &mut out,
    );
    // No live contact, and the route table takes any number: the call goes to gw1.
    assert!(out
        .sent
        .iter()
        .any(|(_, to, m)| *to == addr(GW1) && m.starts_with("INVITE") && m.contains(&call2)));
    d.on_timers(t0 + LOCATE_TIMEOUT_MS, &mut out);
    assert!(
        !out.sent.iter().any(|(_, to, m)| *to == addr(CALLER)
            && m.starts_with("SIP/2.0 5")
            && m.contains(&call2)),
        "the stale deadline fails nothing"
    );
    assert!(cdr_rx.try_recv().is_err(), "and writes no second CDR");
}

#[test]
fn bye_before_the_answer_gives_the_call_up() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("e1", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&inv, "180 Ringing", Some("g1")));
    h.now = 100;
    h.recv(CALLER, &in_dialog("BYE", "e1", "g1", 2, "ebye"));
    assert_eq!(starts(&h.lines_to(GW1), "CANCEL"), vec![100]);
    h.recv(GW1, &response(&inv, "487 Request Terminated", Some("g1")));
    h.last_to(CALLER, "SIP/2.0 487");
    assert_eq!(h.cdr().end_reason, EndReason::CallerCancel);
}

#[test]
fn a_peer_recognised_by_digest() {
    let mut h = H::with(
        "[[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\n\
         [[routes]]\nprefix = \"\"\ngateways = [\"gw1\"]\n\
         [[peers]]\nname = \"carrier-b\"\nusername = \"cb\"\npassword = \"pw\"\n",
    );
    let from = "198.51.100.40:5060";
    let inv = invite("pd1", "1555", "").replace("198.51.100.1:5060", from);
    h.recv(from, &inv);
    let challenge = h.last_to(from, "SIP/2.0 407");
    let value = header_lines(&challenge, "Proxy-Authenticate")[0]
        .split_once(": ")
        .unwrap()
        .1
        .to_string();
    let mut auth = Vec::new();
    write_authorization(
        &mut auth,
        &parse_auth(value.as_bytes()).unwrap(),
        &Credentials {
            username: b"cb",
            password: b"pw",
            method: b"INVITE",
            digest_uri: b"sip:1555@203.0.113.1:5060",
            cnonce: b"x",
            nc: 1,
        },
    )
    .unwrap();
    let inv2 = inv
        .replace("branch=z9hG4bK-pd1", "branch=z9hG4bK-pd1b")
        .replace(
            "Content-Length",
            &format!(
                "Proxy-Authorization: {}\r\nContent-Length",
                String::from_utf8(auth).unwrap()
            ),
        );
    h.recv(from, &inv2);
    let fwd = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&fwd, "404 Not Found", Some("n")));
    let cdr = h.cdr();
    assert_eq!(cdr.caller_identity, "peer:carrier-b");
    assert_eq!(cdr.end_reason, EndReason::Rejected);
}

/// Successes are mailed to the health owner only while it counts failures.
#[test]
fn a_healthy_gateway_costs_no_mail_between_shards() {
    let mut c = Cluster::new(BASE);
    let owner = (0..2)
        .find(|&s| c.d[s].gateway_stats()[0].health_owner)
        .unwrap();
    let other = 1 - owner;
    let ids: Vec<String> = (0..400)
        .map(|i| format!("hm{i}"))
        .filter(|id| sipshard::dispatch::owner_of_call_id(id.as_bytes(), 2) == other)
        .take(4)
        .collect();
    let gw_result = |c: &Cluster| {
        c.mails_seen
            .iter()
            .filter(|m| m.starts_with("health"))
            .count()
    };
    let call = |c: &mut Cluster, id: &str, status: &str| {
        c.recv(other, CALLER, &invite(id, "1555", ""));
        let inv = c.last_to(GW1, "INVITE");
        assert!(inv.contains(id));
        c.recv(other, GW1, &response(&inv, status, Some("t")));
    };
    call(&mut c, &ids[0], "200 OK");
    assert_eq!(gw_result(&c), 0, "{:?}", c.mails_seen);
    call(&mut c, &ids[1], "500 Server Internal Error");
    // The failure goes to the owner, which asks the other shard for its next success.
    assert_eq!(
        c.mails_seen
            .iter()
            .filter(|m| m.starts_with("health"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![format!("health->{owner}"), format!("health->{other}")]
    );
    c.mails_seen.clear();
    call(&mut c, &ids[2], "200 OK");
    assert_eq!(c.mails_seen, vec![format!("health->{owner}")]);
    c.mails_seen.clear();
    call(&mut c, &ids[3], "200 OK");
    assert_eq!(gw_result(&c), 0);
}

#[test]
fn gateway_stats_by_mail() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("s1", "1555", ""));
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.d.on_mail(0, Mail::GatewayStats { reply: tx }, &mut h.out);
    let stats = rx.try_recv().expect("answered at once");
    assert_eq!(stats.len(), 2);
    assert_eq!(
        (stats[0].name.as_str(), stats[0].address),
        ("gw1", addr(GW1))
    );
    assert_eq!(stats[0].counters.attempts, 1);
    assert_eq!(stats[0].active_calls, 1);
    assert!(stats[0].up && stats[0].health_owner);
    // A closed reply channel neither blocks nor panics.
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(rx);
    h.d.on_mail(0, Mail::GatewayStats { reply: tx }, &mut h.out);
}

#[test]
fn unsupported_proxy_require_is_420() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("x1", "1555", "Proxy-Require: foo, bar\r\n"));
    let r = h.last_to(CALLER, "SIP/2.0 420");
    assert!(r.contains("Unsupported: foo, bar\r\n"), "{r}");
    assert!(h.lines_to(GW1).is_empty());
    // Require is the UAS's business: forwarded untouched.
    h.recv(CALLER, &invite("x2", "1555", "Require: 100rel\r\n"));
    assert!(h.last_to(GW1, "INVITE").contains("Require: 100rel"));
}

#[test]
fn without_registrar_auth_any_registered_user_is_called_and_others_routed() {
    let mut h = H::new("[registrar]\nrequire_auth = \"Off\"\n");
    let uas = "198.51.100.30:5090";
    let reg = "REGISTER sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.30:5090;branch=z9hG4bK-r9\r\n\
Max-Forwards: 70\r\nFrom: <sip:service@203.0.113.1>;tag=r\r\nTo: <sip:service@203.0.113.1>\r\n\
Call-ID: reg9\r\nCSeq: 1 REGISTER\r\nContact: <sip:service@198.51.100.30:5090>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n";
    h.recv(uas, reg);
    h.last_to(uas, "SIP/2.0 200");
    h.recv(CALLER, &invite("ru1", "service", ""));
    assert!(h
        .last_to(uas, "INVITE")
        .starts_with("INVITE sip:service@198.51.100.30:5090 SIP/2.0"));
    // A number nobody registered goes by the routes.
    h.recv(CALLER, &invite("ru2", "1555", ""));
    assert!(h.last_to(GW1, "INVITE").contains("Call-ID: ru2"));
}

// ---- best final response of a response context (RFC 3261 §16.7 step 6) ----------------------

const PHONE_A: &str = "198.51.100.20:5070";
const PHONE_B: &str = "198.51.100.21:5070";

/// User 2001 registered with two contacts of equal q (PHONE_A, PHONE_B, each from its own
/// address, so neither is taken for NAT): calls to it fork.
fn two_phones() -> H {
    let mut h = H::new(
        "[registrar]\nrequire_auth = \"Off\"\n[[registrar.accounts]]\nuser = \"2001\"\npassword = \"pw\"\n",
    );
    for (n, phone) in [PHONE_A, PHONE_B].into_iter().enumerate() {
        let reg = format!(
            "REGISTER sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-r{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:2001@203.0.113.1>;tag=r\r\nTo: <sip:2001@203.0.113.1>\r\n\
Call-ID: reg0\r\nCSeq: {} REGISTER\r\nContact: <sip:2001@{phone}>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n",
            n + 1
        );
        h.recv(phone, &reg);
        let ok = h.last_to(phone, "SIP/2.0 200");
        let contact = header_lines(&ok, "Contact")[0];
        assert_eq!(contact.matches("<sip:2001@").count(), n + 1, "{ok}");
    }
    h
}

/// A response with extra header lines (`extra` ends with CRLF).
fn response_with(req: &str, status: &str, tag: &str, extra: &str) -> String {
    response(req, status, Some(tag)).replace(
        "Content-Length: 0\r\n",
        &format!("{extra}Content-Length: 0\r\n"),
    )
}

#[test]
fn fork_lowest_class_wins_and_challenges_are_merged() {
    // 500 from A, 404 from B: the lowest class (4xx) goes up, whatever the order.
    let mut h = two_phones();
    h.recv(CALLER, &invite("f1", "2001", ""));
    let (ia, ib) = (h.last_to(PHONE_A, "INVITE"), h.last_to(PHONE_B, "INVITE"));
    h.now = 10;
    h.recv(
        PHONE_A,
        &response(&ia, "500 Server Internal Error", Some("a")),
    );
    assert_eq!(
        h.lines_to(CALLER).len(),
        1,
        "only the 100: B is still pending"
    );
    h.now = 20;
    h.recv(PHONE_B, &response(&ib, "404 Not Found", Some("b")));
    let fin = h.last_to(CALLER, "SIP/2.0 404");
    assert!(fin.contains("tag=b"), "{fin}");
    assert!(starts(&h.lines_to(CALLER), "SIP/2.0 500").is_empty());
    let cdr = h.cdr();
    assert_eq!(
        (cdr.final_status, cdr.end_reason),
        (404, EndReason::Rejected)
    );

    // 401 from A, 407 from B: the first (401) goes up carrying both challenges, unmodified.
    let mut h = two_phones();
    h.recv(CALLER, &invite("f2", "2001", ""));
    let (ia, ib) = (h.last_to(PHONE_A, "INVITE"), h.last_to(PHONE_B, "INVITE"));
    h.now = 10;
    h.recv(
        PHONE_A,
        &response_with(
            &ia,
            "401 Unauthorized",
            "a",
            "WWW-Authenticate: Digest realm=\"a\", nonce=\"1\"\r\n",
        ),
    );
    h.recv(
        PHONE_B,
        &response_with(
            &ib,
            "407 Proxy Authentication Required",
            "b",
            "Proxy-Authenticate: Digest realm=\"b\", nonce=\"2\"\r\n",
        ),
    );
    let fin = h.last_to(CALLER, "SIP/2.0 401");
    assert_eq!(
        header_lines(&fin, "WWW-Authenticate"),
        vec!["WWW-Authenticate: Digest realm=\"a\", nonce=\"1\""],
        "{fin}"
    );
    assert_eq!(
        header_lines(&fin, "Proxy-Authenticate"),
        vec!["Proxy-Authenticate: Digest realm=\"b\", nonce=\"2\""],
        "{fin}"
    );
    assert_eq!(header_lines(&fin, "Via").len(), 1, "our Via removed: {fin}");
    assert!(fin.ends_with("Content-Length: 0\r\n\r\n"), "{fin}");
    assert_eq!(h.cdr().final_status, 401);
}

#[test]
fn fork_6xx_cancels_the_other_branches_and_goes_up_at_once() {
    let mut h = two_phones();
    h.recv(CALLER, &invite("f3", "2001", ""));
    let (ia, ib) = (h.last_to(PHONE_A, "INVITE"), h.last_to(PHONE_B, "INVITE"));
    h.now = 10;
    h.recv(PHONE_B, &response(&ib, "180 Ringing", Some("b")));
    h.now = 20;
    h.recv(PHONE_A, &response(&ia, "603 Decline", Some("a")));
    // B is CANCELed at once (it rang), and the 603 goes up without waiting for B's 487.
    assert_eq!(starts(&h.lines_to(PHONE_B), "CANCEL"), vec![20]);
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 603"), vec![20]);
    let cancel = h.last_to(PHONE_B, "CANCEL");
    h.now = 30;
    h.recv(PHONE_B, &response(&cancel, "200 OK", Some("b")));
    h.recv(PHONE_B, &response(&ib, "487 Request Terminated", Some("b")));
    assert!(starts(&h.lines_to(CALLER), "SIP/2.0 487").is_empty());
    let cdr = h.cdr();
    assert_eq!(
        (cdr.final_status, cdr.end_reason),
        (603, EndReason::Rejected)
    );
    let mut outcomes: Vec<_> = cdr
        .attempts
        .iter()
        .map(|a| (a.destination, a.outcome))
        .collect();
    outcomes.sort_by_key(|o| o.0);
    assert_eq!(
        outcomes,
        vec![
            (addr(PHONE_A), AttemptOutcome::Rejected(603)),
            (addr(PHONE_B), AttemptOutcome::CancelledByFork)
        ]
    );
    assert_eq!(h.counter("calls_live"), 0);
}

#[test]
fn a_503_goes_up_as_500_and_a_6xx_stops_the_failover() {
    // Both gateways 503: the caller gets 500 (a 503 would tell it this proxy is unavailable).
    let mut h = H::new("");
    h.recv(CALLER, &invite("f4", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 10;
    h.recv(GW1, &response(&inv, "503 Service Unavailable", Some("x")));
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 20;
    h.recv(GW2, &response(&inv2, "503 Service Unavailable", Some("y")));
    let fin = h.last_to(CALLER, "SIP/2.0 500 Server Internal Error\r\n");
    assert!(fin.contains("tag=x"), "the first 503, rewritten: {fin}");
    assert!(starts(&h.lines_to(CALLER), "SIP/2.0 503").is_empty());
    let cdr = h.cdr();
    assert_eq!(
        (cdr.final_status, cdr.end_reason),
        (500, EndReason::AllGatewaysFailed)
    );

    // A 6xx never moves to the next gateway, even when listed in failover_statuses.
    let mut h = H::new("[routing]\nfailover_statuses = [503, 603]\n");
    h.recv(CALLER, &invite("f5", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.now = 10;
    h.recv(GW1, &response(&inv, "603 Decline", Some("x")));
    assert!(h.lines_to(GW2).is_empty());
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 603"), vec![10]);
    assert_eq!(h.cdr().end_reason, EndReason::Rejected);

    // A timeout (408, §16.8) then a 503: the 408 (lower class) goes up, ours, with the Warning.
    let mut h = H::new("");
    h.recv(CALLER, &invite("f6", "1555", ""));
    h.advance_to(10_000);
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 10_050;
    h.recv(GW2, &response(&inv2, "503 Service Unavailable", Some("y")));
    let fin = h.last_to(CALLER, "SIP/2.0 408");
    assert!(
        fin.contains("Warning: 399 sipshard \"no gateway left"),
        "{fin}"
    );
    assert_eq!(h.cdr().final_status, 408);
}

// ---- max_call_duration ---------------------------------------------------------------------

#[test]
fn max_call_duration_sends_bye_both_ways_within_the_dialog() {
    let mut h = H::new("[routing]\nmax_call_duration = 60\n");
    // The caller's side has a proxy that record-routes (198.51.100.7); so has the callee's
    // (192.0.2.99, above our entry in the 2xx).
    h.recv(
        CALLER,
        &invite("m1", "1555", "Record-Route: <sip:198.51.100.7;lr>\r\n"),
    );
    let inv = h.last_to(GW1, "INVITE");
    h.now = 100;
    h.recv(
        GW1,
        &response_with(
            &inv,
            "200 OK",
            "g",
            "Record-Route: <sip:192.0.2.99;lr>, <sip:203.0.113.1:5060;lr;s=0>, <sip:198.51.100.7;lr>\r\n",
        ),
    );
    h.last_to(CALLER, "SIP/2.0 200");
    h.now = 200;
    h.recv(CALLER, &in_dialog("ACK", "m1", "g", 1, "ack"));
    // An INFO from the caller (CSeq 5) moves its CSeq on; it completes.
    h.now = 1_000;
    h.recv(CALLER, &in_dialog("INFO", "m1", "g", 5, "info"));
    let info = h.last_to(GW1, "INFO");
    h.recv(GW1, &response(&info, "200 OK", None));
    let sent_before = h.out.sent.len();
    h.advance_to(60_099);
    assert_eq!(
        h.out.sent.len(),
        sent_before,
        "nothing before 60 s after the answer"
    );
    h.advance_to(60_100);
    // To the callee: through its record-routing proxy, to the 2xx's Contact, caller's CSeq + 1.
    let bye = h.last_to("192.0.2.99:5060", "BYE");
    assert!(
        bye.starts_with("BYE sip:gw@192.0.2.2:5080 SIP/2.0\r\n"),
        "{bye}"
    );
    assert_eq!(
        header_lines(&bye, "Route"),
        vec!["Route: <sip:192.0.2.99;lr>"]
    );
    assert_eq!(
        header_lines(&bye, "From"),
        vec!["From: <sip:alice@198.51.100.1>;tag=a1"]
    );
    assert_eq!(
        header_lines(&bye, "To"),
        vec!["To: <sip:1555@203.0.113.1>;tag=g"]
    );
    assert_eq!(header_lines(&bye, "CSeq"), vec!["CSeq: 6 BYE"]);
    assert_eq!(header_lines(&bye, "Call-ID"), vec!["Call-ID: m1"]);
    // To the caller: through its proxy, to its Contact, From/To swapped.
    let bye2 = h.last_to("198.51.100.7:5060", "BYE");
    assert!(
        bye2.starts_with("BYE sip:alice@198.51.100.1:5060 SIP/2.0\r\n"),
        "{bye2}"
    );
    assert_eq!(
        header_lines(&bye2, "Route"),
        vec!["Route: <sip:198.51.100.7;lr>"]
    );
    assert_eq!(
        header_lines(&bye2, "From"),
        vec!["From: <sip:1555@203.0.113.1>;tag=g"]
    );
    assert_eq!(
        header_lines(&bye2, "To"),
        vec!["To: <sip:alice@198.51.100.1>;tag=a1"]
    );
    assert_eq!(header_lines(&bye2, "CSeq"), vec!["CSeq: 1 BYE"]);
    for b in [&bye, &bye2] {
        assert!(b.contains("Max-Forwards: 70\r\n"), "{b}");
        assert!(b.contains(";branch=z9hG4bKsS0000"), "our Via: {b}");
    }
    let cdr = h.cdr();
    assert_eq!(cdr.end_reason, EndReason::MaxDuration);
    assert_eq!(
        (cdr.answer, cdr.end, cdr.duration_ms()),
        (Some(100), 60_100, 60_000)
    );
    assert_eq!(h.counter("calls_max_duration"), 1);
    assert_eq!(h.counter("calls_live"), 0, "the call's state is freed");
    // The answers to our BYEs are absorbed; the caller's own BYE now finds no dialog.
    let n = h.out.sent.len();
    h.now = 60_150;
    h.recv("192.0.2.99:5060", &response(&bye, "200 OK", None));
    h.recv("198.51.100.7:5060", &response(&bye2, "200 OK", None));
    assert_eq!(h.out.sent.len(), n);
    h.advance_to(200_000);
    assert!(h.cdr.try_recv().is_err(), "one CDR");
}

#[test]
fn max_call_duration_spares_calls_that_ended_and_can_be_off() {
    let mut h = H::new("[routing]\nmax_call_duration = 60\n");
    for (id, at) in [("d1", 0), ("d2", 10_000)] {
        h.now = at;
        h.recv(CALLER, &invite(id, "1555", ""));
        let inv = h.last_to(GW1, "INVITE");
        h.recv(GW1, &response(&inv, "200 OK", Some("g")));
        h.recv(CALLER, &in_dialog("ACK", id, "g", 1, &format!("ack{id}")));
    }
    // d1 hangs up at 30 s; d2 runs into the limit at 70 s.
    h.now = 30_000;
    h.recv(CALLER, &in_dialog("BYE", "d1", "g", 2, "byed1"));
    let bye = h.last_to(GW1, "BYE");
    h.recv(GW1, &response(&bye, "200 OK", None));
    assert_eq!(h.cdr().end_reason, EndReason::CallerHangup);
    h.advance_to(69_999);
    assert_eq!(starts(&h.lines_to(GW1), "BYE"), vec![30_000]);
    h.advance_to(70_000);
    assert_eq!(starts(&h.lines_to(GW1), "BYE"), vec![30_000, 70_000]);
    assert!(h.last_to(GW1, "BYE").contains("Call-ID: d2"));
    let cdr = h.cdr();
    assert_eq!(
        (cdr.call_id.as_str(), cdr.end_reason),
        ("d2", EndReason::MaxDuration)
    );
    assert_eq!(h.counter("calls_max_duration"), 1);

    // 0: unlimited.
    let mut h = H::new("[routing]\nmax_call_duration = 0\n");
    h.recv(CALLER, &invite("d3", "1555", ""));
    let inv = h.last_to(GW1, "INVITE");
    h.recv(GW1, &response(&inv, "200 OK", Some("g")));
    h.recv(CALLER, &in_dialog("ACK", "d3", "g", 1, "ackd3"));
    h.advance_to(30 * 24 * 3600 * 1000);
    assert!(starts(&h.lines_to(GW1), "BYE").is_empty());
    assert_eq!(h.counter("calls_live"), 1);
    assert_eq!(
        h.d.next_deadline(),
        None,
        "no timer for calls without a limit"
    );
}

// ---- inbound calls from an upstream trunk (issue 5 item 4) ----------------------------------

const TRUNK_SRC: &str = "192.0.2.50:5099";

const WITH_TRUNK: &str = "[[trunks]]\nname = \"upstream\"\nregistrar = \"192.0.2.50\"\n\
username = \"4420\"\npassword = \"x\"\n\
[registrar]\nrequire_auth = \"Off\"\n[[registrar.accounts]]\nuser = \"2001\"\npassword = \"pw\"\n";

/// An INVITE as the upstream sends it: from `src`, to `ruri_user` at our address, To `to_user`.
fn trunk_invite(src: &str, call_id: &str, ruri_user: &str, to_user: &str) -> String {
    format!(
        "INVITE sip:{ruri_user}@203.0.113.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}\r\nMax-Forwards: 70\r\n\
From: <sip:+4930123@carrier.example>;tag=t1\r\nTo: <sip:{to_user}@carrier.example>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+4930123@{src}>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn an_invite_from_a_trunk_is_trusted_and_routed_by_the_called_number() {
    let mut h = H::new(WITH_TRUNK);
    // To our registered contact (Request-URI user = the trunk's contact user 4420): the number
    // is the To user. No challenge although invite_auth is on: the trunk is trusted.
    h.recv(
        TRUNK_SRC,
        &trunk_invite(TRUNK_SRC, "t1", "4420", "15551234"),
    );
    assert_eq!(starts(&h.lines_to(TRUNK_SRC), "SIP/2.0 100"), vec![0]);
    assert!(starts(&h.lines_to(TRUNK_SRC), "SIP/2.0 407").is_empty());
    let inv = h.last_to(GW1, "INVITE");
    assert!(
        inv.starts_with("INVITE sip:15551234@192.0.2.1:5080 SIP/2.0"),
        "{inv}"
    );
    h.now = 20;
    h.recv(GW1, &response(&inv, "486 Busy Here", Some("b")));
    h.last_to(TRUNK_SRC, "SIP/2.0 486");
    let cdr = h.cdr();
    assert_eq!(cdr.caller_identity, "trunk:upstream");
    assert_eq!(cdr.callee, "15551234");
    assert_eq!(cdr.source, addr(TRUNK_SRC));

    // The carrier put the dialled number in the Request-URI: that is the number.
    h.recv(
        TRUNK_SRC,
        &trunk_invite(TRUNK_SRC, "t2", "15550000", "15550000"),
    );
    assert!(h
        .last_to(GW1, "INVITE")
        .starts_with("INVITE sip:15550000@192.0.2.1:5080 SIP/2.0"));
    assert_eq!(h.counter("calls_from_trunks"), 2);
    assert_eq!(h.counter("calls_challenged"), 0);

    // A registered user called through the trunk: found by the To user at our domain.
    let phone = "198.51.100.20:5070";
    let reg = format!(
        "REGISTER sip:203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-r1\r\n\
Max-Forwards: 70\r\nFrom: <sip:2001@203.0.113.1>;tag=r\r\nTo: <sip:2001@203.0.113.1>\r\n\
Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:2001@{phone}>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n"
    );
    h.recv(phone, &reg);
    h.last_to(phone, "SIP/2.0 200");
    h.recv(TRUNK_SRC, &trunk_invite(TRUNK_SRC, "t3", "4420", "2001"));
    let inv = h.last_to(phone, "INVITE");
    assert!(
        inv.starts_with("INVITE sip:2001@198.51.100.20:5070 SIP/2.0"),
        "{inv}"
    );
    assert!(inv.contains("Call-ID: t3"), "{inv}");

    // The same INVITE from another address is no trunk's: challenged like any caller.
    let other = "192.0.2.51:5060";
    h.recv(other, &trunk_invite(other, "t4", "4420", "15551234"));
    h.last_to(other, "SIP/2.0 407");
    assert_eq!(h.counter("calls_from_trunks"), 3);
}

#[test]
fn a_provisional_after_the_attempt_timed_out_is_cancelled() {
    let mut h = H::new("");
    h.recv(CALLER, &invite("lp1", "1555", ""));
    let inv1 = h.last_to(GW1, "INVITE");
    h.advance_to(10_000);
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 10_100;
    h.recv(GW2, &response(&inv2, "180 Ringing", Some("g2")));
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 180"), vec![10_100]);
    // Gateway 1 wakes up 2 s after its attempt timed out: its branch is CANCELed at once and
    // the caller hears nothing of it.
    h.now = 12_000;
    h.recv(GW1, &response(&inv1, "180 Ringing", Some("g1")));
    assert_eq!(starts(&h.lines_to(GW1), "CANCEL"), vec![12_000]);
    let cancel = h.last_to(GW1, "CANCEL");
    assert_eq!(
        header_lines(&cancel, "Via"),
        vec![header_lines(&inv1, "Via")[0]],
        "the INVITE's branch"
    );
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 180"), vec![10_100]);
    h.now = 12_050;
    h.recv(GW1, &response(&cancel, "200 OK", Some("g1")));
    h.recv(GW1, &response(&inv1, "487 Request Terminated", Some("g1")));
    assert_eq!(
        starts(&h.lines_to(GW1), "ACK"),
        vec![12_050],
        "the 487 is ACKed"
    );
    assert!(starts(&h.lines_to(CALLER), "SIP/2.0 487").is_empty());
    // The call goes on with gateway 2.
    h.now = 13_000;
    h.recv(GW2, &response(&inv2, "200 OK", Some("g2")));
    h.last_to(CALLER, "SIP/2.0 200");
    h.recv(CALLER, &in_dialog("ACK", "lp1", "g2", 1, "ack"));
    h.recv(CALLER, &in_dialog("BYE", "lp1", "g2", 2, "bye"));
    let bye = h.last_to(GW2, "BYE");
    h.recv(GW2, &response(&bye, "200 OK", None));
    let cdr = h.cdr();
    assert_eq!(
        cdr.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![AttemptOutcome::NoResponse, AttemptOutcome::Answered]
    );
}

#[test]
fn a_cancelled_call_whose_best_is_a_timeout_gets_487() {
    // gw1 times out (408 in the context), the caller CANCELs while gw2 rings, gw2 ends with a
    // 500 instead of the 487: the caller still gets 487 for its CANCELed INVITE, not our 408.
    let mut h = H::new("");
    let inv0 = invite("cx1", "1555", "");
    h.recv(CALLER, &inv0);
    h.advance_to(10_000);
    let inv2 = h.last_to(GW2, "INVITE");
    h.now = 10_100;
    h.recv(GW2, &response(&inv2, "180 Ringing", Some("g2")));
    h.now = 11_000;
    h.recv(
        CALLER,
        &inv0
            .replace("INVITE sip", "CANCEL sip")
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL"),
    );
    let cancel = h.last_to(GW2, "CANCEL");
    h.now = 11_050;
    h.recv(GW2, &response(&cancel, "200 OK", Some("g2")));
    h.recv(
        GW2,
        &response(&inv2, "500 Server Internal Error", Some("g2")),
    );
    assert_eq!(starts(&h.lines_to(CALLER), "SIP/2.0 487"), vec![11_050]);
    let cdr = h.cdr();
    assert_eq!(
        (cdr.final_status, cdr.end_reason),
        (487, EndReason::CallerCancel)
    );
}
