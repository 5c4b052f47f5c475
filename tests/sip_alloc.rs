//! The hot path allocates nothing in steady state: parse + validate + the eager accessors +
//! building a response into a reused buffer, counted by a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sipshard::sip::{write_response, HeaderKind, Parser, ResponseOptions};

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const MSGS: &[&[u8]] = &[
    b"INVITE sip:+15551234567@gw1.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK-524287-1---c1a2b3c4d5e6f708;rport\r\n\
Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:+15557654321@198.51.100.23:5060;transport=udp>\r\n\
To: <sip:+15551234567@gw1.example.net>\r\n\
From: \"Caller Name\" <sip:+15557654321@pbx.example.com>;tag=8f2b3c41\r\n\
Call-ID: 7d9a1c0e5b3f4a2d8e6c1b0a9f8e7d6c@198.51.100.23\r\n\
CSeq: 1 INVITE\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n",
    b"REGISTER sip:registrar.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@registrar.example.com>\r\n\
From: <sip:1001@registrar.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1827 REGISTER\r\n\
Contact: <sip:1001@192.0.2.44:5062>;expires=3600, <sip:1001@[2001:db8::1]>;q=0.5\r\n\
Authorization: Digest username=\"1001\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"x\"\r\n\
Content-Length: 0\r\n\
\r\n",
];

#[test]
fn steady_state_parse_and_build_do_not_allocate() {
    let mut p = Parser::new();
    let mut out = Vec::with_capacity(4096);
    let src = "203.0.113.1:5060".parse().unwrap();
    let work = |p: &mut Parser, out: &mut Vec<u8>| {
        let mut n = 0usize;
        for msg in MSGS {
            let m = p.parse(msg).unwrap();
            assert_eq!(m.validate(), Ok(()));
            n += m
                .vias()
                .map(|v| v.branch().map_or(0, <[u8]>::len))
                .sum::<usize>();
            n += m
                .contacts()
                .map(|c| c.expires().unwrap_or(0) as usize)
                .sum::<usize>();
            n += m.tokens(HeaderKind::Supported).count();
            n += m.name_addrs(HeaderKind::Route).flatten().count();
            if let Some(a) = m.header(HeaderKind::Authorization) {
                n += sipshard::sip::parse_auth(a)
                    .unwrap()
                    .digest
                    .nonce
                    .map_or(0, <[u8]>::len);
            }
            let opts = ResponseOptions {
                source: Some(src),
                to_tag: Some(b"t"),
                ..Default::default()
            };
            write_response(out, &m, 200, "OK", &opts);
            n += out.len();
        }
        n
    };
    // Warm up: vectors grow to their steady size.
    let expected = work(&mut p, &mut out);
    ON.with(|o| o.set(true));
    let again = work(&mut p, &mut out);
    ON.with(|o| o.set(false));
    assert_eq!(again, expected);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations in steady state");
}
