//! Start the shards; graceful shutdown.
//!
//! Owns: turning a [`ServerConfig`] into running shards ([`start`] → [`ServerHandle`]): binding
//! every socket before any thread starts, choosing the I/O backend, spawning (and pinning) one
//! thread per shard, the ready line on stdout, and the process-level run loop with SIGTERM/SIGINT
//! handling ([`run_with`], [`run_main`]), and the CDR writer's life: started before the shards
//! (its sender goes into `Shared.cdr`), drained and flushed after they stop, before the totals;
//! and the trunk resolver thread's ([`crate::resolver`]): started after the shards when some
//! trunk host is a name (its note queue goes into `Shared.trunk_resolve`), stopped before them.
//! Must not: contain protocol logic (that is the [`Core`]'s), or touch the hot path: after start
//! it only waits, reads counters and asks shards to stop.

use std::any::Any;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cdr::csv::WallClock;
use crate::cdr::recent::RecentCalls;
use crate::cdr::writer::{self, CdrWriter, WriterReport};
use crate::config::{Config, IoBackendKind, ServerConfig, TrunkConfig};
use crate::dispatch::{
    query::add_counters, AdminQuery, AdminReply, ContactRow, Core, Dispatcher, GatewayCounters,
    GatewayStat, Mail, OwnedBindingRow, OwnedListFilter, RegistrarQuery, RegistrarReply,
    ResolveNote, ResolveSender, ShardId, Shared, TrunkRow,
};
use crate::io::{self as bio, BatchIo, PortableIo, SocketOptions};
use crate::registrar::core::RegistrarCounters;
use crate::registrar::guard::FailedRegistration;
use crate::registrar::owner_of_aor;
use crate::resolver::{self, TrunkResolver};
use crate::shard::{self, Clock, Control, MailError, Mailer, ShardExit, ShardSettings, ShardStats};

/// Extra time `join` allows beyond `shutdown_timeout_ms` for threads to finish their last flush.
const JOIN_GRACE: Duration = Duration::from_secs(2);

/// A running server. Dropping it asks the shards to stop (without waiting for them).
pub struct ServerHandle {
    local_addr: SocketAddr,
    backend: &'static str,
    recv_buffer_bytes: usize,
    send_buffer_bytes: usize,
    shutdown_timeout: Duration,
    control: Control,
    threads: Vec<JoinHandle<io::Result<ShardExit>>>,
    /// Each shard thread sends its id here when it ends, however it ends.
    exited: Receiver<ShardId>,
    /// Notices already taken from `exited` (by `run_with`).
    exits_seen: usize,
    /// A `shard::Mailer<C::Mail>` for senders outside the shards (type-erased: the handle is
    /// not generic over the core).
    mailer: Box<dyn Any + Send + Sync>,
    clock: Clock,
}

/// What the shards did, collected at the end.
#[derive(Debug)]
pub struct ServerReport {
    /// One entry per shard that ended normally, by shard id.
    pub shards: Vec<ShardExit>,
    /// Sum of the shards' counters.
    pub total: ShardStats,
}

impl ServerHandle {
    /// The bound address (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shard_count(&self) -> usize {
        self.threads.len()
    }

    /// "mmsg" or "portable".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// SO_RCVBUF / SO_SNDBUF as obtained from the kernel (Linux reports double the request).
    pub fn buffer_sizes(&self) -> (usize, usize) {
        (self.recv_buffer_bytes, self.send_buffer_bytes)
    }

    /// Live counters per shard.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.control.stats()
    }

    /// The outside's hold on the shards (stop them, read their live counters).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// The shards' clock (their `Millis` are milliseconds since it started).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// A client for the shards' management queries (when the cores are [`Dispatcher`]s).
    pub fn admin_client(&self) -> Option<AdminClient> {
        self.mailer::<Mail>().map(AdminClient::new)
    }

    /// A mailer to the shards, when their mail type is `M` (the core's `Core::Mail`).
    pub fn mailer<M: Send + 'static>(&self) -> Option<Mailer<M>> {
        self.mailer.downcast_ref::<Mailer<M>>().cloned()
    }

    /// A client of the shards' registrars (when the cores are [`Dispatcher`]s), answering
    /// within [`RegistrarClient::DEFAULT_TIMEOUT`].
    pub fn registrar_client(&self) -> Option<RegistrarClient> {
        self.mailer::<Mail>().map(RegistrarClient::new)
    }

    /// Begin a graceful shutdown: every shard calls `on_shutdown` until it is done or
    /// `shutdown_timeout_ms` passes, flushes its sends and exits. Returns at once; see [`join`].
    ///
    /// [`join`]: ServerHandle::join
    pub fn shutdown(&self) {
        self.control.stop();
    }

    /// Wait for every shard to end. After [`shutdown`](ServerHandle::shutdown) this is bounded
    /// by `shutdown_timeout_ms` plus a short grace; a shard still running then is reported as an
    /// error (and left detached). Without a shutdown it waits until the shards end on their own.
    pub fn join(mut self) -> io::Result<ServerReport> {
        let threads = std::mem::take(&mut self.threads);
        let deadline = self
            .control
            .is_stopping()
            .then(|| Instant::now() + self.shutdown_timeout + JOIN_GRACE);
        let mut ended = self.exits_seen;
        while ended < threads.len() {
            let r = match deadline {
                Some(d) => self.exited.recv_deadline(d).map_err(|_| ()),
                None => self.exited.recv().map_err(|_| ()),
            };
            match r {
                Ok(_) => ended += 1,
                Err(()) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} of {} shards did not stop in time",
                            threads.len() - ended,
                            threads.len()
                        ),
                    ))
                }
            }
        }
        let mut report = ServerReport {
            shards: Vec::with_capacity(threads.len()),
            total: ShardStats::default(),
        };
        let mut first_err = None;
        for (id, t) in threads.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(exit)) => {
                    report.total += exit.stats;
                    report.shards.push(exit);
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(io::Error::new(e.kind(), format!("shard {id}: {e}")));
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other(format!("shard {id} panicked")));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.control.stop();
        }
    }
}

/// Tells the server a shard thread ended, also when it panicked.
struct ExitNotice(ShardId, Sender<ShardId>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// Start a server: bind every shard socket (a bind error, such as the port being in use, is
/// returned before any thread starts), build one core per shard with `make_core(shard, shards)`,
/// spawn the shard threads, and print the ready line to stdout:
///
/// `sipshard listening on udp <addr> (<n> shards, <backend> backend, rcvbuf <bytes>, sndbuf <bytes>)`
pub fn start<C: Core>(
    cfg: &ServerConfig,
    make_core: impl Fn(ShardId, usize) -> C,
) -> io::Result<ServerHandle> {
    start_with_clock(cfg, Clock::new(), make_core)
}

/// As [`start`], with the shards' clock given (its `Millis` 0 is the epoch the CDR writer
/// converts from).
pub fn start_with_clock<C: Core>(
    cfg: &ServerConfig,
    clock: Clock,
    make_core: impl Fn(ShardId, usize) -> C,
) -> io::Result<ServerHandle> {
    let n = if cfg.shards == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.shards
    };
    let group = bio::bind_udp_group(
        cfg.listen,
        n,
        &SocketOptions {
            recv_buffer_bytes: cfg.recv_buffer_bytes,
            send_buffer_bytes: cfg.send_buffer_bytes,
            rxq_overflow: true,
        },
    )?;
    let sockets = group.sockets;
    let local_addr = group.local_addr;
    let steering = if cfg.reuseport_steering && n > 1 {
        match bio::steer::attach(sockets[0].as_raw_fd(), n as u32) {
            Ok(instructions) => {
                tracing::debug!(instructions, "reuseport steering program attached");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "reuseport steering unavailable: shards hand datagrams over instead");
                false
            }
        }
    } else {
        false
    };
    let launched = match cfg.io_backend {
        #[cfg(target_os = "linux")]
        IoBackendKind::Auto | IoBackendKind::Mmsg => {
            let ios = sockets
                .into_iter()
                .map(|s| bio::MmsgIo::new(s, cfg.io_batch))
                .collect::<io::Result<Vec<_>>>()?;
            launch(cfg, local_addr, clock, ios, make_core)?
        }
        #[cfg(not(target_os = "linux"))]
        IoBackendKind::Mmsg => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_backend mmsg needs Linux (recvmmsg/sendmmsg); use auto or portable",
            ))
        }
        #[cfg(not(target_os = "linux"))]
        IoBackendKind::Auto => launch(cfg, local_addr, clock, portable(sockets)?, make_core)?,
        IoBackendKind::Portable => launch(cfg, local_addr, clock, portable(sockets)?, make_core)?,
    };
    let (backend, control, threads, exited, mailer, clock) = launched;
    let handle = ServerHandle {
        local_addr,
        backend,
        recv_buffer_bytes: group.recv_buffer_bytes,
        send_buffer_bytes: group.send_buffer_bytes,
        shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout_ms),
        control,
        threads,
        exited,
        exits_seen: 0,
        mailer,
        clock,
    };
    let line = format!(
        "sipshard listening on udp {} ({} shards, {} backend, rcvbuf {}, sndbuf {})",
        local_addr, n, backend, group.recv_buffer_bytes, group.send_buffer_bytes
    );
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    for (what, asked, got) in [
        ("SO_RCVBUF", cfg.recv_buffer_bytes, group.recv_buffer_bytes),
        ("SO_SNDBUF", cfg.send_buffer_bytes, group.send_buffer_bytes),
    ] {
        // Linux reports twice the usable size; less than asked means the kernel clamped it.
        if got < asked {
            tracing::warn!(
                asked,
                got,
                "{what} clamped by the kernel: raise net.core.rmem_max/wmem_max or run with CAP_NET_ADMIN"
            );
        }
    }
    tracing::info!(
        addr = %local_addr,
        shards = n,
        backend,
        rcvbuf = group.recv_buffer_bytes,
        sndbuf = group.send_buffer_bytes,
        rxq_ovfl = group.rxq_overflow,
        pinned = cfg.pin_shards,
        steering,
        "ready"
    );
    Ok(handle)
}

fn portable(sockets: Vec<UdpSocket>) -> io::Result<Vec<PortableIo>> {
    sockets.into_iter().map(PortableIo::new).collect()
}

type Launched = (
    &'static str,
    Control,
    Vec<JoinHandle<io::Result<ShardExit>>>,
    Receiver<ShardId>,
    Box<dyn Any + Send + Sync>,
    Clock,
);

fn launch<C: Core, B: BatchIo>(
    cfg: &ServerConfig,
    local_addr: SocketAddr,
    clock: Clock,
    ios: Vec<B>,
    make_core: impl Fn(ShardId, usize) -> C,
) -> io::Result<Launched> {
    let n = ios.len();
    let backend = ios.first().map_or("none", |io| io.name());
    let (setups, control, mailer) = shard::mesh_with_mailer::<C::Mail>(n, cfg.mailbox_capacity)?;
    let core_ids = if cfg.pin_shards {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    // Wall-clock time at the clock's zero, for Date headers (the cores never read a clock).
    let unix_ms_at_zero = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .saturating_sub(clock.now());
    let (exit_tx, exited) = crossbeam_channel::unbounded();
    let mut threads = Vec::with_capacity(n);
    for (setup, io) in setups.into_iter().zip(ios) {
        let id = setup.id();
        let settings = ShardSettings {
            io_batch: cfg.io_batch.max(1),
            max_datagram_bytes: cfg.max_datagram_bytes,
            max_pending_sends: (cfg.io_batch * 64).max(4096),
            shutdown_timeout_ms: cfg.shutdown_timeout_ms,
            pin_to: (!core_ids.is_empty()).then(|| core_ids[id % core_ids.len()]),
        };
        let mut core = make_core(id, n);
        core.set_local_addr(local_addr);
        core.set_wall_clock(unix_ms_at_zero);
        let notice = ExitNotice(id, exit_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                let _notice = notice;
                shard::run(setup, core, io, &settings, clock)
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                control.stop();
                for t in threads {
                    let _ = t.join();
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot start shard {id}: {e}"),
                ));
            }
        }
    }
    Ok((backend, control, threads, exited, Box::new(mailer), clock))
}

/// Run a server with `config` and one `make_core(shard, shards)` per shard until SIGTERM or
/// SIGINT (or until a shard dies), then shut down gracefully and log the totals.
pub fn run_with<C: Core>(
    config: Config,
    make_core: impl Fn(ShardId, usize) -> C,
) -> Result<(), String> {
    run_with_cdr(config, Clock::new(), None, make_core)
}

/// As [`run_with`], with the shards' `clock` given and an optional CDR writer: after the shards
/// have stopped, the writer drains its queue and flushes (no record queued is lost), and its
/// counts join the totals line (`cdr_written`, `cdr_refused`, `cdr_lost`, `cdr_rotations`).
pub fn run_with_cdr<C: Core>(
    config: Config,
    clock: Clock,
    cdr: Option<CdrWriter>,
    make_core: impl Fn(ShardId, usize) -> C,
) -> Result<(), String> {
    run_inner(config, clock, cdr, None, make_core)
}

/// As [`run_with_cdr`], and with `follow` (trunks with host names and the queue of their
/// notes) a resolver thread runs from after the shards start until shutdown begins.
fn run_inner<C: Core>(
    config: Config,
    clock: Clock,
    cdr: Option<CdrWriter>,
    follow: Option<(TrunkResolver, Receiver<ResolveNote>)>,
    make_core: impl Fn(ShardId, usize) -> C,
) -> Result<(), String> {
    let finish_cdr = |cdr: Option<CdrWriter>| cdr.map(CdrWriter::finish);
    // Handlers go in before the sockets, so an early signal is never fatal.
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let sig_handle = signals.handle();
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<i32>(1);
    let sig_thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let _ = sig_tx.try_send(s);
            }
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;
    let stop_signals = || {
        sig_handle.close();
        let _ = sig_thread.join();
    };

    // The admin listener is bound before the shards start, so a busy port stops the start.
    let admin_listener = if config.admin.enabled {
        match crate::admin::bind(&config.admin) {
            Ok(l) => {
                // Printed before the shards' ready line, so that line still means "all
                // ready"; the listener is bound, so connections wait in its backlog until the
                // admin thread runs. Tests and scripts read the address from it (port 0).
                println!("sipshard admin listening on http {}", l.local_addr());
                Some(l)
            }
            Err(e) => {
                stop_signals();
                return Err(e.to_string());
            }
        }
    } else {
        None
    };
    let mut server = match start_with_clock(&config.server, clock, make_core) {
        Ok(s) => s,
        Err(e) => {
            stop_signals();
            finish_cdr(cdr);
            return Err(e.to_string());
        }
    };
    let admin = match admin_listener {
        None => None,
        Some(l) => {
            let addr = l.local_addr();
            let ctx = crate::admin::AdminContext {
                config: config.admin.clone(),
                registrar: server.registrar_client(),
                admin: server.admin_client(),
                control: server.control(),
                clock: server.clock(),
                shards: server.shard_count(),
                cdr: cdr.as_ref().map(CdrWriter::monitor),
            };
            match crate::admin::start(l, ctx) {
                Ok(h) => {
                    tracing::info!(%addr, "admin server ready");
                    Some(h)
                }
                Err(e) => {
                    server.shutdown();
                    let _ = server.join();
                    stop_signals();
                    return Err(format!("cannot start the admin server: {e}"));
                }
            }
        }
    };
    // The shards' mail is `dispatch::Mail` whenever `follow` is given (run_main).
    let resolver = match (follow, server.mailer::<Mail>()) {
        (Some((r, notes)), Some(mailer)) => {
            let trunks = r.len();
            match resolver::start(r, notes, mailer, server.clock()) {
                Ok(t) => {
                    tracing::info!(trunks, "trunk resolver started");
                    Some(t)
                }
                Err(e) => {
                    if let Some(a) = admin {
                        a.stop();
                    }
                    server.shutdown();
                    let _ = server.join();
                    stop_signals();
                    return Err(format!("cannot start the resolver thread: {e}"));
                }
            }
        }
        _ => None,
    };
    crossbeam_channel::select! {
        recv(sig_rx) -> s => {
            tracing::info!(signal = s.unwrap_or(0), "shutting down");
        }
        recv(server.exited) -> id => {
            server.exits_seen += 1;
            tracing::error!(shard = id.unwrap_or(usize::MAX), "shard ended unexpectedly; shutting down");
        }
    }
    let started = Instant::now();
    // The admin side first: its queries would only time out once the shards are gone.
    if let Some(a) = admin {
        a.stop();
    }
    if let Some(r) = resolver {
        r.stop();
    }
    server.shutdown();
    let result = server.join();
    stop_signals();
    // The shards are done (or out of time): nothing more is emitted; write what is queued.
    let cdr_report = finish_cdr(cdr);
    match result {
        Ok(report) => {
            let unclean = report.shards.iter().filter(|s| !s.clean).count();
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                unclean_shards = unclean,
                totals = ?report.total.pairs(),
                "stopped"
            );
            for s in &report.shards {
                tracing::debug!(shard = s.id, stats = ?s.stats, core = ?s.core_counters, "shard totals");
            }
            // One machine-readable line on stdout: runtime totals, then the cores' counters
            // summed over shards (tests and operators read it).
            let mut line = format!("sipshard stopped in {} ms:", started.elapsed().as_millis());
            for (k, v) in report.total.pairs() {
                line.push_str(&format!(" {k}={v}"));
            }
            for (k, v) in sum_core_counters(&report.shards) {
                line.push_str(&format!(" {k}={v}"));
            }
            for (k, v) in cdr_report.iter().flat_map(WriterReport::pairs) {
                line.push_str(&format!(" {k}={v}"));
            }
            println!("{line}");
            Ok(())
        }
        Err(e) => Err(format!("shutdown: {e}")),
    }
}

/// Run the server with `config` until SIGTERM/SIGINT, with one [`Dispatcher`] per shard.
/// Called by `sipshard run`. Loads the accounts (an error there stops the start) and draws the
/// nonce secret and the hash seeds from the OS's random source.
pub fn run_main(config: Config) -> Result<(), String> {
    let mut random = [0u8; 40];
    read_os_random(&mut random).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&random[..32]);
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&random[32..]);
    let started = Instant::now();
    let mut shared = Shared::new(&config, secret, u64::from_le_bytes(seed))?;
    shared.trunk_destinations = resolve_trunks(&config.trunks)?;
    let local_ips_needed =
        config.server.listen.ip().is_unspecified() && config.server.advertised_address.is_none();
    if local_ips_needed {
        shared.trunk_local_ips = shared
            .trunk_destinations
            .iter()
            .map(|d| d.and_then(local_ip_toward))
            .collect();
    }
    // Trunks with a host name are followed before each attempt by the resolver thread.
    let followed = TrunkResolver::new(
        &config.trunks,
        &shared.trunk_destinations,
        &shared.trunk_local_ips,
        Box::new(resolver::system_resolve),
        local_ips_needed.then(|| Box::new(local_ip_toward) as resolver::LocalIpFn),
    );
    let follow = if followed.is_empty() {
        None
    } else {
        let (tx, rx) = crossbeam_channel::bounded(resolver::NOTE_QUEUE);
        shared.trunk_resolve = ResolveSender::new(tx);
        Some((followed, rx))
    };
    tracing::info!(
        accounts = shared.accounts.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "accounts loaded"
    );
    // The shards' Millis 0, and the wall-clock time of it, for the CDR writer.
    let clock = Clock::new();
    let wall = WallClock::new(writer::unix_ms(SystemTime::now()));
    let cdr = if config.cdr.enabled {
        // The last admin.recent_calls records, for /api/v1/calls (filled by the writer thread).
        let recent = (config.admin.enabled && config.admin.recent_calls > 0)
            .then(|| RecentCalls::new(config.admin.recent_calls, wall));
        let w = CdrWriter::start_with_recent((&config.cdr).into(), wall, recent)
            .map_err(|e| format!("cannot start the CDR writer: {e}"))?;
        shared.cdr = w.sender();
        Some(w)
    } else {
        None
    };
    let core_config = config.clone();
    run_inner(config, clock, cdr, follow, move |shard, shards| {
        Dispatcher::new(shard, shards, &core_config, &shared, 0)
    })
}

/// The destination of each trunk (outbound proxy, else registrar) as a socket address, at
/// start (A/AAAA through the system resolver, IPv4 preferred; no SRV/NAPTR); a name that does
/// not resolve is a start-up error naming the trunk. Names are then followed by the
/// [`resolver`](crate::resolver) thread before each attempt.
pub fn resolve_trunks(trunks: &[TrunkConfig]) -> Result<Vec<Option<SocketAddr>>, String> {
    trunks
        .iter()
        .map(|t| {
            let (host, port) = resolver::destination_of(t);
            let all = resolver::system_resolve(resolver::bare_host(host), port)
                .map_err(|e| format!("[[trunks]] `{}`: cannot resolve `{host}`: {e}", t.name))?;
            // Prefer IPv4: the shards' socket is usually bound to an IPv4 address.
            resolver::pick_address(&all, None)
                .map(Some)
                .ok_or_else(|| format!("[[trunks]] `{}`: `{host}` resolves to no address", t.name))
        })
        .collect()
}

/// The local IP the kernel would send from toward `dst`: a UDP socket is connected to it (no
/// packet is sent) and asked for its address. None when there is no route. Used for the
/// Via/Contact of trunks when the listener is 0.0.0.0 / [::] and no `advertised_address` is set.
pub fn local_ip_toward(dst: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if dst.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(dst).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn read_os_random(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The cores' counters summed by name over shards, in first-seen order.
fn sum_core_counters(shards: &[ShardExit]) -> Vec<(&'static str, u64)> {
    let mut sums: Vec<(&'static str, u64)> = Vec::new();
    for s in shards {
        for &(k, v) in &s.core_counters {
            match sums.iter_mut().find(|(n, _)| *n == k) {
                Some(e) => e.1 += v,
                None => sums.push((k, v)),
            }
        }
    }
    sums
}

/// Why a registrar query failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A shard's mailbox was full, or the shard has exited.
    Unavailable(ShardId),
    /// Not every shard answered in time.
    Timeout,
    /// A shard answered with the wrong kind of reply (a bug).
    Unexpected,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Unavailable(s) => write!(f, "shard {s} cannot take the query"),
            QueryError::Timeout => f.write_str("registrar query timed out"),
            QueryError::Unexpected => f.write_str("unexpected registrar reply"),
        }
    }
}

impl std::error::Error for QueryError {}

/// A User-Agent string and how many live bindings carry it.
pub type UserAgentCount = (Box<[u8]>, u64);

/// One page of the merged management table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingsPage {
    /// Sorted by (AOR, contact), rows `offset..offset + limit` of all matches.
    pub rows: Vec<OwnedBindingRow>,
    /// Matching rows on all shards.
    pub total: usize,
}

/// The registrar's interface for threads outside the shards (the admin side, tests): each call
/// mails [`RegistrarQuery`]s to the shards that own the answer, then waits at most `timeout` for
/// their replies on a bounded channel sized for them. Never blocks a shard; never hangs.
/// Cloneable; one client may be used from one thread at a time per clone.
#[derive(Clone)]
pub struct RegistrarClient {
    mailer: Mailer<Mail>,
    timeout: Duration,
}

impl RegistrarClient {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    pub fn new(mailer: Mailer<Mail>) -> Self {
        RegistrarClient {
            mailer,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another bound on the wait for replies.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn shard_count(&self) -> usize {
        self.mailer.shard_count()
    }

    /// Sends `make()` to each of `shards` and collects one reply from each (in arrival order).
    fn ask(
        &self,
        shards: &[ShardId],
        make: impl Fn() -> RegistrarQuery,
    ) -> Result<Vec<RegistrarReply>, QueryError> {
        let (tx, rx) = crossbeam_channel::bounded(shards.len().max(1));
        for &s in shards {
            let mail = Mail::Registrar {
                query: Box::new(make()),
                reply: tx.clone(),
            };
            match self.mailer.send(s, mail) {
                Ok(()) => {}
                Err(MailError::NoShard(_) | MailError::Full(_) | MailError::Gone(_)) => {
                    return Err(QueryError::Unavailable(s))
                }
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        let mut replies = Vec::with_capacity(shards.len());
        while replies.len() < shards.len() {
            match rx.recv_deadline(deadline) {
                Ok(r) => replies.push(r),
                Err(_) => return Err(QueryError::Timeout),
            }
        }
        Ok(replies)
    }

    fn all(&self) -> Vec<ShardId> {
        (0..self.mailer.shard_count()).collect()
    }

    /// The live contacts of an AOR key (`registrar::aor_key` form, `user@host`), from its owner.
    pub fn lookup(&self, aor_key: &[u8]) -> Result<Vec<ContactRow>, QueryError> {
        let owner = owner_of_aor(aor_key, self.mailer.shard_count());
        let mut r = self.ask(&[owner], || RegistrarQuery::Lookup {
            aor: aor_key.into(),
        })?;
        match r.pop() {
            Some(RegistrarReply::Contacts(c)) => Ok(c),
            _ => Err(QueryError::Unexpected),
        }
    }

    /// Rows `offset..offset + limit` of the bindings matching `filter` on every shard, sorted by
    /// (AOR, contact) so pages are stable, and the number of matches in all.
    pub fn list(
        &self,
        filter: &OwnedListFilter,
        offset: usize,
        limit: usize,
    ) -> Result<BindingsPage, QueryError> {
        let replies = self.ask(&self.all(), || RegistrarQuery::List {
            filter: filter.clone(),
            offset,
            limit,
        })?;
        let mut rows = Vec::new();
        let mut total = 0;
        for r in replies {
            match r {
                RegistrarReply::Rows { rows: r, total: t } => {
                    rows.extend(r);
                    total += t;
                }
                _ => return Err(QueryError::Unexpected),
            }
        }
        rows.sort_by(|a, b| {
            (&a.aor, &a.contact, a.status as u8, a.registered_at).cmp(&(
                &b.aor,
                &b.contact,
                b.status as u8,
                b.registered_at,
            ))
        });
        let rows = rows.into_iter().skip(offset).take(limit).collect();
        Ok(BindingsPage { rows, total })
    }

    /// Every live binding of an AOR key with its management details, from its owner.
    pub fn details(&self, aor_key: &[u8]) -> Result<Vec<OwnedBindingRow>, QueryError> {
        let owner = owner_of_aor(aor_key, self.mailer.shard_count());
        let mut r = self.ask(&[owner], || RegistrarQuery::Details {
            aor: aor_key.into(),
        })?;
        match r.pop() {
            Some(RegistrarReply::Rows { rows, .. }) => Ok(rows),
            _ => Err(QueryError::Unexpected),
        }
    }

    /// Removes every binding of an AOR key at its owner; returns how many were removed.
    pub fn force_unregister(&self, aor_key: &[u8]) -> Result<usize, QueryError> {
        let owner = owner_of_aor(aor_key, self.mailer.shard_count());
        let mut r = self.ask(&[owner], || RegistrarQuery::ForceUnregister {
            aor: aor_key.into(),
        })?;
        match r.pop() {
            Some(RegistrarReply::Removed(n)) => Ok(n),
            _ => Err(QueryError::Unexpected),
        }
    }

    /// The registrar counters summed over shards.
    pub fn counts(&self) -> Result<RegistrarCounters, QueryError> {
        let mut sum = RegistrarCounters::default();
        for r in self.ask(&self.all(), || RegistrarQuery::Counts)? {
            match r {
                RegistrarReply::Counts(c) => add_counters(&mut sum, &c),
                _ => return Err(QueryError::Unexpected),
            }
        }
        Ok(sum)
    }

    /// Live bindings per User-Agent over all shards, most common first (then by name).
    pub fn user_agents(&self) -> Result<Vec<UserAgentCount>, QueryError> {
        let mut merged: std::collections::HashMap<Box<[u8]>, u64> = Default::default();
        for r in self.ask(&self.all(), || RegistrarQuery::UserAgents)? {
            match r {
                RegistrarReply::UserAgents(v) => {
                    for (ua, n) in v {
                        *merged.entry(ua).or_default() += n;
                    }
                }
                _ => return Err(QueryError::Unexpected),
            }
        }
        let mut v: Vec<_> = merged.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(v)
    }

    /// One slice of `shard`'s live bindings in slab order from slot `from` (at most `limit`
    /// rows, bounded work for the shard), and the slot to continue from (None: that shard is
    /// done). Walk shard 0..n from slot 0 to see every binding once (see
    /// `Registrar::scan` for what a concurrent change does).
    pub fn scan(
        &self,
        shard: ShardId,
        from: u32,
        limit: usize,
    ) -> Result<(Vec<OwnedBindingRow>, Option<u32>), QueryError> {
        let mut r = self.ask(&[shard], || RegistrarQuery::Scan { from, limit })?;
        match r.pop() {
            Some(RegistrarReply::Scanned { rows, next }) => Ok((rows, next)),
            _ => Err(QueryError::Unexpected),
        }
    }

    /// The `limit` most recent failed registrations over all shards, most recent first.
    pub fn failed_log(&self, limit: usize) -> Result<Vec<FailedRegistration>, QueryError> {
        let mut all = Vec::new();
        for r in self.ask(&self.all(), || RegistrarQuery::FailedLog { limit })? {
            match r {
                RegistrarReply::Failed(v) => all.extend(v),
                _ => return Err(QueryError::Unexpected),
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.at));
        all.truncate(limit);
        Ok(all)
    }
}

/// The management queries other than the registrar's ([`AdminQuery`]) for threads outside the
/// shards: like [`RegistrarClient`], every call mails the shards concerned and waits at most
/// `timeout` on a bounded reply channel; never blocks a shard, never hangs.
#[derive(Clone)]
pub struct AdminClient {
    mailer: Mailer<Mail>,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(mailer: Mailer<Mail>) -> Self {
        AdminClient {
            mailer,
            timeout: RegistrarClient::DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another bound on the wait for replies.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn shard_count(&self) -> usize {
        self.mailer.shard_count()
    }

    /// Mail waiting in each shard's mailbox now.
    pub fn mailbox_depths(&self) -> Vec<usize> {
        self.mailer.depths()
    }

    fn ask(
        &self,
        shards: &[ShardId],
        make: impl Fn() -> AdminQuery,
    ) -> Result<Vec<AdminReply>, QueryError> {
        let (tx, rx) = crossbeam_channel::bounded(shards.len().max(1));
        for &s in shards {
            let mail = Mail::Admin {
                query: Box::new(make()),
                reply: tx.clone(),
            };
            if self.mailer.send(s, mail).is_err() {
                return Err(QueryError::Unavailable(s));
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        let mut replies = Vec::with_capacity(shards.len());
        while replies.len() < shards.len() {
            match rx.recv_deadline(deadline) {
                Ok(r) => replies.push(r),
                Err(_) => return Err(QueryError::Timeout),
            }
        }
        Ok(replies)
    }

    fn all(&self) -> Vec<ShardId> {
        (0..self.mailer.shard_count()).collect()
    }

    /// Every outbound registration's status, sorted by name.
    pub fn trunks(&self) -> Result<Vec<TrunkRow>, QueryError> {
        let mut all = Vec::new();
        for r in self.ask(&self.all(), || AdminQuery::Trunks)? {
            match r {
                AdminReply::Trunks(v) => all.extend(v),
                _ => return Err(QueryError::Unexpected),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Start a new attempt of trunk `name` now, at its owner shard. Ok(false): no such trunk
    /// (or the server is stopping).
    pub fn reregister(&self, name: &str) -> Result<bool, QueryError> {
        let owner = crate::transaction::shard_by_hash(name.as_bytes(), self.shard_count());
        let mut r = self.ask(&[owner], || AdminQuery::Reregister { name: name.into() })?;
        match r.pop() {
            Some(AdminReply::Reregistered(ok)) => Ok(ok),
            _ => Err(QueryError::Unexpected),
        }
    }

    /// Every gateway over all shards, in configuration order (`Mail::GatewayStats` to every
    /// shard, bounded wait): counters summed, `up` from the health owner's row (every shard's
    /// own view when no row says it owns the health), `active_calls` as shared by all shards.
    pub fn gateways(&self) -> Result<Vec<GatewayStat>, QueryError> {
        let shards = self.all();
        let (tx, rx) = crossbeam_channel::bounded(shards.len().max(1));
        for &s in &shards {
            if self
                .mailer
                .send(s, Mail::GatewayStats { reply: tx.clone() })
                .is_err()
            {
                return Err(QueryError::Unavailable(s));
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        let mut merged: Vec<GatewayStat> = Vec::new();
        for _ in &shards {
            let rows = rx
                .recv_deadline(deadline)
                .map_err(|_| QueryError::Timeout)?;
            merge_gateway_rows(&mut merged, rows)?;
        }
        Ok(merged)
    }

    /// The cores' live counters, summed by name over shards (first-seen order).
    pub fn core_counters(&self) -> Result<Vec<(&'static str, u64)>, QueryError> {
        let mut sums: Vec<(&'static str, u64)> = Vec::new();
        for r in self.ask(&self.all(), || AdminQuery::Counters)? {
            match r {
                AdminReply::Counters(v) => {
                    for (k, n) in v {
                        match sums.iter_mut().find(|(name, _)| *name == k) {
                            Some(e) => e.1 += n,
                            None => sums.push((k, n)),
                        }
                    }
                }
                _ => return Err(QueryError::Unexpected),
            }
        }
        Ok(sums)
    }
}

/// Adds one shard's gateway rows to `merged` (same table on every shard, so rows pair up by
/// position; a name that differs means the shards disagree: a bug).
fn merge_gateway_rows(
    merged: &mut Vec<GatewayStat>,
    rows: Vec<GatewayStat>,
) -> Result<(), QueryError> {
    if merged.is_empty() {
        *merged = rows;
        return Ok(());
    }
    if merged.len() != rows.len() {
        return Err(QueryError::Unexpected);
    }
    for (m, r) in merged.iter_mut().zip(rows) {
        if m.name != r.name {
            return Err(QueryError::Unexpected);
        }
        if r.health_owner {
            m.up = r.up;
            m.health_owner = true;
        }
        m.active_calls = m.active_calls.max(r.active_calls);
        add_gateway_counters(&mut m.counters, &r.counters);
    }
    Ok(())
}

/// `sum += c`, field by field (written out in full so that a new counter cannot be forgotten:
/// the destructuring stops compiling).
pub fn add_gateway_counters(sum: &mut GatewayCounters, c: &GatewayCounters) {
    let GatewayCounters {
        attempts,
        answered,
        fail_no_response,
        fail_trying_timeout,
        fail_status,
        rejected,
        ringing_timeout,
        skipped_down,
        skipped_full,
        marked_down,
        marked_up,
        probes_sent,
    } = *c;
    sum.attempts += attempts;
    sum.answered += answered;
    sum.fail_no_response += fail_no_response;
    sum.fail_trying_timeout += fail_trying_timeout;
    sum.fail_status += fail_status;
    sum.rejected += rejected;
    sum.ringing_timeout += ringing_timeout;
    sum.skipped_down += skipped_down;
    sum.skipped_full += skipped_full;
    sum.marked_down += marked_down;
    sum.marked_up += marked_up;
    sum.probes_sent += probes_sent;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, up: bool, owner: bool, attempts: u64) -> GatewayStat {
        GatewayStat {
            name: name.into(),
            address: "127.0.0.1:5070".parse().unwrap(),
            up,
            health_owner: owner,
            active_calls: 3,
            counters: GatewayCounters {
                attempts,
                fail_no_response: 1,
                ..Default::default()
            },
        }
    }

    #[test]
    fn gateway_rows_sum_counters_and_take_up_from_the_health_owner() {
        let mut m = Vec::new();
        // Shard 0 still thinks the gateway is up; shard 1 owns its health and marked it down.
        merge_gateway_rows(
            &mut m,
            vec![row("a", true, false, 2), row("b", true, true, 1)],
        )
        .unwrap();
        merge_gateway_rows(
            &mut m,
            vec![row("a", false, true, 5), row("b", false, false, 4)],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert!(!m[0].up && m[0].health_owner, "a: the owner's view");
        assert!(m[1].up, "b: the owner (first row) said up");
        assert_eq!(m[0].counters.attempts, 7);
        assert_eq!(m[0].counters.fail_no_response, 2);
        assert_eq!(m[1].counters.attempts, 5);
        assert_eq!(m[0].active_calls, 3, "shared by all shards, not summed");
        assert_eq!(
            merge_gateway_rows(
                &mut m,
                vec![row("x", true, false, 0), row("b", true, false, 0)]
            ),
            Err(QueryError::Unexpected)
        );
        assert_eq!(
            merge_gateway_rows(&mut m, vec![row("a", true, false, 0)]),
            Err(QueryError::Unexpected)
        );
    }
}
