//! The per-core shard event loop and the mailboxes between shards.
//!
//! Owns: one shard's thread body ([`run`]): its mio poll, its I/O backend, its send queue, its
//! end of the mailbox mesh ([`mesh`]), the clock reading ([`Clock`]) and its counters
//! ([`ShardCounters`]). It drives a sans-IO [`Core`]: datagrams in, mail in, timers, shutdown;
//! the core's output goes out through this shard's [`Outbox`] implementation.
//! Must not: parse SIP or hold protocol state; share mutable state between shards other than
//! through the bounded mailboxes and the counters' atomics; lock, block, or allocate per message
//! on the hot path.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::dispatch::{Core, Outbox, ShardId};
use crate::io::{BatchIo, RecvBatch, SendBatch};
use crate::timer::Millis;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Receive batches per loop iteration before mail and timers get their turn.
const RX_ROUNDS: usize = 4;
/// Longest poll while shutting down, so `on_shutdown` is asked again regularly.
const SHUTDOWN_TICK: Duration = Duration::from_millis(10);

/// The server's monotonic clock: milliseconds since the server started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Whole milliseconds since start (rounded down, so a deadline is never seen early).
    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// [`Clock::now`] at the instant `t` (read once by the caller and reused).
    pub fn at(&self, t: Instant) -> Millis {
        t.saturating_duration_since(self.start).as_millis() as Millis
    }

    /// How long until `deadline` (zero if it has passed; `Duration::MAX` if it is out of range).
    pub fn until(&self, deadline: Millis) -> Duration {
        match self.start.checked_add(Duration::from_millis(deadline)) {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of one shard's loop.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    /// Datagrams per receive/send batch.
    pub io_batch: usize,
    /// Largest datagram accepted; longer ones are dropped and counted as truncated.
    pub max_datagram_bytes: usize,
    /// Datagrams queued while the socket would block; beyond this they are dropped and counted.
    pub max_pending_sends: usize,
    /// Upper bound on the shutdown phase, ms.
    pub shutdown_timeout_ms: u64,
    /// Pin the thread to this core.
    pub pin_to: Option<core_affinity::CoreId>,
}

/// A snapshot of one shard's counters (or a sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub recv_errors: u64,
    pub send_errors: u64,
    /// Datagrams longer than `max_datagram_bytes`, dropped.
    pub truncated: u64,
    /// Mail handled by this shard (from others and from itself).
    pub mail_in: u64,
    /// Mail sent to other shards.
    pub mail_out: u64,
    /// Mail dropped because the target's mailbox was full (or the target had exited).
    pub mailbox_full_drops: u64,
    /// Datagrams dropped because the send queue was full while the socket blocked, or left
    /// unsent at exit.
    pub send_queue_drops: u64,
    /// Receive-queue drops the kernel reported (SO_RXQ_OVFL), when the backend can tell.
    pub kernel_drops: u64,
    pub loop_iterations: u64,
    /// Panics caught in the core while it handled one datagram, mail or timer tick. Each is a
    /// bug: it is logged with the panic message, the input is dropped and the shard goes on.
    pub core_panics: u64,
}

macro_rules! stats_fields {
    ($m:ident) => {
        $m!(
            datagrams_in,
            bytes_in,
            datagrams_out,
            bytes_out,
            recv_errors,
            send_errors,
            truncated,
            mail_in,
            mail_out,
            mailbox_full_drops,
            send_queue_drops,
            kernel_drops,
            loop_iterations,
            core_panics
        )
    };
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: Self) {
        macro_rules! add {
            ($($f:ident),*) => {{ $(self.$f += o.$f;)* }};
        }
        stats_fields!(add);
    }
}

impl ShardStats {
    /// The counters as (name, value) pairs, for logs.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        macro_rules! pairs {
            ($($f:ident),*) => { vec![$((stringify!($f), self.$f)),*] };
        }
        stats_fields!(pairs)
    }
}

/// One shard's counters, published by the shard once per loop iteration (relaxed atomic stores,
/// no locks) and readable from any thread.
#[derive(Debug, Default)]
pub struct ShardCounters {
    datagrams_in: AtomicU64,
    bytes_in: AtomicU64,
    datagrams_out: AtomicU64,
    bytes_out: AtomicU64,
    recv_errors: AtomicU64,
    send_errors: AtomicU64,
    truncated: AtomicU64,
    mail_in: AtomicU64,
    mail_out: AtomicU64,
    mailbox_full_drops: AtomicU64,
    send_queue_drops: AtomicU64,
    kernel_drops: AtomicU64,
    loop_iterations: AtomicU64,
    core_panics: AtomicU64,
    /// Processing time per loop iteration.
    pub busy: BusyHistogram,
}

impl ShardCounters {
    pub fn snapshot(&self) -> ShardStats {
        macro_rules! load {
            ($($f:ident),*) => { ShardStats { $($f: self.$f.load(Relaxed)),* } };
        }
        stats_fields!(load)
    }

    fn publish(&self, s: &ShardStats) {
        macro_rules! store {
            ($($f:ident),*) => {{ $(self.$f.store(s.$f, Relaxed);)* }};
        }
        stats_fields!(store)
    }
}

/// Upper bounds (µs) of the buckets of the per-iteration busy-time histogram; one more bucket
/// counts everything above the last bound.
pub const BUSY_BOUNDS_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Processing time of one shard's loop iterations (from the end of the poll to the end of the
/// iteration: receive, mail, timers, sends): per-bucket counts (not cumulative), the sum in
/// nanoseconds and the count. Written by the shard with relaxed stores (only the bucket that
/// changed), read by anyone.
#[derive(Debug, Default)]
pub struct BusyHistogram {
    buckets: [AtomicU64; BUSY_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A snapshot of [`BusyHistogram`] (or a sum of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusySnapshot {
    /// Per-bucket counts (bucket i: at most `BUSY_BOUNDS_US[i]`; the last: above them all).
    pub buckets: [u64; BUSY_BOUNDS_US.len() + 1],
    pub sum_ns: u64,
    pub count: u64,
}

impl std::ops::AddAssign for BusySnapshot {
    fn add_assign(&mut self, o: Self) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum_ns += o.sum_ns;
        self.count += o.count;
    }
}

impl BusyHistogram {
    pub fn snapshot(&self) -> BusySnapshot {
        let mut s = BusySnapshot::default();
        for (a, b) in s.buckets.iter_mut().zip(&self.buckets) {
            *a = b.load(Relaxed);
        }
        s.sum_ns = self.sum_ns.load(Relaxed);
        s.count = self.count.load(Relaxed);
        s
    }
}

/// The bucket of a duration in ns.
fn busy_bucket(ns: u64) -> usize {
    let us = ns.div_ceil(1000);
    BUSY_BOUNDS_US
        .iter()
        .position(|&b| us <= b)
        .unwrap_or(BUSY_BOUNDS_US.len())
}

/// The shard-local side of [`BusyHistogram`]: counts kept here, published by storing only what
/// changed.
struct BusyLocal {
    s: BusySnapshot,
}

impl BusyLocal {
    fn record(&mut self, ns: u64, shared: &BusyHistogram) {
        let b = busy_bucket(ns);
        self.s.buckets[b] += 1;
        self.s.sum_ns = self.s.sum_ns.wrapping_add(ns);
        self.s.count += 1;
        shared.buckets[b].store(self.s.buckets[b], Relaxed);
        shared.sum_ns.store(self.s.sum_ns, Relaxed);
        shared.count.store(self.s.count, Relaxed);
    }
}

struct Peer<M> {
    tx: Sender<M>,
    waker: Arc<Waker>,
}

/// Everything one shard needs from the mesh: its poll and waker, its mailbox, and the other
/// shards' mailboxes and wakers. Built by [`mesh`], consumed by [`run`].
pub struct ShardSetup<M> {
    id: ShardId,
    poll: Poll,
    inbox: Receiver<M>,
    peers: Vec<Peer<M>>,
    counters: Arc<ShardCounters>,
    stop: Arc<AtomicBool>,
}

impl<M> ShardSetup<M> {
    pub fn id(&self) -> ShardId {
        self.id
    }
}

/// The outside's hold on a set of shards: stop them, read their counters.
#[derive(Clone)]
pub struct Control {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    counters: Vec<Arc<ShardCounters>>,
}

impl Control {
    /// Ask every shard to shut down gracefully (sets the stop flag, wakes them). Returns at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Live counters of every shard, by shard id.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// The loop busy-time histograms of every shard, summed.
    pub fn busy(&self) -> BusySnapshot {
        let mut sum = BusySnapshot::default();
        for c in &self.counters {
            sum += c.busy.snapshot();
        }
        sum
    }
}

/// Why [`Mailer::send`] could not deliver (the mail is handed back).
#[derive(Debug)]
pub enum MailError<M> {
    /// No such shard.
    NoShard(M),
    /// The shard's mailbox is full.
    Full(M),
    /// The shard has exited.
    Gone(M),
}

/// A cloneable way for threads outside the shards (the admin side, tests) to mail a shard: push
/// to its bounded mailbox without blocking, then wake it. Queries are rare; the shards' own mail
/// goes through their `Outbox`, not this.
pub struct Mailer<M> {
    peers: Arc<[Peer<M>]>,
}

impl<M> Clone for Mailer<M> {
    fn clone(&self) -> Self {
        Mailer {
            peers: self.peers.clone(),
        }
    }
}

impl<M> Mailer<M> {
    pub fn shard_count(&self) -> usize {
        self.peers.len()
    }

    /// Mail waiting in each shard's mailbox now, by shard id (a gauge for metrics).
    pub fn depths(&self) -> Vec<usize> {
        self.peers.iter().map(|p| p.tx.len()).collect()
    }

    /// Queue `mail` for `shard` (never blocks) and wake it.
    pub fn send(&self, shard: ShardId, mail: M) -> Result<(), MailError<M>> {
        let Some(peer) = self.peers.get(shard) else {
            return Err(MailError::NoShard(mail));
        };
        match peer.tx.try_send(mail) {
            Ok(()) => {
                let _ = peer.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(m)) => Err(MailError::Full(m)),
            Err(TrySendError::Disconnected(m)) => Err(MailError::Gone(m)),
        }
    }
}

/// Build the mailbox mesh for `shards` shards: a poll, a waker and a bounded mailbox of
/// `mailbox_capacity` (at least 1) per shard. No thread is started.
pub fn mesh<M: Send>(
    shards: usize,
    mailbox_capacity: usize,
) -> io::Result<(Vec<ShardSetup<M>>, Control)> {
    mesh_with_mailer(shards, mailbox_capacity).map(|(s, c, _)| (s, c))
}

/// [`mesh`], plus a [`Mailer`] for senders outside the shards.
pub fn mesh_with_mailer<M: Send>(
    shards: usize,
    mailbox_capacity: usize,
) -> io::Result<(Vec<ShardSetup<M>>, Control, Mailer<M>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut polls = Vec::with_capacity(shards);
    let mut wakers = Vec::with_capacity(shards);
    let mut chans = Vec::with_capacity(shards);
    for _ in 0..shards {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
        chans.push(crossbeam_channel::bounded::<M>(mailbox_capacity.max(1)));
    }
    let counters: Vec<Arc<ShardCounters>> = (0..shards).map(|_| Arc::default()).collect();
    let setups = polls
        .into_iter()
        .enumerate()
        .map(|(id, poll)| ShardSetup {
            id,
            poll,
            inbox: chans[id].1.clone(),
            peers: (0..shards)
                .map(|p| Peer {
                    tx: chans[p].0.clone(),
                    waker: wakers[p].clone(),
                })
                .collect(),
            counters: counters[id].clone(),
            stop: stop.clone(),
        })
        .collect();
    let mailer = Mailer {
        peers: (0..shards)
            .map(|p| Peer {
                tx: chans[p].0.clone(),
                waker: wakers[p].clone(),
            })
            .collect(),
    };
    Ok((
        setups,
        Control {
            stop,
            wakers,
            counters,
        },
        mailer,
    ))
}

/// How a shard ended.
#[derive(Debug)]
pub struct ShardExit {
    pub id: ShardId,
    pub stats: ShardStats,
    /// The core's own counters at exit.
    pub core_counters: Vec<(&'static str, u64)>,
    /// `on_shutdown` returned true before the timeout.
    pub clean: bool,
}

/// The runtime side of a shard that the core writes to: the send queue, the mail routes, the
/// counters. Implements [`Outbox`].
struct Driver<M, B> {
    id: ShardId,
    io: B,
    tx: SendBatch,
    /// The socket would block: sends queue up (bounded) until it is writable.
    blocked: bool,
    peers: Vec<Peer<M>>,
    local: VecDeque<M>,
    to_wake: Vec<ShardId>,
    wake_marked: Vec<bool>,
    stats: ShardStats,
    io_batch: usize,
    max_pending: usize,
}

impl<M, B: BatchIo> Driver<M, B> {
    fn flush(&mut self) {
        if self.tx.is_empty() {
            self.blocked = false;
            return;
        }
        let rep = self.io.send_batch(&mut self.tx);
        self.stats.datagrams_out += rep.sent as u64;
        self.stats.bytes_out += rep.bytes as u64;
        self.stats.send_errors += rep.errors as u64;
        self.blocked = rep.blocked;
    }

    /// Wake every shard mailed since the last call, once each.
    fn wake_peers(&mut self) {
        for s in self.to_wake.drain(..) {
            self.wake_marked[s] = false;
            let _ = self.peers[s].waker.wake();
        }
    }
}

impl<M, B: BatchIo> Outbox<M> for Driver<M, B> {
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]) {
        if self.tx.len() >= self.max_pending {
            self.stats.send_queue_drops += 1;
            return;
        }
        self.tx.push(dst, data);
        // A full batch goes out at once (keeps the arena small); while blocked, it waits.
        if !self.blocked && self.tx.len() >= self.io_batch {
            self.flush();
        }
    }

    fn mail(&mut self, shard: ShardId, mail: M) {
        if shard == self.id {
            self.local.push_back(mail);
            return;
        }
        let Some(peer) = self.peers.get(shard) else {
            debug_assert!(false, "mail to shard {shard} of {}", self.peers.len());
            self.stats.mailbox_full_drops += 1;
            return;
        };
        match peer.tx.try_send(mail) {
            Ok(()) => {
                self.stats.mail_out += 1;
                if !self.wake_marked[shard] {
                    self.wake_marked[shard] = true;
                    self.to_wake.push(shard);
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.mailbox_full_drops += 1;
            }
        }
    }
}

/// Run one shard on the current thread until it is stopped (see [`Control::stop`]) and has shut
/// down: `core.on_shutdown` returned true or `shutdown_timeout_ms` passed.
///
/// Each loop iteration: poll (timeout from `core.next_deadline()`, 0 when work is left over);
/// read the clock once; receive up to a few batches and hand each datagram to the core; deliver
/// mail (own first, then the mailbox, bounded); fire timers when due; send the queued datagrams
/// in batches; wake the shards that were mailed; publish counters.
pub fn run<C: Core, B: BatchIo>(
    setup: ShardSetup<C::Mail>,
    mut core: C,
    io: B,
    settings: &ShardSettings,
    clock: Clock,
) -> io::Result<ShardExit> {
    if let Some(c) = settings.pin_to {
        if !core_affinity::set_for_current(c) {
            tracing::warn!(shard = setup.id, core = c.id, "could not pin shard thread");
        }
    }
    let ShardSetup {
        id,
        mut poll,
        inbox,
        peers,
        counters,
        stop,
    } = setup;
    let n = peers.len();
    let io_batch = settings.io_batch.max(1);
    let fd = io.raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
    let mut write_interest = false;

    let mut rx = RecvBatch::new(io_batch, settings.max_datagram_bytes);
    let mut drv = Driver {
        id,
        io,
        tx: SendBatch::with_capacity(io_batch, io_batch * 1024),
        blocked: false,
        peers,
        local: VecDeque::with_capacity(64),
        to_wake: Vec::with_capacity(n),
        wake_marked: vec![false; n],
        stats: ShardStats::default(),
        io_batch,
        max_pending: settings.max_pending_sends.max(io_batch),
    };
    let mut events = Events::with_capacity(16);
    let mut busy = BusyLocal {
        s: BusySnapshot::default(),
    };
    let mut readable = true;
    let mut more_mail = false;
    // Set once the stop flag is seen: (deadline, core said done).
    let mut shutdown: Option<(Millis, bool)> = None;

    loop {
        // --- Wait. ---
        let timeout = if readable || more_mail || !drv.local.is_empty() {
            Some(Duration::ZERO)
        } else {
            let mut t = core.next_deadline().map(|d| clock.until(d));
            if let Some((deadline, _)) = shutdown {
                let cap = SHUTDOWN_TICK.min(clock.until(deadline));
                t = Some(t.map_or(cap, |t| t.min(cap)));
            }
            t
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let woke = Instant::now();
        let now = clock.at(woke);
        drv.stats.loop_iterations += 1;
        let mut writable = false;
        for ev in events.iter() {
            if ev.token() == SOCKET {
                readable |= ev.is_readable() || ev.is_error();
                writable |= ev.is_writable();
            }
        }
        if shutdown.is_none() && stop.load(Ordering::Acquire) {
            shutdown = Some((now.saturating_add(settings.shutdown_timeout_ms), false));
        }

        // --- Receive. ---
        if readable {
            let mut last_ok = true;
            for _ in 0..RX_ROUNDS {
                match drv.io.recv_batch(&mut rx) {
                    Ok(got) => {
                        last_ok = true;
                        // A short batch means the receive queue is empty: don't spend another
                        // syscall to hear EAGAIN. Safe with edge-triggered epoll on Linux, where
                        // every datagram queued afterwards raises a new readiness event.
                        let drained = got < rx.capacity();
                        for d in rx.iter() {
                            if d.truncated {
                                drv.stats.truncated += 1;
                                continue;
                            }
                            drv.stats.datagrams_in += 1;
                            drv.stats.bytes_in += d.data.len() as u64;
                            if !guarded(|| core.on_datagram(now, d.src, d.data, &mut drv)) {
                                drv.stats.core_panics += 1;
                            }
                        }
                        if drained {
                            readable = false;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        readable = false;
                        break;
                    }
                    Err(_) => {
                        last_ok = false;
                        drv.stats.recv_errors += 1;
                    }
                }
            }
            // Only a persistent error would fail every round; don't spin on it (the next
            // datagram brings a fresh readiness edge).
            if !last_ok {
                readable = false;
            }
            if let Some(d) = drv.io.kernel_drops() {
                drv.stats.kernel_drops = d;
            }
        }

        // --- Mail: our own first (only what is queued now), then the mailbox, bounded. ---
        for _ in 0..drv.local.len() {
            let Some(m) = drv.local.pop_front() else {
                break;
            };
            drv.stats.mail_in += 1;
            if !guarded(|| core.on_mail(now, m, &mut drv)) {
                drv.stats.core_panics += 1;
            }
        }
        more_mail = false;
        let budget = RX_ROUNDS * io_batch;
        for i in 0..=budget {
            if i == budget {
                more_mail = true;
                break;
            }
            match inbox.try_recv() {
                Ok(m) => {
                    drv.stats.mail_in += 1;
                    if !guarded(|| core.on_mail(now, m, &mut drv)) {
                        drv.stats.core_panics += 1;
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }

        // --- Timers. ---
        if core.next_deadline().is_some_and(|d| d <= now)
            && !guarded(|| core.on_timers(now, &mut drv))
        {
            drv.stats.core_panics += 1;
        }

        // --- Shutdown. ---
        let mut exit = false;
        if let Some((deadline, done)) = &mut shutdown {
            if !*done {
                *done = core.on_shutdown(now, &mut drv);
            }
            exit = *done || now >= *deadline;
        }

        // --- Send. ---
        if !drv.blocked || writable {
            drv.flush();
        }
        if drv.blocked != write_interest {
            write_interest = drv.blocked;
            let interest = if write_interest {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            poll.registry()
                .reregister(&mut SourceFd(&fd), SOCKET, interest)?;
        }
        drv.wake_peers();
        counters.publish(&drv.stats);
        busy.record(woke.elapsed().as_nanos() as u64, &counters.busy);

        if exit {
            break;
        }
    }

    // Last chance for queued sends, bounded by the shutdown deadline.
    let (deadline, clean) = shutdown.unwrap_or((clock.now(), false));
    while !drv.tx.is_empty() {
        let left = clock.until(deadline);
        if left.is_zero() {
            break;
        }
        if drv.blocked {
            if let Err(e) = poll.poll(&mut events, Some(left.min(SHUTDOWN_TICK))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
        drv.flush();
    }
    drv.stats.send_queue_drops += drv.tx.clear() as u64;
    counters.publish(&drv.stats);
    Ok(ShardExit {
        id,
        stats: drv.stats,
        core_counters: core.counters(),
        clean,
    })
}

/// Runs one call into the core; a panic in it (a bug: bad input must never panic) is caught,
/// counted and logged, and the shard goes on with its next input instead of taking the whole
/// server down. The default panic hook has already printed the message and location.
/// Returns false when it panicked (the caller counts it).
fn guarded(f: impl FnOnce()) -> bool {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
    if !ok {
        tracing::error!("the protocol core panicked; input dropped, shard continues");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::RawFd;

    /// Accepts `budget` datagrams, then would block.
    struct FakeIo {
        budget: usize,
        sent: Vec<Vec<u8>>,
    }

    impl BatchIo for FakeIo {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn raw_fd(&self) -> RawFd {
            -1
        }
        fn recv_batch(&mut self, _: &mut RecvBatch) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn send_batch(&mut self, batch: &mut SendBatch) -> crate::io::SendReport {
            let mut rep = crate::io::SendReport::default();
            let n = batch.len().min(self.budget);
            for i in 0..n {
                let d = batch.get(i).1.to_vec();
                rep.bytes += d.len();
                self.sent.push(d);
            }
            self.budget -= n;
            rep.sent = n;
            batch.advance(n);
            if !batch.is_empty() {
                rep.blocked = true;
                batch.compact();
            }
            rep
        }
    }

    fn driver(io: FakeIo, peers: Vec<Peer<u32>>) -> Driver<u32, FakeIo> {
        let n = peers.len();
        Driver {
            id: 0,
            io,
            tx: SendBatch::new(),
            blocked: false,
            peers,
            local: VecDeque::new(),
            to_wake: Vec::new(),
            wake_marked: vec![false; n],
            stats: ShardStats::default(),
            io_batch: 2,
            max_pending: 5,
        }
    }

    #[test]
    fn send_queue_is_bounded_while_blocked_and_drains_after() {
        let (mut setups, _ctl) = mesh::<u32>(1, 4).unwrap();
        let peers = setups.remove(0).peers;
        let mut d = driver(
            FakeIo {
                budget: 3,
                sent: Vec::new(),
            },
            peers,
        );
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for k in 0..10u8 {
            d.send_to(dst, &[k]);
        }
        // Full batches went out at once until the socket blocked after 3; then 5 queued, 2 dropped.
        assert_eq!(d.io.sent, vec![vec![0], vec![1], vec![2]]);
        assert!(d.blocked);
        assert_eq!(d.tx.len(), 5);
        assert_eq!(d.stats.send_queue_drops, 2);
        assert_eq!(d.stats.datagrams_out, 3);
        // Writable again: everything queued goes, in order.
        d.io.budget = 100;
        d.flush();
        assert!(!d.blocked);
        assert!(d.tx.is_empty());
        let sent: Vec<u8> = d.io.sent.iter().map(|v| v[0]).collect();
        assert_eq!(sent, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(d.stats.datagrams_out, 8);
    }

    #[test]
    fn mail_routes_local_remote_full_and_wakes_once() {
        let (mut setups, _ctl) = mesh::<u32>(3, 2).unwrap();
        let inbox1 = setups[1].inbox.clone();
        let peers = setups.remove(0).peers;
        let mut d = driver(
            FakeIo {
                budget: 0,
                sent: Vec::new(),
            },
            peers,
        );
        d.mail(0, 7); // to self: local queue, no wake
        d.mail(1, 1);
        d.mail(1, 2);
        d.mail(1, 3); // mailbox of 2 is full
        d.mail(2, 4);
        assert_eq!(d.local.iter().copied().collect::<Vec<_>>(), vec![7]);
        assert_eq!(inbox1.try_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(d.stats.mail_out, 3);
        assert_eq!(d.stats.mailbox_full_drops, 1);
        assert_eq!(d.to_wake, vec![1, 2], "each mailed shard once");
        d.wake_peers();
        assert!(d.to_wake.is_empty());
        assert!(d.wake_marked.iter().all(|m| !m));
    }

    #[test]
    fn busy_buckets_and_publishing() {
        assert_eq!(busy_bucket(0), 0);
        assert_eq!(busy_bucket(5_000), 0, "5 µs is in the 5 µs bucket");
        assert_eq!(busy_bucket(5_001), 1);
        assert_eq!(busy_bucket(100_000_000), BUSY_BOUNDS_US.len() - 1);
        assert_eq!(busy_bucket(100_000_001), BUSY_BOUNDS_US.len());
        let shared = BusyHistogram::default();
        let mut local = BusyLocal {
            s: BusySnapshot::default(),
        };
        local.record(3_000, &shared);
        local.record(3_000, &shared);
        local.record(2_000_000, &shared);
        let s = shared.snapshot();
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[busy_bucket(2_000_000)], 1);
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_ns, 2_006_000);
        assert_eq!(s.buckets.iter().sum::<u64>(), 3);
    }

    #[test]
    fn clock_never_reports_a_deadline_early() {
        let c = Clock::new();
        let now = c.now();
        let wait = c.until(now + 5);
        assert!(wait <= Duration::from_millis(5));
        assert_eq!(c.until(0), Duration::ZERO);
        assert!(
            c.until(Millis::MAX) > Duration::from_secs(1 << 40),
            "no overflow panic"
        );
    }
}
