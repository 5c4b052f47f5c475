//! Runtime: follows the trunks' host names after start (issue 5 item 1: names are resolved at
//! start and on each new attempt).
//!
//! Owns: [`TrunkResolver`], the table of trunks whose destination (outbound proxy, else
//! registrar) is a host name, and the thread that drives it ([`start`]). The owner shard of a
//! trunk sends a [`ResolveNote`] whenever it schedules the trunk's next attempt (first try,
//! refresh, retry) or starts a forced one; the thread looks the name up [`RESOLVE_LEAD_MS`]
//! before that attempt (at once when that is past), through the system resolver (A/AAAA; no
//! SRV/NAPTR, RFC 3263), and when the chosen address changed it mails every shard a
//! [`Mail::TrunkDestination`] (inbound matching everywhere; the owner's next REGISTER).
//!
//! Choosing the address: the current one while the answer still holds it (round-robin DNS
//! does not move the trunk), else the first IPv4 address, else the first one. A name that
//! stops resolving (error or no address) keeps its last good address; a warning is logged
//! once per streak of failures, and an info line when it resolves again. One answer per
//! `host:port` also serves the other trunks due within [`REUSE_MS`] of it (many trunks to one
//! carrier make one lookup, not one each); a trunk's own next attempt always looks up again.
//!
//! Must not: block a shard (notes arrive on a bounded channel the shards `try_send` to; mail
//! goes out with the mailer's `try_send`, and a full mailbox is retried [`MAIL_RETRY_MS`]
//! later), or hold protocol state (the shards keep the destinations they use).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::config::TrunkConfig;
use crate::dispatch::{Mail, ResolveNote, TrunkDestination};
use crate::shard::{Clock, MailError, Mailer};
use crate::timer::Millis;

/// A name is looked up this long before the attempt it was noted for.
pub const RESOLVE_LEAD_MS: Millis = 5_000;
/// An answer (or failure) for a `host:port` is reused by other trunks due within this time.
pub const REUSE_MS: Millis = 2_000;
/// A change that could not be mailed to every shard (mailbox full) is retried after this.
pub const MAIL_RETRY_MS: Millis = 1_000;
/// Room for notes between the shards and the resolver thread (a full queue drops the note:
/// that attempt uses the last known address).
pub const NOTE_QUEUE: usize = 4096;

/// Looks `host` (no brackets) up with `port`: every address, in the resolver's order.
pub type ResolveFn = Box<dyn FnMut(&str, u16) -> io::Result<Vec<SocketAddr>> + Send>;
/// The local IP the kernel would send from toward an address (see `server::local_ip_toward`).
pub type LocalIpFn = Box<dyn FnMut(SocketAddr) -> Option<IpAddr> + Send>;

/// The system resolver (`getaddrinfo`: /etc/hosts, then DNS A/AAAA).
pub fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.collect())
}

/// `host` without the brackets of an IPv6 literal.
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `host` is a name (not an IP literal): only names are re-resolved.
pub fn is_host_name(host: &str) -> bool {
    bare_host(host).parse::<IpAddr>().is_err()
}

/// A trunk's destination host and port (outbound proxy, else registrar).
pub fn destination_of(t: &TrunkConfig) -> (&str, u16) {
    match &t.outbound_proxy {
        Some((h, p)) => (h.as_str(), *p),
        None => (t.registrar.as_str(), t.port),
    }
}

/// The address to use from `all`: `current` while it is still among them, else the first IPv4
/// address (the shards' socket is usually IPv4), else the first.
pub fn pick_address(all: &[SocketAddr], current: Option<SocketAddr>) -> Option<SocketAddr> {
    if let Some(c) = current.filter(|c| all.contains(c)) {
        return Some(c);
    }
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

struct Target {
    index: usize,
    name: String,
    host: String,
    port: u16,
    current: SocketAddr,
    local_ip: Option<IpAddr>,
    /// What every shard has been told.
    announced: (SocketAddr, Option<IpAddr>),
    /// The last lookup failed (a warning was logged for this streak).
    failing: bool,
    /// When to look the name up next.
    due: Option<Millis>,
}

type Answer = Result<Vec<SocketAddr>, String>;

/// The trunks with a host name, and what their names resolved to. Sans-IO apart from the
/// injected functions, so tests drive it with a simulated clock and a scripted resolver.
pub struct TrunkResolver {
    /// Sorted by `index`.
    targets: Vec<Target>,
    resolve: ResolveFn,
    local_ip: Option<LocalIpFn>,
    /// Last answer per `host:port`: when, for which trunk, and the addresses or why the
    /// lookup failed.
    cache: HashMap<(String, u16), (Millis, usize, Answer)>,
    /// Lookups made (not answered from the cache).
    pub lookups: u64,
}

impl TrunkResolver {
    /// Every trunk whose destination host is a name and that has a start-up address
    /// (`destinations`, by `[[trunks]]` index, as `server::resolve_trunks` gave them).
    /// `local_ips` are the start-up local IPs toward them; `local_ip`, when given (listener
    /// 0.0.0.0 / [::] and no `advertised_address`), finds the local IP toward a new address.
    pub fn new(
        trunks: &[TrunkConfig],
        destinations: &[Option<SocketAddr>],
        local_ips: &[Option<IpAddr>],
        resolve: ResolveFn,
        local_ip: Option<LocalIpFn>,
    ) -> TrunkResolver {
        let targets = trunks
            .iter()
            .enumerate()
            .filter_map(|(index, t)| {
                let (host, port) = destination_of(t);
                let current = destinations.get(index).copied().flatten()?;
                let ip = local_ips.get(index).copied().flatten();
                is_host_name(host).then(|| Target {
                    index,
                    name: t.name.clone(),
                    host: bare_host(host).to_string(),
                    port,
                    current,
                    local_ip: ip,
                    announced: (current, ip),
                    failing: false,
                    due: None,
                })
            })
            .collect();
        TrunkResolver {
            targets,
            resolve,
            local_ip,
            cache: HashMap::new(),
            lookups: 0,
        }
    }

    /// No trunk has a host name: nothing to follow.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// The last good address of trunk `index`, if it has a host name.
    pub fn current(&self, index: usize) -> Option<SocketAddr> {
        self.target(index).map(|t| self.targets[t].current)
    }

    /// Whether trunk `index`'s last lookup failed (its warning was logged for this streak).
    pub fn failing(&self, index: usize) -> bool {
        self.target(index).is_some_and(|t| self.targets[t].failing)
    }

    fn target(&self, index: usize) -> Option<usize> {
        self.targets.binary_search_by_key(&index, |t| t.index).ok()
    }

    /// A shard scheduled trunk `n.index`'s next attempt at `n.attempt_at`: look its name up
    /// [`RESOLVE_LEAD_MS`] before (the latest note replaces an earlier one, as the trunk's
    /// single timer does). Notes for trunks without a host name are ignored.
    pub fn note(&mut self, n: ResolveNote) {
        if let Some(t) = self.target(n.index) {
            self.targets[t].due = Some(n.attempt_at.saturating_sub(RESOLVE_LEAD_MS));
        }
    }

    /// Earliest time [`run_due`](Self::run_due) has a lookup to make.
    pub fn next_due(&self) -> Option<Millis> {
        self.targets.iter().filter_map(|t| t.due).min()
    }

    /// Look up every name due at `now`; returns the destinations the shards have not been told
    /// yet (mail them, then call [`announced`](Self::announced) or
    /// [`retry_later`](Self::retry_later)).
    pub fn run_due(&mut self, now: Millis) -> Vec<TrunkDestination> {
        let mut changed = Vec::new();
        let Self {
            targets,
            resolve,
            local_ip,
            cache,
            lookups,
        } = self;
        cache.retain(|_, (at, _, _)| now.saturating_sub(*at) < REUSE_MS);
        for t in targets.iter_mut() {
            if !t.due.is_some_and(|d| d <= now) {
                continue;
            }
            t.due = None;
            let key = (t.host.clone(), t.port);
            // Another trunk's fresh answer serves; a trunk's own new attempt looks up again.
            let answer = match cache.get(&key) {
                Some((_, by, a)) if *by != t.index => a.clone(),
                _ => {
                    *lookups += 1;
                    let a: Answer = match resolve(&t.host, t.port) {
                        Ok(all) if !all.is_empty() => Ok(all),
                        Ok(_) => Err("no address".to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    cache.insert(key, (now, t.index, a.clone()));
                    a
                }
            };
            let all = match answer {
                Ok(all) => all,
                Err(e) => {
                    if !t.failing {
                        t.failing = true;
                        tracing::warn!(trunk = %t.name, host = %t.host, error = %e,
                            keeping = %t.current,
                            "trunk host name does not resolve; keeping the last address");
                    }
                    continue;
                }
            };
            if t.failing {
                t.failing = false;
                tracing::info!(trunk = %t.name, host = %t.host, "trunk host name resolves again");
            }
            let Some(addr) = pick_address(&all, Some(t.current)) else {
                continue;
            };
            if addr != t.current {
                tracing::info!(trunk = %t.name, host = %t.host, from = %t.current, to = %addr,
                    "trunk host name resolves to a new address");
                t.current = addr;
                if let Some(f) = local_ip.as_mut() {
                    t.local_ip = f(addr).or(t.local_ip);
                }
            }
            if (t.current, t.local_ip) != t.announced {
                changed.push(TrunkDestination {
                    index: t.index,
                    addr: t.current,
                    local_ip: t.local_ip,
                });
            }
        }
        changed
    }

    /// Every shard took trunk `index`'s current destination.
    pub fn announced(&mut self, index: usize) {
        if let Some(t) = self.target(index) {
            let t = &mut self.targets[t];
            t.announced = (t.current, t.local_ip);
        }
    }

    /// Not every shard could take the change (mailbox full): try again at `now +`
    /// [`MAIL_RETRY_MS`] (a lookup, then the mail if still needed).
    pub fn retry_later(&mut self, index: usize, now: Millis) {
        if let Some(t) = self.target(index) {
            let t = &mut self.targets[t];
            let at = now + MAIL_RETRY_MS;
            t.due = Some(t.due.map_or(at, |d| d.min(at)));
        }
    }
}

/// Tells every shard about `d`; true when all took it (a shard that has exited counts as done:
/// the server is stopping).
pub fn mail_destination(mailer: &Mailer<Mail>, d: TrunkDestination) -> bool {
    let mut all = true;
    for s in 0..mailer.shard_count() {
        match mailer.send(s, Mail::TrunkDestination(Box::new(d))) {
            Ok(()) | Err(MailError::Gone(_)) => {}
            Err(MailError::Full(_) | MailError::NoShard(_)) => all = false,
        }
    }
    all
}

/// How long [`ResolverThread::stop`] waits for a lookup in progress before leaving the thread
/// detached (a dead DNS server must not hold up the shutdown).
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The running resolver thread.
pub struct ResolverThread {
    stop: Option<Sender<()>>,
    /// Closed when the thread ends.
    ended: Receiver<()>,
    thread: Option<JoinHandle<TrunkResolver>>,
}

impl ResolverThread {
    /// Stop the thread and wait for it, at most [`STOP_WAIT`] (a lookup in progress finishes
    /// first); returns the table (tests read it), or None when it did not end in time (it is
    /// left detached and ends after its lookup).
    pub fn stop(mut self) -> Option<TrunkResolver> {
        self.stop.take();
        let t = self.thread.take()?;
        match self.ended.recv_timeout(STOP_WAIT) {
            // Disconnected: the thread is returning (nothing is ever sent on `ended`).
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) | Ok(()) => t.join().ok(),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                tracing::warn!("the resolver thread is still in a lookup; not waiting for it");
                None
            }
        }
    }
}

impl Drop for ResolverThread {
    fn drop(&mut self) {
        // Dropping the stop sender ends the thread; it is not waited for here.
        self.stop.take();
    }
}

/// Start the thread that feeds `notes` to `resolver` and mails the changes through `mailer`;
/// `clock` is the shards' clock (notes carry its `Millis`).
pub fn start(
    mut resolver: TrunkResolver,
    notes: Receiver<ResolveNote>,
    mailer: Mailer<Mail>,
    clock: Clock,
) -> io::Result<ResolverThread> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            // Dropped when the thread ends, however it ends: `stop` stops waiting.
            let _ended = ended_tx;
            let mut notes = notes;
            loop {
                let now = clock.now();
                for d in resolver.run_due(now) {
                    if mail_destination(&mailer, d) {
                        resolver.announced(d.index);
                    } else {
                        resolver.retry_later(d.index, now);
                    }
                }
                // Long enough to mean "until a note or the stop"; the loop re-reads the clock.
                let wait = resolver
                    .next_due()
                    .map_or(Duration::from_secs(3600), |due| {
                        Duration::from_millis(due.saturating_sub(clock.now()))
                    });
                crossbeam_channel::select! {
                    recv(notes) -> n => match n {
                        Ok(n) => {
                            resolver.note(n);
                            while let Ok(n) = notes.try_recv() {
                                resolver.note(n);
                            }
                        }
                        // Every shard's sender is gone: no more notes.
                        Err(_) => notes = crossbeam_channel::never(),
                    },
                    recv(stop_rx) -> _ => break,
                    default(wait) => {}
                }
            }
            resolver
        })?;
    Ok(ResolverThread {
        stop: Some(stop_tx),
        ended,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipParams;
    use std::sync::{Arc, Mutex};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A resolver that answers from a script shared with the test (and counts its calls).
    fn scripted(script: Arc<Mutex<io::Result<Vec<SocketAddr>>>>) -> ResolveFn {
        Box::new(move |host, port| {
            assert_eq!((host, port), ("carrier.example", 5070));
            match &*script.lock().unwrap() {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            }
        })
    }

    fn trunks() -> Vec<TrunkConfig> {
        let sip = SipParams::default();
        let mut a = TrunkConfig::new("by-name", "carrier.example", "u", &sip);
        a.port = 5070;
        let b = TrunkConfig::new("by-ip", "192.0.2.1", "u", &sip);
        let mut c = TrunkConfig::new("via-proxy", "registrar.example", "u", &sip);
        c.outbound_proxy = Some(("192.0.2.2".into(), 5060));
        vec![a, b, c]
    }

    fn note(index: usize, attempt_at: Millis) -> ResolveNote {
        ResolveNote { index, attempt_at }
    }

    #[test]
    fn only_host_names_are_followed_and_only_changes_are_announced() {
        let script = Arc::new(Mutex::new(Ok(vec![addr("192.0.2.10:5070")])));
        let dests = [
            Some(addr("192.0.2.10:5070")),
            Some(addr("192.0.2.1:5060")),
            Some(addr("192.0.2.2:5060")),
        ];
        let mut r = TrunkResolver::new(&trunks(), &dests, &[], scripted(script.clone()), None);
        assert_eq!(
            r.len(),
            1,
            "the IP literals (registrar, proxy) are not followed"
        );
        assert_eq!(r.next_due(), None);
        r.note(note(1, 0)); // an IP-literal trunk: ignored
        assert_eq!(r.next_due(), None);

        // Noted for an attempt at 60 s: looked up at 55 s, not before.
        r.note(note(0, 60_000));
        assert_eq!(r.next_due(), Some(60_000 - RESOLVE_LEAD_MS));
        assert!(r.run_due(54_999).is_empty());
        assert_eq!(r.lookups, 0);
        // Same address: nothing to mail.
        assert!(r.run_due(55_000).is_empty());
        assert_eq!(r.lookups, 1);
        assert_eq!(r.next_due(), None, "one lookup per note");

        // The carrier moved: one change, mailed once.
        *script.lock().unwrap() = Ok(vec![addr("[2001:db8::7]:5070"), addr("192.0.2.11:5070")]);
        r.note(note(0, 120_000));
        let changed = r.run_due(115_000);
        assert_eq!(
            changed,
            vec![TrunkDestination {
                index: 0,
                addr: addr("192.0.2.11:5070"),
                local_ip: None
            }],
            "IPv4 preferred"
        );
        r.announced(0);
        r.note(note(0, 180_000));
        assert!(r.run_due(175_000).is_empty(), "already announced");
        // Round-robin answers that still hold the current address do not move the trunk.
        *script.lock().unwrap() = Ok(vec![addr("192.0.2.12:5070"), addr("192.0.2.11:5070")]);
        r.note(note(0, 240_000));
        assert!(r.run_due(235_000).is_empty());
        assert_eq!(r.current(0), Some(addr("192.0.2.11:5070")));
        assert_eq!(r.lookups, 4);
    }

    #[test]
    fn a_name_that_stops_resolving_keeps_the_last_good_address() {
        let script = Arc::new(Mutex::new(Ok(vec![addr("192.0.2.10:5070")])));
        let dests = [Some(addr("192.0.2.10:5070"))];
        let mut r = TrunkResolver::new(&trunks()[..1], &dests, &[], scripted(script.clone()), None);
        *script.lock().unwrap() = Err(io::Error::other("SERVFAIL"));
        for at in [10_000, 20_000, 30_000] {
            r.note(note(0, at));
            assert!(r.run_due(at).is_empty(), "a failure changes nothing");
            assert_eq!(r.current(0), Some(addr("192.0.2.10:5070")));
            assert!(r.failing(0));
        }
        // An empty answer is a failure too.
        *script.lock().unwrap() = Ok(vec![]);
        r.note(note(0, 40_000));
        assert!(r.run_due(40_000).is_empty());
        assert_eq!(r.current(0), Some(addr("192.0.2.10:5070")));
        // It resolves again, elsewhere: announced.
        *script.lock().unwrap() = Ok(vec![addr("192.0.2.20:5070")]);
        r.note(note(0, 50_000));
        assert_eq!(r.run_due(50_000)[0].addr, addr("192.0.2.20:5070"));
        assert!(!r.failing(0), "the streak is over");
        assert_eq!(r.lookups, 5);
    }

    #[test]
    fn answers_are_shared_briefly_and_failed_mail_is_retried() {
        let sip = SipParams::default();
        let mut ts = Vec::new();
        for name in ["a", "b"] {
            let mut t = TrunkConfig::new(name, "carrier.example", "u", &sip);
            t.port = 5070;
            ts.push(t);
        }
        let script = Arc::new(Mutex::new(Ok(vec![addr("192.0.2.30:5070")])));
        let dests = [Some(addr("192.0.2.10:5070")), Some(addr("192.0.2.10:5070"))];
        let ips = [Some("203.0.113.1".parse().unwrap()); 2];
        let local: LocalIpFn = Box::new(|a: SocketAddr| {
            assert_eq!(a, addr("192.0.2.30:5070"));
            Some("203.0.113.9".parse().unwrap())
        });
        let mut r = TrunkResolver::new(&ts, &dests, &ips, scripted(script), Some(local));
        r.note(note(0, 10_000));
        r.note(note(1, 11_000));
        let a = r.run_due(5_000);
        let b = r.run_due(6_000);
        assert_eq!(r.lookups, 1, "b used a's answer (within REUSE_MS)");
        let want = |index| TrunkDestination {
            index,
            addr: addr("192.0.2.30:5070"),
            local_ip: Some("203.0.113.9".parse().unwrap()),
        };
        assert_eq!((a, b), (vec![want(0)], vec![want(1)]));
        // a's mail found a full mailbox: it comes again at the retry (a's own lookup is not
        // reused), b's does not.
        r.announced(1);
        r.retry_later(0, 5_000);
        assert_eq!(r.next_due(), Some(5_000 + MAIL_RETRY_MS));
        assert_eq!(r.run_due(6_000), vec![want(0)]);
        assert_eq!(r.lookups, 2);
        r.announced(0);
        r.note(note(1, 11_000));
        assert!(r.run_due(6_500).is_empty(), "b reuses a's answer of 6 s");
        assert_eq!(r.lookups, 2);
        r.note(note(0, 20_000));
        assert!(r.run_due(15_000).is_empty());
        assert_eq!(r.lookups, 3);
    }
}
