//! RFC 3261 transactions (client and server, INVITE and non-INVITE) over UDP, sans-IO.
//!
//! Owns: transaction state machines, the resend schedule, matching tables.
//! Must not: touch sockets, threads, clocks or locks; parse or build SIP text beyond what it is given.
