//! Rough echo throughput of the runtime over loopback, per backend. Ignored by default:
//! `cargo test --release --test runtime_throughput -- --ignored --nocapture`.
//! Clients and server share the machine, so this measures the runtime's overhead, not capacity.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sipshard::config::{IoBackendKind, ServerConfig};
use sipshard::dispatch::{Core, Outbox};
use sipshard::server;
use sipshard::timer::Millis;

struct Echo;

impl Core for Echo {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, src: SocketAddr, data: &[u8], out: &mut O) {
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

fn run(backend: IoBackendKind, shards: usize, clients: usize, window: usize, secs: u64) {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards,
        pin_shards: false,
        reuseport_steering: false,
        recv_buffer_bytes: 4 << 20,
        send_buffer_bytes: 4 << 20,
        io_batch: 32,
        io_backend: backend,
        mailbox_capacity: 4096,
        shutdown_timeout_ms: 1000,
        max_datagram_bytes: 8192,
        advertised_address: None,
    };
    let srv = server::start(&cfg, |_, _| Echo).unwrap();
    let addr = srv.local_addr();
    let payload = vec![b'x'; 500];
    let until = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let payload = payload.clone();
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = [0u8; 2048];
                let mut got = 0u64;
                let mut in_flight = 0;
                while Instant::now() < until {
                    while in_flight < window {
                        s.send_to(&payload, addr).unwrap();
                        in_flight += 1;
                    }
                    match s.recv_from(&mut buf) {
                        Ok(_) => {
                            got += 1;
                            in_flight -= 1;
                        }
                        // Lost on the way (buffers full): refill the window.
                        Err(_) => in_flight = 0,
                    }
                }
                got
            })
        })
        .collect();
    let replies: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    srv.shutdown();
    let report = srv.join().unwrap();
    let t = report.total;
    println!(
        "{backend:?}: {shards} shards, {clients} clients x window {window}: {:.0} replies/s; \
         server in {} out {} loop iterations {} ({:.1} datagrams/iteration), kernel drops {}",
        replies as f64 / secs as f64,
        t.datagrams_in,
        t.datagrams_out,
        t.loop_iterations,
        t.datagrams_in as f64 / t.loop_iterations.max(1) as f64,
        t.kernel_drops
    );
}

#[test]
#[ignore]
fn echo_throughput() {
    for backend in [IoBackendKind::Mmsg, IoBackendKind::Portable] {
        run(backend, 1, 2, 32, 3);
        run(backend, 2, 4, 32, 3);
    }
}
