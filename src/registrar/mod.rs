//! The registrar (RFC 3261 §10 plus the VOS3000 endpoint policies): bindings of addresses of
//! record to contacts, authentication of endpoints, NAT handling, and the guards against abuse.
//!
//! Owns: one shard's bindings (slab + AOR index + expiry wheel), the REGISTER decision and the
//! 200/401/403/423 answers, NAT keepalives, lockouts, rate limits, the failed-registration log.
//! Must not: touch sockets, threads, clocks or locks (time is passed in, output goes back to the
//! dispatcher); import `shard`, `io`, `server` or `admin`.
//!
//! Ownership: a binding lives on shard `owner_of_aor(aor) % shards`. The dispatcher hands a
//! REGISTER to that shard; the registrar there answers it.
//!
//! SKELETON: the files below are contracts between the engineers building them in parallel.

pub mod accounts;
pub mod auth;
pub mod bindings;
pub mod core;
pub mod guard;

pub use self::bindings::{aor_key, aor_key_of_uri, owner_of_aor, BindingId, RemovalReason};
pub use self::core::{
    BindingRow, ContactView, IpFilter, ListFilter, ListPage, Page, RegisterOutcome, Registrar,
    RegistrarCounters, RegistrarSink, Status, Target,
};
