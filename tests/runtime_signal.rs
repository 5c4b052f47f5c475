//! `server::run_with` stops gracefully on SIGTERM. Its own test binary: it installs signal
//! handlers in the test process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipshard::config::{AdminConfig, Config, IoBackendKind, ServerConfig};
use sipshard::dispatch::{Core, Outbox};
use sipshard::server;
use sipshard::timer::Millis;

struct Quiet {
    shutdown_calls: Arc<AtomicUsize>,
}

impl Core for Quiet {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, _: SocketAddr, _: &[u8], _: &mut O) {}
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) -> bool {
        self.shutdown_calls.fetch_add(1, Ordering::SeqCst);
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

fn config() -> Config {
    Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards: 2,
            pin_shards: false,
            reuseport_steering: true,
            recv_buffer_bytes: 0,
            send_buffer_bytes: 0,
            io_batch: 8,
            io_backend: IoBackendKind::Auto,
            mailbox_capacity: 64,
            shutdown_timeout_ms: 1000,
            max_datagram_bytes: 2048,
            advertised_address: None,
        },
        // The default admin port (8080) may be taken by another server on this host.
        admin: AdminConfig {
            enabled: false,
            ..Config::default().admin
        },
        ..Config::default()
    }
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (made_tx, made_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let k = calls.clone();
    std::thread::spawn(move || {
        let r = server::run_with(config(), move |_, _| {
            let _ = made_tx.send(());
            Quiet {
                shutdown_calls: k.clone(),
            }
        });
        let _ = done_tx.send(r);
    });
    // Cores are built after the handlers are installed and the sockets bound.
    for _ in 0..2 {
        made_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server did not start");
    }
    let t = Instant::now();
    // SAFETY: plain kill(2) to our own process; signal-hook's handler is installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
    let r = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("run_with did not return after SIGTERM");
    assert_eq!(r, Ok(()));
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "each shard's on_shutdown ran"
    );
}
