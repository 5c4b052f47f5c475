//! Configuration: the TOML file, defaults, ranges and VOS3000 parameter names as aliases.
//!
//! Owns: parsing and validating the config, the embedded default, the parameter table.
//! Must not: import any other sipshard module, open sockets, or start threads.
//!
//! SKELETON: the field names and `TransactionTimers` are the contract used by the rest of the
//! crate; the config helper fills in parsing, validation, aliases and the parameter table.

use std::net::SocketAddr;

/// Timers of the transaction layer, in milliseconds, derived from the `SS_SIP_*` parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionTimers {
    /// SS_SIP_RESEND_INTERVAL: wait before each retransmission; after the last, give up. 1..=10 values.
    pub resend_intervals_ms: Vec<u64>,
    /// SS_SIP_SEND_RETRY: max retransmissions (re-sends, not counting the first send).
    pub send_retry: u32,
    /// SS_SIP_TIMEOUT_INVITE: max wait for any response to an INVITE.
    pub timeout_invite_ms: u64,
    /// SS_SIP_TIMEOUT_TRYING: after 100 Trying, max wait for 180/183/2xx.
    pub timeout_trying_ms: u64,
    /// SS_SIP_TIMEOUT_RINGING: after 180/183, max wait for the answer.
    pub timeout_ringing_ms: u64,
}

impl Default for TransactionTimers {
    fn default() -> Self {
        Self {
            resend_intervals_ms: vec![500, 1000, 2000, 4000, 4000, 4000, 4000, 4000, 4000, 4000],
            send_retry: 10,
            timeout_invite_ms: 10_000,
            timeout_trying_ms: 20_000,
            timeout_ringing_ms: 120_000,
        }
    }
}

/// Which batch I/O backend the shards use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackendKind {
    /// recvmmsg/sendmmsg where available (Linux), else portable.
    Auto,
    /// recvmmsg/sendmmsg (Linux only).
    Mmsg,
    /// One recv_from/send_to per datagram.
    Portable,
}

/// Runtime settings (not VOS3000 parameters).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address all shards bind (SO_REUSEPORT). Default 127.0.0.1:5060.
    pub listen: SocketAddr,
    /// Number of shard threads; 0 = one per available core.
    pub shards: usize,
    /// Pin each shard thread to a core.
    pub pin_shards: bool,
    /// SO_RCVBUF / SO_SNDBUF per shard socket, bytes.
    pub recv_buffer_bytes: usize,
    pub send_buffer_bytes: usize,
    /// Datagrams per recvmmsg/sendmmsg batch.
    pub io_batch: usize,
    pub io_backend: IoBackendKind,
    /// Capacity of each inter-shard mailbox (messages).
    pub mailbox_capacity: usize,
    /// Upper bound on graceful shutdown, ms.
    pub shutdown_timeout_ms: u64,
    /// Largest datagram accepted, bytes.
    pub max_datagram_bytes: usize,
}

/// The VOS3000 signaling parameters (spec section 1).
#[derive(Clone, Debug)]
pub struct SipParams {
    pub timers: TransactionTimers,
    /// SS_SIP_USER_AGENT_EXPIRE: None = Auto Negotiation, else 20..=7200 s.
    pub user_agent_expire_s: Option<u32>,
    pub user_agent_retry_delay_s: u32,
    pub user_agent_send_unregister: bool,
    pub user_agent_privacy: Privacy,
    pub endpoint_expire_s: u32,
    pub endpoint_nat_expire_s: u32,
    pub endpoint_register_retry: u32,
    pub endpoint_register_suspend_s: u32,
    pub endpoint_register_replace: bool,
    pub registrar_max_bindings: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privacy {
    Ignore,
    Id,
    None,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub sip: SipParams,
    /// Log filter, e.g. "info" or "sipshard=debug".
    pub log_level: String,
}
