//! Simulated-clock tests of the outbound registration state machine (`sipshard::trunk`).
//! Responses are written as text and parsed with `sip::Parser`, as the wire would give them.

use sipshard::config::{Privacy, SipParams, TrunkConfig};
use sipshard::sip::digest::{ha1, response, Algorithm};
use sipshard::sip::{parse_auth, HeaderKind, Parser};
use sipshard::timer::Millis;
use sipshard::trunk::{
    Local, OutboundRegistration, State, TrunkSink, AUTO_REQUEST_S, SPREAD_STEP_MS,
};

#[derive(Default)]
struct Out {
    /// (time of sending, request text)
    sent: Vec<(Millis, String)>,
    timer: Option<Millis>,
    now: Millis,
}

impl TrunkSink for Out {
    fn send_register(&mut self, request: &[u8]) {
        self.sent
            .push((self.now, String::from_utf8(request.to_vec()).unwrap()));
    }
    fn set_timer(&mut self, at: Millis) {
        self.timer = Some(at);
    }
    fn cancel_timer(&mut self) {
        self.timer = None;
    }
}

const LOCAL: &str = "198.51.100.7:5070";

struct H {
    reg: OutboundRegistration,
    out: Out,
    parser: Parser,
}

fn trunk(expire: Option<u32>) -> TrunkConfig {
    let mut c = TrunkConfig::new("carrier-a", "192.0.2.1", "4420", &SipParams::default());
    c.password = "secret".into();
    c.expire_s = expire;
    c
}

fn local(seed: u64, send_unregister: bool) -> Local {
    Local {
        sent_by: LOCAL.into(),
        shard: 3,
        seed,
        send_unregister,
        user_agent: "sipshard-test".into(),
        spread_slot: None,
    }
}

impl H {
    fn new(cfg: TrunkConfig) -> H {
        H {
            reg: OutboundRegistration::new(cfg, local(7, true)),
            out: Out::default(),
            parser: Parser::new(),
        }
    }
    fn at(&mut self, now: Millis) {
        assert!(now >= self.out.now, "time goes forward");
        self.out.now = now;
    }
    /// start at 0 and fire the first timer; returns the time of the first REGISTER.
    fn start(&mut self) -> Millis {
        self.at(0);
        self.reg.start(0, &mut self.out);
        assert!(
            self.out.sent.is_empty(),
            "nothing sent before the spread offset"
        );
        let first = self.out.timer.expect("first attempt scheduled");
        assert_eq!(first, self.reg.spread_offset_ms());
        self.fire();
        first
    }
    /// Fire the armed timer at its time.
    fn fire(&mut self) -> Millis {
        let t = self.out.timer.expect("a timer is armed");
        self.at(t);
        self.out.timer = None;
        self.reg.on_timer(t, &mut self.out);
        t
    }
    fn last(&self) -> &str {
        &self.out.sent.last().expect("a request was sent").1
    }
    fn count(&self) -> usize {
        self.out.sent.len()
    }
    /// Answer the last request at `now` with `status` and extra header lines.
    fn answer(&mut self, now: Millis, status: u16, extra: &str) -> bool {
        self.at(now);
        let text = response_to(self.last(), status, extra);
        let msg = self.parser.parse(text.as_bytes()).unwrap();
        self.reg.on_response(&msg, now, &mut self.out)
    }
}

fn header<'a>(req: &'a str, name: &str) -> Option<&'a str> {
    req.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

fn cseq(req: &str) -> u32 {
    header(req, "CSeq")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn response_to(req: &str, status: u16, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {status} Whatever\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        s.push_str(&format!("{name}: {}\r\n", header(req, name).unwrap()));
    }
    s.push_str(&format!("To: {};tag=srv\r\n", header(req, "To").unwrap()));
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

const OUR_CONTACT: &str = "<sip:4420@198.51.100.7:5070>";

#[test]
fn first_register_is_well_formed() {
    let mut h = H::new(trunk(Some(300)));
    h.start();
    let r = h.last().to_string();
    assert!(r.starts_with("REGISTER sip:192.0.2.1 SIP/2.0\r\n"), "{r}");
    let msg = h.parser.parse(r.as_bytes()).unwrap();
    assert!(msg.validate().is_ok(), "{r}");
    let via = msg.top_via().unwrap();
    assert_eq!(via.host(), b"198.51.100.7");
    assert!(sipshard::transaction::shard_of_branch(via.branch().unwrap()) == Some(3));
    assert_eq!(
        header(&r, "From").unwrap().split(';').next().unwrap(),
        "<sip:4420@192.0.2.1>"
    );
    assert_eq!(header(&r, "To"), Some("<sip:4420@192.0.2.1>"));
    assert_eq!(header(&r, "Contact"), Some(OUR_CONTACT));
    assert_eq!(header(&r, "Expires"), Some("300"));
    assert_eq!(header(&r, "CSeq"), Some("1 REGISTER"));
    assert_eq!(header(&r, "User-Agent"), Some("sipshard-test"));
    assert_eq!(header(&r, "Privacy"), None);
    assert_eq!(header(&r, "Authorization"), None);
    assert_eq!(h.reg.state(), State::Registering);
    assert_eq!(h.reg.destination(), ("192.0.2.1", 5060));
}

#[test]
fn fixed_300_refreshes_at_150s_with_same_call_id_and_increasing_cseq() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    let call_id = header(h.last(), "Call-ID").unwrap().to_string();
    let tag = header(h.last(), "From").unwrap().to_string();
    let mut sent_at = t0;
    for round in 0..4u32 {
        let reply = sent_at + 40;
        assert!(h.answer(
            reply,
            200,
            &format!("Contact: {OUR_CONTACT};expires=300\r\n")
        ));
        assert_eq!(h.reg.state(), State::Registered);
        let st = h.reg.status();
        assert_eq!(st.effective_expiry_s, Some(300));
        assert_eq!(st.registered_until, Some(reply + 300_000));
        assert_eq!(h.out.timer, Some(reply + 150_000), "refresh at 50 %");
        assert_eq!(st.next_action_at, Some(reply + 150_000));
        sent_at = h.fire();
        let r = h.last();
        assert_eq!(header(r, "Call-ID").unwrap(), call_id);
        assert_eq!(header(r, "From").unwrap(), tag);
        assert_eq!(cseq(r), round + 2);
        assert_eq!(header(r, "Expires"), Some("300"));
    }
    let st = h.reg.status();
    assert_eq!((st.successes, st.failures, st.attempts), (4, 0, 5));
}

#[test]
fn auto_uses_the_granted_expiry_of_our_contact_and_refreshes_before_it_lapses() {
    let mut h = H::new(trunk(None));
    let t0 = h.start();
    assert_eq!(
        header(h.last(), "Expires"),
        Some(&*AUTO_REQUEST_S.to_string())
    );
    // Another contact of the AOR has 999, the Expires header says 120: ours says 60.
    let extra = format!(
        "Contact: <sip:4420@203.0.113.5:5060>;expires=999\r\nContact: {OUR_CONTACT};expires=60\r\nExpires: 120\r\n"
    );
    h.answer(t0 + 10, 200, &extra);
    assert_eq!(h.reg.status().effective_expiry_s, Some(60));
    let refresh = h.out.timer.unwrap();
    assert!(
        refresh < t0 + 10 + 60_000 - 4_000,
        "refresh {refresh} too late"
    );
    assert_eq!(refresh, t0 + 10 + 30_000);
    // The refresh still asks for the auto request; now only an Expires header: 40 s.
    let t1 = h.fire();
    assert_eq!(header(h.last(), "Expires"), Some("3600"));
    h.answer(t1 + 10, 200, "Expires: 40\r\n");
    assert_eq!(h.reg.status().effective_expiry_s, Some(40));
    assert_eq!(h.out.timer, Some(t1 + 10 + 20_000));
    // A tiny grant: never later than the margin before it lapses, never sooner than 1 s.
    let t2 = h.fire();
    h.answer(t2, 200, "Expires: 8\r\n");
    assert_eq!(h.out.timer, Some(t2 + 3_000));
}

#[test]
fn forbidden_retries_every_retry_delay_exactly_for_ever() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    assert!(t0 < 60_000, "first attempt within [0, retry_delay)");
    for k in 0..20u64 {
        assert_eq!(h.out.sent.last().unwrap().0, t0 + k * 60_000);
        h.answer(t0 + k * 60_000, 403, "");
        assert_eq!(h.reg.state(), State::Failed);
        assert_eq!(h.reg.status().last_status, Some(403));
        assert_eq!(h.out.timer, Some(t0 + (k + 1) * 60_000), "no backoff");
        h.fire();
    }
    let st = h.reg.status();
    assert_eq!(st.failures, 20);
    assert!(st.last_error.unwrap().starts_with("403"));
    // 404, 5xx, 6xx alike; a 30 s retry delay is honoured.
    for status in [404u16, 500, 503, 600, 603] {
        let mut c = trunk(Some(300));
        c.retry_delay_s = 30;
        let mut h = H::new(c);
        let t0 = h.start();
        assert!(t0 < 30_000);
        h.answer(t0 + 5, status, "");
        assert_eq!(h.reg.state(), State::Failed, "{status}");
        assert_eq!(h.out.timer, Some(t0 + 5 + 30_000), "{status}");
    }
}

#[test]
fn interval_too_brief_retries_at_once_with_min_expires() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    let n = h.count();
    h.answer(t0 + 20, 423, "Min-Expires: 600\r\n");
    assert_eq!(h.count(), n + 1, "retried at once");
    let (at, r) = h.out.sent.last().unwrap();
    assert_eq!(*at, t0 + 20);
    assert_eq!(header(r, "Expires"), Some("600"));
    assert_eq!(cseq(r), 2);
    h.answer(t0 + 40, 200, "Expires: 600\r\n");
    assert_eq!(h.reg.state(), State::Registered);
    assert_eq!(h.out.timer, Some(t0 + 40 + 300_000));
    // The refresh keeps the raised value.
    h.fire();
    assert_eq!(header(h.last(), "Expires"), Some("600"));
    // 423 without Min-Expires (or not above what we asked) is a failure.
    let t = h.out.now;
    h.answer(t, 423, "Min-Expires: 600\r\n");
    assert_eq!(h.reg.state(), State::Failed);
    assert_eq!(h.out.timer, Some(t + 60_000));
}

#[test]
fn no_answer_fails_after_the_resend_schedule_and_retries_after_the_delay() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    // The transaction layer gives up after 31.5 s (default schedule).
    let gave_up = t0 + 31_500;
    h.at(gave_up);
    h.reg.on_timeout(gave_up, &mut h.out);
    assert_eq!(h.reg.state(), State::Failed);
    assert!(h.reg.status().last_error.unwrap().contains("timeout"));
    assert_eq!(h.out.timer, Some(gave_up + 60_000));
    let t1 = h.fire();
    assert_eq!(t1, gave_up + 60_000);
    assert_eq!(cseq(h.last()), 2);
    // A late answer to the abandoned request is ignored.
    let stale = response_to(&h.out.sent[0].1, 200, "Expires: 300\r\n");
    let msg = h.parser.parse(stale.as_bytes()).unwrap();
    assert!(!h.reg.on_response(&msg, t1 + 1, &mut h.out));
    assert_eq!(h.reg.state(), State::Registering);
    // A provisional response is used but changes nothing; the final one registers.
    assert!(h.answer(t1 + 2, 100, ""));
    assert_eq!(h.reg.state(), State::Registering);
    h.answer(t1 + 3, 200, "Expires: 300\r\n");
    assert_eq!(h.reg.state(), State::Registered);
    // A refresh that times out: failed, retry after the delay.
    let t2 = h.fire();
    h.at(t2 + 31_500);
    h.reg.on_timeout(t2 + 31_500, &mut h.out);
    assert_eq!(h.reg.state(), State::Failed);
    assert_eq!(h.reg.status().registered_until, None);
    assert_eq!(h.out.timer, Some(t2 + 31_500 + 60_000));
}

fn challenge(alg: &str, nonce: &str, stale: bool) -> String {
    format!(
        "Digest realm=\"carrier\", nonce=\"{nonce}\", algorithm={alg}, qop=\"auth\", opaque=\"op1\"{}",
        if stale { ", stale=true" } else { "" }
    )
}

/// Check the Authorization value against the password, as a registrar would.
fn verify(value: &str, password: &str, alg: Algorithm, nonce: &str, nc: &str) {
    let a = parse_auth(value.as_bytes()).unwrap();
    let d = a.digest;
    assert_eq!(d.username, Some(&b"auth-4420"[..]));
    assert_eq!(d.realm, Some(&b"carrier"[..]));
    assert_eq!(d.nonce, Some(nonce.as_bytes()));
    assert_eq!(d.uri, Some(&b"sip:192.0.2.1"[..]));
    assert_eq!(d.nc, Some(nc.as_bytes()));
    assert_eq!(d.qop, Some(&b"auth"[..]));
    assert_eq!(d.opaque, Some(&b"op1"[..]));
    assert_eq!(Algorithm::from_param(d.algorithm), Some(alg));
    let h1 = ha1(alg, b"auth-4420", b"carrier", password.as_bytes());
    let want = response(
        alg,
        &h1,
        b"REGISTER",
        b"sip:192.0.2.1",
        nonce.as_bytes(),
        Some((d.nc.unwrap(), d.cnonce.unwrap())),
    );
    assert_eq!(d.response, Some(want.as_bytes()), "digest response");
}

fn auth_trunk() -> TrunkConfig {
    let mut c = trunk(Some(300));
    c.auth_username = "auth-4420".into();
    c
}

#[test]
fn digest_challenge_is_answered_md5_and_sha256_with_nc_counting() {
    let mut h = H::new(auth_trunk());
    let t0 = h.start();
    h.answer(
        t0 + 10,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "n1", false)),
    );
    let r = h.last().to_string();
    assert_eq!(cseq(&r), 2);
    assert_eq!(h.out.sent.last().unwrap().0, t0 + 10, "answered at once");
    verify(
        header(&r, "Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "n1",
        "00000001",
    );
    h.answer(t0 + 20, 200, "Expires: 300\r\n");
    assert_eq!(h.reg.state(), State::Registered);
    // Refresh: challenged again with the same nonce (the server keeps it): nc goes up.
    let t1 = h.fire();
    assert_eq!(header(h.last(), "Authorization"), None);
    h.answer(
        t1,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "n1", false)),
    );
    verify(
        header(h.last(), "Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "n1",
        "00000002",
    );
    h.answer(t1, 200, "Expires: 300\r\n");
    // Next refresh: SHA-256 offered beside MD5: SHA-256 is chosen; a new nonce starts at 1.
    let t2 = h.fire();
    let both = format!(
        "WWW-Authenticate: {}\r\nWWW-Authenticate: {}\r\n",
        challenge("MD5", "n2", false),
        challenge("SHA-256", "n2", false)
    );
    h.answer(t2, 401, &both);
    verify(
        header(h.last(), "Authorization").unwrap(),
        "secret",
        Algorithm::Sha256,
        "n2",
        "00000001",
    );
    h.answer(t2, 200, "Expires: 300\r\n");
    assert_eq!(h.reg.status().successes, 3);
}

#[test]
fn proxy_challenge_gets_proxy_authorization_and_both_are_kept() {
    let mut h = H::new(auth_trunk());
    let t0 = h.start();
    h.answer(
        t0,
        407,
        &format!("Proxy-Authenticate: {}\r\n", challenge("MD5", "p1", false)),
    );
    let r = h.last().to_string();
    verify(
        header(&r, "Proxy-Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "p1",
        "00000001",
    );
    assert_eq!(header(&r, "Authorization"), None);
    h.answer(
        t0,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "w1", false)),
    );
    let r = h.last().to_string();
    verify(
        header(&r, "Proxy-Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "p1",
        "00000002",
    );
    verify(
        header(&r, "Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "w1",
        "00000001",
    );
    h.answer(t0, 200, "Expires: 300\r\n");
    assert_eq!(h.reg.state(), State::Registered);
}

#[test]
fn same_nonce_challenge_after_our_answer_is_wrong_credentials_not_a_loop() {
    let mut h = H::new(auth_trunk());
    let t0 = h.start();
    let ch = format!("WWW-Authenticate: {}\r\n", challenge("MD5", "n1", false));
    h.answer(t0, 401, &ch);
    assert_eq!(h.count(), 2);
    h.answer(t0 + 5, 401, &ch);
    assert_eq!(h.count(), 2, "not answered again");
    assert_eq!(h.reg.state(), State::Failed);
    assert!(h
        .reg
        .status()
        .last_error
        .unwrap()
        .contains("wrong credentials"));
    assert_eq!(h.out.timer, Some(t0 + 5 + 60_000));
    // The retry after the delay starts over and answers the challenge once more.
    let t1 = h.fire();
    assert_eq!(header(h.last(), "Authorization"), None);
    h.answer(t1, 401, &ch);
    assert_eq!(h.count(), 4);
    // stale=true with the same nonce, or a new nonce: answered again.
    h.answer(
        t1,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "n1", true)),
    );
    assert_eq!(h.count(), 5);
    h.answer(
        t1,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "n9", false)),
    );
    assert_eq!(h.count(), 6);
    verify(
        header(h.last(), "Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "n9",
        "00000001",
    );
    // A challenge we cannot answer (realm mismatch when the realm is configured) is a failure.
    let mut c = auth_trunk();
    c.realm = Some("other".into());
    let mut h = H::new(c);
    let t0 = h.start();
    h.answer(t0, 401, &ch);
    assert_eq!(h.reg.state(), State::Failed);
    assert_eq!(h.count(), 1);
}

#[test]
fn stop_unregisters_with_expires_zero_then_stops() {
    let mut h = H::new(auth_trunk());
    let t0 = h.start();
    h.answer(t0, 200, "Expires: 300\r\n");
    let call_id = header(h.last(), "Call-ID").unwrap().to_string();
    h.at(t0 + 1000);
    h.reg.stop(t0 + 1000, &mut h.out);
    assert_eq!(h.reg.state(), State::Unregistering);
    assert_eq!(h.out.timer, None, "refresh cancelled");
    let r = h.last().to_string();
    assert_eq!(header(&r, "Expires"), Some("0"));
    assert_eq!(header(&r, "Contact"), Some(OUR_CONTACT));
    assert_eq!(header(&r, "Call-ID").unwrap(), call_id);
    assert_eq!(cseq(&r), 2);
    // Challenged: answered, still Expires: 0.
    h.answer(
        t0 + 1010,
        401,
        &format!("WWW-Authenticate: {}\r\n", challenge("MD5", "u1", false)),
    );
    let r = h.last().to_string();
    assert_eq!(header(&r, "Expires"), Some("0"));
    verify(
        header(&r, "Authorization").unwrap(),
        "secret",
        Algorithm::Md5,
        "u1",
        "00000001",
    );
    h.answer(t0 + 1020, 200, "");
    assert_eq!(h.reg.state(), State::Stopped);
    let n = h.count();
    // Nothing more: timers, force, stop again.
    h.reg.on_timer(t0 + 10_000_000, &mut h.out);
    h.reg.force_register(t0 + 10_000_000, &mut h.out);
    h.reg.stop(t0 + 10_000_000, &mut h.out);
    assert_eq!(h.count(), n);
    assert_eq!(h.out.timer, None);
}

#[test]
fn stop_is_bounded_and_skips_unregister_when_off_or_never_registered() {
    // No answer to the unregister: stopped when its transaction gives up.
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    h.answer(t0, 200, "Expires: 300\r\n");
    h.reg.stop(t0 + 5, &mut h.out);
    assert_eq!(h.reg.state(), State::Unregistering);
    h.reg.on_timeout(t0 + 31_505, &mut h.out);
    assert_eq!(h.reg.state(), State::Stopped);
    assert_eq!(h.out.timer, None);
    // A failure answer ends it too.
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    h.answer(t0, 200, "Expires: 300\r\n");
    h.reg.stop(t0 + 5, &mut h.out);
    h.answer(t0 + 6, 500, "");
    assert_eq!(h.reg.state(), State::Stopped);
    // send_unregister Off: nothing sent.
    let mut h = H {
        reg: OutboundRegistration::new(trunk(Some(300)), local(7, false)),
        out: Out::default(),
        parser: Parser::new(),
    };
    let t0 = h.start();
    h.answer(t0, 200, "Expires: 300\r\n");
    h.reg.stop(t0 + 5, &mut h.out);
    assert_eq!(h.reg.state(), State::Stopped);
    assert_eq!(h.count(), 1);
    assert_eq!(h.out.timer, None);
    // Failed (never registered, nothing in flight): stopped at once.
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    h.answer(t0, 403, "");
    h.reg.stop(t0 + 5, &mut h.out);
    assert_eq!(h.reg.state(), State::Stopped);
    assert_eq!(h.count(), 1);
    assert_eq!(h.out.timer, None);
}

#[test]
fn privacy_header_per_setting() {
    for (p, want) in [
        (Privacy::Ignore, None),
        (Privacy::Id, Some("id")),
        (Privacy::None, Some("none")),
    ] {
        let mut c = trunk(Some(300));
        c.privacy = p;
        let mut h = H::new(c);
        h.start();
        assert_eq!(header(h.last(), "Privacy"), want, "{p:?}");
    }
}

#[test]
fn outbound_proxy_is_the_destination_and_a_loose_route() {
    let mut c = trunk(Some(300));
    c.port = 5080;
    c.outbound_proxy = Some(("proxy.example.net".into(), 5070));
    let mut h = H::new(c);
    h.start();
    let r = h.last();
    assert!(r.starts_with("REGISTER sip:192.0.2.1:5080 SIP/2.0\r\n"));
    assert_eq!(header(r, "Route"), Some("<sip:proxy.example.net:5070;lr>"));
    assert_eq!(h.reg.destination(), ("proxy.example.net", 5070));
}

#[test]
fn force_register_starts_an_attempt_now() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    h.answer(t0, 403, "");
    h.at(t0 + 100);
    h.reg.force_register(t0 + 100, &mut h.out);
    assert_eq!(h.count(), 2);
    assert_eq!(h.reg.state(), State::Registering);
    assert_eq!(h.out.timer, None);
}

#[test]
fn call_ids_and_offsets_differ_between_trunks_and_seeds() {
    let a = OutboundRegistration::new(trunk(None), local(1, true));
    let b = OutboundRegistration::new(trunk(None), local(2, true));
    let mut c2 = trunk(None);
    c2.name = "carrier-b".into();
    let c = OutboundRegistration::new(c2, local(1, true));
    assert_ne!(a.call_id(), b.call_id());
    assert_ne!(a.call_id(), c.call_id());
    assert_ne!(a.spread_offset_ms(), c.spread_offset_ms());
    // Same seed and name: the same (a restart with the same seed would reuse them).
    let a2 = OutboundRegistration::new(trunk(None), local(1, true));
    assert_eq!(a.call_id(), a2.call_id());
}

#[test]
fn a_thousand_registrations_started_together_are_spread() {
    const N: usize = 1000;
    let sip = SipParams::default(); // retry delay 60 s
    let mut regs: Vec<(OutboundRegistration, Out)> = (0..N)
        .map(|i| {
            let c = TrunkConfig::new(&format!("trunk-{i}"), "192.0.2.1", &format!("u{i}"), &sip);
            let mut l = local(0xDEAD_BEEF, true);
            l.spread_slot = Some((i as u32, N as u32)); // position in [[trunks]]
            (OutboundRegistration::new(c, l), Out::default())
        })
        .collect();
    for (r, o) in &mut regs {
        r.start(0, o);
    }
    // Run the simulated clock: fire every timer in time order, answering every REGISTER 403
    // at once, for 5 minutes; record every send.
    let mut sends: Vec<Millis> = Vec::new();
    let mut parser = Parser::new();
    while let Some((i, t)) = regs
        .iter()
        .enumerate()
        .filter_map(|(i, (_, o))| o.timer.map(|t| (i, t)))
        .min_by_key(|&(_, t)| t)
    {
        if t > 300_000 {
            break;
        }
        let (r, o) = &mut regs[i];
        o.now = t;
        o.timer = None;
        r.on_timer(t, o);
        let req = o.sent.last().unwrap().1.clone();
        sends.push(t);
        let text = response_to(&req, 403, "");
        let msg = parser.parse(text.as_bytes()).unwrap();
        assert!(r.on_response(&msg, t, o));
    }
    sends.sort_unstable();
    assert!(sends.len() >= N * 5, "{}", sends.len());
    // First attempts all inside [0, 60 s).
    assert!(regs.iter().all(|(r, _)| r.spread_offset_ms() < 60_000));
    let max_in_window = |ts: &[Millis]| {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..ts.len() {
            while ts[hi] - ts[lo] >= 100 {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    };
    let firsts: Vec<Millis> = {
        let mut v: Vec<Millis> = regs.iter().map(|(r, _)| r.spread_offset_ms()).collect();
        v.sort_unstable();
        v
    };
    // Mean per 100 ms window (1.67) rounded down, plus two for slot boundaries.
    let bound = N * 100 / 60_000 + 2;
    let worst_first = max_in_window(&firsts);
    let worst_all = max_in_window(&sends);
    eprintln!("worst 100 ms window: first {worst_first}, all {worst_all}, bound {bound}");
    assert!(
        worst_first <= bound,
        "first REGISTERs: {worst_first} in 100 ms > {bound}"
    );
    assert!(
        worst_all <= bound,
        "all REGISTERs: {worst_all} in 100 ms > {bound}"
    );
    // Each keeps its fixed interval: registration k sends at offset + j * 60 s exactly.
    for (r, o) in &regs {
        for (j, (t, _)) in o.sent.iter().enumerate() {
            assert_eq!(*t, r.spread_offset_ms() + j as u64 * 60_000);
        }
    }
}

#[test]
fn header_kinds_used_are_known_to_the_parser() {
    // Min-Expires, WWW-/Proxy-Authenticate, Privacy and User-Agent are parsed as their kinds.
    let text = "SIP/2.0 423 X\r\nMin-Expires: 5\r\nPrivacy: id\r\nContent-Length: 0\r\n\r\n";
    let mut p = Parser::new();
    let m = p.parse(text.as_bytes()).unwrap();
    assert_eq!(m.header(HeaderKind::MinExpires), Some(&b"5"[..]));
    assert_eq!(m.header(HeaderKind::Privacy), Some(&b"id"[..]));
}

#[test]
fn first_attempts_are_spread_for_any_seed() {
    // The offsets are hash-based (independent per registration), so a 100 ms window holds a
    // Poisson-like count with mean N·100/retry_delay; check the worst over many seeds.
    const N: usize = 1000;
    let sip = SipParams::default();
    let mut worst = 0;
    for seed in 0..200u64 {
        let mut v: Vec<Millis> = (0..N)
            .map(|i| {
                let c = TrunkConfig::new(&format!("t{i}"), "192.0.2.1", "u", &sip);
                OutboundRegistration::new(c, local(seed.wrapping_mul(0x9E37_79B9), true))
                    .spread_offset_ms()
            })
            .collect();
        v.sort_unstable();
        let mut lo = 0;
        for hi in 0..v.len() {
            while v[hi] - v[lo] >= 100 {
                lo += 1;
            }
            worst = worst.max(hi - lo + 1);
        }
    }
    eprintln!("worst first-attempt 100 ms window over 200 seeds: {worst}");
    assert!(worst <= N * 100 / 60_000 + 12, "{worst}");
}

#[test]
fn slotted_offsets_spread_evenly() {
    // With (index, count) slots, 1000 registrations over 60 s: one per 60 ms slot, so a 100 ms
    // window holds at most 3 first attempts, for any seed.
    const N: u32 = 1000;
    let sip = SipParams::default();
    for seed in 0..20u64 {
        let mut v: Vec<Millis> = (0..N)
            .map(|i| {
                let c = TrunkConfig::new(&format!("t{i}"), "192.0.2.1", "u", &sip);
                let mut l = local(seed, true);
                l.spread_slot = Some((i, N));
                let r = OutboundRegistration::new(c, l);
                let off = r.spread_offset_ms();
                assert!(
                    off >= u64::from(i) * 60 && off < u64::from(i + 1) * 60,
                    "{i}: {off}"
                );
                off
            })
            .collect();
        v.sort_unstable();
        let mut lo = 0;
        for hi in 0..v.len() {
            while v[hi] - v[lo] >= 100 {
                lo += 1;
            }
            assert!(hi - lo < 3, "seed {seed}: {} in 100 ms", hi - lo + 1);
        }
    }
    // Out-of-range slots fall back to the hash.
    let mut l = local(1, true);
    l.spread_slot = Some((5, 5));
    let c = TrunkConfig::new("t", "192.0.2.1", "u", &sip);
    assert!(OutboundRegistration::new(c, l).spread_offset_ms() < 60_000);
}

#[test]
fn few_registrations_spread_over_count_times_100ms_not_the_whole_delay() {
    // 1 trunk: within the first 100 ms; 30 trunks with a 60 s delay: over 3 s, one per slot.
    let sip = SipParams::default();
    for seed in 0..50u64 {
        let mut l = local(seed, true);
        l.spread_slot = Some((0, 1));
        let r = OutboundRegistration::new(TrunkConfig::new("solo", "192.0.2.1", "u", &sip), l);
        assert!(r.spread_offset_ms() < SPREAD_STEP_MS, "seed {seed}");
        for i in 0..30u32 {
            let mut l = local(seed, true);
            l.spread_slot = Some((i, 30));
            let c = TrunkConfig::new(&format!("t{i}"), "192.0.2.1", "u", &sip);
            let off = OutboundRegistration::new(c, l).spread_offset_ms();
            let lo = u64::from(i) * SPREAD_STEP_MS;
            assert!(off >= lo && off < lo + SPREAD_STEP_MS, "{i}: {off}");
        }
    }
}

#[test]
fn stop_with_a_request_in_flight_unregisters_and_ignores_the_old_answer() {
    let mut h = H::new(trunk(Some(300)));
    let t0 = h.start();
    let first = h.last().to_string();
    h.reg.stop(t0 + 5, &mut h.out);
    assert_eq!(h.reg.state(), State::Unregistering);
    assert_eq!(header(h.last(), "Expires"), Some("0"));
    // The 200 to the first REGISTER (CSeq 1) does not end the unregistration.
    let old = response_to(&first, 200, "Expires: 300\r\n");
    let msg = h.parser.parse(old.as_bytes()).unwrap();
    assert!(!h.reg.on_response(&msg, t0 + 6, &mut h.out));
    assert_eq!(h.reg.state(), State::Unregistering);
    h.answer(t0 + 7, 200, "");
    assert_eq!(h.reg.state(), State::Stopped);
    let st = h.reg.status();
    assert_eq!((st.requests, st.attempts), (2, 1));
    assert_eq!(st.next_action_at, None);
}

/// The Call-ID is re-derived so that its steering hash names the owner shard (3 in `local`), and it
/// then stays the same for the registration's whole life.
#[test]
fn call_id_steers_answers_to_the_owner_shard() {
    for shards in [4usize, 5, 8] {
        let mut h = H::new(trunk(Some(300)));
        h.reg.steer_call_id(shards);
        let cid = h.reg.call_id().to_string();
        assert_eq!(
            sipshard::sip::steer::steer_shard(cid.as_bytes(), shards),
            3,
            "{cid}"
        );
        h.start();
        assert_eq!(h.reg.call_id(), cid);
    }
}
