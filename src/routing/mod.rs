//! Call routing (spec §4, issue 4): the routing table, who may call, the transaction-stateful
//! proxy core with failover and gateway health, and the CDR of every call.
//!
//! Owns: [`RoutingTable`] (gateways, routes, peers; shared read-only by every shard, plus the
//! per-gateway `max_calls` counters), [`CallAuth`] (407 digest on INVITE, trusted peers),
//! [`Proxy`] (one per shard: calls, dialogs, attempts, failover, CANCEL, health, CDRs) and the
//! byte-level message edits of a proxy ([`edit`]).
//! Must not: touch sockets, threads, clocks or locks (the `max_calls` counters are relaxed
//! atomics: see docs/architecture.md); import `dispatch`, `shard`, `io`, `server`.

pub mod auth;
pub mod edit;
pub mod proxy;
pub mod table;

pub use auth::{Admission, CallAuth, Caller};
pub use proxy::{
    is_proxy_token, Contact, FromTrunk, GatewayCounters, GatewayStat, Locator, Proxy,
    ProxyCounters, ProxyMail, ProxyOut, PROXY_TOKEN_BIT,
};
pub use table::{Gateway, GatewayId, Peer, RoutingTable};
