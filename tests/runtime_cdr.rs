//! `server::run_with_cdr`: records the shards emit on their way down (dialogs torn down by the
//! shutdown) are all in the CDR file when the server returns, with wall-clock times from the
//! shards' clock. Its own test binary: it sends SIGTERM to the test process.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use sipshard::cdr::csv::{parse_csv, WallClock, HEADER};
use sipshard::cdr::writer::{unix_ms, CdrWriter, WriterSettings};
use sipshard::cdr::{CdrRecord, CdrSender, EndReason};
use sipshard::config::{AdminConfig, Config, IoBackendKind, ServerConfig};
use sipshard::dispatch::{Core, Outbox};
use sipshard::server;
use sipshard::shard::Clock;
use sipshard::timer::Millis;

const PER_SHARD: usize = 3_000;

/// A core that, when asked to shut down, emits `PER_SHARD` CDRs (one per "dialog" it held).
struct Calls {
    shard: usize,
    cdr: CdrSender,
    emitted: bool,
}

impl Core for Calls {
    type Mail = ();
    fn on_datagram<O: Outbox<()>>(&mut self, _: Millis, _: SocketAddr, _: &[u8], _: &mut O) {}
    fn on_mail<O: Outbox<()>>(&mut self, _: Millis, _: (), _: &mut O) {}
    fn on_timers<O: Outbox<()>>(&mut self, _: Millis, _: &mut O) {}
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    fn on_shutdown<O: Outbox<()>>(&mut self, now: Millis, _: &mut O) -> bool {
        if !self.emitted {
            self.emitted = true;
            for i in 0..PER_SHARD {
                let r = CdrRecord {
                    call_id: format!("s{}-{i}", self.shard),
                    caller: "1001".into(),
                    callee: "5551234".into(),
                    source: "127.0.0.1:5061".parse().unwrap(),
                    caller_identity: "peer:loadgen".into(),
                    start: now,
                    answer: Some(now),
                    end: now,
                    attempts: Vec::new(),
                    final_status: 200,
                    end_reason: EndReason::Shutdown,
                };
                let _ = self.cdr.emit(r);
            }
        }
        true
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

#[test]
fn records_emitted_during_shutdown_are_all_written_before_run_returns() {
    let dir = std::env::temp_dir().join(format!("sipshard-runtime-cdr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("cdr.csv");
    let config = Config {
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
            shutdown_timeout_ms: 2000,
            max_datagram_bytes: 2048,
            ..Config::default().server
        },
        // The default admin port (8080) may be taken by another server on this host.
        admin: AdminConfig {
            enabled: false,
            ..Config::default().admin
        },
        ..Config::default()
    };
    let before = unix_ms(SystemTime::now());
    let clock = Clock::new();
    let wall = WallClock::new(unix_ms(SystemTime::now()));
    let writer = CdrWriter::start(
        WriterSettings {
            path: path.clone(),
            rotate_bytes: 0,
            rotate_after: None,
            queue_capacity: 2 * PER_SHARD,
            flush_interval: Duration::from_secs(1),
        },
        wall,
    )
    .unwrap();
    let sender = writer.sender();
    let (made_tx, made_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = server::run_with_cdr(config, clock, Some(writer), move |shard, _| {
            let _ = made_tx.send(());
            Calls {
                shard,
                cdr: sender.clone(),
                emitted: false,
            }
        });
        let _ = done_tx.send(r);
    });
    for _ in 0..2 {
        made_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server did not start");
    }
    // SAFETY: plain kill(2) to our own process; signal-hook's handler is installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
    let r = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("run_with_cdr did not return after SIGTERM");
    assert_eq!(r, Ok(()));
    let after = unix_ms(SystemTime::now());

    // Every record is in the file the moment run returns: nothing left in a buffer or queue.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows = parse_csv(&text);
    assert_eq!(rows.remove(0), parse_csv(HEADER)[0]);
    assert_eq!(rows.len(), 2 * PER_SHARD);
    let mut ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * PER_SHARD);
    // Wall-clock times between the start of the test and now (UTC text sorts like time).
    let fmt = |ms| WallClock::new(ms).format(0);
    for r in &rows {
        assert!(
            r[5] >= fmt(before) && r[5] <= fmt(after),
            "{} not in [{}, {}]",
            r[5],
            fmt(before),
            fmt(after)
        );
        assert_eq!(r[10], "shutdown");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
