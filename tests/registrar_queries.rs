//! The registrar's query interface as shard mail, driven from outside the shards through
//! `server::RegistrarClient`: the real server (Dispatcher cores, real sockets) in process,
//! REGISTERs sent over UDP, answers read back with bounded waits (no sleeps).

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{client, recv_text, status_of};
use sipshard::config::Config;
use sipshard::dispatch::{Dispatcher, OwnedListFilter, Shared};
use sipshard::registrar::guard::FailReason;
use sipshard::registrar::Status;
use sipshard::server::{self, RegistrarClient, ServerHandle};

const UA: &str = "queries-ua/2.5";

fn start(shards: usize) -> (ServerHandle, RegistrarClient) {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = {shards}\n\
         [registrar]\nrequire_auth = \"Off\"\nrate_limit_per_source = 0\n"
    );
    let config = Config::from_toml_str(&toml).expect("test config");
    let shared = Shared::new(&config, [9; 32], 1234).expect("shared");
    let core_config = config.clone();
    let srv = server::start(&config.server, move |shard, n| {
        Dispatcher::new(shard, n, &core_config, &shared, 0)
    })
    .expect("server starts");
    let client = srv
        .registrar_client()
        .expect("Dispatcher cores take registrar mail");
    (srv, client)
}

/// Sends one REGISTER for `user` from `sock` and returns the status of its answer.
fn register(sock: &UdpSocket, server: SocketAddr, user: &str, cseq: u32, expires: u32) -> u16 {
    let me = sock.local_addr().unwrap();
    let req = format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-q-{user}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{server}>;tag=f{cseq}\r\nTo: <sip:{user}@{server}>\r\n\
         Call-ID: q-{user}@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
         Expires: {expires}\r\nUser-Agent: {UA}\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), server).unwrap();
    loop {
        let r = recv_text(sock, Duration::from_secs(5)).expect("an answer to the REGISTER");
        // Skip anything else (a keepalive OPTIONS, say).
        if r.starts_with("SIP/2.0 ") && r.contains(&format!("CSeq: {cseq} REGISTER")) {
            return status_of(&r).expect("status");
        }
    }
}

fn users() -> Vec<String> {
    (0..10)
        .map(|i| format!("100{i}"))
        .chain((0..10).map(|i| format!("200{i}")))
        .collect()
}

fn key(user: &str) -> Vec<u8> {
    format!("{user}@127.0.0.1").into_bytes()
}

fn register_all(srv: &ServerHandle) -> UdpSocket {
    let sock = client();
    for (i, u) in users().iter().enumerate() {
        let status = register(&sock, srv.local_addr(), u, i as u32 + 1, 3600);
        assert_eq!(status, 200, "REGISTER of {u}");
    }
    sock
}

fn queries(shards: usize) {
    let (srv, reg) = start(shards);
    assert_eq!(reg.shard_count(), shards);
    let sock = register_all(&srv);
    let me = sock.local_addr().unwrap();

    // Lookup, from the owner shard of each AOR.
    for u in users() {
        let contacts = reg.lookup(&key(&u)).expect("lookup answers");
        assert_eq!(contacts.len(), 1, "one contact for {u}");
        let c = &contacts[0];
        assert_eq!(&c.uri[..], format!("sip:{u}@{me}").as_bytes());
        assert_eq!(c.send_to, me);
        assert_eq!(c.source, me);
        assert!(c.expires_in_s > 3000 && c.expires_in_s <= 3600, "{c:?}");
    }
    assert!(reg.lookup(b"9999@127.0.0.1").unwrap().is_empty());

    // Counts over all shards.
    let counts = reg.counts().unwrap();
    assert_eq!(counts.bindings_live, 20);
    assert_eq!(counts.added, 20);

    // List: the whole set, then a user-prefix subset.
    let live = OwnedListFilter {
        status: Some(Status::Registered),
        ..Default::default()
    };
    let everything = reg.list(&live, 0, 100).unwrap();
    assert_eq!(everything.total, 20);
    assert_eq!(everything.rows.len(), 20);
    let aors: Vec<Vec<u8>> = everything.rows.iter().map(|r| r.aor.to_vec()).collect();
    let mut sorted = aors.clone();
    sorted.sort();
    assert_eq!(aors, sorted, "rows sorted by AOR across shards");
    let mut expected: Vec<Vec<u8>> = users().iter().map(|u| key(u)).collect();
    expected.sort();
    assert_eq!(aors, expected);
    let row = &everything.rows[0];
    assert_eq!(&row.user_agent[..], UA.as_bytes());
    assert_eq!(row.source, me);
    assert_eq!(row.account, None, "no account with require_auth Off");
    assert_eq!(row.status, Status::Registered);

    let hundreds = OwnedListFilter {
        number: Some(b"100"[..].into()),
        ..live.clone()
    };
    let sub = reg.list(&hundreds, 0, 100).unwrap();
    assert_eq!(sub.total, 10);
    let got: Vec<Vec<u8>> = sub.rows.iter().map(|r| r.aor.to_vec()).collect();
    let want: Vec<Vec<u8>> = (0..10).map(|i| key(&format!("100{i}"))).collect();
    assert_eq!(got, want);

    // Paging: disjoint pages that together are the whole set, totals right on each page.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for offset in (0..20).step_by(7) {
        let page = reg.list(&live, offset, 7).unwrap();
        assert_eq!(page.total, 20);
        assert_eq!(page.rows.len(), 7.min(20 - offset));
        seen.extend(page.rows.iter().map(|r| r.aor.to_vec()));
    }
    assert_eq!(
        seen, expected,
        "pages are disjoint and cover the set, in order"
    );
    let past = reg.list(&live, 40, 10).unwrap();
    assert!(past.rows.is_empty());
    assert_eq!(past.total, 20);

    // User agents.
    let uas = reg.user_agents().unwrap();
    assert_eq!(uas, vec![(UA.as_bytes().into(), 20u64)]);

    // Force-unregister one AOR: gone from lookup, counts, list; a tombstone shows it.
    let victim = key("2003");
    assert_eq!(reg.force_unregister(&victim).unwrap(), 1);
    assert!(reg.lookup(&victim).unwrap().is_empty());
    assert_eq!(reg.force_unregister(&victim).unwrap(), 0, "nothing left");
    let counts = reg.counts().unwrap();
    assert_eq!(counts.bindings_live, 19);
    assert_eq!(counts.forced, 1);
    assert_eq!(reg.list(&live, 0, 100).unwrap().total, 19);
    let gone = OwnedListFilter {
        status: Some(Status::Unregistered),
        ..Default::default()
    };
    let tomb = reg.list(&gone, 0, 10).unwrap();
    assert_eq!(tomb.total, 1);
    assert_eq!(tomb.rows[0].aor.to_vec(), victim);
    assert_eq!(
        tomb.rows[0].removal,
        Some(sipshard::registrar::RemovalReason::Forced)
    );
    assert_eq!(reg.user_agents().unwrap()[0].1, 19);

    // Failed log: a REGISTER with too brief an interval is refused and logged.
    let status = register(&sock, srv.local_addr(), "3000", 100, 1);
    assert_eq!(status, 423);
    let failed = reg.failed_log(10).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].reason, FailReason::IntervalTooBrief);
    assert_eq!(&*failed[0].account, "3000");
    assert_eq!(failed[0].source, me);

    // Unknown account name: nothing matches.
    let nobody = OwnedListFilter {
        account: Some("nobody".into()),
        ..Default::default()
    };
    assert_eq!(reg.list(&nobody, 0, 10).unwrap().total, 0);

    let distinct: BTreeSet<_> = reg
        .list(&OwnedListFilter::default(), 0, 100)
        .unwrap()
        .rows
        .iter()
        .map(|r| (r.aor.to_vec(), r.status as u8))
        .collect();
    assert_eq!(distinct.len(), 20, "19 live + 1 unregistered");

    srv.shutdown();
    srv.join().expect("clean stop");
}

#[test]
fn queries_over_two_shards() {
    queries(2);
}

#[test]
fn queries_over_four_shards() {
    queries(4);
}

#[test]
fn a_stopped_server_answers_with_an_error_not_a_hang() {
    let (srv, reg) = start(2);
    let reg = reg.with_timeout(Duration::from_millis(500));
    srv.shutdown();
    srv.join().expect("clean stop");
    assert!(reg.counts().is_err());
    assert!(reg.lookup(b"1000@127.0.0.1").is_err());
}

#[test]
fn scan_walks_every_binding_once_in_small_slices_and_admin_mail_answers() {
    let (srv, reg) = start(3);
    let _sock = register_all(&srv);
    // Slices of 2 rows: every shard is walked from slot 0 until it says it is done.
    let mut seen = Vec::new();
    let mut calls = 0;
    for shard in 0..reg.shard_count() {
        let mut from = 0;
        loop {
            let (rows, next) = reg.scan(shard, from, 2).expect("scan answers");
            calls += 1;
            assert!(rows.len() <= 2, "at most `limit` rows per slice");
            seen.extend(rows.into_iter().map(|r| r.aor.to_vec()));
            match next {
                Some(n) => {
                    assert!(n > from, "the cursor moves on");
                    from = n;
                }
                None => break,
            }
        }
    }
    assert!(calls >= 10, "20 bindings in slices of 2: {calls} calls");
    let unique: BTreeSet<Vec<u8>> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 20, "each binding once");
    let expected: BTreeSet<Vec<u8>> = users().iter().map(|u| key(u)).collect();
    assert_eq!(unique, expected);
    // Past the end: empty and done.
    let (rows, next) = reg.scan(0, u32::MAX, 10).unwrap();
    assert!(rows.is_empty() && next.is_none());

    // Details from the owner: the management row of each binding of the AOR.
    let d = reg.details(&key("1003")).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(&d[0].user_agent[..], UA.as_bytes());
    assert!(reg.details(b"9999@127.0.0.1").unwrap().is_empty());

    // Mail::Admin: live core counters summed over shards; no trunks configured.
    let admin = srv
        .admin_client()
        .expect("Dispatcher cores take admin mail");
    let c = admin.core_counters().unwrap();
    let get = |k: &str| c.iter().find(|(n, _)| *n == k).map(|&(_, v)| v);
    assert_eq!(get("register_ok"), Some(20));
    assert_eq!(get("bindings_live"), Some(20));
    assert!(admin.trunks().unwrap().is_empty());
    assert!(!admin.reregister("none").unwrap());
    assert_eq!(admin.mailbox_depths().len(), 3);
    srv.shutdown();
    srv.join().unwrap();
}
