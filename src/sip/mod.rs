//! SIP messages: zero-copy parser, URIs, header values, validator, builder, digest auth headers.
//!
//! Owns: turning a datagram into a [`Message`] (borrowed views, no copies), the role-independent
//! validity verdict, and writing responses/requests/ACK/CANCEL into reused buffers.
//! Must not: import any other sipshard module; allocate per message in steady state; panic or
//! do more than linear work on any input; know about transactions, registrations or routing.
//!
//! # Using it
//! ```
//! use sipshard::sip::{Parser, Invalid, ResponseOptions, write_response, Method};
//! let mut parser = Parser::new(); // one per shard thread; reuse it
//! let mut out = Vec::new();       // reused response buffer
//! let data = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport\r\n\
//! From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\
//! Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! let src: std::net::SocketAddr = "203.0.113.9:40000".parse().unwrap();
//! let Ok(msg) = parser.parse(data) else { return }; // Err: not SIP at all, drop
//! match msg.validate() {
//!     Ok(()) => {
//!         assert_eq!(msg.method(), Some(Method::Options));
//!         let opts = ResponseOptions { source: Some(src), to_tag: Some(b"t1"), ..Default::default() };
//!         write_response(&mut out, &msg, 200, "OK", &opts);
//!         assert!(out.starts_with(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;received=203.0.113.9;rport=40000\r\n"));
//!     }
//!     Err(Invalid::Reject(r)) if msg.can_respond() => {
//!         write_response(&mut out, &msg, r.status, "Bad Request", &ResponseOptions::default());
//!     }
//!     Err(_) => {} // drop: invalid response, or no usable Via
//! }
//! ```
//!
//! * [`Parser::parse`] → [`Message`]`<'a>` borrowing the datagram and the parser. It is lenient:
//!   any text that looks like a request or response parses; problems are recorded and reported
//!   by [`Message::validate`]. [`ParseError`] only for non-SIP input (drop it).
//! * Decoded eagerly: start line, every header line ([`Message::headers`], kinds with compact
//!   forms normalised), Via ([`Via`]: transport, sent-by, branch, received, rport, maddr, ttl),
//!   From/To/Contact ([`NameAddr`]: display name, [`Uri`], tag, header params), Call-ID, CSeq,
//!   Max-Forwards, Expires, Content-Length, Content-Type, body framing.
//! * Parsed on demand: Route/Record-Route ([`Message::name_addrs`]), token lists
//!   ([`Message::tokens`] for Require, Proxy-Require, Supported, Accept...), auth headers
//!   ([`parse_auth`] on [`Message::header`]`(HeaderKind::Authorization)`), URI unescaping
//!   ([`Uri::user_unescaped`], [`unescape_into`]).
//! * Role-dependent answers (416, 420, 483, 415, 406, 405) are the caller's: see
//!   [`Message::request_uri_scheme`], [`Message::tokens`], [`Message::max_forwards`],
//!   [`Message::content_type`].
//! * Proxies that edit a request: [`Header::line`] gives each header line's byte range (CRLF
//!   included) and [`Message::body_offset`] where the body starts, for splicing.
//! * Builders: [`write_response`], [`write_request`], [`write_ack`], [`write_cancel`] clear and
//!   fill a caller-owned `Vec<u8>`.
//!
//! UDP framing: with Content-Length the body is exactly that many bytes (bytes after it are
//! ignored; fewer bytes → 400); without it, the body runs to the end of the datagram.

mod auth;
mod build;
pub mod digest;
mod fmt;
mod kinds;
mod parse;
#[cfg(test)]
mod parse_diff_tests;
pub mod steer;
mod text;
mod uri;

pub use auth::{parse_auth, AuthError, AuthValue, Digest};
pub use build::{
    http_date, push_header_line, write_ack, write_cancel, write_request, write_response,
    write_response_with_lines, BuildError, ExtraHeaders, RequestSpec, ResponseOptions,
};
pub use fmt::{
    hex16, host_is_ip, host_is_ip_text, parse_ip_literal, push_clean, push_dec, push_ip, DateCache,
    Ipv4Text,
};
pub use kinds::{HeaderKind, Method};
pub use parse::{
    CSeq, Header, Invalid, Message, NameAddr, ParamIter, ParseError, Parser, Rejection, Rport, Via,
};
pub use text::push_u32;
pub use uri::{unescape_into, unescaped, EscapeError, Scheme, Uri};
