//! Guards against abuse: a per-source rate limit with an allow-list of trusted peers, and the
//! bounded failed-registration log.
//!
//! Owns: the token buckets per source IP, the parsed trusted-source list and the failed-log ring.
//! Must not: read clocks or randomness (time and hash seeds come from the caller), touch
//! sockets, or grow without bound (every table here has a cap).
//!
//! # Rate limit
//! One token bucket per source IP (IPv4-mapped IPv6 addresses count as IPv4): it holds at most
//! `rate_limit_burst` tokens (at least 1), starts full, and refills at `rate_limit_per_source`
//! tokens per second. Arithmetic is in milli-tokens on integer milliseconds, so on a simulated
//! clock a fresh source gets exactly `burst` requests at once and then one more every
//! `1000 / rate` ms. `rate_limit_per_source = 0` turns the limit off. Trusted sources bypass it.
//!
//! Table bound: at most `max_sources` buckets ([`DEFAULT_MAX_SOURCES`] by default). A bucket
//! that has refilled to full carries no information (a new bucket would be the same), so it is
//! idle and may be dropped. When a new source arrives and the table is full, idle buckets are
//! swept (at most once per "next bucket becomes idle" instant, so a flood cannot make every
//! packet pay a full scan). If the table is still full, the new source is refused (fail closed:
//! more than `max_sources` distinct sources all bursting at once is a flood; sources already
//! tracked keep their own budget, trusted sources are unaffected) and
//! [`SourceLimiter::overflow_refusals`] counts it.
//!
//! # Failed log
//! [`FailedLog`] keeps the `capacity` most recent failures (a ring, overwritten oldest first)
//! and counts every failure by reason, including those that no longer fit the ring. Capacity 0
//! keeps the counts only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::RegistrarConfig;
use crate::timer::Millis;

/// Default bound on the buckets of one [`SourceLimiter`].
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4, so dual-stack sockets and IPv4 lists agree.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True when `ip` lies in `net`/`prefix` (both families compared after [`canonical_ip`]).
pub fn ip_in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (canonical_ip(ip), canonical_ip(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let p = u32::from(prefix.min(32));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The allow-list of trusted peers (`trusted_sources`): never rate-limited, never suspended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedSources {
    nets: Vec<(IpAddr, u8)>,
}

impl TrustedSources {
    /// Parses `IP` or `IP/PREFIX` strings (IPv4 or IPv6, IPv6 optionally in brackets). The error
    /// names the bad entry; config validation can call this to refuse a bad list at start-up.
    pub fn parse(list: &[String]) -> Result<TrustedSources, String> {
        let mut nets = Vec::with_capacity(list.len());
        for s in list {
            nets.push(parse_net(s)?);
        }
        Ok(TrustedSources { nets })
    }

    /// Like [`TrustedSources::parse`] but skips bad entries (they trust nothing).
    pub fn parse_lenient(list: &[String]) -> TrustedSources {
        TrustedSources {
            nets: list.iter().filter_map(|s| parse_net(s).ok()).collect(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|&(n, p)| ip_in_net(ip, n, p))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let t = s.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip = canonical_ip(
        addr.parse::<IpAddr>()
            .map_err(|_| format!("trusted source {s:?}: not an IP address or IP/PREFIX"))?,
    );
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("trusted source {s:?}: prefix must be 0..={max}")),
        },
    };
    Ok((ip, prefix))
}

/// One source's bucket: milli-tokens at `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: Millis,
}

/// Token bucket per source IP. Used by the shard that *receives* a REGISTER (one source 4-tuple
/// always lands on the same shard), before any handover.
pub struct SourceLimiter {
    /// Tokens per second; 0 = off.
    rate: u64,
    /// Bucket size in milli-tokens (`max(burst, 1) * 1000`).
    cap_milli: u64,
    trusted: TrustedSources,
    buckets: HashMap<IpAddr, Bucket, ahash::RandomState>,
    max_sources: usize,
    /// No bucket can be idle before this instant (set by a sweep that freed nothing).
    next_sweep: Millis,
    overflow_refusals: u64,
}

impl SourceLimiter {
    /// With fixed hash seeds and [`DEFAULT_MAX_SOURCES`]. The runtime should prefer
    /// [`SourceLimiter::with_seed`] with a random seed so the table cannot be hash-flooded.
    pub fn new(cfg: &RegistrarConfig) -> Self {
        Self::with_seed(cfg, 0x5349_5053_4841_5244, DEFAULT_MAX_SOURCES)
    }

    /// With a caller-chosen hash seed and table bound (`max_sources` at least 1).
    pub fn with_seed(cfg: &RegistrarConfig, seed: u64, max_sources: usize) -> Self {
        let max_sources = max_sources.max(1);
        SourceLimiter {
            rate: u64::from(cfg.rate_limit_per_source),
            cap_milli: u64::from(cfg.rate_limit_burst.max(1)) * 1000,
            trusted: TrustedSources::parse_lenient(&cfg.trusted_sources),
            buckets: HashMap::with_capacity_and_hasher(
                max_sources.min(1024),
                ahash::RandomState::with_seeds(
                    seed,
                    seed.rotate_left(17) ^ 0x243f_6a88_85a3_08d3,
                    seed.rotate_left(31) ^ 0x1319_8a2e_0370_7344,
                    seed.rotate_left(47) ^ 0xa409_3822_299f_31d0,
                ),
            ),
            max_sources,
            next_sweep: 0,
            overflow_refusals: 0,
        }
    }

    /// True when a request from `ip` at `now` is within the limit (trusted sources always are).
    pub fn allow(&mut self, ip: IpAddr, now: Millis) -> bool {
        if self.rate == 0 {
            return true;
        }
        let ip = canonical_ip(ip);
        if self.trusted.contains(ip) {
            return true;
        }
        let (rate, cap) = (self.rate, self.cap_milli);
        if let Some(b) = self.buckets.get_mut(&ip) {
            let elapsed = now.saturating_sub(b.at);
            b.milli = b
                .milli
                .saturating_add(elapsed.saturating_mul(rate))
                .min(cap);
            b.at = b.at.max(now);
            if b.milli >= 1000 {
                b.milli -= 1000;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.max_sources && !self.sweep(now) {
            self.overflow_refusals += 1;
            return false;
        }
        self.buckets.insert(
            ip,
            Bucket {
                milli: cap - 1000,
                at: now,
            },
        );
        true
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// The parsed allow-list (the authenticator uses the same one).
    pub fn trusted(&self) -> &TrustedSources {
        &self.trusted
    }

    /// Drop every bucket that has refilled to full by `now` (they carry no state). Call it from
    /// a periodic timer to keep the table small; [`SourceLimiter::allow`] also sweeps when full.
    pub fn expire(&mut self, now: Millis) {
        let (rate, cap) = (self.rate, self.cap_milli);
        self.buckets.retain(|_, b| full_at(b, rate, cap) > now);
    }

    /// Buckets currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// New sources refused because the table was full of active sources.
    pub fn overflow_refusals(&self) -> u64 {
        self.overflow_refusals
    }

    /// Sweep idle buckets when the table is full; true when there is room afterwards.
    fn sweep(&mut self, now: Millis) -> bool {
        if now < self.next_sweep {
            return false;
        }
        let (rate, cap) = (self.rate, self.cap_milli);
        let mut soonest = Millis::MAX;
        self.buckets.retain(|_, b| {
            let t = full_at(b, rate, cap);
            if t <= now {
                false
            } else {
                soonest = soonest.min(t);
                true
            }
        });
        if self.buckets.len() < self.max_sources {
            true
        } else {
            self.next_sweep = soonest;
            false
        }
    }
}

/// When `b` will have refilled to the full bucket.
fn full_at(b: &Bucket, rate: u64, cap: u64) -> Millis {
    let missing = cap.saturating_sub(b.milli);
    b.at.saturating_add(missing.div_ceil(rate.max(1)))
}

/// Why a registration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    WrongPassword,
    UnknownUser,
    SourceNotAllowed,
    Suspended,
    RateLimited,
    BadRequest,
    IntervalTooBrief,
    TooManyBindings,
    BindingExists,
    StaleCseq,
    /// A digest (nonce, nc) already accepted for the account (a replayed Authorization).
    NonceReplay,
}

impl FailReason {
    /// Every reason, in declaration order.
    pub const ALL: [FailReason; 11] = [
        FailReason::WrongPassword,
        FailReason::UnknownUser,
        FailReason::SourceNotAllowed,
        FailReason::Suspended,
        FailReason::RateLimited,
        FailReason::BadRequest,
        FailReason::IntervalTooBrief,
        FailReason::TooManyBindings,
        FailReason::BindingExists,
        FailReason::StaleCseq,
        FailReason::NonceReplay,
    ];

    /// Short name for logs and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::WrongPassword => "wrong password",
            FailReason::UnknownUser => "unknown user",
            FailReason::SourceNotAllowed => "source not allowed",
            FailReason::Suspended => "suspended",
            FailReason::RateLimited => "rate limited",
            FailReason::BadRequest => "bad request",
            FailReason::IntervalTooBrief => "interval too brief",
            FailReason::TooManyBindings => "too many bindings",
            FailReason::BindingExists => "binding exists",
            FailReason::StaleCseq => "stale CSeq",
            FailReason::NonceReplay => "nonce replay",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One entry of the failed-registration log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRegistration {
    pub at: Millis,
    pub source: SocketAddr,
    /// The account or To user as given (may be unknown).
    pub account: Box<str>,
    pub reason: FailReason,
}

/// Bounded ring of the most recent failures, with counts by reason.
pub struct FailedLog {
    ring: Vec<FailedRegistration>,
    /// Where the next entry goes once the ring is full (it holds the oldest entry).
    next: usize,
    capacity: usize,
    counts: [u64; FailReason::ALL.len()],
}

impl FailedLog {
    pub fn new(capacity: usize) -> Self {
        FailedLog {
            ring: Vec::with_capacity(capacity.min(4096)),
            next: 0,
            capacity,
            counts: [0; FailReason::ALL.len()],
        }
    }

    pub fn record(&mut self, entry: FailedRegistration) {
        self.counts[entry.reason.index()] += 1;
        if self.capacity == 0 {
            return;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(entry);
        } else {
            self.ring[self.next] = entry;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// Most recent first.
    pub fn recent(&self) -> impl Iterator<Item = &FailedRegistration> {
        // Oldest-first order is ring[next..] then ring[..next]; walk it backwards.
        let (newer, older) = self.ring.split_at(self.next.min(self.ring.len()));
        newer.iter().rev().chain(older.iter().rev())
    }

    pub fn count(&self, reason: FailReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Failures recorded for every reason together.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Entries currently kept (at most the capacity).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: u32, burst: u32, trusted: &[&str]) -> RegistrarConfig {
        RegistrarConfig {
            rate_limit_per_source: rate,
            rate_limit_burst: burst,
            trusted_sources: trusted.iter().map(|s| s.to_string()).collect(),
            ..RegistrarConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Requests allowed when `n` arrive at `now`.
    fn burst_at(l: &mut SourceLimiter, a: IpAddr, now: Millis, n: usize) -> usize {
        (0..n).filter(|_| l.allow(a, now)).count()
    }

    #[test]
    fn burst_then_rate_exactly() {
        let mut l = SourceLimiter::new(&cfg(20, 40, &[]));
        let a = ip("198.51.100.7");
        assert_eq!(burst_at(&mut l, a, 1_000, 100), 40);
        // 20/s: one token every 50 ms, not a millisecond earlier.
        assert!(!l.allow(a, 1_049));
        assert!(l.allow(a, 1_050));
        assert!(!l.allow(a, 1_050));
        assert!(!l.allow(a, 1_099));
        assert!(l.allow(a, 1_100));
        // One second later: exactly 20 more.
        assert_eq!(burst_at(&mut l, a, 2_100, 100), 20);
        // After a long pause the bucket is full again, not fuller.
        assert_eq!(burst_at(&mut l, a, 100_000, 100), 40);
        // Other sources have their own bucket.
        assert_eq!(burst_at(&mut l, ip("198.51.100.8"), 100_000, 100), 40);
    }

    #[test]
    fn rate_over_a_simulated_minute() {
        let mut l = SourceLimiter::new(&cfg(3, 5, &[]));
        let a = ip("2001:db8::1");
        let mut allowed = 0;
        // One request every ms for 60 s.
        for t in 0..60_000u64 {
            if l.allow(a, t) {
                allowed += 1;
            }
        }
        // 5 at once, then 3/s: tokens at 334, 667, 1000, ... (ceil(1000k/3)) up to 59 999.
        assert_eq!(allowed, 5 + 179);
    }

    #[test]
    fn zero_rate_is_off_and_zero_burst_means_one() {
        let mut off = SourceLimiter::new(&cfg(0, 0, &[]));
        assert_eq!(burst_at(&mut off, ip("192.0.2.1"), 0, 1000), 1000);
        let mut one = SourceLimiter::new(&cfg(10, 0, &[]));
        assert_eq!(burst_at(&mut one, ip("192.0.2.1"), 0, 10), 1);
        assert!(one.allow(ip("192.0.2.1"), 100));
    }

    #[test]
    fn trusted_sources_bypass_the_limit() {
        let mut l = SourceLimiter::new(&cfg(1, 1, &["10.0.0.0/8", "192.0.2.5", "2001:db8::/32"]));
        for a in ["10.1.2.3", "192.0.2.5", "2001:db8:1::9", "::ffff:10.9.9.9"] {
            assert!(l.is_trusted(ip(a)), "{a}");
            assert_eq!(burst_at(&mut l, ip(a), 0, 500), 500, "{a}");
        }
        for a in ["11.0.0.1", "192.0.2.6", "2001:db9::1"] {
            assert!(!l.is_trusted(ip(a)), "{a}");
            assert_eq!(burst_at(&mut l, ip(a), 0, 500), 1, "{a}");
        }
        assert_eq!(l.len(), 3, "trusted sources take no bucket");
    }

    #[test]
    fn trusted_parse_errors_name_the_entry() {
        let bad = ["10.0.0.0/33", "nonsense", "::1/129", "1.2.3.4/x"];
        for b in bad {
            let e = TrustedSources::parse(&[b.to_string()]).unwrap_err();
            assert!(e.contains(b), "{e}");
        }
        let ok = TrustedSources::parse(&["[2001:db8::1]".into(), "0.0.0.0/0".into()]).unwrap();
        assert!(ok.contains(ip("203.0.113.1")));
        assert!(ok.contains(ip("2001:db8::1")));
        assert!(!ok.contains(ip("2001:db8::2")));
    }

    #[test]
    fn mapped_ipv4_shares_the_bucket() {
        let mut l = SourceLimiter::new(&cfg(1, 2, &[]));
        assert!(l.allow(ip("192.0.2.1"), 0));
        assert!(l.allow(ip("::ffff:192.0.2.1"), 0));
        assert!(!l.allow(ip("192.0.2.1"), 0));
    }

    #[test]
    fn table_is_bounded_idle_buckets_are_evicted() {
        // 10/s, burst 2: a bucket that spent one token is full again 100 ms later.
        let mut l = SourceLimiter::with_seed(&cfg(10, 2, &[]), 7, 4);
        for i in 0..4u8 {
            assert!(l.allow(IpAddr::from([192, 0, 2, i]), 0));
        }
        // Full of active sources: a new one is refused, the old ones keep their budget.
        assert!(!l.allow(ip("192.0.2.200"), 50));
        assert_eq!(l.overflow_refusals(), 1);
        assert!(l.allow(IpAddr::from([192, 0, 2, 0]), 50));
        assert_eq!(l.len(), 4);
        // At 100 ms buckets 1..3 are full (idle) again: they are swept, the new source fits.
        assert!(l.allow(ip("192.0.2.200"), 100));
        assert_eq!(l.len(), 2);
        // A periodic expire drops the rest once idle.
        l.expire(10_000);
        assert!(l.is_empty());
    }

    #[test]
    fn failed_log_ring_order_and_bound() {
        let src: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let e = |at: Millis, reason| FailedRegistration {
            at,
            source: src,
            account: format!("u{at}").into(),
            reason,
        };
        let mut log = FailedLog::new(3);
        assert!(log.is_empty());
        assert_eq!(log.recent().count(), 0);
        log.record(e(1, FailReason::WrongPassword));
        log.record(e(2, FailReason::UnknownUser));
        let at: Vec<_> = log.recent().map(|f| f.at).collect();
        assert_eq!(at, [2, 1]);
        for t in 3..=7 {
            log.record(e(t, FailReason::WrongPassword));
            assert!(log.len() <= 3);
        }
        let at: Vec<_> = log.recent().map(|f| f.at).collect();
        assert_eq!(at, [7, 6, 5]);
        assert_eq!(&*log.recent().next().unwrap().account, "u7");
        assert_eq!(log.count(FailReason::WrongPassword), 6);
        assert_eq!(log.count(FailReason::UnknownUser), 1);
        assert_eq!(log.count(FailReason::Suspended), 0);
        assert_eq!(log.total(), 7);

        let mut counts_only = FailedLog::new(0);
        counts_only.record(e(1, FailReason::RateLimited));
        counts_only.record(e(2, FailReason::RateLimited));
        assert_eq!(counts_only.recent().count(), 0);
        assert_eq!(counts_only.count(FailReason::RateLimited), 2);
    }

    #[test]
    fn failed_log_capacity_one() {
        let src: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let mut log = FailedLog::new(1);
        for t in 0..5 {
            log.record(FailedRegistration {
                at: t,
                source: src,
                account: "a".into(),
                reason: FailReason::Suspended,
            });
        }
        let at: Vec<_> = log.recent().map(|f| f.at).collect();
        assert_eq!(at, [4]);
    }
}
