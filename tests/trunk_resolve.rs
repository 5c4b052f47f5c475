//! A trunk's host name followed after start: the real server (Dispatcher cores, real sockets on
//! loopback) and the runtime's resolver thread with a scripted resolve function (no real DNS):
//! when the name moves to another address, the trunk's next REGISTER goes there. And, black
//! box, a trunk configured by a name the system resolves from /etc/hosts (`localhost`)
//! registers.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sipshard::config::Config;
use sipshard::dispatch::{Dispatcher, ResolveSender, Shared};
use sipshard::resolver::{self, TrunkResolver};
use sipshard::server;

fn header<'a>(req: &'a str, name: &str) -> &'a str {
    req.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {req}"))
}

fn ok_for(req: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=srv\r\n{}\r\n{}\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
        header(req, "Via:"),
        header(req, "From:"),
        header(req, "To:"),
        header(req, "Call-ID:"),
        header(req, "CSeq:"),
    )
}

/// The next REGISTER `sock` receives within `timeout` (anything else is skipped).
fn next_register(sock: &UdpSocket, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let t = recv_text(sock, left.max(Duration::from_millis(1)))?;
        if t.starts_with("REGISTER ") {
            return Some(t);
        }
    }
}

/// Two "registrars" on the same port of 127.0.0.1 and 127.0.0.2 (the carrier's old and new
/// address for one name and port).
fn two_registrars() -> (UdpSocket, UdpSocket) {
    for _ in 0..20 {
        let old = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = old.local_addr().unwrap().port();
        if let Ok(new) = UdpSocket::bind(("127.0.0.2", port)) {
            return (old, new);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[test]
fn a_moved_registrar_gets_the_next_register() {
    let (old, new) = two_registrars();
    let (old_addr, new_addr) = (old.local_addr().unwrap(), new.local_addr().unwrap());
    let port = old_addr.port();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = 2\nshutdown_timeout_ms = 1000\n\
         [sip]\nuser_agent_send_unregister = \"Off\"\n\
         [[trunks]]\nname = \"carrier\"\nregistrar = \"carrier.test\"\nport = {port}\n\
         username = \"4420\"\npassword = \"p\"\nexpire = 300\n"
    );
    let config = Config::from_toml_str(&toml).expect("test config");
    let mut shared = Shared::new(&config, [3; 32], 77).unwrap();
    // What the start-up resolution found.
    shared.trunk_destinations = vec![Some(old_addr)];
    let (notes_tx, notes) = crossbeam_channel::bounded(resolver::NOTE_QUEUE);
    shared.trunk_resolve = ResolveSender::new(notes_tx);

    // The scripted name: `answer` is what it resolves to; every lookup is reported.
    let answer: Arc<Mutex<Vec<SocketAddr>>> = Arc::new(Mutex::new(vec![old_addr]));
    let (looked_up_tx, looked_up) = crossbeam_channel::unbounded();
    let script = answer.clone();
    let resolve: resolver::ResolveFn = Box::new(move |host: &str, p: u16| {
        assert_eq!((host, p), ("carrier.test", port));
        let a = script.lock().unwrap().clone();
        let _ = looked_up_tx.send(a.clone());
        Ok(a)
    });
    let table = TrunkResolver::new(
        &config.trunks,
        &shared.trunk_destinations,
        &[],
        resolve,
        None,
    );
    assert_eq!(table.len(), 1);

    let core_config = config.clone();
    let srv = server::start(&config.server, move |shard, n| {
        Dispatcher::new(shard, n, &core_config, &shared, 0)
    })
    .expect("server starts");
    let thread = resolver::start(
        table,
        notes,
        srv.mailer().expect("Dispatcher mail"),
        srv.clock(),
    )
    .expect("resolver starts");
    let admin = srv.admin_client().unwrap();

    // The first attempt (one trunk: within 100 ms) was noted, so the name was looked up just
    // before it; it went to the address found at start.
    assert_eq!(
        looked_up.recv_timeout(Duration::from_secs(5)),
        Ok(vec![old_addr])
    );
    let first = next_register(&old, Duration::from_secs(5)).expect("a REGISTER at the old address");

    // The carrier moves. A forced attempt asks for a lookup; the address found is used from
    // the next request on (the request in flight keeps its destination).
    *answer.lock().unwrap() = vec![new_addr];
    let deadline = Instant::now() + Duration::from_secs(5);
    let moved = loop {
        assert!(
            Instant::now() < deadline,
            "no REGISTER at the new address within 5 s"
        );
        assert_eq!(admin.reregister("carrier"), Ok(true));
        if let Some(r) = next_register(&new, Duration::from_millis(200)) {
            break r;
        }
    };
    assert_eq!(
        looked_up.try_recv(),
        Ok(vec![new_addr]),
        "looked up on the forced attempt"
    );
    assert_eq!(
        header(&moved, "Call-ID:"),
        header(&first, "Call-ID:"),
        "the same registration"
    );
    assert!(moved.starts_with(&format!("REGISTER sip:carrier.test:{port} SIP/2.0\r\n")));

    // The new registrar accepts it: the trunk is registered there.
    new.send_to(ok_for(&moved).as_bytes(), srv.local_addr())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = admin.trunks().unwrap();
        if rows[0].state == "registered" {
            assert_eq!(rows[0].effective_expiry_s, Some(300));
            break;
        }
        assert!(Instant::now() < deadline, "not registered: {rows:?}");
        std::thread::yield_now();
    }

    let table = thread.stop().expect("the resolver thread stops");
    assert_eq!(table.current(0), Some(new_addr));
    srv.shutdown();
    srv.join().expect("clean stop");
}

#[test]
fn a_trunk_configured_by_a_host_name_registers() {
    // `localhost` resolves through /etc/hosts (IPv4 preferred: 127.0.0.1).
    let registrar = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = registrar.local_addr().unwrap().port();
    let dir = TempDir::new("trunk-name");
    let cfg = dir.write(
        "b.toml",
        &format!(
            "[sip]\nuser_agent_send_unregister = \"Off\"\n[[trunks]]\nname = \"c\"\nregistrar = \"localhost\"\nport = {port}\n\
             username = \"4420\"\npassword = \"p\"\nexpire = 300\n"
        ),
    );
    let mut server = start_with_log(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--config",
            &cfg,
        ],
        "info",
    )
    .unwrap_or_else(|e| panic!("did not start: {e}"));
    let req = next_register(&registrar, Duration::from_secs(5));
    if let Some(req) = &req {
        registrar
            .send_to(ok_for(req).as_bytes(), server.addr)
            .unwrap();
    }
    let registered = server.wait_for_stderr("trunk registered", Duration::from_secs(5));
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    let req = req.unwrap_or_else(|| panic!("no REGISTER within 5 s; {err}"));
    assert!(
        req.starts_with(&format!("REGISTER sip:localhost:{port} SIP/2.0\r\n")),
        "{req}"
    );
    assert!(registered, "{err}");
    assert!(err.contains("trunk resolver started"), "{err}");
    assert_eq!(code, Some(0), "{err}");
    assert!(totals(&lines)["trunk_registrations"] >= 1);
}
