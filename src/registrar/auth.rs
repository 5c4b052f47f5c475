//! Authentication of a REGISTER (digest MD5/SHA-256 with stateless nonces, IP, IP+port) and the
//! lockout after repeated failures (SS_ENDPOINT_REGISTER_RETRY / SS_ENDPOINT_REGISTER_SUSPEND).
//!
//! Owns: the decision "who is this and may it register", the challenge header values, the
//! per-(account, source) failure counters and suspensions. Unknown users are challenged exactly
//! like known ones (no user enumeration).
//!
//! SKELETON: API contract; the auth helper implements it.

use std::net::SocketAddr;

use crate::config::Config;
use crate::sip::digest::NonceKey;
use crate::sip::Message;
use crate::timer::Millis;

use super::accounts::{AccountId, Accounts};

/// What to do with a REGISTER after authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Authenticated as this account.
    Accepted(AccountId),
    /// Answer 401 with fresh challenges (`stale`: only the nonce had expired).
    Challenge { stale: bool },
    /// Answer 403 (wrong password after a fresh nonce counts as a failure; IP not allowed; the
    /// To user is not the authenticated account).
    Forbidden(&'static str),
    /// Answer 403 (suspended after too many failures), until `until`.
    Suspended { until: Millis },
}

/// One shard's authenticator.
pub struct Authenticator {
    _private: (),
}

impl Authenticator {
    pub fn new(cfg: &Config, key: NonceKey) -> Self {
        let _ = (cfg, key);
        todo!()
    }

    /// Decide for a REGISTER from `src` at `now`. Counts failures and suspends as configured.
    pub fn authenticate(
        &mut self,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        accounts: &Accounts,
    ) -> AuthDecision {
        let _ = (msg, src, now, accounts);
        todo!()
    }

    /// Append one `WWW-Authenticate` header value per configured algorithm, each with a fresh
    /// nonce, to `values` (the caller writes them as headers), e.g. SHA-256 first then MD5.
    pub fn challenges(&mut self, now: Millis, stale: bool, values: &mut Vec<Vec<u8>>) {
        let _ = (now, stale, values);
        todo!()
    }

    /// Forget failure state older than its suspension (called from the registrar's timers).
    pub fn expire(&mut self, now: Millis) {
        let _ = now;
        todo!()
    }
}
