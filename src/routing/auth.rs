//! Who may call (issue 4 item 1): trusted peers by source or digest, registrar accounts by
//! source (IP / IP+port modes) or by digest on the INVITE (407 Proxy-Authenticate, stateless
//! nonces from the registrar's `NonceKey`, so any shard verifies any nonce).

use std::net::SocketAddr;

use crate::config::Config;
use crate::registrar::accounts::{AccountId, Accounts};
use crate::sip::digest::{self, Algorithm, NonceCheck, NonceKey, NONCE_LEN};
use crate::sip::{parse_auth, HeaderKind, Message};
use crate::timer::Millis;

use super::table::{account_ha1, RoutingTable};

/// Who the caller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Peer(usize),
    Account(AccountId),
    /// An upstream trunk (`[[trunks]]` index), recognised by the dispatcher by source.
    Trunk(usize),
}

/// The decision on an initial INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed(Caller),
    /// 407 with fresh challenges.
    Challenge {
        stale: bool,
    },
    /// 403, with the reason for the Warning.
    Forbidden(&'static str),
}

/// The INVITE authenticator of one shard.
pub struct CallAuth {
    key: NonceKey,
    realm: Box<str>,
    algorithms: Vec<Algorithm>,
    nonce_lifetime_ms: u64,
    salt: u64,
    invite_auth: bool,
}

impl CallAuth {
    pub fn new(config: &Config, key: NonceKey, shard: usize) -> CallAuth {
        let mut algorithms = Vec::new();
        for name in &config.registrar.digest_algorithms {
            if let Some(a) = Algorithm::from_param(Some(name.trim().as_bytes())) {
                if !algorithms.contains(&a) {
                    algorithms.push(a);
                }
            }
        }
        if algorithms.is_empty() {
            algorithms.push(Algorithm::Md5);
        }
        CallAuth {
            key,
            realm: config.registrar.realm.as_str().into(),
            algorithms,
            nonce_lifetime_ms: u64::from(config.registrar.nonce_lifetime_s) * 1000,
            // Distinct from the registrar's salts (shard << 48) on the same shard.
            salt: ((shard as u64) << 48) | (1 << 47),
            invite_auth: config.routing.invite_auth,
        }
    }

    /// Decide for an initial INVITE from `src`.
    pub fn admit(
        &self,
        msg: &Message,
        src: SocketAddr,
        now: Millis,
        table: &RoutingTable,
        accounts: &Accounts,
    ) -> Admission {
        if let Some(p) = table.peer_by_source(src) {
            return Admission::Allowed(Caller::Peer(p));
        }
        if let Some(id) = accounts.find_by_source(src) {
            return Admission::Allowed(Caller::Account(id));
        }
        let realm = self.realm.as_bytes();
        let creds = msg
            .header_values(HeaderKind::ProxyAuthorization)
            .filter_map(|v| parse_auth(v).ok())
            .find(|a| a.is_digest() && a.digest.realm == Some(realm))
            .map(|a| a.digest);
        let Some(d) = creds else {
            if !self.invite_auth {
                let user = msg.from().and_then(|f| f.uri().user()).unwrap_or_default();
                if let Some(id) = accounts.find(user) {
                    return Admission::Allowed(Caller::Account(id));
                }
                return Admission::Forbidden("caller is not a peer or an account");
            }
            if accounts.is_empty() && !table.peers.iter().any(|p| p.username.is_some()) {
                return Admission::Forbidden("caller is not a trusted peer");
            }
            return Admission::Challenge { stale: false };
        };
        let (Some(user), Some(nonce), Some(uri), Some(received)) =
            (d.username, d.nonce, d.uri, d.response)
        else {
            return Admission::Challenge { stale: false };
        };
        let fresh = match self.key.check(nonce, now, self.nonce_lifetime_ms) {
            NonceCheck::Fresh => true,
            NonceCheck::Stale => false,
            NonceCheck::Invalid => return Admission::Challenge { stale: false },
        };
        let alg = match Algorithm::from_param(d.algorithm) {
            Some(a) if self.algorithms.contains(&a) => a,
            _ => return Admission::Challenge { stale: false },
        };
        let qop = match d.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case(b"auth") => match (d.nc, d.cnonce) {
                (Some(nc), Some(c)) => Some((nc, c)),
                _ => return Admission::Challenge { stale: false },
            },
            Some(_) => return Admission::Challenge { stale: false },
        };
        let (caller, ha1) = if let Some(p) = table.peer_by_username(user) {
            let peer = &table.peers[p];
            let h = match alg {
                Algorithm::Md5 => &peer.ha1_md5,
                Algorithm::Sha256 => &peer.ha1_sha256,
            };
            (Caller::Peer(p), h)
        } else {
            match accounts
                .find(user)
                .and_then(|id| account_ha1(accounts.get(id), alg).map(|h| (id, h)))
            {
                Some((id, h)) => (Caller::Account(id), h),
                None => return Admission::Forbidden("unknown user or wrong password"),
            }
        };
        let method = msg.method().map(|m| m.as_bytes()).unwrap_or(b"INVITE");
        let expected = digest::response(alg, ha1, method, uri, nonce, qop);
        if !digest::response_matches(&expected, received) {
            return Admission::Forbidden("unknown user or wrong password");
        }
        if !fresh {
            return Admission::Challenge { stale: true };
        }
        Admission::Allowed(caller)
    }

    /// One `Proxy-Authenticate` value per algorithm, appended to `values`.
    pub fn challenges(&mut self, now: Millis, stale: bool, values: &mut Vec<Vec<u8>>) {
        for &alg in &self.algorithms {
            let mut nonce = [0u8; NONCE_LEN];
            self.key.make(now, self.salt, &mut nonce);
            self.salt = self.salt.wrapping_add(1);
            let mut v = Vec::with_capacity(128);
            digest::write_challenge(&mut v, alg, self.realm.as_bytes(), &nonce, stale);
            values.push(v);
        }
    }
}
