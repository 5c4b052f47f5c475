//! Guards against abuse: a per-source rate limit with an allow-list of trusted peers, and the
//! bounded failed-registration log.
//!
//! SKELETON: API contract; the auth helper implements it.

use std::net::{IpAddr, SocketAddr};

use crate::config::RegistrarConfig;
use crate::timer::Millis;

/// Token bucket per source IP. Used by the shard that *receives* a REGISTER (one source 4-tuple
/// always lands on the same shard), before any handover.
pub struct SourceLimiter {
    _private: (),
}

impl SourceLimiter {
    pub fn new(cfg: &RegistrarConfig) -> Self {
        let _ = cfg;
        todo!()
    }
    /// True when a request from `ip` at `now` is within the limit (trusted sources always are).
    pub fn allow(&mut self, ip: IpAddr, now: Millis) -> bool {
        let _ = (ip, now);
        todo!()
    }
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let _ = ip;
        todo!()
    }
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
    _private: (),
}

impl FailedLog {
    pub fn new(capacity: usize) -> Self {
        let _ = capacity;
        todo!()
    }
    pub fn record(&mut self, entry: FailedRegistration) {
        let _ = entry;
        todo!()
    }
    /// Most recent first.
    pub fn recent(&self) -> impl Iterator<Item = &FailedRegistration> {
        std::iter::empty()
    }
    pub fn count(&self, reason: FailReason) -> u64 {
        let _ = reason;
        todo!()
    }
}
