//! The transaction layer driven by a simulated clock and a recording sink: exact timelines of
//! every send and event, timeouts by cause, ACK handling, server absorption, cleanup, leaks.

use std::net::SocketAddr;

use sipshard::config::TransactionTimers;
use sipshard::timer::Millis;
use sipshard::transaction::*;

const GW: &str = "192.0.2.10:5060";
const UA: &str = "198.51.100.7:5062";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct Rec {
    now: Millis,
    sends: Vec<(Millis, SocketAddr, Vec<u8>)>,
    events: Vec<(Millis, TxEvent)>,
}

impl TxSink for Rec {
    fn send(&mut self, dst: SocketAddr, data: &[u8]) {
        self.sends.push((self.now, dst, data.to_vec()));
    }
    fn event(&mut self, ev: TxEvent) {
        self.events.push((self.now, ev));
    }
}

impl Rec {
    fn send_times(&self) -> Vec<Millis> {
        self.sends.iter().map(|s| s.0).collect()
    }
    fn timeouts(&self) -> Vec<(Millis, TimeoutCause)> {
        self.events
            .iter()
            .map(|(t, TxEvent::Timeout { cause, .. })| (*t, *cause))
            .collect()
    }
}

struct Sim {
    layer: TransactionLayer,
    sink: Rec,
    now: Millis,
}

impl Sim {
    fn new(timers: TransactionTimers) -> Self {
        Self {
            layer: TransactionLayer::new(&timers, 0),
            sink: Rec::default(),
            now: 0,
        }
    }

    fn default() -> Self {
        Self::new(TransactionTimers::default())
    }

    /// Advance the simulated clock to `t`, firing timers at their exact deadlines.
    fn run_until(&mut self, t: Millis) {
        while let Some(d) = self.layer.next_deadline() {
            if d > t {
                break;
            }
            self.now = self.now.max(d);
            self.sink.now = self.now;
            let fired = self.layer.on_timers(self.now, &mut self.sink);
            if fired == 0 && self.layer.next_deadline() == Some(d) {
                // A conservative deadline with nothing due yet: step the clock.
                self.now += 1;
            }
        }
        self.now = self.now.max(t);
        self.sink.now = self.now;
    }

    /// Advance one millisecond at a time (an independent check of `run_until`'s exactness).
    fn tick_until(&mut self, t: Millis) {
        while self.now < t {
            self.now += 1;
            self.sink.now = self.now;
            self.layer.on_timers(self.now, &mut self.sink);
        }
    }

    fn client(&mut self, method: &str, branch: &str, token: Token) -> TxId {
        let bytes = format!("{method} sip:b@gw SIP/2.0 branch={branch}");
        self.layer
            .start_client(
                ClientRequest {
                    method: method.as_bytes(),
                    branch: branch.as_bytes(),
                    dst: addr(GW),
                    bytes: bytes.as_bytes(),
                    token,
                },
                self.now,
                &mut self.sink,
            )
            .unwrap()
    }

    fn response(&mut self, branch: &str, method: &str, status: u16) -> ResponseOutcome {
        let resp = ResponseInfo {
            branch: branch.as_bytes(),
            cseq_method: method.as_bytes(),
            status,
        };
        self.layer
            .on_response(&resp, self.now, &mut self.sink, |req, out| {
                out.extend_from_slice(b"ACK for ");
                out.extend_from_slice(req);
            })
    }

    fn request(&mut self, method: &str, branch: &str, sent_by: &str) -> RequestOutcome {
        let req = RequestInfo {
            method: method.as_bytes(),
            key: ServerKey::Rfc3261 {
                branch: branch.as_bytes(),
                sent_by: sent_by.as_bytes(),
            },
            reply_to: addr(UA),
        };
        self.layer.on_request(&req, self.now, &mut self.sink)
    }

    fn respond(&mut self, id: TxId, status: u16) {
        let bytes = format!("SIP/2.0 {status} X");
        self.layer
            .respond(id, status, bytes.as_bytes(), self.now, &mut self.sink)
            .unwrap();
    }
}

fn secs(v: &[u64]) -> Vec<Millis> {
    v.to_vec()
}

// ----------------------------------------------------------------------------------------------
// The four timelines of the spec, exactly.
// ----------------------------------------------------------------------------------------------

#[test]
fn non_invite_default_timeline() {
    let mut s = Sim::default();
    let id = s.client("OPTIONS", "z9hG4bK-1", 77);
    s.run_until(200_000);
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500])
    );
    assert!(s
        .sink
        .sends
        .iter()
        .all(|(_, d, b)| *d == addr(GW) && b.starts_with(b"OPTIONS")));
    assert_eq!(
        s.sink.events,
        vec![(
            31_500,
            TxEvent::Timeout {
                id,
                token: 77,
                cause: TimeoutCause::NoResponse
            }
        )]
    );
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.pending_timers(), 0);
    let c = s.layer.counters();
    assert_eq!((c.retransmissions_sent, c.timeout_no_response), (9, 1));
}

#[test]
fn non_invite_default_timeline_with_1ms_ticks() {
    let mut s = Sim::default();
    s.client("REGISTER", "z9hG4bK-tick", 1);
    s.tick_until(40_000);
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500])
    );
    assert_eq!(s.sink.timeouts(), vec![(31_500, TimeoutCause::NoResponse)]);
}

#[test]
fn invite_no_response_timeline() {
    let mut s = Sim::default();
    let id = s.client("INVITE", "z9hG4bK-inv", 5);
    s.run_until(200_000);
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 1500, 3500, 7500]));
    assert_eq!(
        s.sink.events,
        vec![(
            10_000,
            TxEvent::Timeout {
                id,
                token: 5,
                cause: TimeoutCause::InviteTimeout
            }
        )]
    );
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.counters().timeout_invite, 1);
}

#[test]
fn short_schedule_timeline() {
    let mut s = Sim::new(TransactionTimers {
        resend_intervals_ms: vec![500, 1000, 2000, 4000, 4000, 4000],
        send_retry: 6,
        ..Default::default()
    });
    s.client("OPTIONS", "z9hG4bK-short", 0);
    s.run_until(100_000);
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 500, 1500, 3500, 7500, 11500])
    );
    assert_eq!(s.sink.timeouts(), vec![(15_500, TimeoutCause::NoResponse)]);
    assert!(s.layer.is_empty());
}

#[test]
fn send_retry_caps_resends() {
    let mut s = Sim::new(TransactionTimers {
        send_retry: 3,
        ..Default::default()
    });
    s.client("OPTIONS", "z9hG4bK-r3", 0);
    s.run_until(100_000);
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 1500, 3500]));
    assert_eq!(s.sink.timeouts(), vec![(7_500, TimeoutCause::NoResponse)]);
}

#[test]
fn invite_window_shorter_than_timeout_invite_fails_with_no_response() {
    let mut s = Sim::new(TransactionTimers {
        send_retry: 2,
        ..Default::default()
    });
    s.client("INVITE", "z9hG4bK-w", 0);
    s.run_until(100_000);
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 1500]));
    assert_eq!(s.sink.timeouts(), vec![(3_500, TimeoutCause::NoResponse)]);
}

#[test]
fn schedule_runs_relative_to_start_time() {
    let mut s = Sim::default();
    s.run_until(1_000_000);
    s.client("OPTIONS", "z9hG4bK-late", 0);
    s.run_until(2_000_000);
    let rel: Vec<Millis> = s.sink.send_times().iter().map(|t| t - 1_000_000).collect();
    assert_eq!(
        rel,
        secs(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500])
    );
    assert_eq!(
        s.sink.timeouts(),
        vec![(1_031_500, TimeoutCause::NoResponse)]
    );
}

// ----------------------------------------------------------------------------------------------
// Client: responses, timeouts by cause, ACK, cleanup.
// ----------------------------------------------------------------------------------------------

#[test]
fn non_invite_provisional_stops_resends_but_window_still_ends() {
    let mut s = Sim::default();
    let id = s.client("OPTIONS", "z9hG4bK-p", 9);
    s.run_until(1_000);
    let out = s.response("z9hG4bK-p", "OPTIONS", 100);
    assert_eq!(
        out,
        ResponseOutcome::Pass {
            id,
            token: 9,
            late: false
        }
    );
    s.run_until(100_000);
    assert_eq!(s.sink.send_times(), secs(&[0, 500]));
    assert_eq!(s.sink.timeouts(), vec![(31_500, TimeoutCause::NoResponse)]);
    assert!(s.layer.is_empty());
}

#[test]
fn non_invite_final_ends_it_and_timer_k_cleans_up() {
    let mut s = Sim::default();
    let id = s.client("REGISTER", "z9hG4bK-f", 3);
    s.run_until(2_000);
    assert_eq!(
        s.response("z9hG4bK-f", "REGISTER", 200),
        ResponseOutcome::Pass {
            id,
            token: 3,
            late: false
        }
    );
    assert_eq!(s.layer.state(id), Some(TxState::Completed));
    // A retransmitted final is absorbed.
    s.run_until(3_000);
    assert_eq!(
        s.response("z9hG4bK-f", "REGISTER", 200),
        ResponseOutcome::Absorbed { id }
    );
    s.run_until(6_999);
    assert_eq!(s.layer.len(), 1);
    s.run_until(7_000); // Timer K = T4 after the final.
    assert!(s.layer.is_empty());
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 1500]));
    assert!(s.sink.events.is_empty());
    assert_eq!(
        s.response("z9hG4bK-f", "REGISTER", 200),
        ResponseOutcome::NoMatch
    );
}

#[test]
fn invite_trying_timeout() {
    let mut s = Sim::default();
    let id = s.client("INVITE", "z9hG4bK-t", 11);
    s.run_until(600);
    assert_eq!(
        s.response("z9hG4bK-t", "INVITE", 100),
        ResponseOutcome::Pass {
            id,
            token: 11,
            late: false
        }
    );
    // A second 100 does not extend the wait.
    s.run_until(5_000);
    s.response("z9hG4bK-t", "INVITE", 100);
    s.run_until(200_000);
    assert_eq!(s.sink.send_times(), secs(&[0, 500]));
    assert_eq!(
        s.sink.timeouts(),
        vec![(20_600, TimeoutCause::TryingTimeout)]
    );
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.counters().timeout_trying, 1);
}

#[test]
fn invite_ringing_timeout_counts_from_first_18x() {
    let mut s = Sim::default();
    s.client("INVITE", "z9hG4bK-r", 0);
    s.run_until(300);
    s.response("z9hG4bK-r", "INVITE", 100);
    s.run_until(2_000);
    s.response("z9hG4bK-r", "INVITE", 183);
    s.run_until(3_000);
    s.response("z9hG4bK-r", "INVITE", 180);
    s.run_until(500_000);
    assert_eq!(s.sink.send_times(), secs(&[0]));
    assert_eq!(
        s.sink.timeouts(),
        vec![(122_000, TimeoutCause::RingingTimeout)]
    );
    assert!(s.layer.is_empty());
}

#[test]
fn invite_timeout_invite_stops_on_any_response() {
    let mut s = Sim::default();
    s.client("INVITE", "z9hG4bK-x", 0);
    s.run_until(9_999);
    s.response("z9hG4bK-x", "INVITE", 180);
    s.run_until(100_000);
    assert!(s.sink.events.is_empty(), "no InviteTimeout at 10 s");
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 1500, 3500, 7500]));
    s.run_until(200_000);
    assert_eq!(
        s.sink.timeouts(),
        vec![(129_999, TimeoutCause::RingingTimeout)]
    );
}

#[test]
fn invite_non_2xx_is_acked_and_retransmissions_reacked_not_passed_up() {
    let mut s = Sim::default();
    let id = s.client("INVITE", "z9hG4bK-486", 4);
    s.run_until(700);
    s.response("z9hG4bK-486", "INVITE", 180);
    s.run_until(2_000);
    let mut built = 0;
    let resp = ResponseInfo {
        branch: b"z9hG4bK-486",
        cseq_method: b"INVITE",
        status: 486,
    };
    let out = s.layer.on_response(&resp, 2_000, &mut s.sink, |req, out| {
        built += 1;
        assert!(req.starts_with(b"INVITE sip:b@gw"));
        out.extend_from_slice(b"ACK sip:b@gw");
    });
    assert_eq!(
        out,
        ResponseOutcome::Pass {
            id,
            token: 4,
            late: false
        }
    );
    assert_eq!(s.layer.state(id), Some(TxState::Completed));
    for t in [2_400, 3_000, 5_000] {
        s.run_until(t);
        let out = s
            .layer
            .on_response(&resp, t, &mut s.sink, |_, _| built += 1);
        assert_eq!(out, ResponseOutcome::Absorbed { id });
    }
    assert_eq!(built, 1, "the ACK is built once");
    let acks: Vec<(Millis, &[u8])> = s.sink.sends[2..]
        .iter()
        .map(|(t, _, b)| (*t, b.as_slice()))
        .collect();
    assert_eq!(
        acks,
        vec![
            (2_000, &b"ACK sip:b@gw"[..]),
            (2_400, &b"ACK sip:b@gw"[..]),
            (3_000, &b"ACK sip:b@gw"[..]),
            (5_000, &b"ACK sip:b@gw"[..]),
        ]
    );
    s.run_until(33_999);
    assert_eq!(s.layer.len(), 1);
    s.run_until(34_000); // Timer D
    assert!(s.layer.is_empty());
    assert!(s.sink.events.is_empty());
    let c = s.layer.counters();
    assert_eq!((c.retransmissions_absorbed, c.retransmissions_sent), (3, 4));
}

#[test]
fn invite_2xx_accepted_passes_every_2xx_then_timer_l() {
    let mut s = Sim::default();
    let id = s.client("INVITE", "z9hG4bK-ok", 8);
    s.run_until(1_000);
    let pass = ResponseOutcome::Pass {
        id,
        token: 8,
        late: false,
    };
    assert_eq!(s.response("z9hG4bK-ok", "INVITE", 200), pass);
    assert_eq!(s.layer.state(id), Some(TxState::Accepted));
    s.run_until(1_500);
    assert_eq!(
        s.response("z9hG4bK-ok", "INVITE", 200),
        pass,
        "retransmitted 2xx goes up"
    );
    assert_eq!(
        s.response("z9hG4bK-ok", "INVITE", 180),
        ResponseOutcome::Absorbed { id }
    );
    s.run_until(32_999);
    assert_eq!(s.layer.len(), 1);
    s.run_until(33_000);
    assert!(s.layer.is_empty());
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 500]),
        "no ACK for 2xx from the transaction"
    );
    assert!(s.sink.events.is_empty());
}

#[test]
fn late_2xx_after_invite_timeout_is_passed_up() {
    let mut s = Sim::default();
    let id = s.client("INVITE", "z9hG4bK-late", 6);
    s.run_until(15_000);
    assert_eq!(
        s.sink.timeouts(),
        vec![(10_000, TimeoutCause::InviteTimeout)]
    );
    assert_eq!(s.layer.state(id), Some(TxState::TimedOut));
    assert_eq!(
        s.response("z9hG4bK-late", "INVITE", 200),
        ResponseOutcome::Pass {
            id,
            token: 6,
            late: true
        }
    );
    s.run_until(47_000);
    assert!(s.layer.is_empty());
}

#[test]
fn cancel_is_its_own_transaction_and_487_is_acked() {
    let mut s = Sim::default();
    let inv = s.client("INVITE", "z9hG4bK-c", 1);
    assert_eq!(
        s.layer.start_cancel(inv, b"CANCEL", 2, 0, &mut s.sink),
        Err(StartError::NotCancellable),
        "no CANCEL before a provisional"
    );
    s.run_until(800);
    s.response("z9hG4bK-c", "INVITE", 180);
    s.run_until(5_000);
    let can = s
        .layer
        .start_cancel(inv, b"CANCEL sip:b@gw", 2, 5_000, &mut s.sink)
        .unwrap();
    assert_ne!(can, inv);
    assert_eq!(
        s.layer.start_cancel(inv, b"CANCEL", 2, 5_000, &mut s.sink),
        Err(StartError::NotCancellable)
    );
    assert_eq!(
        s.sink.sends.last().unwrap(),
        &(5_000, addr(GW), b"CANCEL sip:b@gw".to_vec())
    );
    s.run_until(5_500); // the CANCEL is re-sent on the schedule
    assert_eq!(
        s.response("z9hG4bK-c", "CANCEL", 200),
        ResponseOutcome::Pass {
            id: can,
            token: 2,
            late: false
        }
    );
    assert_eq!(s.layer.state(inv), Some(TxState::Proceeding));
    s.run_until(5_600);
    assert_eq!(
        s.response("z9hG4bK-c", "INVITE", 487),
        ResponseOutcome::Pass {
            id: inv,
            token: 1,
            late: false
        }
    );
    assert_eq!(s.sink.send_times(), secs(&[0, 500, 5_000, 5_500, 5_600]));
    assert!(s.sink.sends[4].2.starts_with(b"ACK for INVITE"));
    s.run_until(100_000);
    assert!(s.layer.is_empty());
    assert!(s.sink.events.is_empty());
}

#[test]
fn cancel_without_final_gives_up_after_64_t1() {
    let mut s = Sim::default();
    let inv = s.client("INVITE", "z9hG4bK-cg", 1);
    s.run_until(100);
    s.response("z9hG4bK-cg", "INVITE", 180);
    s.run_until(1_000);
    s.layer
        .start_cancel(inv, b"CANCEL", 2, 1_000, &mut s.sink)
        .unwrap();
    s.response("z9hG4bK-cg", "CANCEL", 200);
    s.run_until(200_000);
    assert_eq!(
        s.sink.timeouts(),
        vec![(33_000, TimeoutCause::NoFinalAfterCancel)]
    );
    assert!(s.layer.is_empty());
}

#[test]
fn cancel_after_ringing_timeout_and_487_acked() {
    let mut s = Sim::default();
    let inv = s.client("INVITE", "z9hG4bK-rt", 1);
    s.response("z9hG4bK-rt", "INVITE", 180);
    s.run_until(120_000);
    assert_eq!(
        s.sink.timeouts(),
        vec![(120_000, TimeoutCause::RingingTimeout)]
    );
    // The owner CANCELs and fails over; the 487 is still ACKed.
    s.layer
        .start_cancel(inv, b"CANCEL", 2, 120_000, &mut s.sink)
        .unwrap();
    s.run_until(120_100);
    assert_eq!(
        s.response("z9hG4bK-rt", "INVITE", 487),
        ResponseOutcome::Pass {
            id: inv,
            token: 1,
            late: true
        }
    );
    assert!(s.sink.sends.last().unwrap().2.starts_with(b"ACK for"));
    s.run_until(500_000);
    assert!(s.layer.is_empty());
}

#[test]
fn response_matching_needs_branch_and_cseq_method() {
    let mut s = Sim::default();
    s.client("INVITE", "z9hG4bK-m", 0);
    assert_eq!(
        s.response("z9hG4bK-m", "CANCEL", 200),
        ResponseOutcome::NoMatch
    );
    assert_eq!(
        s.response("z9hG4bK-M", "INVITE", 200),
        ResponseOutcome::NoMatch
    );
    assert_eq!(
        s.response("z9hG4bK-", "INVITE", 200),
        ResponseOutcome::NoMatch
    );
    assert!(matches!(
        s.response("z9hG4bK-m", "INVITE", 100),
        ResponseOutcome::Pass { .. }
    ));
}

#[test]
fn start_errors() {
    let mut s = Sim::default();
    s.client("INVITE", "z9hG4bK-d", 0);
    let req = ClientRequest {
        method: b"INVITE",
        branch: b"z9hG4bK-d",
        dst: addr(GW),
        bytes: b"x",
        token: 0,
    };
    assert_eq!(
        s.layer.start_client(req, 0, &mut s.sink),
        Err(StartError::Duplicate)
    );
    let ack = ClientRequest {
        method: b"ACK",
        ..req
    };
    assert_eq!(
        s.layer.start_client(ack, 0, &mut s.sink),
        Err(StartError::AckIsNotATransaction)
    );
    assert_eq!(s.layer.len(), 1);
}

// ----------------------------------------------------------------------------------------------
// Server transactions.
// ----------------------------------------------------------------------------------------------

#[test]
fn timer_j_of_a_terminated_transaction_spares_the_one_reusing_its_slot() {
    let mut s = Sim::default();
    let RequestOutcome::New(a) = s.request("REGISTER", "z9hG4bK-a", "ua.example:5062") else {
        panic!()
    };
    s.respond(a, 200); // Timer J due at 32 000
    assert_eq!(s.layer.pending_timers(), 1);
    assert_eq!(s.layer.next_deadline(), Some(32_000));
    assert!(s.layer.terminate(a));
    assert_eq!(s.layer.pending_timers(), 0);
    s.run_until(10_000);
    // The freed slot is taken again; its own Timer J is due at 42 000.
    let RequestOutcome::New(b) = s.request("REGISTER", "z9hG4bK-b", "ua.example:5062") else {
        panic!()
    };
    assert_eq!(s.layer.slot_capacity(), 1, "slot reused");
    s.respond(b, 200);
    assert_eq!(s.layer.pending_timers(), 1);
    s.run_until(41_999);
    assert_eq!(s.layer.len(), 1, "the old entry at 32 000 did not remove b");
    assert_eq!(
        s.request("REGISTER", "z9hG4bK-b", "ua.example:5062"),
        RequestOutcome::Retransmission {
            id: b,
            resent: true
        }
    );
    s.run_until(42_000);
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.pending_timers(), 0);
    assert_eq!(s.layer.next_deadline(), None);
}

#[test]
fn timer_j_runs_in_arming_order_among_other_timers() {
    let mut s = Sim::default();
    let mut ids = Vec::new();
    for k in 0..5u64 {
        s.run_until(k * 1_000);
        let RequestOutcome::New(id) = s.request("REGISTER", &format!("z9hG4bK-{k}"), "ua:5060")
        else {
            panic!()
        };
        s.respond(id, 200);
        ids.push(id);
    }
    // A client transaction's timers interleave with them in the same wheel/FIFO walk.
    s.client("OPTIONS", "z9hG4bK-c", 7);
    for k in 0..5u64 {
        s.run_until(32_000 + k * 1_000 - 1);
        assert_eq!(s.layer.state(ids[k as usize]), Some(TxState::Completed));
        s.run_until(32_000 + k * 1_000);
        assert_eq!(s.layer.state(ids[k as usize]), None, "{k}");
    }
    s.run_until(40_000);
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.pending_timers(), 0);
}

#[test]
fn non_invite_server_absorbs_and_resends_then_timer_j() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("OPTIONS", "z9hG4bK-s1", "ua.example:5062") else {
        panic!()
    };
    assert!(s.layer.set_token(id, 42));
    // Retransmission before any response: absorbed, nothing to re-send.
    assert_eq!(
        s.request("OPTIONS", "z9hG4bK-s1", "ua.example:5062"),
        RequestOutcome::Retransmission { id, resent: false }
    );
    s.run_until(100);
    s.respond(id, 200);
    s.run_until(600);
    assert_eq!(
        s.request("OPTIONS", "z9hG4bK-s1", "ua.example:5062"),
        RequestOutcome::Retransmission { id, resent: true }
    );
    assert_eq!(
        s.sink.sends,
        vec![
            (100, addr(UA), b"SIP/2.0 200 X".to_vec()),
            (600, addr(UA), b"SIP/2.0 200 X".to_vec())
        ]
    );
    // Same branch from another sent-by is another transaction.
    assert!(matches!(
        s.request("OPTIONS", "z9hG4bK-s1", "other.example:5060"),
        RequestOutcome::New(_)
    ));
    assert_eq!(s.layer.len(), 2);
    let other = match s.request("OPTIONS", "z9hG4bK-s1", "other.example:5060") {
        RequestOutcome::Retransmission { id, .. } => id,
        o => panic!("{o:?}"),
    };
    assert!(s.layer.terminate(other));
    assert_eq!(
        s.layer.respond(id, 200, b"again", 700, &mut s.sink),
        Err(RespondError::FinalAlreadySent)
    );
    s.run_until(32_099);
    assert_eq!(s.layer.len(), 1);
    s.run_until(32_100); // Timer J = 64·T1 after the final
    assert!(s.layer.is_empty());
    assert!(s.sink.events.is_empty());
    let c = s.layer.counters();
    assert_eq!((c.retransmissions_absorbed, c.retransmissions_sent), (3, 1));
}

#[test]
fn invite_server_provisional_resent_on_retransmitted_invite() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("INVITE", "z9hG4bK-i", "ua:5062") else {
        panic!()
    };
    assert_eq!(
        s.request("INVITE", "z9hG4bK-i", "ua:5062"),
        RequestOutcome::Retransmission { id, resent: false }
    );
    s.respond(id, 100);
    s.run_until(500);
    assert_eq!(
        s.request("INVITE", "z9hG4bK-i", "ua:5062"),
        RequestOutcome::Retransmission { id, resent: true }
    );
    s.respond(id, 180);
    s.run_until(1_500);
    s.request("INVITE", "z9hG4bK-i", "ua:5062");
    let sent: Vec<(Millis, &[u8])> = s
        .sink
        .sends
        .iter()
        .map(|(t, _, b)| (*t, b.as_slice()))
        .collect();
    assert_eq!(
        sent,
        vec![
            (0, &b"SIP/2.0 100 X"[..]),
            (500, b"SIP/2.0 100 X"),
            (500, b"SIP/2.0 180 X"),
            (1_500, b"SIP/2.0 180 X"),
        ]
    );
    s.run_until(1_000_000);
    assert_eq!(s.layer.len(), 1, "waits for the owner's final");
}

#[test]
fn invite_server_final_retransmitted_until_ack_then_timer_i() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("INVITE", "z9hG4bK-486", "ua:5062") else {
        panic!()
    };
    s.run_until(1_000);
    s.respond(id, 486);
    s.run_until(5_000);
    assert_eq!(s.sink.send_times(), secs(&[1_000, 1_500, 2_500, 4_500]));
    // Retransmitted INVITE in Completed: final re-sent at once.
    assert_eq!(
        s.request("INVITE", "z9hG4bK-486", "ua:5062"),
        RequestOutcome::Retransmission { id, resent: true }
    );
    s.run_until(6_000);
    assert_eq!(
        s.request("ACK", "z9hG4bK-486", "ua:5062"),
        RequestOutcome::AckAbsorbed { id }
    );
    assert_eq!(s.layer.state(id), Some(TxState::Confirmed));
    s.run_until(7_000);
    assert_eq!(
        s.request("ACK", "z9hG4bK-486", "ua:5062"),
        RequestOutcome::AckAbsorbed { id }
    );
    assert_eq!(
        s.request("INVITE", "z9hG4bK-486", "ua:5062"),
        RequestOutcome::Retransmission { id, resent: false }
    );
    s.run_until(10_999);
    assert_eq!(s.layer.len(), 1);
    s.run_until(11_000); // Timer I = T4 after the ACK
    assert!(s.layer.is_empty());
    assert_eq!(
        s.sink.send_times(),
        secs(&[1_000, 1_500, 2_500, 4_500, 5_000])
    );
    assert!(s.sink.events.is_empty());
    assert_eq!(
        s.request("ACK", "z9hG4bK-486", "ua:5062"),
        RequestOutcome::AckToTu { tx: None }
    );
}

#[test]
fn invite_server_ack_timeout() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("INVITE", "z9hG4bK-na", "ua:5062") else {
        panic!()
    };
    s.layer.set_token(id, 99);
    s.respond(id, 503);
    s.run_until(100_000);
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500])
    );
    assert_eq!(
        s.sink.events,
        vec![(
            31_500,
            TxEvent::Timeout {
                id,
                token: 99,
                cause: TimeoutCause::AckTimeout
            }
        )]
    );
    assert!(s.layer.is_empty());
    assert_eq!(s.layer.counters().timeout_ack, 1);
}

#[test]
fn invite_server_2xx_accepted_absorbs_invites_for_64_t1() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("INVITE", "z9hG4bK-2", "ua:5062") else {
        panic!()
    };
    s.respond(id, 200);
    s.run_until(1_000);
    assert_eq!(
        s.request("INVITE", "z9hG4bK-2", "ua:5062"),
        RequestOutcome::Retransmission { id, resent: false }
    );
    // The owner's own 2xx retransmission passes through.
    s.layer
        .respond(id, 200, b"200 again", 1_000, &mut s.sink)
        .unwrap();
    assert_eq!(
        s.request("ACK", "z9hG4bK-2", "ua:5062"),
        RequestOutcome::AckToTu { tx: Some(id) }
    );
    s.run_until(31_999);
    assert_eq!(s.layer.len(), 1);
    s.run_until(32_000); // Timer L
    assert!(s.layer.is_empty());
    assert_eq!(s.sink.send_times(), secs(&[0, 1_000]));
}

#[test]
fn cancel_matched_to_its_invite() {
    let mut s = Sim::default();
    let RequestOutcome::New(inv) = s.request("INVITE", "z9hG4bK-cx", "ua:5062") else {
        panic!()
    };
    s.respond(inv, 180);
    let out = s.request("CANCEL", "z9hG4bK-cx", "ua:5062");
    let RequestOutcome::NewCancel { id: can, target } = out else {
        panic!("{out:?}")
    };
    assert_eq!(target, Some(inv));
    assert_ne!(can, inv);
    s.respond(can, 200);
    s.respond(inv, 487);
    assert_eq!(
        s.request("CANCEL", "z9hG4bK-cx", "ua:5062"),
        RequestOutcome::Retransmission {
            id: can,
            resent: true
        }
    );
    // A CANCEL for nothing we know: its own transaction, no target (answer 481).
    for (branch, sent_by) in [("z9hG4bK-zz", "ua:5062"), ("z9hG4bK-cx", "elsewhere:5060")] {
        let out = s.request("CANCEL", branch, sent_by);
        let RequestOutcome::NewCancel { id, target: None } = out else {
            panic!("{out:?}")
        };
        s.respond(id, 481);
    }
    assert_eq!(
        s.request("ACK", "z9hG4bK-cx", "ua:5062"),
        RequestOutcome::AckAbsorbed { id: inv }
    );
    s.run_until(100_000);
    assert!(s.layer.is_empty());
}

#[test]
fn rfc2543_fallback_key() {
    let mut s = Sim::default();
    let key = |method: &'static str, to_tag: &'static [u8], cseq: u32| RequestInfo {
        method: method.as_bytes(),
        key: ServerKey::Rfc2543(LegacyKey {
            request_uri: b"sip:bob@example.com",
            to_tag,
            from_tag: b"ft1",
            call_id: b"abc@host",
            cseq,
            top_via: b"SIP/2.0/UDP old.host:5060",
        }),
        reply_to: addr(UA),
    };
    assert!(!has_magic_cookie(b"1234"));
    let RequestOutcome::New(id) = s.layer.on_request(&key("INVITE", b"", 1), 0, &mut s.sink) else {
        panic!()
    };
    assert_eq!(
        s.layer.on_request(&key("INVITE", b"", 1), 0, &mut s.sink),
        RequestOutcome::Retransmission { id, resent: false }
    );
    // Different CSeq or To tag: a different request.
    assert!(matches!(
        s.layer.on_request(&key("INVITE", b"", 2), 0, &mut s.sink),
        RequestOutcome::New(_)
    ));
    assert!(matches!(
        s.layer.on_request(&key("INVITE", b"tt", 1), 0, &mut s.sink),
        RequestOutcome::New(_)
    ));
    // CANCEL finds the INVITE by the same fields.
    let out = s.layer.on_request(&key("CANCEL", b"", 1), 0, &mut s.sink);
    assert!(matches!(out, RequestOutcome::NewCancel { target: Some(t), .. } if t == id));
    s.respond(id, 486);
    // The ACK carries our response's To tag; it still matches.
    assert_eq!(
        s.layer
            .on_request(&key("ACK", b"our-tag", 1), 10, &mut s.sink),
        RequestOutcome::AckAbsorbed { id }
    );
    // A 3261 request with the same values elsewhere does not collide with a legacy key.
    assert!(matches!(
        s.request("INVITE", "z9hG4bK-1", "old.host:5060"),
        RequestOutcome::New(_)
    ));
}

#[test]
fn stale_ids_are_refused() {
    let mut s = Sim::default();
    let RequestOutcome::New(id) = s.request("OPTIONS", "z9hG4bK-st", "ua") else {
        panic!()
    };
    assert!(s.layer.terminate(id));
    assert!(!s.layer.terminate(id));
    let RequestOutcome::New(id2) = s.request("OPTIONS", "z9hG4bK-st2", "ua") else {
        panic!()
    };
    assert_ne!(id, id2, "reused slot, new generation");
    assert_eq!(
        s.layer.respond(id, 200, b"x", 0, &mut s.sink),
        Err(RespondError::NoSuchTransaction)
    );
    assert_eq!(s.layer.state(id), None);
    assert_eq!(s.layer.slot_capacity(), 1);
    assert_eq!(
        s.layer.respond(id2, 42, b"x", 0, &mut s.sink),
        Err(RespondError::BadStatus)
    );
}

// ----------------------------------------------------------------------------------------------
// Scale: 100k transactions, all cleaned up, slab reused.
// ----------------------------------------------------------------------------------------------

#[test]
fn hundred_thousand_transactions_no_leak() {
    struct Count(u64, u64);
    impl TxSink for Count {
        fn send(&mut self, _: SocketAddr, _: &[u8]) {
            self.0 += 1;
        }
        fn event(&mut self, _: TxEvent) {
            self.1 += 1;
        }
    }
    const N: usize = 100_000;
    let mut layer = TransactionLayer::new(&TransactionTimers::default(), 0);
    let mut sink = Count(0, 0);
    let mut buf = [0u8; BRANCH_LEN];
    let bytes = [b'x'; 600];
    let mut first_capacity = 0;
    for round in 0..2u64 {
        let t0 = round * 1_000_000;
        let mut ids = Vec::with_capacity(N);
        for i in 0..N {
            let branch = make_branch(1, round * N as u64 + i as u64, &mut buf).to_vec();
            let method: &[u8] = if i % 2 == 0 { b"INVITE" } else { b"OPTIONS" };
            let req = ClientRequest {
                method,
                branch: &branch,
                dst: addr(GW),
                bytes: &bytes,
                token: i as u64,
            };
            let cid = layer.start_client(req, t0, &mut sink).unwrap();
            let sreq = RequestInfo {
                method,
                key: ServerKey::Rfc3261 {
                    branch: &branch,
                    sent_by: b"peer:5060",
                },
                reply_to: addr(UA),
            };
            let RequestOutcome::New(sid) = layer.on_request(&sreq, t0, &mut sink) else {
                panic!()
            };
            // A third of the server side answered, a third terminated, a third timed out (INVITE
            // 486 with no ACK) or answered later.
            match i % 3 {
                0 => layer
                    .respond(sid, 200, b"SIP/2.0 200", t0, &mut sink)
                    .unwrap(),
                1 => assert!(layer.terminate(sid)),
                _ => layer
                    .respond(sid, 486, b"SIP/2.0 486", t0, &mut sink)
                    .unwrap(),
            }
            ids.push((cid, branch));
        }
        let terminated = (0..N).filter(|i| i % 3 == 1).count();
        assert_eq!(layer.len(), 2 * N - terminated);
        // Half of the clients get a final response, the rest time out.
        for (i, (id, branch)) in ids.iter().enumerate() {
            if i % 4 < 2 {
                let method: &[u8] = if i % 2 == 0 { b"INVITE" } else { b"OPTIONS" };
                let r = ResponseInfo {
                    branch,
                    cseq_method: method,
                    status: if i % 4 == 0 { 404 } else { 200 },
                };
                let out =
                    layer.on_response(&r, t0 + 100, &mut sink, |_, o| o.extend_from_slice(b"ACK"));
                assert!(matches!(out, ResponseOutcome::Pass { id: got, .. } if got == *id));
            }
        }
        let mut now = t0;
        while let Some(d) = layer.next_deadline() {
            now = now.max(d);
            if layer.on_timers(now, &mut sink) == 0 && layer.next_deadline() == Some(d) {
                now += 1; // a conservative deadline (allowed by the wheel's contract)
            }
        }
        assert!(layer.is_empty(), "round {round}: {} left", layer.len());
        assert_eq!(layer.pending_timers(), 0);
        let c = layer.counters();
        assert_eq!((c.live_client, c.live_server), (0, 0));
        if round == 0 {
            first_capacity = layer.slot_capacity();
            assert!(first_capacity <= 2 * N);
        } else {
            assert_eq!(
                layer.slot_capacity(),
                first_capacity,
                "slots reused, not grown"
            );
        }
    }
    assert!(sink.1 > 0 && sink.0 > 0);
}

#[test]
fn long_keys_match_and_slots_switch_between_long_and_short() {
    let mut s = Sim::default();
    let long_host = format!("{}.example.net:5060", "a".repeat(200));
    let RequestOutcome::New(id) = s.request("OPTIONS", "z9hG4bK-long", &long_host) else {
        panic!()
    };
    assert_eq!(
        s.request("OPTIONS", "z9hG4bK-long", &long_host),
        RequestOutcome::Retransmission { id, resent: false }
    );
    let shorter = format!("{}.example.net:5060", "a".repeat(199));
    assert!(matches!(
        s.request("OPTIONS", "z9hG4bK-long", &shorter),
        RequestOutcome::New(_)
    ));
    assert!(s.layer.terminate(id));
    // The freed slot now holds a short key; the long one is gone.
    let RequestOutcome::New(id2) = s.request("OPTIONS", "z9hG4bK-s", "h") else {
        panic!()
    };
    assert_eq!(
        s.request("OPTIONS", "z9hG4bK-s", "h"),
        RequestOutcome::Retransmission {
            id: id2,
            resent: false
        }
    );
    assert!(matches!(
        s.request("OPTIONS", "z9hG4bK-long", &long_host),
        RequestOutcome::New(_)
    ));
}

#[test]
fn cancel_replaces_trying_limit_with_64_t1_guard() {
    let mut s = Sim::new(TransactionTimers {
        timeout_trying_ms: 5_000,
        ..Default::default()
    });
    let inv = s.client("INVITE", "z9hG4bK-ct", 1);
    s.response("z9hG4bK-ct", "INVITE", 100);
    s.run_until(1_000);
    let can = s
        .layer
        .start_cancel(inv, b"CANCEL", 2, 1_000, &mut s.sink)
        .unwrap();
    s.run_until(200_000);
    let TxEvent::Timeout { id, token, cause } = s.sink.events[0].1;
    assert_eq!(
        (id, token, cause),
        (can, 2, TimeoutCause::NoResponse),
        "CANCEL unanswered"
    );
    assert_eq!(s.sink.events[0].0, 32_500);
    assert_eq!(
        s.sink.events[1],
        (
            33_000,
            TxEvent::Timeout {
                id: inv,
                token: 1,
                cause: TimeoutCause::NoFinalAfterCancel
            }
        )
    );
    assert_eq!(s.sink.events.len(), 2);
    assert!(s.layer.is_empty());
}

#[test]
fn ack_before_any_final_is_ignored() {
    let mut s = Sim::default();
    let RequestOutcome::New(_) = s.request("INVITE", "z9hG4bK-a", "ua") else {
        panic!()
    };
    assert_eq!(s.request("ACK", "z9hG4bK-a", "ua"), RequestOutcome::Ignored);
}

#[test]
fn coarse_polling_does_not_shift_the_schedule() {
    let mut s = Sim::default();
    s.client("OPTIONS", "z9hG4bK-coarse", 0);
    let mut t = 0;
    while t < 40_000 {
        t += 300;
        s.sink.now = t;
        s.layer.on_timers(t, &mut s.sink);
    }
    // Each send happens at the first poll at or after its exact deadline; no drift accumulates.
    assert_eq!(
        s.sink.send_times(),
        secs(&[0, 600, 1500, 3600, 7500, 11700, 15600, 19500, 23700, 27600])
    );
    assert_eq!(s.sink.timeouts(), vec![(31_500, TimeoutCause::NoResponse)]);
}

#[test]
fn first_provisional_after_invite_timeout_is_passed_up_late_so_it_can_be_cancelled() {
    let mut s = Sim::default();
    let inv = s.client("INVITE", "z9hG4bK-lp", 4);
    s.run_until(15_000);
    assert_eq!(
        s.sink.timeouts(),
        vec![(10_000, TimeoutCause::InviteTimeout)]
    );
    assert_eq!(
        s.response("z9hG4bK-lp", "INVITE", 180),
        ResponseOutcome::Pass {
            id: inv,
            token: 4,
            late: true
        }
    );
    // Only the first: the owner has been told.
    assert_eq!(
        s.response("z9hG4bK-lp", "INVITE", 183),
        ResponseOutcome::Absorbed { id: inv }
    );
    let sends = s.sink.sends.len();
    s.layer
        .start_cancel(inv, b"CANCEL late", 5, 15_000, &mut s.sink)
        .unwrap();
    assert_eq!(s.sink.sends.len(), sends + 1);
    assert_eq!(s.layer.state(inv), Some(TxState::TimedOut));
    s.run_until(200_000);
    assert!(s.layer.is_empty());
}
