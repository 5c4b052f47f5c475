//! Fuzz target: parse + validate + every lazy accessor + response/CANCEL building.
//! Also checks that a reused parser gives the same verdict as a fresh one (state fully reset).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use sipshard::sip::{
    parse_auth, write_cancel, write_response, HeaderKind, Parser, ResponseOptions,
};

thread_local! {
    static REUSED: RefCell<(Parser, Vec<u8>, Vec<u8>)> =
        RefCell::new((Parser::new(), Vec::new(), Vec::new()));
}

fuzz_target!(|data: &[u8]| {
    let mut fresh = Parser::new();
    let fresh_verdict = fresh.parse(data).map(|m| (m.validate(), m.can_respond(), m.framed_len()));
    REUSED.with(|cell| {
        let (parser, out, scratch) = &mut *cell.borrow_mut();
        let Ok(m) = parser.parse(data) else {
            assert!(fresh_verdict.is_err());
            return;
        };
        let verdict = m.validate();
        assert_eq!(Ok((verdict, m.can_respond(), m.framed_len())), fresh_verdict);
        assert!(m.framed_len() <= data.len());
        for c in m.contacts() {
            let _ = c.expires();
            let _ = c.q();
            let _ = c.uri().user_unescaped(scratch);
        }
        for kind in [HeaderKind::Route, HeaderKind::RecordRoute] {
            for r in m.name_addrs(kind).flatten() {
                let _ = r.uri().param("lr");
            }
        }
        let _ = m.tokens(HeaderKind::Require).count();
        for kind in [HeaderKind::Authorization, HeaderKind::ProxyAuthenticate] {
            if let Some(v) = m.header(kind) {
                let _ = parse_auth(v);
            }
        }
        if m.can_respond() {
            let opts = ResponseOptions {
                source: Some("192.0.2.1:5060".parse().unwrap()),
                to_tag: Some(b"fz"),
                ..Default::default()
            };
            write_response(out, &m, 400, "Bad Request", &opts);
            assert!(out.len() <= data.len() * 2 + 256);
            // What we build from a valid request must parse and validate again.
            if verdict.is_ok() {
                let mut p2 = Parser::new();
                let r = p2.parse(out).expect("built response parses");
                assert_eq!(r.validate(), Ok(()), "{}", String::from_utf8_lossy(out));
            }
            let _ = write_cancel(out, &m);
        }
    });
});
