//! Runtime tests over real loopback UDP with small test cores: echo (both backends, many shards),
//! handover between shards, timers, port in use, truncation, graceful shutdown.
//! No sleeps: every wait is a socket receive with a timeout or a join.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipshard::config::{IoBackendKind, ServerConfig};
use sipshard::dispatch::{Core, Outbox, ShardId};
use sipshard::server::{self, ServerHandle};
use sipshard::timer::Millis;

const WAIT: Duration = Duration::from_secs(5);

fn cfg(shards: usize, backend: IoBackendKind) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards,
        pin_shards: false,
        // These tests exercise the shard-to-shard hand-over itself.
        reuseport_steering: false,
        recv_buffer_bytes: 1 << 20,
        send_buffer_bytes: 1 << 20,
        io_batch: 16,
        io_backend: backend,
        mailbox_capacity: 4096,
        shutdown_timeout_ms: 2000,
        max_datagram_bytes: 4096,
        advertised_address: None,
    }
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Receive one datagram or fail the test after the socket's timeout.
fn recv(s: &UdpSocket) -> (SocketAddr, Vec<u8>) {
    let mut buf = [0u8; 8192];
    let (n, from) = s.recv_from(&mut buf).expect("no reply before timeout");
    (from, buf[..n].to_vec())
}

/// Nothing more arrives within `quiet`.
fn assert_silent(s: &UdpSocket, quiet: Duration) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 8192];
    match s.recv_from(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok((n, _)) => panic!(
            "unexpected datagram: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("{e}"),
    }
    s.set_read_timeout(Some(WAIT)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Echo.

#[derive(Default)]
struct Echo {
    seen: u64,
}

impl Core for Echo {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, src: SocketAddr, data: &[u8], out: &mut O) {
        self.seen += 1;
        out.send_to(src, data);
    }
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) -> bool {
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("seen", self.seen)]
    }
}

fn echo_many(backend: IoBackendKind, listen: &str, expect_backend: &str) {
    let mut c = cfg(4, backend);
    c.listen = listen.parse().unwrap();
    let srv = server::start(&c, |_, _| Echo::default()).unwrap();
    assert_eq!(srv.backend(), expect_backend);
    assert_eq!(srv.shard_count(), 4);
    let addr = srv.local_addr();
    assert_ne!(addr.port(), 0);
    let bind = if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };

    // 16 client sockets (16 four-tuples) so SO_REUSEPORT spreads them over the shards.
    let clients: Vec<UdpSocket> = (0..16)
        .map(|_| {
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    let per_client = 40;
    for (ci, s) in clients.iter().enumerate() {
        // A window of 20 in flight per client keeps well inside the socket buffers.
        for chunk in (0..per_client).collect::<Vec<_>>().chunks(20) {
            for &k in chunk {
                s.send_to(format!("c{ci} m{k}").as_bytes(), addr).unwrap();
            }
            let mut got = BTreeSet::new();
            for _ in chunk {
                let (from, data) = recv(s);
                assert_eq!(from, addr, "reply must come from the server's address");
                got.insert(String::from_utf8(data).unwrap());
            }
            let want: BTreeSet<String> = chunk.iter().map(|k| format!("c{ci} m{k}")).collect();
            assert_eq!(got, want);
        }
    }
    srv.shutdown();
    let report = srv.join().unwrap();
    let total = (clients.len() * per_client) as u64;
    assert_eq!(report.total.datagrams_in, total);
    assert_eq!(report.total.datagrams_out, total);
    assert_eq!(report.total.send_errors, 0);
    let busy = report
        .shards
        .iter()
        .filter(|s| s.stats.datagrams_in > 0)
        .count();
    assert!(
        busy >= 2,
        "reuseport should spread 16 clients over several shards: {report:?}"
    );
    for s in &report.shards {
        assert!(s.clean);
        assert_eq!(s.core_counters, vec![("seen", s.stats.datagrams_in)]);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn echo_mmsg_backend_many_shards() {
    echo_many(IoBackendKind::Mmsg, "127.0.0.1:0", "mmsg");
}

#[test]
fn echo_portable_backend_many_shards() {
    echo_many(IoBackendKind::Portable, "127.0.0.1:0", "portable");
}

#[cfg(target_os = "linux")]
#[test]
fn echo_auto_backend_ipv6() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    echo_many(IoBackendKind::Auto, "[::1]:0", "mmsg");
}

#[test]
fn oversized_datagrams_are_counted_and_dropped() {
    for backend in [IoBackendKind::Auto, IoBackendKind::Portable] {
        let mut c = cfg(1, backend);
        c.max_datagram_bytes = 512;
        let srv = server::start(&c, |_, _| Echo::default()).unwrap();
        let s = client();
        s.send_to(&[b'x'; 513], srv.local_addr()).unwrap();
        s.send_to(&[b'y'; 512], srv.local_addr()).unwrap();
        // Same 4-tuple, same shard, in order: the only echo is the 512-byte one.
        let (_, data) = recv(&s);
        assert_eq!(data, vec![b'y'; 512]);
        srv.shutdown();
        let report = srv.join().unwrap();
        assert_eq!(report.total.truncated, 1, "{backend:?}");
        assert_eq!(report.total.datagrams_in, 1, "{backend:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Handover: every datagram is mailed to its owner shard, hash(payload) % n; the owner replies.

fn owner_of(payload: &[u8], n: usize) -> ShardId {
    // FNV-1a: any stable hash will do.
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in payload {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % n as u64) as usize
}

struct Handover {
    me: ShardId,
    n: usize,
}

impl Core for Handover {
    /// (client, payload, shard that received it)
    type Mail = (SocketAddr, Vec<u8>, ShardId);
    fn on_datagram<O: Outbox<Self::Mail>>(
        &mut self,
        _: Millis,
        src: SocketAddr,
        data: &[u8],
        out: &mut O,
    ) {
        // Always by mail, also when we own it (exercises delivery to self).
        out.mail(owner_of(data, self.n), (src, data.to_vec(), self.me));
    }
    fn on_mail<O: Outbox<Self::Mail>>(&mut self, _: Millis, m: Self::Mail, out: &mut O) {
        let (src, payload, via) = m;
        let reply = format!(
            "{}|owner={}|via={}",
            String::from_utf8(payload).unwrap(),
            self.me,
            via
        );
        out.send_to(src, reply.as_bytes());
    }
    fn on_timers<O: Outbox<Self::Mail>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<Self::Mail>>(&mut self, _: Millis, _: &mut O) -> bool {
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

fn handover(shards: usize, backend: IoBackendKind) {
    let srv = server::start(&cfg(shards, backend), |me, n| Handover { me, n }).unwrap();
    let addr = srv.local_addr();
    let clients: Vec<UdpSocket> = (0..12).map(|_| client()).collect();
    let per_client = 30;
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut handed_over = 0;
    for (ci, s) in clients.iter().enumerate() {
        for k in 0..per_client {
            s.send_to(format!("c{ci}-m{k}").as_bytes(), addr).unwrap();
        }
        for _ in 0..per_client {
            let (from, data) = recv(s);
            assert_eq!(from, addr, "the owner must reply from the shared address");
            let text = String::from_utf8(data).unwrap();
            let mut parts = text.split('|');
            let payload = parts.next().unwrap().to_string();
            let owner: usize = parts.next().unwrap()["owner=".len()..].parse().unwrap();
            let via: usize = parts.next().unwrap()["via=".len()..].parse().unwrap();
            assert_eq!(owner, owner_of(payload.as_bytes(), shards), "{text}");
            if owner != via {
                handed_over += 1;
            }
            *answered.entry(payload).or_default() += 1;
        }
    }
    // Nothing extra arrives afterwards (no duplicates).
    for s in &clients {
        assert_silent(s, Duration::from_millis(20));
    }
    let want: HashSet<String> = (0..clients.len())
        .flat_map(|ci| (0..per_client).map(move |k| format!("c{ci}-m{k}")))
        .collect();
    assert_eq!(answered.keys().cloned().collect::<HashSet<_>>(), want);
    assert!(
        answered.values().all(|&n| n == 1),
        "each answered exactly once"
    );
    assert!(handed_over > 0, "some datagrams must have changed shard");

    srv.shutdown();
    let report = srv.join().unwrap();
    let total = (clients.len() * per_client) as u64;
    assert_eq!(report.total.datagrams_in, total);
    assert_eq!(report.total.mail_in, total);
    assert_eq!(report.total.datagrams_out, total);
    assert_eq!(report.total.mailbox_full_drops, 0);
    assert_eq!(report.total.mail_out as usize, handed_over);
}

#[test]
fn handover_two_shards() {
    handover(2, IoBackendKind::Auto);
}

#[test]
fn handover_four_shards() {
    handover(4, IoBackendKind::Auto);
}

#[test]
fn handover_four_shards_portable() {
    handover(4, IoBackendKind::Portable);
}

// ---------------------------------------------------------------------------------------------
// Timers.

/// On "arm", sets deadlines at now+50, now+20 and now+80; records the `now` each fires at and,
/// when all have fired, replies "armed_at fired:deadline@now,...".
#[derive(Default)]
struct Timers {
    client: Option<SocketAddr>,
    armed_at: Millis,
    pending: BTreeSet<Millis>,
    fired: Vec<(Millis, Millis)>,
}

impl Core for Timers {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, now: Millis, src: SocketAddr, _: &[u8], _: &mut O) {
        self.client = Some(src);
        self.armed_at = now;
        self.pending.extend([now + 50, now + 20, now + 80]);
    }
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, now: Millis, out: &mut O) {
        while let Some(&d) = self.pending.first() {
            if d > now {
                break;
            }
            self.pending.remove(&d);
            self.fired.push((d, now));
        }
        if self.pending.is_empty() {
            let list: Vec<String> = self.fired.iter().map(|(d, n)| format!("{d}@{n}")).collect();
            let reply = format!("{} {}", self.armed_at, list.join(","));
            out.send_to(self.client.unwrap(), reply.as_bytes());
        }
    }
    fn next_deadline(&self) -> Option<Millis> {
        self.pending.first().copied()
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) -> bool {
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

#[test]
fn timers_fire_at_or_after_deadline_in_order_without_spinning() {
    let srv = server::start(&cfg(1, IoBackendKind::Auto), |_, _| Timers::default()).unwrap();
    let s = client();
    let sent = Instant::now();
    s.send_to(b"arm", srv.local_addr()).unwrap();
    let (_, data) = recv(&s);
    let waited = sent.elapsed();
    let text = String::from_utf8(data).unwrap();
    let (armed, list) = text.split_once(' ').unwrap();
    let armed: Millis = armed.parse().unwrap();
    let fired: Vec<(Millis, Millis)> = list
        .split(',')
        .map(|p| {
            let (d, n) = p.split_once('@').unwrap();
            (d.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(
        fired.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![armed + 20, armed + 50, armed + 80],
        "{text}"
    );
    for (d, n) in &fired {
        assert!(n >= d, "fired early: {text}");
        // Generous: the machine is shared; this only catches a lost wake-up.
        assert!(*n < d + 1000, "fired very late: {text}");
    }
    assert!(waited >= Duration::from_millis(80), "{waited:?}");
    let iterations = srv.stats()[0].loop_iterations;
    // A sleeping loop needs a handful of iterations for 3 timers; a spinning one thousands.
    assert!(iterations < 100, "loop spun: {iterations} iterations");
    srv.shutdown();
    srv.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Port in use.

#[test]
fn second_server_on_same_port_refuses_to_start() {
    let first = server::start(&cfg(2, IoBackendKind::Auto), |_, _| Echo::default()).unwrap();
    let addr = first.local_addr();
    let mut c = cfg(2, IoBackendKind::Auto);
    c.listen = addr;
    let made = AtomicBool::new(false);
    let err = match server::start(&c, |_, _| {
        made.store(true, Ordering::SeqCst);
        Echo::default()
    }) {
        Ok(_) => panic!("second server started on a port in use"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        err.to_string(),
        format!("udp {addr} is already in use by another process")
    );
    assert!(
        !made.load(Ordering::SeqCst),
        "no core built before the bind succeeded"
    );

    // The first server still has its port to itself: every datagram is echoed by it.
    let s = client();
    for k in 0..20 {
        s.send_to(format!("{k}").as_bytes(), addr).unwrap();
        let (from, data) = recv(&s);
        assert_eq!((from, data), (addr, format!("{k}").into_bytes()));
    }
    first.shutdown();
    first.join().unwrap();
}

#[test]
fn port_held_by_plain_socket_is_refused() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = cfg(1, IoBackendKind::Portable);
    c.listen = holder.local_addr().unwrap();
    let err = server::start(&c, |_, _| Echo::default()).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.

/// Needs `rounds` calls of `on_shutdown` before it is done; sends "bye" to the last client on
/// the first call; `rounds == usize::MAX` never finishes.
struct Lingering {
    rounds: usize,
    calls: Arc<AtomicUsize>,
    client: Option<SocketAddr>,
}

impl Core for Lingering {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, src: SocketAddr, data: &[u8], out: &mut O) {
        self.client = Some(src);
        out.send_to(src, data);
    }
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, _: Millis, out: &mut O) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            if let Some(c) = self.client {
                out.send_to(c, b"bye");
            }
        }
        n >= self.rounds
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

fn start_lingering(rounds: usize, timeout_ms: u64) -> (ServerHandle, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut c = cfg(1, IoBackendKind::Auto);
    c.shutdown_timeout_ms = timeout_ms;
    let k = calls.clone();
    let srv = server::start(&c, move |_, _| Lingering {
        rounds,
        calls: k.clone(),
        client: None,
    })
    .unwrap();
    (srv, calls)
}

#[test]
fn graceful_shutdown_calls_on_shutdown_until_done_and_flushes() {
    let (srv, calls) = start_lingering(3, 5000);
    let s = client();
    s.send_to(b"hello", srv.local_addr()).unwrap();
    assert_eq!(recv(&s).1, b"hello");
    let t = Instant::now();
    srv.shutdown();
    let report = srv.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(5000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(report.shards[0].clean);
    // What the core sent while shutting down went out.
    assert_eq!(recv(&s).1, b"bye");
}

#[test]
fn shutdown_is_bounded_when_core_never_finishes() {
    let (srv, calls) = start_lingering(usize::MAX, 300);
    let t = Instant::now();
    srv.shutdown();
    let report = srv.join().unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2300), "{took:?}");
    assert!(!report.shards[0].clean);
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "on_shutdown asked repeatedly"
    );
}

// ---------------------------------------------------------------------------------------------
// A panicking core: the shard survives, counts it and goes on.

struct PanicsOnBang;

impl Core for PanicsOnBang {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, src: SocketAddr, data: &[u8], out: &mut O) {
        if data == b"bang" {
            panic!("test core: bang");
        }
        out.send_to(src, data);
    }
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) -> bool {
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

#[test]
fn a_panic_in_the_core_is_counted_and_the_shard_goes_on() {
    let srv = server::start(&cfg(1, IoBackendKind::Auto), |_, _| PanicsOnBang).unwrap();
    let addr = srv.local_addr();
    let c = client();
    c.send_to(b"bang", addr).unwrap();
    c.send_to(b"after", addr).unwrap();
    let (_, reply) = recv(&c);
    assert_eq!(reply, b"after");
    srv.shutdown();
    let report = srv.join().unwrap();
    assert_eq!(report.total.core_panics, 1);
    // At least our two: a stray datagram for an earlier owner of this ephemeral port (another
    // test's peer retransmitting) may arrive too, and must not panic the core either.
    assert!(report.total.datagrams_in >= 2, "{:?}", report.total);
}
