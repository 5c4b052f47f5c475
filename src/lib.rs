//! sipshard: a sharded, sans-IO SIP signaling server.
//!
//! Layers, lowest first (a module imports only modules above it in this list):
//! - `sip`, `timer`, `config`, `io`: foundations; they import none of the rest.
//! - `cdr` (record types and the CSV format; `cdr::writer` is runtime), `transaction`, `registrar`, `trunk`, `dispatch`: the sans-IO protocol core. No sockets,
//!   threads, clocks or locks; time is passed in as [`timer::Millis`].
//! - `shard`, `server`, `resolver`, `admin`, `cli`, `cdr::writer`: the runtime that owns sockets, threads, files
//!   and the clock.

pub mod cdr;
pub mod config;
pub mod dispatch;
pub mod io;
pub mod registrar;
pub mod routing;
pub mod sip;
pub mod timer;
pub mod transaction;
pub mod trunk;

pub mod admin;
pub mod cli;
pub mod resolver;
pub mod server;
pub mod shard;
