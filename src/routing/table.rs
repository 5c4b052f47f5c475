//! The routing table shared read-only by every shard: gateways, routes (longest prefix), trusted
//! peers, and the one piece of shared mutable state of the proxy, the per-gateway count of
//! calls in progress used for `max_calls` (relaxed atomics, no lock: see docs/architecture.md).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::{AuthMode, Config, PeerAddress};
use crate::sip::digest::{ha1, Algorithm, Hex};

/// Index of a gateway in [`RoutingTable::gateways`].
pub type GatewayId = u16;

/// One gateway, ready for the hot path.
#[derive(Debug)]
pub struct Gateway {
    pub name: Box<str>,
    pub address: SocketAddr,
    /// `address` as text (`IP:port`, `[v6]:port`), for Request-URIs.
    pub address_text: Box<[u8]>,
    pub strip_digits: usize,
    pub prepend: Box<[u8]>,
    /// 0 = unlimited.
    pub max_calls: u32,
}

/// A trusted caller.
#[derive(Debug)]
pub struct Peer {
    pub name: Box<str>,
    pub username: Option<Box<[u8]>>,
    /// HA1 (MD5, SHA-256) over the registrar realm, when the peer has credentials.
    pub ha1_md5: Hex,
    pub ha1_sha256: Hex,
}

/// A route: prefix, then its gateways in order.
type Route = (Box<[u8]>, Box<[GatewayId]>);

/// Everything the proxy needs from the config, built once at start and shared as `Arc`.
#[derive(Debug)]
pub struct RoutingTable {
    pub gateways: Vec<Gateway>,
    /// (prefix, gateway ids), longest prefix first.
    routes: Vec<Route>,
    pub peers: Vec<Peer>,
    peer_by_ip: HashMap<IpAddr, usize>,
    peer_by_addr: HashMap<SocketAddr, usize>,
    peer_by_user: HashMap<Box<[u8]>, usize>,
    /// Calls in progress per gateway, summed over every shard.
    active: Box<[AtomicU32]>,
    pub failover_statuses: Box<[u16]>,
    pub no_route_status: u16,
    pub down_after: u32,
    pub probe_interval_ms: u64,
    pub invite_auth: bool,
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl RoutingTable {
    pub fn new(config: &Config) -> RoutingTable {
        let gateways: Vec<Gateway> = config
            .gateways
            .iter()
            .map(|g| Gateway {
                name: g.name.as_str().into(),
                address: g.address,
                address_text: g.address.to_string().into_bytes().into(),
                strip_digits: g.strip_digits as usize,
                prepend: g.prepend.as_bytes().into(),
                max_calls: g.max_calls,
            })
            .collect();
        let id_of = |name: &str| {
            gateways
                .iter()
                .position(|g| &*g.name == name)
                .map(|i| i as GatewayId)
        };
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r| {
                let ids: Vec<GatewayId> = r.gateways.iter().filter_map(|n| id_of(n)).collect();
                (r.prefix.as_bytes().into(), ids.into())
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let realm = config.registrar.realm.as_bytes();
        let mut peers = Vec::new();
        let mut peer_by_ip = HashMap::new();
        let mut peer_by_addr = HashMap::new();
        let mut peer_by_user = HashMap::new();
        for (i, p) in config.peers.iter().enumerate() {
            match p.address {
                Some(PeerAddress::Ip(ip)) => {
                    peer_by_ip.entry(ip.to_canonical()).or_insert(i);
                }
                Some(PeerAddress::IpPort(a)) => {
                    peer_by_addr.entry(canonical(a)).or_insert(i);
                }
                None => {}
            }
            let (md5, sha) = match (&p.username, &p.password) {
                (Some(u), Some(pw)) => {
                    peer_by_user.entry(u.as_bytes().into()).or_insert(i);
                    (
                        ha1(Algorithm::Md5, u.as_bytes(), realm, pw.as_bytes()),
                        ha1(Algorithm::Sha256, u.as_bytes(), realm, pw.as_bytes()),
                    )
                }
                _ => (Hex::default(), Hex::default()),
            };
            peers.push(Peer {
                name: p.name.as_str().into(),
                username: p.username.as_ref().map(|u| u.as_bytes().into()),
                ha1_md5: md5,
                ha1_sha256: sha,
            });
        }
        let active = (0..gateways.len()).map(|_| AtomicU32::new(0)).collect();
        RoutingTable {
            gateways,
            routes,
            peers,
            peer_by_ip,
            peer_by_addr,
            peer_by_user,
            active,
            failover_statuses: config.routing.failover_statuses.clone().into(),
            no_route_status: config.routing.no_route_status,
            down_after: config.routing.gateway_down_after,
            probe_interval_ms: u64::from(config.routing.gateway_probe_interval_s) * 1000,
            invite_auth: config.routing.invite_auth,
        }
    }

    /// The gateways of the longest route prefix of `number`, in order (None: no route).
    pub fn route(&self, number: &[u8]) -> Option<&[GatewayId]> {
        self.routes
            .iter()
            .find(|(p, _)| number.starts_with(p))
            .map(|(_, g)| &g[..])
    }

    /// The peer that `src` is, by IP:port first, then IP.
    pub fn peer_by_source(&self, src: SocketAddr) -> Option<usize> {
        let src = canonical(src);
        self.peer_by_addr
            .get(&src)
            .or_else(|| self.peer_by_ip.get(&src.ip()))
            .copied()
    }

    /// The peer with these digest credentials.
    pub fn peer_by_username(&self, user: &[u8]) -> Option<usize> {
        self.peer_by_user.get(user).copied()
    }

    pub fn is_failover(&self, status: u16) -> bool {
        self.failover_statuses.contains(&status)
    }

    /// Takes one call slot of gateway `g` if it is under its `max_calls`.
    pub fn try_acquire(&self, g: GatewayId) -> bool {
        let gw = &self.gateways[g as usize];
        let a = &self.active[g as usize];
        if gw.max_calls == 0 {
            a.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < gw.max_calls).then_some(n + 1)
        })
        .is_ok()
    }

    /// Gives back a slot taken by [`RoutingTable::try_acquire`].
    pub fn release(&self, g: GatewayId) {
        let _ = self.active[g as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        });
    }

    /// Calls in progress through gateway `g` (all shards).
    pub fn active_calls(&self, g: GatewayId) -> u32 {
        self.active[g as usize].load(Ordering::Relaxed)
    }
}

/// An account's HA1 for `alg`, if it is a digest account with a password.
pub(crate) fn account_ha1(a: &crate::registrar::accounts::Account, alg: Algorithm) -> Option<&Hex> {
    if a.auth_mode != AuthMode::Digest || a.ha1_md5.as_bytes().is_empty() {
        return None;
    }
    Some(match alg {
        Algorithm::Md5 => &a.ha1_md5,
        Algorithm::Sha256 => &a.ha1_sha256,
    })
}
