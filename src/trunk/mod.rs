//! Outbound registration: sipshard registering itself, as a user agent, to upstream carriers
//! (spec section 3, the VOS3000 `SS_SIP_USER_AGENT_*` parameters).
//!
//! Owns: the sans-IO state machine of one registration per `[[trunks]]` entry
//! ([`OutboundRegistration`]): the REGISTER requests it sends (Call-ID, tags, CSeq, Contact,
//! Expires, digest answers, Privacy, User-Agent), when it refreshes or retries, and its status.
//! Must not: open sockets, start threads, read the clock, take locks, draw randomness or resolve
//! names. Time comes in as [`Millis`]; Call-ID, tags, cnonces and branches are derived from a
//! caller-supplied seed; requests and timers go out through a [`TrunkSink`].
//!
//! **Driven by** `dispatch::trunks`: each registration belongs to shard `shard_by_hash(name)`,
//! each `send_register` runs as a non-INVITE client transaction (the resend schedule of the
//! `transaction` layer) towards [`OutboundRegistration::destination`], resolved by the runtime
//! at start and before each attempt (`server::resolve_trunks`, the `resolver` thread; no SRV);
//! responses go to `on_response`, the
//! transaction's give-up to `on_timeout`, one wheel timer per registration to `on_timer`, and
//! shutdown calls `stop`.
//!
//! [`InboundTrunks`] recognises requests an upstream sends to our registered contacts (by source
//! IP and Request-URI user), for call routing; `dispatch::Trunks::match_inbound` serves it on
//! every shard.
//!
//! # Driving it
//! ```
//! use sipshard::config::{SipParams, TrunkConfig};
//! use sipshard::sip::Parser;
//! use sipshard::timer::Millis;
//! use sipshard::trunk::{Local, OutboundRegistration, State, TrunkSink};
//!
//! #[derive(Default)]
//! struct Out { sent: Vec<Vec<u8>>, timer: Option<Millis> }
//! impl TrunkSink for Out {
//!     fn send_register(&mut self, request: &[u8]) { self.sent.push(request.to_vec()) }
//!     fn set_timer(&mut self, at: Millis) { self.timer = Some(at) }
//!     fn cancel_timer(&mut self) { self.timer = None }
//! }
//!
//! let mut cfg = TrunkConfig::new("carrier", "192.0.2.1", "4420", &SipParams::default());
//! cfg.expire_s = Some(300);
//! let local = Local { sent_by: "198.51.100.7:5060".into(), shard: 0, seed: 42,
//!                     send_unregister: true, user_agent: "sipshard".into(),
//!                     spread_slot: None };
//! let mut reg = OutboundRegistration::new(cfg, local);
//! let mut out = Out::default();
//! reg.start(0, &mut out);                  // first attempt after the spread offset
//! let first = out.timer.unwrap();
//! reg.on_timer(first, &mut out);            // sends REGISTER, Expires: 300
//! let req = String::from_utf8(out.sent.pop().unwrap()).unwrap();
//! assert!(req.contains("Expires: 300\r\n"));
//! // The caller's client transaction delivers the final response:
//! let call_id = req.split("Call-ID: ").nth(1).unwrap().split("\r\n").next().unwrap();
//! let ok = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKx\r\n\
//!     From: <sip:4420@192.0.2.1>;tag=a\r\nTo: <sip:4420@192.0.2.1>;tag=b\r\nCall-ID: {call_id}\r\n\
//!     CSeq: 1 REGISTER\r\nContact: <sip:4420@198.51.100.7:5060>;expires=300\r\nContent-Length: 0\r\n\r\n");
//! let mut parser = Parser::new();
//! let msg = parser.parse(ok.as_bytes()).unwrap();
//! reg.on_response(&msg, first + 20, &mut out);
//! assert_eq!(reg.state(), State::Registered);
//! assert_eq!(out.timer, Some(first + 20 + 150_000)); // refresh at 50 %
//! ```

mod inbound;
mod registration;

pub use inbound::{InboundMatch, InboundTrunks, MatchedBy};

pub use registration::{
    Local, OutboundRegistration, State, Status, TrunkSink, AUTO_REQUEST_S, REFRESH_MARGIN_MS,
    SPREAD_STEP_MS,
};

/// Re-exported for callers: milliseconds of the caller's clock.
pub use crate::timer::Millis;
