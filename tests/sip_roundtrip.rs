//! Property test: build a request (and a response to it) field by field, parse it back, and get
//! the same fields.

use proptest::prelude::*;
use sipshard::sip::{
    write_request, write_response, Method, Parser, RequestSpec, ResponseOptions, Rport,
};

#[derive(Debug, Clone)]
struct Req {
    method: Vec<u8>,
    user: String,
    host: String,
    port: Option<u16>,
    uri_params: Vec<(String, Option<String>)>,
    branch: String,
    rport: bool,
    sent_by: String,
    from_display: Option<String>,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    expires: Option<u32>,
    contacts: Vec<(String, u32)>,
    body: Vec<u8>,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    let method = prop_oneof![
        Just(b"INVITE".to_vec()),
        Just(b"REGISTER".to_vec()),
        Just(b"OPTIONS".to_vec()),
        Just(b"BYE".to_vec()),
        Just(b"SUBSCRIBE".to_vec()),
        "[A-Z][A-Za-z0-9.!%*_+`'~-]{0,12}".prop_map(|s| s.into_bytes()),
    ];
    let params = prop::collection::vec(
        (
            "[a-z][a-z0-9-]{0,6}",
            prop::option::of("[a-zA-Z0-9.-]{1,8}"),
        ),
        0..4,
    );
    (
        (
            method,
            "[a-zA-Z0-9+_.-]{1,12}",
            "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){1,2}",
            prop::option::of(1u16..),
            params,
            "z9hG4bK[a-zA-Z0-9.-]{1,20}",
            any::<bool>(),
            "(([0-9]{1,3}\\.){3}[0-9]{1,3}|[a-z]{1,8}\\.example\\.net)(:[0-9]{1,5})?",
        ),
        (
            prop::option::of("[a-zA-Z][a-zA-Z \"\\\\]{0,12}"),
            "[a-zA-Z0-9]{1,16}",
            prop::option::of("[a-zA-Z0-9]{1,16}"),
            "[a-zA-Z0-9.!%*_+`'~-]{1,24}(@[a-z0-9.]{1,12})?",
            any::<u32>(),
            any::<u8>(),
            prop::option::of(any::<u32>()),
            prop::collection::vec(("[a-z0-9]{1,8}", any::<u32>()), 0..3),
            prop::collection::vec(any::<u8>(), 0..200),
        ),
    )
        .prop_map(
            |(
                (method, user, host, port, uri_params, branch, rport, sent_by),
                (
                    from_display,
                    from_tag,
                    to_tag,
                    call_id,
                    cseq,
                    max_forwards,
                    expires,
                    contacts,
                    body,
                ),
            )| Req {
                method,
                user,
                host,
                port,
                uri_params,
                branch,
                rport,
                sent_by,
                from_display,
                from_tag,
                to_tag,
                call_id,
                cseq,
                max_forwards,
                expires,
                contacts,
                body,
            },
        )
        // A sent-by port above 65535 is not a valid message; keep the generator honest.
        .prop_filter("valid port", |r| {
            r.sent_by
                .rsplit_once(':')
                .map_or(true, |(_, p)| p.parse::<u32>().is_ok_and(|p| p <= 65535))
        })
}

fn uri_of(r: &Req) -> String {
    let mut u = format!("sip:{}@{}", r.user, r.host);
    if let Some(p) = r.port {
        u += &format!(":{p}");
    }
    for (n, v) in &r.uri_params {
        u += &format!(";{n}");
        if let Some(v) = v {
            u += &format!("={v}");
        }
    }
    u
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn build_parse_round_trip(r in req_strategy(), status in 100u16..700, src_port in 1u16..) {
        let uri = uri_of(&r);
        let contact_vals: Vec<String> = r
            .contacts
            .iter()
            .map(|(u, e)| format!("<sip:{u}@{}>;expires={e}", r.host))
            .collect();
        let extra: Vec<(&str, &[u8])> =
            contact_vals.iter().map(|c| ("Contact", c.as_bytes())).collect();
        let spec = RequestSpec {
            method: Method::from_bytes(&r.method),
            uri: uri.as_bytes(),
            transport: "UDP",
            sent_by: r.sent_by.as_bytes(),
            branch: r.branch.as_bytes(),
            rport: r.rport,
            max_forwards: r.max_forwards,
            from_display: r.from_display.as_deref().map(str::as_bytes),
            from_uri: b"sip:alice@atlanta.example.com",
            from_tag: r.from_tag.as_bytes(),
            to_display: None,
            to_uri: uri.as_bytes(),
            to_tag: r.to_tag.as_deref().map(str::as_bytes),
            call_id: r.call_id.as_bytes(),
            cseq: r.cseq,
            contact: Some(b"sip:alice@192.0.2.1:5060"),
            expires: r.expires,
            headers: &extra,
            body: &r.body,
        };
        let mut out = Vec::new();
        write_request(&mut out, &spec);
        let mut p = Parser::new();
        let m = p.parse(&out).expect("parses");
        prop_assert_eq!(m.validate(), Ok(()));
        prop_assert_eq!(m.method(), Some(Method::from_bytes(&r.method)));
        let ru = m.request_uri().expect("R-URI");
        prop_assert_eq!(ru.as_bytes(), uri.as_bytes());
        prop_assert_eq!(ru.user(), Some(r.user.as_bytes()));
        prop_assert_eq!(ru.host(), r.host.as_bytes());
        prop_assert_eq!(ru.port(), r.port);
        for (n, v) in &r.uri_params {
            // The first parameter of that name is what a lookup returns.
            let first = r.uri_params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_deref().map(str::as_bytes));
            prop_assert_eq!(ru.param(n), first);
            let _ = v;
        }
        let via = m.top_via().expect("via");
        prop_assert_eq!(m.vias().len(), 1);
        prop_assert_eq!(via.branch(), Some(r.branch.as_bytes()));
        prop_assert_eq!(via.rport(), if r.rport { Rport::Requested } else { Rport::Absent });
        prop_assert_eq!(via.transport(), b"UDP");
        let (h, port) = match r.sent_by.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().unwrap())),
            None => (r.sent_by.as_str(), None),
        };
        prop_assert_eq!(via.host(), h.as_bytes());
        prop_assert_eq!(via.port(), port);
        let from = m.from().expect("from");
        prop_assert_eq!(from.tag(), Some(r.from_tag.as_bytes()));
        prop_assert_eq!(from.uri().as_bytes(), b"sip:alice@atlanta.example.com");
        if let Some(d) = &r.from_display {
            let esc = d.replace('\\', "\\\\").replace('"', "\\\"");
            let quoted = format!("\"{esc}\"");
            prop_assert_eq!(from.display_name(), Some(quoted.as_bytes()));
        } else {
            prop_assert_eq!(from.display_name(), None);
        }
        let to = m.to().expect("to");
        prop_assert_eq!(to.tag(), r.to_tag.as_deref().map(str::as_bytes));
        prop_assert_eq!(to.uri().as_bytes(), uri.as_bytes());
        prop_assert_eq!(m.call_id(), Some(r.call_id.as_bytes()));
        let cseq = m.cseq().expect("cseq");
        prop_assert_eq!(cseq.seq, r.cseq);
        prop_assert_eq!(cseq.method.as_bytes(), &r.method[..]);
        prop_assert_eq!(m.max_forwards(), Some(r.max_forwards));
        prop_assert_eq!(m.expires(), r.expires);
        prop_assert_eq!(m.contacts().len(), 1 + r.contacts.len());
        for (c, (u, e)) in m.contacts().skip(1).zip(&r.contacts) {
            prop_assert_eq!(c.uri().user(), Some(u.as_bytes()));
            prop_assert_eq!(c.expires(), Some(*e));
        }
        prop_assert_eq!(m.body(), &r.body[..]);
        prop_assert_eq!(m.content_length(), Some(r.body.len() as u32));

        // And a response to it.
        let src = std::net::SocketAddr::from(([203, 0, 113, 5], src_port));
        let opts = ResponseOptions { source: Some(src), to_tag: Some(b"srvtag"), ..Default::default() };
        let mut resp = Vec::new();
        write_response(&mut resp, &m, status, "Whatever", &opts);
        let mut p2 = Parser::new();
        let rm = p2.parse(&resp).expect("response parses");
        prop_assert_eq!(rm.validate(), Ok(()));
        prop_assert_eq!(rm.status(), Some(status));
        prop_assert_eq!(rm.call_id(), Some(r.call_id.as_bytes()));
        prop_assert_eq!(rm.cseq(), m.cseq());
        let rv = rm.top_via().expect("via");
        prop_assert_eq!(rv.branch(), Some(r.branch.as_bytes()));
        prop_assert_eq!(rv.received(), Some(&b"203.0.113.5"[..]).filter(|_| r.rport || h != "203.0.113.5"));
        prop_assert_eq!(rv.rport(), if r.rport { Rport::Value(src_port) } else { Rport::Absent });
        let want_tag = match (&r.to_tag, status > 100) {
            (Some(t), _) => Some(t.as_bytes()),
            (None, true) => Some(&b"srvtag"[..]),
            (None, false) => None,
        };
        prop_assert_eq!(rm.to().expect("to").tag(), want_tag);
        prop_assert_eq!(rm.from().expect("from").tag(), Some(r.from_tag.as_bytes()));
        prop_assert_eq!(rm.body(), b"");
    }
}
