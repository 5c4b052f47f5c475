//! The dispatcher driving `[[trunks]]` registrations, sans-IO: REGISTERs as client
//! transactions, responses and timeouts routed by token, shutdown waiting for the unregister.

use std::net::SocketAddr;

use sipshard::config::{Config, SipParams, TrunkConfig};
use sipshard::dispatch::{is_trunk_token, Core, Dispatcher, Mail, Outbox, Shared};
use sipshard::registrar::bindings::BindingId;
use sipshard::timer::Millis;
use sipshard::trunk::State;

#[derive(Default)]
struct Out(Vec<(SocketAddr, Vec<u8>)>);
impl Outbox<Mail> for Out {
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]) {
        self.0.push((dst, data.to_vec()));
    }
    fn mail(&mut self, _shard: usize, _mail: Mail) {
        panic!("one shard: no mail");
    }
}

const CARRIER: &str = "192.0.2.10:5070";

fn dispatcher() -> Dispatcher {
    let mut config = Config::default();
    let mut t = TrunkConfig::new("carrier", "192.0.2.10", "4420", &SipParams::default());
    t.port = 5070;
    t.expire_s = Some(120);
    config.trunks.push(t);
    let shared = Shared::new(&config, [7; 32], 99).unwrap();
    let mut d = Dispatcher::new(0, 1, &config, &shared, 0);
    assert_eq!(
        d.next_deadline(),
        None,
        "nothing before the local address is known"
    );
    d.set_local_addr("198.51.100.7:5060".parse().unwrap());
    d
}

fn counter(d: &Dispatcher, name: &str) -> u64 {
    d.counters()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

fn state(d: &Dispatcher) -> State {
    d.trunks().registrations().next().unwrap().state()
}

/// Run timers until something is sent (or `limit` passes); returns the time.
fn run_until_sent(d: &mut Dispatcher, out: &mut Out, mut now: Millis, limit: Millis) -> Millis {
    let before = out.0.len();
    while out.0.len() == before {
        let next = d.next_deadline().expect("a deadline");
        assert!(next <= limit, "nothing sent by {limit}");
        now = now.max(next);
        d.on_timers(now, out);
    }
    now
}

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {req}"))
}

fn answer(req: &[u8], status: &str, extra: &str) -> Vec<u8> {
    let req = std::str::from_utf8(req).unwrap();
    format!(
        "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag=srv\r\n{}\r\n{}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "Via:"),
        header(req, "From:"),
        header(req, "To:"),
        header(req, "Call-ID:"),
        header(req, "CSeq:"),
    )
    .into_bytes()
}

#[test]
fn registers_refreshes_and_unregisters_on_shutdown() {
    let mut d = dispatcher();
    let mut out = Out::default();
    assert_eq!(d.next_deadline(), Some(0), "start is due at once");
    let now = run_until_sent(&mut d, &mut out, 0, 60_000);
    let (dst, req) = out.0.pop().unwrap();
    assert_eq!(dst, CARRIER.parse().unwrap());
    assert!(req.starts_with(b"REGISTER sip:192.0.2.10:5070 SIP/2.0\r\n"));
    assert_eq!(counter(&d, "tx_created_client"), 1);
    assert_eq!(counter(&d, "trunk_registers_sent"), 1);

    let ok = answer(
        &req,
        "200 OK",
        "Contact: <sip:4420@198.51.100.7:5060>;expires=120\r\n",
    );
    d.on_datagram(now + 30, CARRIER.parse().unwrap(), &ok, &mut out);
    assert_eq!(state(&d), State::Registered);
    assert_eq!(counter(&d, "trunks_registered"), 1);
    assert_eq!(counter(&d, "trunk_registrations"), 1);
    assert_eq!(counter(&d, "drop_stray_response"), 0);

    // The refresh comes from the trunk's wheel timer (at half the granted 120 s).
    let refresh_at = run_until_sent(&mut d, &mut out, now + 30, now + 30 + 61_000);
    assert!(refresh_at >= now + 30 + 60_000, "refreshed at {refresh_at}");
    let (_, refresh) = out.0.pop().unwrap();
    let ok = answer(
        &refresh,
        "200 OK",
        "Contact: <sip:4420@198.51.100.7:5060>;expires=120\r\n",
    );
    d.on_datagram(refresh_at + 10, CARRIER.parse().unwrap(), &ok, &mut out);
    assert_eq!(
        counter(&d, "trunk_registrations"),
        1,
        "a refresh is no new registration"
    );

    // Shutdown: Expires: 0, and not done until its answer.
    let t = refresh_at + 1_000;
    assert!(!d.on_shutdown(t, &mut out));
    let (_, unreg) = out.0.pop().unwrap();
    assert!(std::str::from_utf8(&unreg)
        .unwrap()
        .contains("Expires: 0\r\n"));
    assert!(!d.on_shutdown(t + 5, &mut out));
    assert!(out.0.is_empty(), "stop is called once");
    d.on_datagram(
        t + 20,
        CARRIER.parse().unwrap(),
        &answer(&unreg, "200 OK", ""),
        &mut out,
    );
    assert!(d.on_shutdown(t + 25, &mut out));
    assert_eq!(state(&d), State::Stopped);
    assert_eq!(counter(&d, "trunks_registered"), 0);
    assert_eq!(counter(&d, "trunk_registers_sent"), 3);
}

#[test]
fn a_transaction_timeout_reaches_the_trunk_and_it_retries() {
    let mut d = dispatcher();
    let mut out = Out::default();
    let first = run_until_sent(&mut d, &mut out, 0, 60_000);
    out.0.clear();
    // No answer: the transaction layer resends, then reports the timeout (64·T1).
    let mut now = first;
    while state(&d) != State::Failed {
        now = d.next_deadline().expect("a deadline");
        assert!(now <= first + 40_000, "no timeout by {now}");
        d.on_timers(now, &mut out);
    }
    assert!(out
        .0
        .iter()
        .all(|(dst, _)| *dst == CARRIER.parse().unwrap()));
    assert!(
        out.0.len() >= 5,
        "resent by the transaction layer: {}",
        out.0.len()
    );
    assert_eq!(counter(&d, "tx_timeout_no_response"), 1);
    assert_eq!(counter(&d, "trunks_retrying"), 1);
    assert_eq!(counter(&d, "trunk_failures"), 1);
    assert_eq!(counter(&d, "keepalives_failed"), 0, "not the registrar's");
    // The retry comes after the retry delay (60 s by default).
    out.0.clear();
    let retry = run_until_sent(&mut d, &mut out, now, now + 61_000);
    assert!(retry >= now + 59_000, "retried at {retry}");
    assert_eq!(counter(&d, "trunk_registers_sent"), 2);
    // Shutdown while the retry is in flight: unregister at once, done after its answer.
    out.0.clear();
    assert!(!d.on_shutdown(retry + 1, &mut out));
    let (_, unreg) = out.0.pop().unwrap();
    d.on_datagram(
        retry + 9,
        CARRIER.parse().unwrap(),
        &answer(&unreg, "200 OK", ""),
        &mut out,
    );
    assert!(d.on_shutdown(retry + 10, &mut out));
}

#[test]
fn shutdown_before_the_first_attempt_sends_nothing() {
    let mut d = dispatcher();
    let mut out = Out::default();
    d.on_timers(0, &mut out);
    assert!(d.on_shutdown(1, &mut out));
    assert!(out.0.is_empty());
    assert_eq!(state(&d), State::Stopped);
}

#[test]
fn registrar_tokens_never_look_like_trunk_tokens() {
    for generation in [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX] {
        let id = BindingId {
            index: u32::MAX,
            generation,
        };
        assert!(!is_trunk_token(id.to_u64()), "generation {generation:#x}");
    }
}

/// The first REGISTER of a one-trunk dispatcher built with `config`/`shared` after
/// `set_local_addr(local)`.
fn first_register(config: &Config, shared: &Shared, local: &str) -> String {
    let mut d = Dispatcher::new(0, 1, config, shared, 0);
    d.set_local_addr(local.parse().unwrap());
    let mut out = Out::default();
    run_until_sent(&mut d, &mut out, 0, 60_000);
    String::from_utf8(out.0.pop().unwrap().1).unwrap()
}

fn one_trunk_config() -> Config {
    let mut config = Config::default();
    let mut t = TrunkConfig::new("carrier", "192.0.2.10", "4420", &SipParams::default());
    t.port = 5070;
    config.trunks.push(t);
    config
}

#[test]
fn via_and_contact_carry_a_usable_address() {
    let config = one_trunk_config();
    let mut shared = Shared::new(&config, [7; 32], 99).unwrap();

    // A specific listener: its address.
    let req = first_register(&config, &shared, "198.51.100.7:5062");
    assert!(req.contains("Via: SIP/2.0/UDP 198.51.100.7:5062;"), "{req}");
    assert!(
        req.contains("Contact: <sip:4420@198.51.100.7:5062>"),
        "{req}"
    );

    // 0.0.0.0: the runtime's local IP toward the destination, with the bound port.
    shared.trunk_local_ips = vec![Some("203.0.113.5".parse().unwrap())];
    let req = first_register(&config, &shared, "0.0.0.0:5062");
    assert!(req.contains("Via: SIP/2.0/UDP 203.0.113.5:5062;"), "{req}");
    assert!(
        req.contains("Contact: <sip:4420@203.0.113.5:5062>"),
        "{req}"
    );
    // ... but only for an unspecified listener.
    let req = first_register(&config, &shared, "198.51.100.7:5062");
    assert!(req.contains("Via: SIP/2.0/UDP 198.51.100.7:5062;"), "{req}");

    // advertised_address wins over both; without a port it takes the bound one.
    let mut adv = config.clone();
    adv.server.advertised_address = Some(("sbc.example.net".into(), None));
    let req = first_register(&adv, &shared, "0.0.0.0:5062");
    assert!(
        req.contains("Via: SIP/2.0/UDP sbc.example.net:5062;"),
        "{req}"
    );
    assert!(
        req.contains("Contact: <sip:4420@sbc.example.net:5062>"),
        "{req}"
    );
    adv.server.advertised_address = Some(("[2001:db8::1]".into(), Some(5080)));
    let req = first_register(&adv, &shared, "198.51.100.7:5062");
    assert!(
        req.contains("Via: SIP/2.0/UDP [2001:db8::1]:5080;"),
        "{req}"
    );
    assert!(
        req.contains("Contact: <sip:4420@[2001:db8::1]:5080>"),
        "{req}"
    );
}

#[test]
fn the_grant_for_an_advertised_contact_is_recognised() {
    let mut config = one_trunk_config();
    config.server.advertised_address = Some(("sbc.example.net".into(), Some(5080)));
    let shared = Shared::new(&config, [7; 32], 99).unwrap();
    let mut d = Dispatcher::new(0, 1, &config, &shared, 0);
    d.set_local_addr("127.0.0.1:5062".parse().unwrap());
    let mut out = Out::default();
    let now = run_until_sent(&mut d, &mut out, 0, 60_000);
    let (_, req) = out.0.pop().unwrap();
    let ok = answer(
        &req,
        "200 OK",
        "Contact: <sip:4420@other.example>;expires=30, <sip:4420@sbc.example.net:5080>;expires=90\r\nExpires: 60\r\n",
    );
    d.on_datagram(now + 10, CARRIER.parse().unwrap(), &ok, &mut out);
    let reg = d.trunks().registrations().next().unwrap();
    assert_eq!(reg.state(), State::Registered);
    assert_eq!(
        reg.status().effective_expiry_s,
        Some(90),
        "our contact's expires="
    );
}

#[test]
fn every_shard_recognises_an_invite_from_any_trunk() {
    use sipshard::sip::Parser;
    use sipshard::trunk::MatchedBy;
    let config = one_trunk_config();
    let shared = Shared::new(&config, [7; 32], 99).unwrap();
    let invite = "INVITE sip:4420@198.51.100.7:5062 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKin1\r\nMax-Forwards: 70\r\n\
        From: <sip:caller@192.0.2.10>;tag=x\r\nTo: <sip:4420@198.51.100.7>\r\n\
        Call-ID: in1@192.0.2.10\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut parser = Parser::new();
    let msg = parser.parse(invite.as_bytes()).unwrap();
    let uri = msg.request_uri().unwrap();
    for shard in 0..4 {
        let d = Dispatcher::new(shard, 4, &config, &shared, 0);
        let owns = d.trunks().registrations().count();
        let hit = d
            .trunks()
            .match_inbound(&uri, "192.0.2.10:5060".parse().unwrap())
            .unwrap_or_else(|| panic!("shard {shard} (owns {owns})"));
        assert_eq!((hit.index, hit.name), (0, "carrier"));
        assert_eq!(hit.by, MatchedBy::ContactUser);
        assert!(d
            .trunks()
            .match_inbound(&uri, "192.0.2.11:5070".parse().unwrap())
            .is_none());
    }
}

#[test]
fn a_re_resolved_destination_takes_the_next_register_and_notes_ask_for_it() {
    use sipshard::dispatch::{
        AdminQuery, AdminReply, ResolveNote, ResolveSender, TrunkDestination,
    };
    use sipshard::sip::Parser;
    const OLD: &str = "192.0.2.10:5070";
    const NEW: &str = "192.0.2.77:5070";
    let mut config = Config::default();
    let mut t = TrunkConfig::new("carrier", "carrier.example", "4420", &SipParams::default());
    t.port = 5070;
    t.expire_s = Some(120);
    config.trunks.push(t);
    let mut shared = Shared::new(&config, [7; 32], 99).unwrap();
    shared.trunk_destinations = vec![Some(OLD.parse().unwrap())];
    shared.trunk_local_ips = vec![Some("203.0.113.5".parse().unwrap())];
    let (notes_tx, notes) = crossbeam_channel::bounded(16);
    shared.trunk_resolve = ResolveSender::new(notes_tx);
    let mut d = Dispatcher::new(0, 1, &config, &shared, 0);
    d.set_local_addr("0.0.0.0:5062".parse().unwrap());
    let mut out = Out::default();

    // The first attempt is scheduled: the runtime is asked to re-resolve before it.
    d.on_timers(0, &mut out);
    let first_at = d
        .trunks()
        .registrations()
        .next()
        .unwrap()
        .next_action_at()
        .unwrap();
    assert_eq!(
        notes.try_recv(),
        Ok(ResolveNote {
            index: 0,
            attempt_at: first_at
        })
    );
    let now = run_until_sent(&mut d, &mut out, 0, 60_000);
    let (dst, req) = out.0.pop().unwrap();
    assert_eq!(dst, OLD.parse().unwrap());
    assert!(notes.try_recv().is_err(), "no note while the attempt runs");

    // The name now resolves elsewhere (and the kernel routes there from another IP).
    d.on_mail(
        now + 1,
        Mail::TrunkDestination(Box::new(TrunkDestination {
            index: 0,
            addr: NEW.parse().unwrap(),
            local_ip: Some("203.0.113.6".parse().unwrap()),
        })),
        &mut out,
    );
    assert_eq!(
        d.trunks().destination_of("carrier"),
        Some(NEW.parse().unwrap())
    );
    // The transaction in flight keeps its destination: its resends still go to the old one.
    let resend_at = run_until_sent(&mut d, &mut out, now + 1, now + 1_000);
    let (dst, resent) = out.0.pop().expect("a resend");
    assert_eq!(dst, OLD.parse().unwrap());
    assert_eq!(resent, req);
    let ok = answer(
        &req,
        "200 OK",
        "Contact: <sip:4420@203.0.113.5:5062>;expires=120\r\n",
    );
    d.on_datagram(resend_at + 10, OLD.parse().unwrap(), &ok, &mut out);
    assert_eq!(state(&d), State::Registered);
    let refresh_at = d
        .trunks()
        .registrations()
        .next()
        .unwrap()
        .next_action_at()
        .unwrap();
    assert_eq!(
        notes.try_recv(),
        Ok(ResolveNote {
            index: 0,
            attempt_at: refresh_at
        }),
        "the refresh is scheduled: re-resolve before it"
    );

    // The refresh goes to the new address, with the new local IP in Via and Contact.
    let at = run_until_sent(&mut d, &mut out, resend_at + 10, refresh_at);
    assert_eq!(at, refresh_at);
    let (dst, refresh) = out.0.pop().unwrap();
    assert_eq!(dst, NEW.parse().unwrap());
    let refresh = String::from_utf8(refresh).unwrap();
    assert!(
        refresh.contains("Via: SIP/2.0/UDP 203.0.113.6:5062;"),
        "{refresh}"
    );
    assert!(
        refresh.contains("Contact: <sip:4420@203.0.113.6:5062>"),
        "{refresh}"
    );
    assert!(header(&refresh, "Call-ID:") == header(std::str::from_utf8(&req).unwrap(), "Call-ID:"));
    let ok = answer(
        refresh.as_bytes(),
        "200 OK",
        "Contact: <sip:4420@203.0.113.6:5062>;expires=120\r\n",
    );
    d.on_datagram(at + 10, NEW.parse().unwrap(), &ok, &mut out);
    assert_eq!(state(&d), State::Registered);
    assert!(notes.try_recv().is_ok());

    // Inbound calls from the new IP are this trunk's; from the old IP no longer.
    let invite = "INVITE sip:4420@203.0.113.6:5062 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.77:5070;branch=z9hG4bKin1\r\nMax-Forwards: 70\r\n\
        From: <sip:caller@192.0.2.77>;tag=x\r\nTo: <sip:4420@203.0.113.6>\r\n\
        Call-ID: in1@192.0.2.77\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut parser = Parser::new();
    let msg = parser.parse(invite.as_bytes()).unwrap();
    let uri = msg.request_uri().unwrap();
    assert_eq!(
        d.trunks()
            .match_inbound(&uri, NEW.parse().unwrap())
            .map(|m| m.index),
        Some(0)
    );
    assert!(d
        .trunks()
        .match_inbound(&uri, OLD.parse().unwrap())
        .is_none());

    // A forced attempt asks for a re-resolution now.
    let (reply, replies) = crossbeam_channel::bounded(1);
    let t = at + 1_000;
    d.on_mail(
        t,
        Mail::Admin {
            query: Box::new(AdminQuery::Reregister {
                name: "carrier".into(),
            }),
            reply,
        },
        &mut out,
    );
    assert!(matches!(
        replies.try_recv(),
        Ok(AdminReply::Reregistered(true))
    ));
    assert_eq!(
        notes.try_recv(),
        Ok(ResolveNote {
            index: 0,
            attempt_at: t
        })
    );
    assert_eq!(out.0.pop().unwrap().0, NEW.parse().unwrap());
}
