//! The registrar bindings core, driven with a simulated clock and REGISTERs parsed from text.

use std::collections::HashSet;
use std::net::SocketAddr;

use sipshard::config::Config;
use sipshard::registrar::core::{reason_index, EVENTS_PER_CALL};
use sipshard::registrar::guard::FailReason;
use sipshard::registrar::{
    aor_key, owner_of_aor, IpFilter, ListFilter, Page, RegisterOutcome, Registrar, RegistrarSink,
    RemovalReason, Status, Target,
};
use sipshard::sip::Parser;

const T0: u64 = 1_000_000;

fn cfg() -> Config {
    let mut c = Config::default();
    c.registrar.expiry_spread_percent = 0;
    c
}

/// (destination, request, branch, token, time sent).
type Sent = (SocketAddr, Vec<u8>, Vec<u8>, u64, u64);

#[derive(Default)]
struct Sink {
    sent: Vec<Sent>,
    now: u64,
}

impl RegistrarSink for Sink {
    fn start_keepalive(&mut self, dst: SocketAddr, request: &[u8], branch: &[u8], token: u64) {
        self.sent
            .push((dst, request.to_vec(), branch.to_vec(), token, self.now));
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A REGISTER for `user@example.com` from a phone at `via` (sent-by).
struct Reg<'a> {
    user: &'a str,
    call_id: &'a str,
    cseq: u32,
    via: &'a str,
    contacts: &'a [&'a str],
    expires: Option<u32>,
    ua: Option<&'a str>,
}

impl<'a> Reg<'a> {
    fn new(user: &'a str, contacts: &'a [&'a str]) -> Self {
        Reg {
            user,
            call_id: "cid-1",
            cseq: 1,
            via: "192.0.2.10:5060",
            contacts,
            expires: None,
            ua: None,
        }
    }
    fn text(&self) -> Vec<u8> {
        let mut s = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{}x{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{}@example.com>;tag=f1\r\nTo: <sip:{}@example.com>\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.via, self.call_id, self.cseq, self.user, self.user, self.call_id, self.cseq
        );
        for c in self.contacts {
            s.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = self.expires {
            s.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(ua) = self.ua {
            s.push_str(&format!("User-Agent: {ua}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s.into_bytes()
    }
}

struct H {
    r: Registrar,
    parser: Parser,
    out: Vec<u8>,
    sink: Sink,
}

impl H {
    fn new(c: &Config) -> H {
        H {
            r: Registrar::new(0, c, 42, T0),
            parser: Parser::new(),
            out: Vec::new(),
            sink: Sink::default(),
        }
    }
    fn send(&mut self, text: &[u8], src: &str, account: u32, now: u64) -> RegisterOutcome {
        let msg = self.parser.parse(text).expect("parses");
        msg.validate().expect("valid");
        let ua = msg.header_by_name("User-Agent").unwrap_or(b"");
        self.r
            .on_register(&msg, addr(src), account, ua, now, &mut self.out)
    }
    fn reg(&mut self, reg: &Reg, src: &str, now: u64) -> RegisterOutcome {
        self.send(&reg.text(), src, 7, now)
    }
    fn resp(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.resp().split("\r\n").find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .map(str::to_string)
        })
    }
    fn contacts(&self, key: &[u8], now: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .r
            .lookup(key, now)
            .map(|c| String::from_utf8_lossy(c.uri).into_owned())
            .collect();
        v.sort();
        v
    }
    fn timers(&mut self, now: u64) -> usize {
        self.sink.now = now;
        self.r.on_timers(now, &mut self.sink)
    }
}

const PHONE: &str = "192.0.2.10:5060";

#[test]
fn register_refresh_and_expiry_at_the_exact_ms() {
    let mut h = H::new(&cfg());
    let c = ["<sip:alice@192.0.2.10:5060>"];
    let mut reg = Reg::new("alice", &c);
    reg.expires = Some(600);
    let o = h.reg(&reg, PHONE, T0);
    assert_eq!((o.status, o.added), (200, 1), "{}", h.resp());
    assert!(h.resp().starts_with("SIP/2.0 200 OK\r\n"));
    assert!(h.resp().contains("To: <sip:alice@example.com>;tag=r"));
    assert_eq!(
        h.header("Contact").as_deref(),
        Some("<sip:alice@192.0.2.10:5060>;expires=600")
    );
    let key = b"alice@example.com";
    let v: Vec<_> = h.r.lookup(key, T0).collect();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].expires_at, T0 + 600_000);
    assert!(!v[0].nat);
    assert_eq!(v[0].send_to, addr(PHONE));

    // Refresh at +300 s with a higher CSeq: the expiry moves.
    reg.cseq = 2;
    let o = h.reg(&reg, PHONE, T0 + 300_000);
    assert_eq!((o.status, o.added, o.refreshed), (200, 0, 1));
    assert_eq!(h.r.counts().bindings_live, 1);
    let exp = T0 + 300_000 + 600_000;
    assert_eq!(h.r.lookup(key, exp - 1).count(), 1);
    assert_eq!(h.r.lookup(key, exp).count(), 0, "gone at its expiry");
    // The old expiry passes without effect.
    h.timers(T0 + 600_000);
    assert_eq!(h.r.counts().bindings_live, 1);
    // The runtime sleeps until next_deadline; nothing is removed a ms early.
    let mut now = T0 + 600_000;
    while let Some(d) = h.r.next_deadline() {
        assert!(d >= now || d == now);
        now = d;
        if now >= exp {
            break;
        }
        h.timers(now);
        assert_eq!(h.r.counts().bindings_live, 1, "removed early at {now}");
    }
    h.timers(exp - 1);
    assert_eq!(h.r.counts().bindings_live, 1);
    h.timers(exp);
    assert_eq!(h.r.counts().bindings_live, 0);
    assert_eq!(h.r.counts().expired, 1);
    assert_eq!(h.r.pending_timers(), (0, 0));
}

#[test]
fn several_contacts_each_with_its_expiry() {
    let mut h = H::new(&cfg());
    let c = [
        "<sip:a@192.0.2.10:5060>;expires=120",
        "<sip:b@192.0.2.10:5060>;q=0.5, <sip:c@192.0.2.10:5060>;expires=3000",
    ];
    let mut reg = Reg::new("bob", &c);
    reg.expires = Some(900);
    let o = h.reg(&reg, PHONE, T0);
    assert_eq!((o.status, o.added), (200, 3));
    let key = b"bob@example.com";
    let mut v: Vec<_> =
        h.r.lookup(key, T0)
            .map(|c| {
                (
                    String::from_utf8_lossy(c.uri).into_owned(),
                    c.expires_at - T0,
                    c.q,
                )
            })
            .collect();
    v.sort();
    assert_eq!(
        v,
        vec![
            ("sip:a@192.0.2.10:5060".into(), 120_000, None),
            ("sip:b@192.0.2.10:5060".into(), 900_000, Some(500)),
            ("sip:c@192.0.2.10:5060".into(), 3_000_000, None),
        ]
    );
    // The 200 lists all three with their remaining time.
    let hdr = h.header("Contact").unwrap();
    for part in [
        "<sip:a@192.0.2.10:5060>;expires=120",
        "<sip:b@192.0.2.10:5060>;expires=900;q=0.5",
        "<sip:c@192.0.2.10:5060>;expires=3000",
    ] {
        assert!(hdr.contains(part), "{hdr}");
    }
    // A query (no Contact) 100.5 s later lists remaining times, rounded up.
    let q = Reg {
        cseq: 2,
        ..Reg::new("bob", &[])
    };
    let o = h.reg(&q, PHONE, T0 + 100_500);
    assert_eq!((o.status, o.added, o.refreshed), (200, 0, 0));
    let hdr = h.header("Contact").unwrap();
    assert!(hdr.contains("<sip:a@192.0.2.10:5060>;expires=20"), "{hdr}");
    assert!(hdr.contains(";expires=800;q=0.5"), "{hdr}");
    assert!(
        hdr.contains("<sip:c@192.0.2.10:5060>;expires=2900"),
        "{hdr}"
    );
    // Default expiry (no Expires anywhere) is endpoint_expire (3600 s).
    let c2 = ["<sip:d@192.0.2.10:5060>"];
    let d = Reg {
        cseq: 3,
        ..Reg::new("bob", &c2)
    };
    h.reg(&d, PHONE, T0);
    let e =
        h.r.lookup(key, T0)
            .find(|c| c.uri.starts_with(b"sip:d@"))
            .unwrap();
    assert_eq!(e.expires_at - T0, 3_600_000);
}

#[test]
fn contact_star_needs_expires_zero_and_removes_all() {
    let mut h = H::new(&cfg());
    let c = ["<sip:a@192.0.2.10:5060>", "<sip:b@192.0.2.10:5060>"];
    h.reg(&Reg::new("carol", &c), PHONE, T0);
    let key = b"carol@example.com";
    assert_eq!(h.r.lookup(key, T0).count(), 2);
    // Contact: * without Expires: 400, nothing removed.
    let star = ["*"];
    let mut r = Reg {
        cseq: 2,
        ..Reg::new("carol", &star)
    };
    let o = h.reg(&r, PHONE, T0 + 1);
    assert_eq!((o.status, o.refused), (400, Some(FailReason::BadRequest)));
    assert!(h.resp().starts_with("SIP/2.0 400 "));
    assert_eq!(h.r.lookup(key, T0 + 1).count(), 2);
    // With Expires: 5: 400.
    r.expires = Some(5);
    assert_eq!(h.reg(&r, PHONE, T0 + 1).status, 400);
    // With Expires: 0: all removed, 200 without Contact.
    r.expires = Some(0);
    let o = h.reg(&r, PHONE, T0 + 2);
    assert_eq!((o.status, o.removed), (200, 2));
    assert!(h.header("Contact").is_none(), "{}", h.resp());
    assert_eq!(h.r.lookup(key, T0 + 2).count(), 0);
    assert_eq!(h.r.counts().removed, 2);
    // Contact: * with the same Call-ID and an old CSeq is refused.
    h.reg(
        &Reg {
            cseq: 10,
            ..Reg::new("carol", &c)
        },
        PHONE,
        T0 + 3,
    );
    let o = h.reg(
        &Reg {
            cseq: 9,
            expires: Some(0),
            ..Reg::new("carol", &star)
        },
        PHONE,
        T0 + 4,
    );
    assert_eq!((o.status, o.refused), (500, Some(FailReason::StaleCseq)));
    assert_eq!(h.r.lookup(key, T0 + 4).count(), 2);
}

#[test]
fn expires_zero_removes_one_contact() {
    let mut h = H::new(&cfg());
    let c = ["<sip:a@192.0.2.10:5060>", "<sip:b@192.0.2.10:5060>"];
    h.reg(&Reg::new("dave", &c), PHONE, T0);
    let c2 = ["<sip:a@192.0.2.10:5060>;expires=0"];
    let o = h.reg(
        &Reg {
            cseq: 2,
            ..Reg::new("dave", &c2)
        },
        PHONE,
        T0 + 10,
    );
    assert_eq!((o.status, o.removed), (200, 1));
    assert_eq!(
        h.contacts(b"dave@example.com", T0 + 10),
        vec!["sip:b@192.0.2.10:5060"]
    );
    assert_eq!(
        h.header("Contact").as_deref(),
        Some("<sip:b@192.0.2.10:5060>;expires=3600")
    );
    // Expires: 0 header applies to contacts without their own param.
    let c3 = ["<sip:b@192.0.2.10:5060>"];
    let o = h.reg(
        &Reg {
            cseq: 3,
            expires: Some(0),
            ..Reg::new("dave", &c3)
        },
        PHONE,
        T0 + 20,
    );
    assert_eq!((o.status, o.removed), (200, 1));
    assert_eq!(h.r.counts().bindings_live, 0);
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    let mut h = H::new(&cfg());
    let c = ["<sip:a@192.0.2.10:5060>;expires=30"];
    let o = h.reg(&Reg::new("erin", &c), PHONE, T0);
    assert_eq!(
        (o.status, o.refused),
        (423, Some(FailReason::IntervalTooBrief))
    );
    assert!(h.resp().starts_with("SIP/2.0 423 Interval Too Brief\r\n"));
    assert_eq!(h.header("Min-Expires").as_deref(), Some("60"));
    assert_eq!(h.r.counts().bindings_live, 0);
    assert_eq!(h.r.counts().refused(FailReason::IntervalTooBrief), 1);
    // Exactly min_expires is fine; above max_expires is cut down.
    let c = ["<sip:a@192.0.2.10:5060>;expires=60"];
    assert_eq!(h.reg(&Reg::new("erin", &c), PHONE, T0).status, 200);
    let mut c2 = cfg();
    c2.registrar.max_expires_s = 1800;
    let mut h2 = H::new(&c2);
    let c = ["<sip:a@192.0.2.10:5060>;expires=86400"];
    h2.reg(&Reg::new("erin", &c), PHONE, T0);
    assert_eq!(
        h2.header("Contact").as_deref(),
        Some("<sip:a@192.0.2.10:5060>;expires=1800")
    );
}

#[test]
fn cseq_ordering_and_new_call_id() {
    let mut h = H::new(&cfg());
    let c = ["<sip:a@192.0.2.10:5060>"];
    let key = b"frank@example.com";
    let r = |cseq, call_id| Reg {
        cseq,
        call_id,
        expires: Some(600),
        ..Reg::new("frank", &c)
    };
    assert_eq!(h.reg(&r(5, "one"), PHONE, T0).status, 200);
    // Same Call-ID, same or lower CSeq: 500, binding unchanged.
    for seq in [5, 4] {
        let o = h.reg(&r(seq, "one"), PHONE, T0 + 1000);
        assert_eq!((o.status, o.refused), (500, Some(FailReason::StaleCseq)));
        assert!(h.resp().starts_with("SIP/2.0 500 "));
    }
    assert_eq!(h.r.lookup(key, T0).next().unwrap().expires_at, T0 + 600_000);
    // Higher CSeq: refreshed.
    assert_eq!(h.reg(&r(6, "one"), PHONE, T0 + 2000).refreshed, 1);
    // New Call-ID, any CSeq: replaces the binding of that contact (still one binding).
    let o = h.reg(&r(1, "two"), PHONE, T0 + 3000);
    assert_eq!((o.status, o.refreshed, o.added), (200, 1, 0));
    assert_eq!(h.r.lookup(key, T0 + 3000).count(), 1);
    let page = h.r.list(
        &ListFilter::default(),
        Page {
            offset: 0,
            limit: 10,
        },
        T0 + 3000,
    );
    assert_eq!(page.rows[0].call_id, b"two");
    // The stored CSeq now belongs to Call-ID "two".
    assert_eq!(h.reg(&r(1, "two"), PHONE, T0 + 4000).status, 500);
    assert_eq!(h.reg(&r(2, "two"), PHONE, T0 + 4000).status, 200);
    assert_eq!(h.r.counts().refused(FailReason::StaleCseq), 3);
}

fn policy(max: u32, replace: bool) -> Config {
    let mut c = cfg();
    c.sip.registrar_max_bindings = max;
    c.sip.endpoint_register_replace = replace;
    c
}

#[test]
fn replace_on_with_one_binding() {
    let mut h = H::new(&policy(1, true));
    let key = b"gina@example.com";
    let a = ["<sip:gina@192.0.2.10:5060>"];
    let b = ["<sip:gina@192.0.2.11:5060>"];
    h.reg(&Reg::new("gina", &a), PHONE, T0);
    let o = h.reg(
        &Reg {
            call_id: "other",
            ..Reg::new("gina", &b)
        },
        "192.0.2.11:5060",
        T0 + 5,
    );
    assert_eq!((o.status, o.added, o.replaced), (200, 1, 1));
    assert_eq!(h.contacts(key, T0 + 5), vec!["sip:gina@192.0.2.11:5060"]);
    assert_eq!(h.r.counts().replaced, 1);
    // The old one is an Unregistered tombstone.
    let f = ListFilter {
        status: Some(Status::Unregistered),
        ..Default::default()
    };
    let p = h.r.list(
        &f,
        Page {
            offset: 0,
            limit: 10,
        },
        T0 + 5,
    );
    assert_eq!(p.total, 1);
    assert_eq!(p.rows[0].removal, Some(RemovalReason::Replaced));
    assert_eq!(p.rows[0].contact, b"sip:gina@192.0.2.10:5060");
}

#[test]
fn replace_off_with_one_binding() {
    let mut h = H::new(&policy(1, false));
    let key = b"hank@example.com";
    let a = ["<sip:hank@192.0.2.10:5060>"];
    let b = ["<sip:hank@192.0.2.11:5060>"];
    h.reg(
        &Reg {
            expires: Some(120),
            ..Reg::new("hank", &a)
        },
        PHONE,
        T0,
    );
    let o = h.reg(
        &Reg {
            call_id: "other",
            ..Reg::new("hank", &b)
        },
        "192.0.2.11:5060",
        T0 + 5,
    );
    assert_eq!(
        (o.status, o.refused),
        (403, Some(FailReason::BindingExists))
    );
    assert!(h.resp().starts_with("SIP/2.0 403 "));
    assert_eq!(h.contacts(key, T0 + 5), vec!["sip:hank@192.0.2.10:5060"]);
    // The live one can still refresh.
    let o = h.reg(
        &Reg {
            cseq: 2,
            ..Reg::new("hank", &a)
        },
        PHONE,
        T0 + 6,
    );
    assert_eq!(o.refreshed, 1);
    // Once it has expired, the new one is accepted.
    let later = T0 + 6 + 3_600_000;
    let o = h.reg(
        &Reg {
            call_id: "other",
            cseq: 2,
            ..Reg::new("hank", &b)
        },
        "192.0.2.11:5060",
        later,
    );
    assert_eq!((o.status, o.added), (200, 1));
    assert_eq!(h.contacts(key, later), vec!["sip:hank@192.0.2.11:5060"]);
}

#[test]
fn limit_of_three_on_and_off() {
    for replace in [true, false] {
        let mut h = H::new(&policy(3, replace));
        let key = b"ivy@example.com";
        for (k, host) in ["10", "11", "12"].iter().enumerate() {
            let c = format!("<sip:ivy@192.0.2.{host}:5060>");
            let cs = [c.as_str()];
            let o = h.reg(
                &Reg {
                    cseq: k as u32 + 1,
                    ..Reg::new("ivy", &cs)
                },
                PHONE,
                T0 + k as u64,
            );
            assert_eq!(o.added, 1);
        }
        let c = ["<sip:ivy@192.0.2.13:5060>"];
        let o = h.reg(
            &Reg {
                cseq: 9,
                ..Reg::new("ivy", &c)
            },
            PHONE,
            T0 + 10,
        );
        let got = h.contacts(key, T0 + 10);
        if replace {
            assert_eq!((o.status, o.replaced), (200, 1));
            assert_eq!(
                got,
                vec![
                    "sip:ivy@192.0.2.11:5060",
                    "sip:ivy@192.0.2.12:5060",
                    "sip:ivy@192.0.2.13:5060"
                ],
                "the oldest (.10) went"
            );
            assert_eq!(h.header("Contact").unwrap().matches("expires=").count(), 3);
        } else {
            assert_eq!(
                (o.status, o.refused),
                (403, Some(FailReason::TooManyBindings))
            );
            assert_eq!(got.len(), 3);
            assert!(!got.contains(&"sip:ivy@192.0.2.13:5060".to_string()));
        }
        // Removing one and adding one in the same request fits in both modes.
        let c = [
            "<sip:ivy@192.0.2.12:5060>;expires=0",
            "<sip:ivy@192.0.2.14:5060>",
        ];
        let o = h.reg(
            &Reg {
                cseq: 10,
                ..Reg::new("ivy", &c)
            },
            PHONE,
            T0 + 20,
        );
        assert_eq!((o.status, o.removed, o.added, o.replaced), (200, 1, 1, 0));
        // Four new contacts at once exceed the limit by themselves: 403 in both modes.
        let c = [
            "<sip:x1@192.0.2.20>",
            "<sip:x2@192.0.2.20>",
            "<sip:x3@192.0.2.20>",
            "<sip:x4@192.0.2.20>",
        ];
        let o = h.reg(
            &Reg {
                cseq: 11,
                ..Reg::new("ivy", &c)
            },
            PHONE,
            T0 + 30,
        );
        assert_eq!(o.status, 403);
        assert_eq!(h.r.lookup(key, T0 + 30).count(), 3);
    }
}

#[test]
fn nat_detection() {
    let mut c = cfg();
    c.registrar.nat_keepalive_interval_s = 0;
    let mut h = H::new(&c);
    let cases: [(&str, &str, &str, bool); 5] = [
        // (via sent-by, contact, source, nat)
        ("192.0.2.10:5060", "<sip:u@192.0.2.10:5060>", PHONE, false),
        ("192.0.2.10", "<sip:u@192.0.2.10>", PHONE, false),
        (
            "10.0.0.5:5060",
            "<sip:u@10.0.0.5:5060>",
            "198.51.100.7:40123",
            true,
        ),
        ("192.0.2.10:5060", "<sip:u@192.0.2.10:5062>", PHONE, true),
        ("192.0.2.10:5070", "<sip:u@192.0.2.10:5060>", PHONE, true),
    ];
    for (k, (via, contact, src, nat)) in cases.iter().enumerate() {
        let user = format!("nat{k}");
        let cs = [*contact];
        let reg = Reg {
            via,
            ..Reg::new(&user, &cs)
        };
        assert_eq!(h.reg(&reg, src, T0).status, 200);
        let key = format!("{user}@example.com");
        let v = h.r.lookup(key.as_bytes(), T0).next().unwrap();
        assert_eq!(v.nat, *nat, "case {k}");
        if v.nat {
            assert_eq!(v.send_to, addr(src), "NAT: reached at the source");
            assert_eq!(v.expires_at - T0, 300_000, "NAT expiry");
        } else {
            assert_eq!(v.expires_at - T0, 3_600_000);
        }
    }
    assert_eq!(h.r.counts().nat_bindings, 3);
}

fn nat_reg(user: &str) -> Vec<u8> {
    let c = format!("<sip:{user}@10.0.0.5:5060;transport=udp?X=y>");
    let cs = [c.as_str()];
    Reg {
        via: "10.0.0.5:5060",
        ..Reg::new(user, &cs)
    }
    .text()
}

#[test]
fn keepalives_spread_over_the_interval() {
    let mut h = H::new(&cfg());
    for k in 0..100 {
        let o = h.send(&nat_reg(&format!("u{k}")), "198.51.100.7:40000", 1, T0);
        assert_eq!(o.status, 200);
    }
    assert_eq!(h.r.counts().nat_bindings, 100);
    // Drive the clock exactly as a runtime would.
    let mut now = T0;
    while let Some(d) = h.r.next_deadline() {
        if d > T0 + 30_000 {
            break;
        }
        now = now.max(d);
        h.timers(now);
    }
    let firsts: Vec<u64> = h.sink.sent.iter().map(|s| s.4).collect();
    assert_eq!(
        firsts.len(),
        100,
        "each binding's first keepalive within one interval"
    );
    let distinct: HashSet<u64> = firsts.iter().copied().collect();
    assert_eq!(distinct.len(), 100, "no two in the same ms");
    assert!(firsts.iter().all(|&t| t > T0 && t <= T0 + 30_000));
    // Evenly spread: every 3 s window of the interval has some.
    for w in 0..10 {
        let lo = T0 + w * 3000;
        assert!(
            firsts.iter().any(|&t| t > lo && t <= lo + 3000),
            "window {w} empty"
        );
    }
    // The request: OPTIONS to the contact (headers stripped), sent to the source address.
    let (dst, req, branch, _, _) = &h.sink.sent[0];
    assert_eq!(*dst, addr("198.51.100.7:40000"));
    let text = String::from_utf8_lossy(req);
    assert!(
        text.starts_with("OPTIONS sip:u")
            && text.contains("@10.0.0.5:5060;transport=udp SIP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains(&format!("branch={}", String::from_utf8_lossy(branch))));
    let mut p = Parser::new();
    let m = p.parse(req).unwrap();
    m.validate().unwrap();
    assert!(m.to().unwrap().as_bytes().starts_with(b"<sip:u"));
    assert_eq!(h.r.counts().keepalives_sent, 100);
}

#[test]
fn keepalive_failures_remove_and_answers_reset() {
    let mut h = H::new(&cfg()); // interval 30 s, 3 failures
    h.send(&nat_reg("kim"), "198.51.100.7:40000", 1, T0);
    let key = b"kim@example.com";
    let mut now = T0;
    let tick = |h: &mut H, now: &mut u64| -> u64 {
        let n = h.sink.sent.len();
        while h.sink.sent.len() == n {
            *now = h.r.next_deadline().unwrap().max(*now);
            h.timers(*now);
        }
        h.sink.sent.last().unwrap().3
    };
    // fail, fail, answer, fail, fail: still there; a third failure in a row removes it.
    for answered in [false, false, true, false, false] {
        let token = tick(&mut h, &mut now);
        assert!(!h.r.on_keepalive_result(token, answered, now));
    }
    assert_eq!(h.r.lookup(key, now).count(), 1);
    assert_eq!(h.r.counts().keepalives_failed, 4);
    let token = tick(&mut h, &mut now);
    assert!(h.r.on_keepalive_result(token, false, now));
    assert_eq!(h.r.lookup(key, now).count(), 0);
    assert_eq!(h.r.counts().keepalive_removed, 1);
    // A stale token is ignored.
    assert!(!h.r.on_keepalive_result(token, false, now));
    // No more keepalives for it.
    let n = h.sink.sent.len();
    h.timers(now + 100_000);
    assert_eq!(h.sink.sent.len(), n);
}

#[test]
fn keepalive_outstanding_skips_the_next() {
    let mut h = H::new(&cfg());
    h.send(&nat_reg("lee"), "198.51.100.7:40000", 1, T0);
    h.timers(T0 + 30_000);
    assert_eq!(h.sink.sent.len(), 1);
    h.timers(T0 + 60_000);
    assert_eq!(h.sink.sent.len(), 1, "one still outstanding");
    assert_eq!(h.r.counts().keepalives_skipped, 1);
    let token = h.sink.sent[0].3;
    h.r.on_keepalive_result(token, true, T0 + 61_000);
    h.timers(T0 + 90_000);
    assert_eq!(h.sink.sent.len(), 2);
}

#[test]
fn lookup_list_filters_force_and_counts() {
    let mut h = H::new(&cfg());
    let users = [
        ("1001", "192.0.2.10:5060", 1, "Yealink T46"),
        ("1002", "192.0.2.11:5060", 1, "Yealink T46"),
        ("2001", "198.51.100.20:5060", 2, "Grandstream"),
    ];
    for (u, src, acct, ua) in users {
        let c = format!("<sip:{u}@{src}>");
        let cs = [c.as_str()];
        let reg = Reg {
            via: src,
            ua: Some(ua),
            ..Reg::new(u, &cs)
        };
        assert_eq!(h.send(&reg.text(), src, acct, T0).status, 200);
    }
    // One with a short expiry: Expiring at once (remaining <= 60 s).
    let c = ["<sip:3001@192.0.2.30:5060>;expires=60"];
    h.send(
        &Reg {
            via: "192.0.2.30:5060",
            ..Reg::new("3001", &c)
        }
        .text(),
        "192.0.2.30:5060",
        3,
        T0,
    );
    let all = Page {
        offset: 0,
        limit: 100,
    };
    let list = |h: &H, f: ListFilter| -> Vec<String> {
        let mut v: Vec<String> =
            h.r.list(&f, all, T0 + 1)
                .rows
                .iter()
                .map(|r| String::from_utf8_lossy(r.aor).into_owned())
                .collect();
        v.sort();
        v
    };
    assert_eq!(list(&h, ListFilter::default()).len(), 4);
    assert_eq!(
        list(
            &h,
            ListFilter {
                number: Some(b"100"),
                ..Default::default()
            }
        ),
        vec!["1001@example.com", "1002@example.com"]
    );
    assert_eq!(
        list(
            &h,
            ListFilter {
                ip: Some(IpFilter::Net("198.51.100.0".parse().unwrap(), 24)),
                ..Default::default()
            }
        ),
        vec!["2001@example.com"]
    );
    assert_eq!(
        list(
            &h,
            ListFilter {
                ip: Some(IpFilter::Addr("192.0.2.11".parse().unwrap())),
                ..Default::default()
            }
        ),
        vec!["1002@example.com"]
    );
    assert_eq!(
        list(
            &h,
            ListFilter {
                account: Some(1),
                ..Default::default()
            }
        )
        .len(),
        2
    );
    assert_eq!(
        list(
            &h,
            ListFilter {
                status: Some(Status::Expiring),
                ..Default::default()
            }
        ),
        vec!["3001@example.com"]
    );
    assert_eq!(
        list(
            &h,
            ListFilter {
                status: Some(Status::Registered),
                ..Default::default()
            }
        )
        .len(),
        3
    );
    // 10 % rule: a 3600 s binding is Expiring from 360 s before its end.
    let f = ListFilter {
        number: Some(b"1001"),
        ..Default::default()
    };
    let st = |h: &H, now| h.r.list(&f, all, now).rows[0].status;
    assert_eq!(st(&h, T0 + 3_240_000 - 1), Status::Registered);
    assert_eq!(st(&h, T0 + 3_240_000), Status::Expiring);
    // Paging.
    let p = h.r.list(
        &ListFilter::default(),
        Page {
            offset: 1,
            limit: 2,
        },
        T0 + 1,
    );
    assert_eq!((p.total, p.rows.len()), (4, 2));
    // User-Agent counts.
    let mut uas: Vec<(String, u32)> =
        h.r.user_agent_counts()
            .map(|(n, c)| (String::from_utf8_lossy(n).into_owned(), c))
            .collect();
    uas.sort();
    assert_eq!(
        uas,
        vec![
            ("".to_string(), 1),
            ("Grandstream".to_string(), 1),
            ("Yealink T46".to_string(), 2)
        ]
    );
    // Force unregister by AOR and by id.
    assert_eq!(
        h.r.force_unregister(Target::Aor(b"1001@example.com"), T0 + 2),
        1
    );
    let id = h.r.lookup(b"2001@example.com", T0).next().unwrap().id;
    assert_eq!(h.r.force_unregister(Target::Binding(id), T0 + 2), 1);
    assert_eq!(
        h.r.force_unregister(Target::Binding(id), T0 + 2),
        0,
        "stale id"
    );
    assert!(h.r.binding(id, T0 + 2).is_none());
    let c = h.r.counts();
    assert_eq!((c.bindings_live, c.forced, c.added), (2, 2, 4));
    let f = ListFilter {
        status: Some(Status::Unregistered),
        ..Default::default()
    };
    let p = h.r.list(&f, all, T0 + 3);
    assert_eq!(p.total, 2);
    assert!(p
        .rows
        .iter()
        .all(|r| r.removal == Some(RemovalReason::Forced)));
    // Grandstream has no live binding any more.
    assert!(h.r.user_agent_counts().all(|(n, _)| n != b"Grandstream"));
}

#[test]
fn aor_key_and_owner() {
    let mut p = Parser::new();
    let mut key = Vec::new();
    let mk = |to: &str| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@b>;tag=1\r\nTo: {to}\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n"
        )
    };
    let t = mk("<sips:Al%69ce@EXAMPLE.com:5061;transport=tls>");
    aor_key(&p.parse(t.as_bytes()).unwrap(), &mut key).unwrap();
    assert_eq!(key, b"Alice@example.com");
    let t = mk("tel:+15551234");
    assert!(aor_key(&p.parse(t.as_bytes()).unwrap(), &mut key).is_err());
    let t = mk("<sip:example.com>");
    aor_key(&p.parse(t.as_bytes()).unwrap(), &mut key).unwrap();
    assert_eq!(key, b"@example.com");
    for shards in [1, 2, 7] {
        let o = owner_of_aor(b"alice@example.com", shards);
        assert!(o < shards);
        assert_eq!(o, owner_of_aor(b"alice@example.com", shards));
    }
    let spread: HashSet<usize> = (0..100)
        .map(|k| owner_of_aor(format!("u{k}@x").as_bytes(), 4))
        .collect();
    assert_eq!(spread.len(), 4);
}

#[test]
fn expiry_spread_is_bounded_and_deterministic() {
    let mut c = Config::default(); // spread 5 %
    c.registrar.expiry_spread_percent = 5;
    let run = || {
        let mut h = H::new(&c);
        let mut v = Vec::new();
        for k in 0..200 {
            let user = format!("s{k}");
            let cs = ["<sip:x@192.0.2.10:5060>"];
            h.reg(&Reg::new(&user, &cs), PHONE, T0);
            let key = format!("{user}@example.com");
            v.push(h.r.lookup(key.as_bytes(), T0).next().unwrap().expires_at - T0);
        }
        v
    };
    let a = run();
    assert_eq!(a, run(), "same seed, same spread");
    assert!(a.iter().all(|&e| (3_420_000..=3_600_000).contains(&e)));
    let distinct: HashSet<_> = a.iter().collect();
    assert!(distinct.len() > 150, "spread out: {}", distinct.len());
}

fn rfc4475(name: &str) -> Option<Vec<u8>> {
    let path = format!(
        "{}/../shared/testdata/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "missing {path}: {e}"
            );
            eprintln!("skipping: {path} missing");
            None
        }
    }
}

#[test]
fn rfc4475_register_cases() {
    let src = "192.0.2.99:5060";
    // escnull: two distinct contacts for the AOR with an escaped NUL.
    if let Some(d) = rfc4475("escnull") {
        let mut h = H::new(&cfg());
        let o = h.send(&d, src, 1, T0);
        assert_eq!((o.status, o.added), (200, 2), "{}", h.resp());
        let got = h.contacts(b"null-\0-null@example.com", T0);
        assert_eq!(
            got,
            vec!["sip:%00%00@host5.example.com", "sip:%00@host5.example.com"]
        );
    }
    // cparam01: `unknownparam` is a contact-param: not stored, not returned.
    if let Some(d) = rfc4475("cparam01") {
        let mut h = H::new(&cfg());
        assert_eq!(h.send(&d, src, 1, T0).status, 200);
        assert_eq!(
            h.contacts(b"watson@example.com", T0),
            vec!["sip:+19725552222@gw1.example.net"]
        );
        assert!(!h.header("Contact").unwrap().contains("unknownparam"));
    }
    // cparam02: a URI parameter: kept.
    if let Some(d) = rfc4475("cparam02") {
        let mut h = H::new(&cfg());
        assert_eq!(h.send(&d, src, 1, T0).status, 200);
        assert_eq!(
            h.contacts(b"watson@example.com", T0),
            vec!["sip:+19725552222@gw1.example.net;unknownparam"]
        );
        assert!(h
            .header("Contact")
            .unwrap()
            .starts_with("<sip:+19725552222@gw1.example.net;unknownparam>;expires="));
    }
    // regescrt: the escaped Route header stays in the stored contact.
    if let Some(d) = rfc4475("regescrt") {
        let mut h = H::new(&cfg());
        assert_eq!(h.send(&d, src, 1, T0).status, 200);
        assert_eq!(
            h.contacts(b"user@example.com", T0),
            vec!["sip:user@example.com?Route=%3Csip:sip.example.com%3E"]
        );
    }
    // unksm2: To is not SIP: aor_key errors, on_register answers 400.
    if let Some(d) = rfc4475("unksm2") {
        let mut p = Parser::new();
        let m = p.parse(&d).unwrap();
        let mut key = Vec::new();
        assert!(aor_key(&m, &mut key).is_err());
        let mut h = H::new(&cfg());
        let o = h.send(&d, src, 1, T0);
        assert_eq!((o.status, o.refused), (400, Some(FailReason::BadRequest)));
        assert_eq!(h.r.counts().bindings_live, 0);
    }
}

#[test]
fn mass_expiry_is_processed_in_bounded_chunks() {
    let n = 200_000usize;
    let mut h = H::new(&cfg());
    h.r.reserve(n);
    for k in 0..n {
        let user = format!("m{k}");
        let cs = ["<sip:m@192.0.2.10:5060>"];
        let o = h.reg(
            &Reg {
                expires: Some(120),
                ..Reg::new(&user, &cs)
            },
            PHONE,
            T0,
        );
        assert_eq!(o.added, 1);
    }
    assert_eq!(h.r.counts().bindings_live, n as u64);
    let exp = T0 + 120_000;
    assert_eq!(
        h.r.next_deadline(),
        Some(exp & !63),
        "the block of the expiry"
    );
    h.timers(exp - 1);
    assert_eq!(h.r.counts().bindings_live, n as u64, "none early");
    let mut calls = 0;
    let mut now = exp;
    loop {
        let done = h.timers(now);
        assert!(done <= EVENTS_PER_CALL, "per-call bound");
        calls += 1;
        match h.r.next_deadline() {
            Some(d) if d <= now => {} // more work: come back at once
            _ => break,
        }
        now += 1; // the runtime's clock moves a little between calls
    }
    assert_eq!(h.r.counts().bindings_live, 0);
    assert_eq!(h.r.counts().expired, n as u64);
    assert!(calls >= n / EVENTS_PER_CALL, "{calls} calls");
    assert_eq!(h.r.next_deadline(), None);
    assert_eq!(
        h.r.counts().refused[reason_index(FailReason::BadRequest)],
        0
    );
}

#[test]
fn churn_matches_a_model() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut h = H::new(&policy(3, false));
    let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut x: u64 = 12345;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for (cseq, step) in (2..).zip(0..20_000u64) {
        let now = T0 + step;
        let user = format!("c{}", rnd(700));
        let host = rnd(4);
        let contact = format!("sip:{user}@h{host}.example.net:5060");
        let key = format!("{user}@example.com");
        match rnd(10) {
            0 => {
                h.r.force_unregister(Target::Aor(key.as_bytes()), now);
                model.remove(&key);
            }
            1..=3 => {
                let c = format!("<{contact}>;expires=0");
                let cs = [c.as_str()];
                let o = h.reg(
                    &Reg {
                        cseq,
                        ..Reg::new(&user, &cs)
                    },
                    PHONE,
                    now,
                );
                assert_eq!(o.status, 200);
                if let Some(s) = model.get_mut(&key) {
                    s.remove(&contact);
                    if s.is_empty() {
                        model.remove(&key);
                    }
                }
            }
            _ => {
                // Host case differs at random: still the same contact (RFC 3261 §19.1.4).
                let shown = if rnd(2) == 0 {
                    contact.clone()
                } else {
                    contact.replace("example.net", "EXAMPLE.Net")
                };
                let c = format!("<{shown}>");
                let cs = [c.as_str()];
                let o = h.reg(
                    &Reg {
                        cseq,
                        ..Reg::new(&user, &cs)
                    },
                    PHONE,
                    now,
                );
                let s = model.entry(key.clone()).or_default();
                if s.contains(&contact) || s.len() < 3 {
                    assert_eq!(o.status, 200, "step {step}");
                    s.insert(contact.clone());
                } else {
                    assert_eq!(o.status, 403, "step {step}");
                }
            }
        }
        if step % 997 == 0 {
            let live: usize = model.values().map(BTreeSet::len).sum();
            assert_eq!(h.r.counts().bindings_live as usize, live);
            for (k, s) in &model {
                let got: BTreeSet<String> = h
                    .contacts(k.as_bytes(), now)
                    .into_iter()
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                assert_eq!(&got, s, "{k} at step {step}");
            }
        }
    }
    assert!(!model.is_empty());
}

#[test]
fn contact_matching_follows_rfc3261_uri_comparison() {
    let mut h = H::new(&cfg());
    let key = b"uri@example.com";
    let a = ["<sip:Uri@Host.Example.COM:5060;transport=udp>"];
    h.reg(&Reg::new("uri", &a), PHONE, T0);
    // Host case, escapes in the user and extra unknown params: same contact (refresh).
    let b = ["<sip:%55ri@host.example.com:5060;transport=UDP;foo=bar>"];
    let o = h.reg(
        &Reg {
            cseq: 2,
            ..Reg::new("uri", &b)
        },
        PHONE,
        T0 + 1,
    );
    assert_eq!((o.added, o.refreshed), (0, 1));
    // User case differs, or the port is implicit, or transport is missing: different contacts.
    for (k, c) in [
        "<sip:uri@host.example.com:5060;transport=udp>",
        "<sip:Uri@host.example.com;transport=udp>",
        "<sip:Uri@host.example.com:5060>",
    ]
    .iter()
    .enumerate()
    {
        let cs = [*c];
        let o = h.reg(
            &Reg {
                cseq: 3 + k as u32,
                ..Reg::new("uri", &cs)
            },
            PHONE,
            T0 + 2,
        );
        assert_eq!(o.added, 1, "{c}");
    }
    assert_eq!(h.r.lookup(key, T0 + 2).count(), 4);
    // The stored text is the latest one received.
    assert!(h
        .contacts(key, T0 + 2)
        .contains(&"sip:%55ri@host.example.com:5060;transport=UDP;foo=bar".to_string()));
}

#[test]
fn ok_carries_a_date_from_the_wall_clock_given_at_start() {
    let mut h = H::new(&cfg());
    let contacts = ["<sip:alice@192.0.2.10:5060>"];
    // Without a wall clock: no Date (the core has no clock of its own).
    let o = h.reg(&Reg::new("alice", &contacts), PHONE, T0);
    assert_eq!(o.status, 200);
    assert_eq!(h.header("Date"), None);
    // Unix time 784 111 777 000 ms (RFC 7231's example date) at Millis 0: the 200 at T0 + 999
    // ms is 1 000 999 ms later: 08:49:37 + 1 000.999 s, seconds rounded down.
    h.r.set_wall_clock(784_111_777_000);
    let mut refresh = Reg::new("alice", &contacts);
    refresh.cseq = 2;
    let o = h.reg(&refresh, PHONE, T0 + 999);
    assert_eq!(o.status, 200);
    assert_eq!(
        h.header("Date").as_deref(),
        Some("Sun, 06 Nov 1994 09:06:17 GMT"),
        "{}",
        h.resp()
    );
    assert!(h.header("Contact").is_some());
    // A query (no Contact) and a removal also get a Date; refusals do not need one.
    refresh.cseq = 3;
    refresh.contacts = &[];
    h.reg(&refresh, PHONE, T0 + 60_000);
    assert_eq!(
        h.header("Date").as_deref(),
        Some("Sun, 06 Nov 1994 09:07:17 GMT")
    );
}

/// Keepalive Call-IDs are chosen so that the kernel's steering program (`sip::steer`) delivers
/// their answers to the shard that sent them.
#[test]
fn keepalive_call_ids_steer_answers_to_the_owner_shard() {
    let mut h = H::new(&cfg());
    h.r.set_shard_count(4);
    for k in 0..20 {
        let o = h.send(&nat_reg(&format!("s{k}")), "198.51.100.7:40000", 1, T0);
        assert_eq!(o.status, 200);
    }
    let mut now = T0;
    while let Some(d) = h.r.next_deadline() {
        if d > T0 + 30_000 {
            break;
        }
        now = now.max(d);
        h.timers(now);
    }
    assert_eq!(h.sink.sent.len(), 20);
    let mut p = Parser::new();
    let mut call_ids = HashSet::new();
    for (_, req, _, _, _) in &h.sink.sent {
        let m = p.parse(req).unwrap();
        let cid = m.call_id().unwrap().to_vec();
        assert_eq!(sipshard::sip::steer::steer_shard(&cid, 4), 0);
        call_ids.insert(cid);
    }
    assert_eq!(call_ids.len(), 20, "Call-IDs stay unique");
}
