//! The sans-IO protocol core of one shard: takes datagrams, inter-shard mail and timer ticks,
//! and says what to send, to whom, and which shard owns what.
//!
//! Owns: the shard's protocol state (transactions, later bindings and calls) and its timing wheel.
//! Must not: touch sockets, threads, clocks or locks; import `shard`, `io`, `server` or `cli`.
//! The runtime (`shard`) drives it through the [`Core`] trait and gives it an [`Outbox`].

use std::net::SocketAddr;

use crate::timer::Millis;

/// Index of a shard, 0..shard_count.
pub type ShardId = usize;

/// Where a core's output goes. Implemented by the runtime (and by test harnesses).
/// Both calls copy the bytes, so the core may reuse its buffers right away.
pub trait Outbox<M> {
    /// Queue a datagram to `dst` from this shard's socket.
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]);
    /// Queue a message to another shard's mailbox.
    fn mail(&mut self, shard: ShardId, mail: M);
}

/// What the runtime calls. One value per shard, used from that shard's thread only.
pub trait Core: Send + 'static {
    /// What shards send each other (e.g. a raw datagram handed to its owner).
    type Mail: Send + 'static;

    /// A datagram arrived on this shard's socket from `src`.
    fn on_datagram<O: Outbox<Self::Mail>>(
        &mut self,
        now: Millis,
        src: SocketAddr,
        data: &[u8],
        out: &mut O,
    );
    /// Mail from another shard.
    fn on_mail<O: Outbox<Self::Mail>>(&mut self, now: Millis, mail: Self::Mail, out: &mut O);
    /// Fire every timer due at `now`.
    fn on_timers<O: Outbox<Self::Mail>>(&mut self, now: Millis, out: &mut O);
    /// Earliest time `on_timers` has work to do, if any.
    fn next_deadline(&self) -> Option<Millis>;
    /// The runtime is shutting down: stop taking new work and send what must go out on the way
    /// down (outbound registrations send REGISTER with Expires: 0 and wait for the answers).
    /// Returns true once the core has nothing left to flush.
    fn on_shutdown<O: Outbox<Self::Mail>>(&mut self, now: Millis, out: &mut O) -> bool;
    /// Counters for logs and (later) metrics, as (name, value) pairs.
    fn counters(&self) -> Vec<(&'static str, u64)>;
    /// The address the shard's socket is bound to (all shards share it), told once before the
    /// shard starts: what the core writes in the Via and Contact of requests it sends.
    fn set_local_addr(&mut self, _local: SocketAddr) {}
    /// The wall-clock time (Unix ms) at `Millis` 0 of the runtime's clock, told once before the
    /// shard starts, for headers that carry a date (the 200 OK to REGISTER). The core adds its
    /// `now` to it and never reads a clock.
    fn set_wall_clock(&mut self, _unix_ms_at_zero: u64) {}
}

mod dispatcher;
pub mod query;
mod register;
mod trunks;

pub use crate::routing::{GatewayCounters, GatewayStat, ProxyMail};
pub use dispatcher::{owner_of_call_id, DispatchCounters, Dispatcher, Mail, ALLOW, SERVER_NAME};
pub use query::{
    AdminQuery, AdminReply, ContactRow, OwnedBindingRow, OwnedListFilter, RegistrarQuery,
    RegistrarReply, TrunkRow,
};
pub use register::{RegisterCounters, RegisterPath, Shared};
pub use trunks::{
    is_trunk_token, ResolveNote, ResolveSender, TrunkDestination, Trunks, TRUNK_TOKEN_BIT,
};
