//! Builder behaviour: Via handling in responses (RFC 3261 §18.2.1, RFC 3581), To-tags,
//! extra headers, ACK for non-2xx (§17.1.1.3) and CANCEL (§9.1).

use std::net::SocketAddr;

use sipshard::sip::{
    write_ack, write_cancel, write_response, HeaderKind, Method, Parser, ResponseOptions, Rport,
};

const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKaaa;rport;received=1.1.1.1\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKbbb,\r\n SIP/2.0/TCP 192.0.2.3;branch=z9hG4bKccc\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@example.com>;tag=ftag\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@example.com\r\n\
CSeq: 42 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn src(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn response_copies_vias_and_fills_received_rport() {
    let mut p = Parser::new();
    let m = p.parse(REQ).unwrap();
    let mut out = Vec::new();
    let extra: &[(&str, &[u8])] = &[("Allow", b"INVITE, ACK"), ("Server", b"sipshard")];
    let opts = ResponseOptions {
        source: Some(src("203.0.113.1:33333")),
        to_tag: Some(b"ttt"),
        headers: extra,
        body: b"hello",
    };
    write_response(&mut out, &m, 486, "Busy Here", &opts);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
    assert!(
        text.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKaaa;received=203.0.113.1;rport=33333\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKbbb\r\n\
Via: SIP/2.0/TCP 192.0.2.3;branch=z9hG4bKccc\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("To: <sip:bob@example.com>;tag=ttt\r\n"));
    assert!(
        text.contains("Allow: INVITE, ACK\r\nServer: sipshard\r\nContent-Length: 5\r\n\r\nhello")
    );
    assert!(!text.contains("Route:"), "responses carry no Route");
    let mut p2 = Parser::new();
    let r = p2.parse(&out).unwrap();
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(r.vias().len(), 3);
    assert_eq!(r.top_via().unwrap().rport(), Rport::Value(33333));
    assert_eq!(r.cseq().unwrap().method, Method::Invite);
    assert_eq!(r.body(), b"hello");
}

#[test]
fn received_only_when_source_differs_and_no_rport() {
    let req = b"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let mut p = Parser::new();
    let m = p.parse(req).unwrap();
    let mut out = Vec::new();
    let same = ResponseOptions {
        source: Some(src("192.0.2.9:5060")),
        ..Default::default()
    };
    write_response(&mut out, &m, 200, "OK", &same);
    let want: &[u8] = b"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\r\nFrom";
    assert!(out.windows(want.len()).any(|w| w == want));
    let other = ResponseOptions {
        source: Some(src("[2001:db8::1]:5060")),
        ..Default::default()
    };
    write_response(&mut out, &m, 200, "OK", &other);
    let mut p2 = Parser::new();
    let r = p2.parse(&out).unwrap();
    assert_eq!(r.top_via().unwrap().received(), Some(&b"2001:db8::1"[..]));
    assert_eq!(r.top_via().unwrap().rport(), Rport::Absent);
    // No To-tag given: none added; 100 Trying never gets one.
    assert_eq!(r.to().unwrap().tag(), None);
    let trying = ResponseOptions {
        to_tag: Some(b"zz"),
        ..Default::default()
    };
    write_response(&mut out, &m, 100, "Trying", &trying);
    assert_eq!(p2.parse(&out).unwrap().to().unwrap().tag(), None);
}

#[test]
fn existing_to_tag_is_kept() {
    let req = b"BYE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>;tag=old\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    let mut p = Parser::new();
    let m = p.parse(req).unwrap();
    let mut out = Vec::new();
    let opts = ResponseOptions {
        to_tag: Some(b"new"),
        ..Default::default()
    };
    write_response(&mut out, &m, 200, "OK", &opts);
    let mut p2 = Parser::new();
    assert_eq!(
        p2.parse(&out).unwrap().to().unwrap().tag(),
        Some(&b"old"[..])
    );
}

#[test]
fn ack_for_non_2xx_and_cancel() {
    let mut p = Parser::new();
    let inv = p.parse(REQ).unwrap();
    let resp_text =
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKaaa\r\n\
From: Alice <sip:alice@example.com>;tag=ftag\r\nTo: <sip:bob@example.com>;tag=callee\r\n\
Call-ID: call-1@example.com\r\nCSeq: 42 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut p2 = Parser::new();
    let resp = p2.parse(resp_text).unwrap();
    let mut out = Vec::new();
    write_ack(&mut out, &inv, &resp).unwrap();
    let mut p3 = Parser::new();
    let ack = p3.parse(&out).unwrap();
    assert_eq!(ack.validate(), Ok(()));
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(
        ack.request_uri().unwrap().as_bytes(),
        b"sip:bob@example.com"
    );
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bKaaa"[..]));
    assert_eq!(
        ack.cseq().map(|c| (c.seq, c.method)),
        Some((42, Method::Ack))
    );
    assert_eq!(ack.to().unwrap().tag(), Some(&b"callee"[..]));
    assert_eq!(ack.from().unwrap().tag(), Some(&b"ftag"[..]));
    assert_eq!(ack.call_id(), Some(&b"call-1@example.com"[..]));
    let routes: Vec<_> = ack.header_values(HeaderKind::Route).collect();
    assert_eq!(
        routes,
        vec![&b"<sip:p1.example.com;lr>"[..], b"<sip:p2.example.com;lr>"]
    );

    write_cancel(&mut out, &inv).unwrap();
    let c = p3.parse(&out).unwrap();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_eq!(
        c.cseq().map(|c| (c.seq, c.method)),
        Some((42, Method::Cancel))
    );
    assert_eq!(c.to().unwrap().tag(), None);
    assert_eq!(c.top_via().unwrap().branch(), Some(&b"z9hG4bKaaa"[..]));
    assert_eq!(c.header_values(HeaderKind::Route).count(), 2);

    // ACK only for a final non-2xx response; CANCEL only for an INVITE.
    let ok_text = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKaaa\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 42 INVITE\r\n\r\n";
    let ok = p2.parse(ok_text).unwrap();
    assert!(write_ack(&mut out, &inv, &ok).is_err());
    let bye = p3.parse(b"BYE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n").unwrap();
    assert!(write_cancel(&mut out, &bye).is_err());
}

#[test]
fn response_to_a_request_missing_headers() {
    // insuf-like: no From/To/Call-ID; a 400 is still buildable from the Via.
    let req = b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nl: 0\r\n\r\n";
    let mut p = Parser::new();
    let m = p.parse(req).unwrap();
    assert!(m.can_respond());
    assert!(m.validate().is_err());
    let mut out = Vec::new();
    write_response(
        &mut out,
        &m,
        400,
        "Missing Call-ID",
        &ResponseOptions::default(),
    );
    assert_eq!(
        out,
        b"SIP/2.0 400 Missing Call-ID\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n\
CSeq: 193942 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
}
