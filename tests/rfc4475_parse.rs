//! RFC 4475 torture messages: every `.dat` of the shared corpus gets the verdict of its INDEX.md
//! row at the parser + validator level, plus the specific facts the INDEX names.

use std::path::PathBuf;

use sipshard::sip::{
    write_response, HeaderKind, Invalid, Message, Method, Parser, ResponseOptions, Scheme,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Accept,
    Reject(u16),
    Drop,
}
use Expect::*;

const VERDICTS: &[(&str, Expect)] = &[
    // 3.1.1 valid
    ("wsinv", Accept),
    ("intmeth", Accept),
    ("esc01", Accept),
    ("escnull", Accept),
    ("esc02", Accept),
    ("lwsdisp", Accept),
    ("longreq", Accept),
    ("dblreq", Accept),
    ("semiuri", Accept),
    ("transports", Accept),
    ("mpart01", Accept),
    ("unreason", Accept),
    ("noreason", Accept),
    // 3.1.2 invalid
    ("badinv01", Reject(400)),
    ("clerr", Reject(400)),
    ("ncl", Reject(400)),
    ("scalar02", Reject(400)),
    ("scalarlg", Drop),
    ("quotbal", Reject(400)),
    ("ltgtruri", Reject(400)),
    ("lwsruri", Reject(400)),
    ("lwsstart", Reject(400)),
    ("trws", Reject(400)),
    ("escruri", Reject(400)),
    // Date is not used for processing, so it is ignored (the RFC's other allowed outcome).
    ("baddate", Accept),
    ("regbadct", Reject(400)),
    ("badaspec", Reject(400)),
    ("baddn", Reject(400)),
    ("badvers", Reject(505)),
    ("mismatch01", Reject(400)),
    ("mismatch02", Reject(501)),
    ("bigcode", Drop),
    // 3.2, 3.3, 3.4: accepted at parse level, role-dependent answers are the caller's.
    ("badbranch", Accept),
    ("insuf", Reject(400)),
    ("unkscm", Accept),
    ("novelsc", Accept),
    ("unksm2", Accept),
    ("bext01", Accept),
    ("invut", Accept),
    ("regaut01", Accept),
    ("multi01", Reject(400)),
    ("mcl01", Reject(400)),
    ("bcast", Accept),
    ("zeromf", Accept),
    ("cparam01", Accept),
    ("cparam02", Accept),
    ("regescrt", Accept),
    ("sdp01", Accept),
    ("inv2543", Accept),
    // No SIP version in the request line: malformed.
    ("test", Reject(400)),
];

fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/rfc4475");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("RFC 4475 corpus missing at {}", dir.display());
    }
    eprintln!(
        "notice: RFC 4475 corpus not found at {}; skipping",
        dir.display()
    );
    None
}

fn load(name: &str) -> Option<Vec<u8>> {
    let dir = corpus_dir()?;
    Some(std::fs::read(dir.join(format!("{name}.dat"))).expect("read corpus file"))
}

fn verdict(msg: &Message) -> Expect {
    match msg.validate() {
        Ok(()) => Accept,
        Err(Invalid::Reject(r)) => Reject(r.status),
        Err(Invalid::Drop(_)) => Drop,
    }
}

#[test]
fn every_corpus_file_gets_its_verdict() {
    let Some(dir) = corpus_dir() else { return };
    let mut parser = Parser::new();
    let mut out = Vec::new();
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("dat") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let want = VERDICTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name}.dat has no verdict in this test"));
        let data = std::fs::read(&path).expect("read");
        seen += 1;
        let got = match parser.parse(&data) {
            Ok(msg) => {
                let v = verdict(&msg);
                if let Reject(status) = v {
                    if msg.can_respond() {
                        write_response(
                            &mut out,
                            &msg,
                            status,
                            "Error",
                            &ResponseOptions::default(),
                        );
                        assert!(out.starts_with(format!("SIP/2.0 {status} ").as_bytes()));
                    }
                }
                v
            }
            Err(e) => {
                eprintln!("{name}: not SIP: {e:?}");
                Drop
            }
        };
        if got != want {
            let reason = parser.parse(&data).map(|m| format!("{:?}", m.validate()));
            failures.push(format!("{name}: want {want:?}, got {got:?} ({reason:?})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(seen, VERDICTS.len(), "corpus files vs verdict table");
}

#[test]
fn rejected_requests_can_be_answered() {
    // Every rejected request in the corpus except test.dat (no Via) has a usable top Via.
    let mut p = Parser::new();
    for (name, v) in VERDICTS {
        let Reject(_) = v else { continue };
        let Some(data) = load(name) else { return };
        let msg = p.parse(&data).expect("parses");
        assert_eq!(msg.can_respond(), *name != "test", "{name}");
    }
}

#[test]
fn esc01_ruri_user_unescapes() {
    let Some(d) = load("esc01") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    let mut out = Vec::new();
    m.request_uri().unwrap().user_unescaped(&mut out).unwrap();
    assert_eq!(out, b"sips:user@example.com");
    assert_eq!(m.request_uri().unwrap().host(), b"example.net");
    let c = m.contacts().next().unwrap();
    assert_eq!(c.uri().param("name"), Some(Some(&b"v%61lue%25%34%31"[..])));
    m.to().unwrap().uri().user_unescaped(&mut out).unwrap();
    assert_eq!(out, b"user");
}

#[test]
fn escnull_two_distinct_contacts() {
    let Some(d) = load("escnull") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    let mut users = Vec::new();
    for c in m.contacts() {
        let mut u = Vec::new();
        c.uri().user_unescaped(&mut u).unwrap();
        users.push(u);
    }
    assert_eq!(users, vec![vec![0u8], vec![0u8, 0u8]]);
    let mut to = Vec::new();
    m.to().unwrap().uri().user_unescaped(&mut to).unwrap();
    assert_eq!(to, b"null-\0-null");
}

#[test]
fn esc02_method_is_extension_with_two_contacts() {
    let Some(d) = load("esc02") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    assert_eq!(m.method(), Some(Method::Extension(b"RE%47IST%45R")));
    assert_ne!(m.method(), Some(Method::Register));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header_by_name("C%6Fntact"),
        Some(&b"<sip:alias2@host2.example.com>"[..])
    );
    assert_eq!(m.to().unwrap().display_name(), Some(&br#""%Z%45""#[..]));
}

#[test]
fn semiuri_user_part() {
    let Some(d) = load("semiuri") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    let u = m.request_uri().unwrap();
    let mut out = Vec::new();
    u.user_unescaped(&mut out).unwrap();
    assert_eq!(out, b"user;par=u@example.net");
    assert_eq!(u.host(), b"example.com");
    assert_eq!(u.params(), b"");
    let accept: Vec<&[u8]> = m.tokens(HeaderKind::Accept).collect();
    assert_eq!(accept.len(), 6);
    assert_eq!(accept[5], b"message/sipfrag");
}

#[test]
fn dblreq_ignores_trailing_bytes() {
    let Some(d) = load("dblreq") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.body(), b"");
    assert_eq!(m.content_length(), Some(0));
    assert!(m.framed_len() < d.len());
    assert_eq!(
        m.call_id(),
        Some(&b"dblreq.0ha0isndaksdj99sdfafnl3lk233412"[..])
    );
}

#[test]
fn mpart01_body_is_exactly_content_length() {
    let Some(d) = load("mpart01") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    assert_eq!(m.content_length(), Some(553));
    assert_eq!(m.body().len(), 553);
    assert!(m.body().contains(&0u8));
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(
        m.top_via().unwrap().rport(),
        sipshard::sip::Rport::Requested
    );
}

#[test]
fn noreason_and_unreason() {
    let Some(d) = load("noreason") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(&b""[..]));
    let Some(d) = load("unreason") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().starts_with(b"= 2**3 * 5**2 "));
}

#[test]
fn contact_params_vs_uri_params() {
    let mut p = Parser::new();
    let Some(d) = load("cparam01") else { return };
    let m = p.parse(&d).unwrap();
    let c = m.contacts().next().unwrap();
    assert!(!c.has_angle_brackets());
    assert_eq!(c.param("unknownparam"), Some(None));
    assert_eq!(c.uri().param("unknownparam"), None);
    assert_eq!(c.uri().as_bytes(), b"sip:+19725552222@gw1.example.net");

    let Some(d) = load("cparam02") else { return };
    let m = p.parse(&d).unwrap();
    let c = m.contacts().next().unwrap();
    assert_eq!(c.param("unknownparam"), None);
    assert_eq!(c.uri().param("unknownparam"), Some(None));
    assert_eq!(
        c.uri().as_bytes(),
        b"sip:+19725552222@gw1.example.net;unknownparam"
    );

    let Some(d) = load("regescrt") else { return };
    let m = p.parse(&d).unwrap();
    let c = m.contacts().next().unwrap();
    assert_eq!(
        c.uri().headers(),
        Some(&b"Route=%3Csip:sip.example.com%3E"[..])
    );
    assert_eq!(
        c.uri().as_bytes(),
        b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
}

#[test]
fn wsinv_folding_and_compact_forms() {
    let Some(d) = load("wsinv") else { return };
    let mut p = Parser::new();
    let m = p.parse(&d).unwrap();
    assert_eq!(
        m.cseq().map(|c| (c.seq, c.method)),
        Some((9, Method::Invite))
    );
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.to().unwrap().tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.from().unwrap().tag(), Some(&b"98asjd8"[..]));
    let vias: Vec<_> = m
        .vias()
        .map(|v| (v.transport(), v.host(), v.branch()))
        .collect();
    assert_eq!(
        vias,
        vec![
            (&b"UDP"[..], &b"192.0.2.2"[..], Some(&b"390skdjuw"[..])),
            (b"TCP", b"spindle.example.com", Some(b"z9hG4bK9ikj8")),
            (b"UDP", b"192.168.255.111", Some(b"z9hG4bK30239")),
        ]
    );
    let c = m.contacts().next().unwrap();
    assert_eq!(c.q(), Some(330));
    assert_eq!(c.param("newparam"), Some(Some(&b"newvalue"[..])));
    assert_eq!(m.body().len(), 150);
    let routes: Vec<_> = m.name_addrs(HeaderKind::Route).collect();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].unwrap().uri().param("lr"), Some(None));
}

#[test]
fn accessors_for_role_dependent_answers() {
    let mut p = Parser::new();
    let Some(d) = load("unkscm") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(m.request_uri_scheme(), Some(Scheme::Other));
    let Some(d) = load("novelsc") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(m.request_uri().unwrap().scheme_bytes(), b"soap.beep");
    let Some(d) = load("bext01") else { return };
    let m = p.parse(&d).unwrap();
    let req: Vec<_> = m.tokens(HeaderKind::Require).collect();
    assert_eq!(
        req,
        vec![&b"nothingSupportsThis"[..], b"nothingSupportsThisEither"]
    );
    let preq: Vec<_> = m.tokens(HeaderKind::ProxyRequire).collect();
    assert_eq!(
        preq,
        vec![&b"noProxiesSupportThis"[..], b"norDoAnyProxiesSupportThis"]
    );
    let Some(d) = load("zeromf") else { return };
    assert_eq!(p.parse(&d).unwrap().max_forwards(), Some(0));
    let Some(d) = load("invut") else { return };
    assert_eq!(
        p.parse(&d).unwrap().content_type(),
        Some(&b"application/unknownformat"[..])
    );
    let Some(d) = load("sdp01") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(
        m.tokens(HeaderKind::Accept).collect::<Vec<_>>(),
        vec![&b"text/nobodyKnowsThis"[..]]
    );
    let Some(d) = load("regaut01") else { return };
    let m = p.parse(&d).unwrap();
    let a = sipshard::sip::parse_auth(m.header(HeaderKind::Authorization).unwrap()).unwrap();
    assert!(!a.is_digest());
    assert_eq!(a.scheme, b"NoOneKnowsThisScheme");
    let Some(d) = load("inv2543") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(m.content_length(), None);
    assert!(m.body().starts_with(b"v=0") && m.body().ends_with(b"RTP/AVP 0\r\n"));
    assert_eq!(m.top_via().unwrap().branch(), None);
    let Some(d) = load("scalar02") else { return };
    let m = p.parse(&d).unwrap();
    assert_eq!(m.max_forwards(), None, "300 is treated as absent");
    assert_eq!(m.expires(), Some(u32::MAX));
    let Some(d) = load("intmeth") else { return };
    let m = p.parse(&d).unwrap();
    assert!(m.method().unwrap().is_extension());
    let u = m.request_uri().unwrap();
    assert_eq!(u.host(), b"example.com");
    assert_eq!(
        u.password(),
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    let Some(d) = load("transports") else { return };
    let m = p.parse(&d).unwrap();
    let t: Vec<_> = m.vias().map(|v| v.transport()).collect();
    assert_eq!(t, vec![&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]);
}
