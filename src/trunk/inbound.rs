//! Inbound requests from a trunk: which `[[trunks]]` entry an upstream's request (typically an
//! INVITE to the contact we registered) comes from (issue 5 item 4), for call routing.
//!
//! Owns: a table built from the config and the runtime's resolved destinations (a re-resolved
//! destination replaces the old one: [`InboundTrunks::set_destination`]).
//! Must not: resolve names, touch sockets or clocks, or keep per-request state.
//!
//! # The rule
//! A request from source address `src` with Request-URI `uri` belongs to trunk `t` when the
//! source IP is one of `t`'s addresses: its resolved destination (the outbound proxy when set,
//! else the registrar) and the registrar host when that is an IP literal. The source port is
//! not compared (carriers often send calls from another port or process than the registrar).
//! IPv4-mapped IPv6 sources count as IPv4. Among the trunks of that IP:
//! 1. [`MatchedBy::ContactUser`]: the first (in `[[trunks]]` order) whose `contact_user` equals
//!    the Request-URI user (%-escapes decoded): the upstream sent it to our registered contact.
//!    The Request-URI host is not compared: a request that reached us is for us.
//! 2. else [`MatchedBy::Source`]: the first trunk of that IP (carriers that rewrite the
//!    Request-URI to the dialled number); `candidates` says how many trunks share the IP, so
//!    call routing can refuse an ambiguous match if it wants.
//!
//! A source that is no trunk's address gives None, whatever the Request-URI.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::TrunkConfig;
use crate::sip::Uri;

/// Why a request was attributed to a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// Source IP and the Request-URI user (our Contact user for that trunk).
    ContactUser,
    /// Source IP only; `candidates` trunks share that IP (the first in config order is given).
    Source { candidates: usize },
}

/// The trunk an inbound request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundMatch<'a> {
    /// Index in `[[trunks]]` (the config's order).
    pub index: usize,
    pub name: &'a str,
    pub by: MatchedBy,
}

struct Entry {
    index: usize,
    name: Box<str>,
    contact_user: Box<[u8]>,
    /// The runtime's resolved destination IP (canonical), replaced by `set_destination`.
    resolved: Option<IpAddr>,
    /// The IP literals of the config (registrar, outbound proxy), canonical: they stay.
    fixed: Vec<IpAddr>,
}

/// Every trunk of the config, indexed by source IP. Build once; share or copy per shard.
#[derive(Default)]
pub struct InboundTrunks {
    entries: Vec<Entry>,
    /// Entry positions per canonical IP, in config order.
    by_ip: HashMap<IpAddr, Vec<u32>>,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

impl InboundTrunks {
    /// `destinations[i]` is trunk `i`'s resolved destination (as given to the shards); hosts
    /// that are IP literals count even without one.
    pub fn new(trunks: &[TrunkConfig], destinations: &[Option<SocketAddr>]) -> InboundTrunks {
        let mut t = InboundTrunks::default();
        for (i, cfg) in trunks.iter().enumerate() {
            let pos = t.entries.len() as u32;
            let resolved = destinations
                .get(i)
                .copied()
                .flatten()
                .map(|d| canonical(d.ip()));
            let mut fixed: Vec<IpAddr> = Vec::with_capacity(2);
            fixed.extend(ip_literal(&cfg.registrar).map(canonical));
            fixed.extend(
                cfg.outbound_proxy
                    .as_ref()
                    .and_then(|(h, _)| ip_literal(h))
                    .map(canonical),
            );
            for &ip in resolved.iter().chain(&fixed) {
                let list = t.by_ip.entry(ip).or_default();
                if !list.contains(&pos) {
                    list.push(pos);
                }
            }
            t.entries.push(Entry {
                index: i,
                name: cfg.name.as_str().into(),
                contact_user: cfg.contact_user.as_bytes().into(),
                resolved,
                fixed,
            });
        }
        t
    }

    /// Trunk `index`'s destination was re-resolved to `addr` (the runtime followed its host
    /// name): requests from the new IP are that trunk's from now on; the old resolved IP no
    /// longer is (unless it is also one of the trunk's IP literals). Config order is kept.
    pub fn set_destination(&mut self, index: usize, addr: SocketAddr) {
        let Some(pos) = self.entries.iter().position(|e| e.index == index) else {
            return;
        };
        let new = canonical(addr.ip());
        let e = &mut self.entries[pos];
        if e.resolved == Some(new) {
            return;
        }
        let old = e.resolved.replace(new);
        let pos = pos as u32;
        if let Some(old) = old.filter(|ip| !e.fixed.contains(ip)) {
            if let Some(list) = self.by_ip.get_mut(&old) {
                list.retain(|&p| p != pos);
                if list.is_empty() {
                    self.by_ip.remove(&old);
                }
            }
        }
        let list = self.by_ip.entry(new).or_default();
        if let Err(at) = list.binary_search(&pos) {
            list.insert(at, pos);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The trunk a request from `src` to `request_uri` belongs to (see the module docs).
    pub fn match_request(&self, request_uri: &Uri, src: SocketAddr) -> Option<InboundMatch<'_>> {
        let list = self.by_ip.get(&canonical(src.ip()))?;
        let user = request_uri.user().unwrap_or_default();
        let mut unescaped = Vec::new();
        let user = if user.contains(&b'%') && request_uri.user_unescaped(&mut unescaped).is_ok() {
            unescaped.as_slice()
        } else {
            user
        };
        let by_user = list
            .iter()
            .map(|&p| &self.entries[p as usize])
            .find(|e| !user.is_empty() && *e.contact_user == *user);
        let (e, by) = match by_user {
            Some(e) => (e, MatchedBy::ContactUser),
            None => (
                &self.entries[*list.first()? as usize],
                MatchedBy::Source {
                    candidates: list.len(),
                },
            ),
        };
        Some(InboundMatch {
            index: e.index,
            name: &e.name,
            by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipParams;

    fn trunk(name: &str, registrar: &str, contact_user: &str) -> TrunkConfig {
        let mut t = TrunkConfig::new(name, registrar, "acct", &SipParams::default());
        t.contact_user = contact_user.to_string();
        t
    }

    fn m<'a>(t: &'a InboundTrunks, uri: &str, src: &str) -> Option<InboundMatch<'a>> {
        let uri = Uri::parse(uri.as_bytes()).unwrap();
        t.match_request(&uri, src.parse().unwrap())
    }

    fn table() -> InboundTrunks {
        let mut via_proxy = trunk("c-proxy", "registrar.c.example", "c1");
        via_proxy.outbound_proxy = Some(("192.0.2.30".into(), 5060));
        InboundTrunks::new(
            &[
                trunk("a-one", "192.0.2.10", "a1"),
                trunk("a-two", "192.0.2.10", "a2"),
                trunk("b", "carrier-b.example", "b1"),
                via_proxy,
            ],
            // b's name resolved by the runtime; c's destination is its proxy.
            &[
                None,
                None,
                Some("198.51.100.20:5080".parse().unwrap()),
                None,
            ],
        )
    }

    #[test]
    fn contact_user_and_source_ip_pick_the_trunk() {
        let t = table();
        let hit = m(&t, "sip:a2@203.0.113.1:5060", "192.0.2.10:5060").unwrap();
        assert_eq!(
            (hit.index, hit.name, hit.by),
            (1, "a-two", MatchedBy::ContactUser)
        );
        // The source port does not matter; the contact URI with parameters works too.
        let hit = m(
            &t,
            "sip:a1@203.0.113.1:5060;transport=udp",
            "192.0.2.10:41000",
        )
        .unwrap();
        assert_eq!((hit.name, hit.by), ("a-one", MatchedBy::ContactUser));
        // A resolved host name: the runtime's destination address.
        let hit = m(&t, "sip:b1@203.0.113.1", "198.51.100.20:5060").unwrap();
        assert_eq!((hit.index, hit.by), (2, MatchedBy::ContactUser));
        // Through an outbound proxy: requests come from the proxy.
        let hit = m(&t, "sip:c1@203.0.113.1", "192.0.2.30:5060").unwrap();
        assert_eq!(hit.name, "c-proxy");
        // Escaped user parts are compared decoded; IPv4-mapped sources as IPv4.
        let hit = m(&t, "sip:%61%32@203.0.113.1", "[::ffff:192.0.2.10]:5060").unwrap();
        assert_eq!((hit.name, hit.by), ("a-two", MatchedBy::ContactUser));
    }

    #[test]
    fn a_rewritten_request_uri_matches_by_source_with_the_candidate_count() {
        let t = table();
        let hit = m(&t, "sip:+4420123456@203.0.113.1", "192.0.2.10:5060").unwrap();
        assert_eq!(hit.name, "a-one", "first in config order");
        assert_eq!(hit.by, MatchedBy::Source { candidates: 2 });
        let hit = m(&t, "sip:203.0.113.1", "198.51.100.20:5060").unwrap();
        assert_eq!(
            (hit.name, hit.by),
            ("b", MatchedBy::Source { candidates: 1 })
        );
    }

    #[test]
    fn a_re_resolved_destination_moves_the_trunks_source_ip() {
        let mut t = table();
        // b's registrar moved: its calls now come from the new IP, not the old one.
        t.set_destination(2, "198.51.100.21:5080".parse().unwrap());
        let hit = m(&t, "sip:b1@203.0.113.1", "198.51.100.21:5060").unwrap();
        assert_eq!((hit.name, hit.by), ("b", MatchedBy::ContactUser));
        assert_eq!(m(&t, "sip:b1@203.0.113.1", "198.51.100.20:5060"), None);
        // Onto an IP shared with other trunks: config order still decides a source match.
        t.set_destination(2, "192.0.2.10:5060".parse().unwrap());
        let hit = m(&t, "sip:+44@203.0.113.1", "192.0.2.10:5060").unwrap();
        assert_eq!(
            (hit.name, hit.by),
            ("a-one", MatchedBy::Source { candidates: 3 })
        );
        // An IP literal of the config stays the trunk's whatever the resolved address.
        t.set_destination(3, "198.51.100.99:5060".parse().unwrap());
        t.set_destination(3, "198.51.100.98:5060".parse().unwrap());
        assert_eq!(
            m(&t, "sip:c1@x", "192.0.2.30:5060").unwrap().name,
            "c-proxy"
        );
        assert_eq!(
            m(&t, "sip:c1@x", "198.51.100.98:5060").unwrap().name,
            "c-proxy"
        );
        assert_eq!(m(&t, "sip:c1@x", "198.51.100.99:5060"), None);
        // An unknown index is ignored.
        t.set_destination(9, "198.51.100.1:5060".parse().unwrap());
        assert_eq!(m(&t, "sip:x@x", "198.51.100.1:5060"), None);
    }

    #[test]
    fn other_sources_are_no_trunk_whatever_the_user() {
        let t = table();
        assert_eq!(m(&t, "sip:a1@203.0.113.1", "192.0.2.11:5060"), None);
        assert_eq!(m(&t, "sip:b1@203.0.113.1", "203.0.113.99:5060"), None);
        // Another trunk's contact user from the wrong carrier is not that trunk.
        let hit = m(&t, "sip:b1@203.0.113.1", "192.0.2.10:5060").unwrap();
        assert_eq!(hit.by, MatchedBy::Source { candidates: 2 });
        assert_ne!(hit.name, "b");
        assert!(InboundTrunks::new(&[], &[]).is_empty());
        assert_eq!(t.len(), 4);
    }
}
