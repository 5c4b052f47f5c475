//! Call detail records: what one call was, as the proxy core reports it when the call ends.
//!
//! Owns: the record types (`CdrRecord`, its attempts, outcomes and end reasons) and `CdrSender`,
//! the non-blocking hand-off from a shard to the CDR writer (and back: records the writer is done
//! with return to the shards, which overwrite them, so a record costs no allocation in steady
//! state), and the CSV format ([`csv`]).
//! [`writer`] is the exception: it is runtime (a thread that owns the files), used by `server`;
//! so is [`recent`] (the ring of recent calls the writer fills for the admin thread).
//! Must not (outside `writer`): block a shard (a full queue drops the record and says so), read a clock (times are
//! the shard's monotonic `Millis`; the writer turns them into wall-clock times), or touch files
//! (the writer, in the runtime, does that).

pub mod csv;
pub mod recent;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::timer::Millis;

/// How one attempt (one gateway, or one registered contact) of a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx came back: this attempt answered the call.
    Answered,
    /// A final non-2xx response with this status.
    Rejected(u16),
    /// No response at all within `SS_SIP_TIMEOUT_INVITE` (or the resend schedule ran out).
    NoResponse,
    /// 100 Trying, then nothing more within `SS_SIP_TIMEOUT_TRYING`: CANCELed.
    TryingTimeout,
    /// 180/183, then no answer within `SS_SIP_TIMEOUT_RINGING`: CANCELed.
    RingingTimeout,
    /// The caller CANCELed while this attempt was pending.
    CancelledByCaller,
    /// Another branch of a parallel fork answered first: CANCELed.
    CancelledByFork,
    /// The server was shutting down.
    Shutdown,
}

/// Why the call ended (VOS3000 style "end reason").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Answered, then the caller sent BYE.
    CallerHangup,
    /// Answered, then the callee sent BYE.
    CalleeHangup,
    /// The caller CANCELed before the answer.
    CallerCancel,
    /// Ringing timeout: nobody answered.
    NoAnswer,
    /// The callee (or the last gateway) refused with a status that is not retried.
    Rejected,
    /// No route for the called number, and not a registered user.
    NoRoute,
    /// The caller is not allowed (not registered, not a trusted peer, bad credentials).
    Forbidden,
    /// Every gateway of the route was tried (or skipped as down or full) and none answered.
    AllGatewaysFailed,
    /// The called user is known to the registrar but has no live binding.
    NotRegistered,
    /// The dialog was torn down because the server shut down.
    Shutdown,
    /// Answered, then `[routing] max_call_duration` ran out: the proxy sent BYE both ways.
    MaxDuration,
    /// The registered callee's contacts never came from the shard that owns them (a mailbox
    /// between shards was full): 503 to the caller after `routing::proxy::LOCATE_TIMEOUT_MS`.
    LookupTimeout,
}

/// One attempt of a call: a gateway of the route, or one contact of a registered user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrAttempt {
    /// Gateway name, or `user` (a registered contact).
    pub target: String,
    pub destination: SocketAddr,
    /// The called number as sent to this target (after strip/prepend).
    pub called: String,
    pub started: Millis,
    pub ended: Millis,
    pub outcome: AttemptOutcome,
}

/// One call, answered or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrRecord {
    pub call_id: String,
    /// From URI user (or the whole URI when it has no user part).
    pub caller: String,
    /// The called number as received (Request-URI user).
    pub callee: String,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// Who the caller was identified as: `account:NAME`, `peer:NAME`.
    pub caller_identity: String,
    /// When the INVITE arrived.
    pub start: Millis,
    /// When the 2xx was forwarded to the caller.
    pub answer: Option<Millis>,
    /// When the call ended (BYE, final failure, or CANCEL).
    pub end: Millis,
    pub attempts: Vec<CdrAttempt>,
    /// The final status the caller got (200 for answered calls).
    pub final_status: u16,
    pub end_reason: EndReason,
}

impl CdrAttempt {
    /// An attempt with empty texts (to be overwritten).
    pub fn blank() -> CdrAttempt {
        CdrAttempt {
            target: String::new(),
            destination: SocketAddr::from(([0, 0, 0, 0], 0)),
            called: String::new(),
            started: 0,
            ended: 0,
            outcome: AttemptOutcome::Shutdown,
        }
    }
}

impl CdrRecord {
    /// A record with empty texts and no attempts (to be overwritten).
    pub fn blank() -> CdrRecord {
        CdrRecord {
            call_id: String::new(),
            caller: String::new(),
            callee: String::new(),
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            caller_identity: String::new(),
            start: 0,
            answer: None,
            end: 0,
            attempts: Vec::new(),
            final_status: 0,
            end_reason: EndReason::Shutdown,
        }
    }

    /// Talk time in milliseconds (0 when never answered).
    pub fn duration_ms(&self) -> Millis {
        self.answer.map_or(0, |a| self.end.saturating_sub(a))
    }
}

/// A shard's end of the CDR queue. Never blocks: when the writer is behind and the queue is full,
/// or there is no writer, the record is refused and the caller counts it. Records refused while a
/// writer is configured (queue full, writer gone) are also counted in a counter shared by all
/// clones, which the writer reports at shutdown ([`CdrSender::refused`]); touched only on refusal.
#[derive(Clone, Debug, Default)]
pub struct CdrSender {
    tx: Option<Sender<CdrRecord>>,
    /// Records the writer is done with (see [`CdrSender::used`]).
    used: Option<Receiver<CdrRecord>>,
    refused: Arc<AtomicU64>,
}

/// Sets `dst` to `src` as text (invalid UTF-8 replaced, as `String::from_utf8_lossy`), reusing
/// `dst`'s buffer.
pub fn set_text(dst: &mut String, src: &[u8]) {
    dst.clear();
    match std::str::from_utf8(src) {
        Ok(s) => dst.push_str(s),
        Err(_) => dst.push_str(&String::from_utf8_lossy(src)),
    }
}

/// What happened to a record handed to [`CdrSender::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emitted {
    Queued,
    /// The queue is full: the writer is behind.
    QueueFull,
    /// No CDR writer is configured (or it has stopped).
    NoWriter,
}

impl CdrSender {
    /// A sender that feeds `tx`.
    pub fn new(tx: Sender<CdrRecord>) -> Self {
        Self {
            tx: Some(tx),
            used: None,
            refused: Arc::default(),
        }
    }

    /// A sender that feeds `tx` and takes the records the writer is done with from `used`
    /// (see [`CdrSender::used`]).
    pub fn with_used(tx: Sender<CdrRecord>, used: Receiver<CdrRecord>) -> Self {
        Self {
            tx: Some(tx),
            used: Some(used),
            refused: Arc::default(),
        }
    }

    /// False when there is no writer: a record would only be refused, so there is no need to
    /// build one.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// A record the writer is done with, when one is waiting: every field still holds its last
    /// call's values, and the caller overwrites them all, reusing the buffers of its texts and
    /// attempts (no allocation for a record in steady state, and no free in the writer).
    /// None: build a new one ([`CdrRecord::blank`]).
    pub fn used(&self) -> Option<CdrRecord> {
        self.used.as_ref()?.try_recv().ok()
    }

    /// A sender with no writer behind it (tests, or CDRs disabled).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Records refused so far by this sender and its clones while a writer was configured
    /// (queue full, or the writer stopped). Not counted when CDRs are disabled.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn emit(&self, record: CdrRecord) -> Emitted {
        match &self.tx {
            None => Emitted::NoWriter,
            Some(tx) => match tx.try_send(record) {
                Ok(()) => Emitted::Queued,
                Err(TrySendError::Full(_)) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    Emitted::QueueFull
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    Emitted::NoWriter
                }
            },
        }
    }
}
