//! A call through the proxy core in steady state allocates only its CDR record (7 heap blocks
//! for one attempt: Call-ID, caller, callee, identity, the attempts list, the attempt's target
//! and called number), and nothing at all when the CDR writer hands its used records back (as
//! the real writer does). Only the dispatcher's calls on the test's own thread are counted; the
//! test's own message building is not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use sipshard::cdr::CdrSender;
use sipshard::config::Config;
use sipshard::dispatch::{Core, Dispatcher, Mail, Outbox, Shared};

struct Counting;
thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Keeps the last messages in preallocated buffers (no allocation while counting).
struct Ring {
    slots: Vec<(SocketAddr, Vec<u8>)>,
    next: usize,
}

impl Outbox<Mail> for Ring {
    fn send_to(&mut self, dst: SocketAddr, data: &[u8]) {
        let n = self.slots.len();
        let s = &mut self.slots[self.next % n];
        self.next += 1;
        s.0 = dst;
        s.1.clear();
        s.1.extend_from_slice(data);
    }
    fn mail(&mut self, _: usize, _: Mail) {
        panic!("one shard");
    }
}

impl Ring {
    fn last_to(&self, dst: SocketAddr, start: &str) -> String {
        let n = self.slots.len();
        (1..=n.min(self.next))
            .map(|k| &self.slots[(self.next - k) % n])
            .find(|(d, m)| *d == dst && m.starts_with(start.as_bytes()))
            .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_else(|| panic!("no {start} to {dst}"))
    }
}

fn counted(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|c| c.set(0));
    ON.with(|on| on.set(true));
    f();
    ON.with(|on| on.set(false));
    ALLOCS.with(|c| c.get())
}

fn response(req: &str, status: &str, tag: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for l in req.lines() {
        let name = l.split(':').next().unwrap_or("");
        if matches!(name, "Via" | "Record-Route" | "From" | "Call-ID" | "CSeq") {
            r.push_str(l);
            r.push_str("\r\n");
        }
        if name == "To" {
            r.push_str(l);
            if let Some(t) = tag {
                r.push_str(";tag=");
                r.push_str(t);
            }
            r.push_str("\r\n");
        }
    }
    if status.starts_with('2') {
        // What the proxy keeps of an answer (for its own BYEs): To, Contact, Record-Route.
        r.push_str("Contact: <sip:1555@192.0.2.1:5080>\r\n");
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

#[test]
fn a_steady_state_call_allocates_only_its_cdr() {
    let steady = calls(false);
    let max = *steady.iter().max().unwrap();
    assert!(
        (1..=7).contains(&max),
        "allocations per call in steady state: {steady:?}"
    );
}

#[test]
fn with_records_handed_back_a_steady_state_call_allocates_nothing() {
    let steady = calls(true);
    assert!(
        steady.iter().all(|&n| n == 0),
        "allocations per call in steady state: {steady:?}"
    );
}

/// Allocations of each of the last 100 of 400 calls; `recycle`: a CDR writer stand-in takes each
/// record and hands it back for reuse.
fn calls(recycle: bool) -> Vec<u64> {
    let config = Config::from_toml_str(
        "[[gateways]]\nname = \"gw1\"\naddress = \"192.0.2.1:5080\"\n\
         [[routes]]\nprefix = \"\"\ngateways = [\"gw1\"]\n\
         [[peers]]\nname = \"carrier\"\naddress = \"198.51.100.1\"\n",
    )
    .unwrap();
    let mut shared = Shared::new(&config, [1; 32], 5).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1000);
    let (used_tx, used_rx) = crossbeam_channel::bounded(16);
    shared.cdr = if recycle {
        CdrSender::with_used(tx, used_rx)
    } else {
        CdrSender::new(tx)
    };
    let mut d = Dispatcher::new(0, 1, &config, &shared, 0);
    d.set_local_addr("203.0.113.1:5060".parse().unwrap());
    let mut out = Ring {
        slots: (0..16)
            .map(|_| ("0.0.0.0:0".parse().unwrap(), Vec::with_capacity(4096)))
            .collect(),
        next: 0,
    };
    let caller: SocketAddr = "198.51.100.1:5060".parse().unwrap();
    let gw: SocketAddr = "192.0.2.1:5080".parse().unwrap();
    let mut per_call = Vec::new();
    for i in 0..400u64 {
        // 500 ms apart: transactions of earlier calls (which linger up to 64·T1) end and their
        // slots are reused.
        let now = i * 500;
        let id = format!("call-{i:06}");
        let invite = format!(
            "INVITE sip:1555@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{id}\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@198.51.100.1>;tag=a\r\nTo: <sip:1555@203.0.113.1>\r\nCall-ID: {id}\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let mut n = counted(|| d.on_datagram(now, caller, invite.as_bytes(), &mut out));
        let fwd = out.last_to(gw, "INVITE");
        let ringing = response(&fwd, "180 Ringing", Some("g"));
        let ok = response(&fwd, "200 OK", Some("g"));
        n += counted(|| {
            d.on_datagram(now, gw, ringing.as_bytes(), &mut out);
            d.on_datagram(now, gw, ok.as_bytes(), &mut out);
        });
        let in_dialog = |m: &str, cseq: u32| {
            format!(
                "{m} sip:1555@192.0.2.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK-{m}{id}\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@198.51.100.1>;tag=a\r\nTo: <sip:1555@203.0.113.1>;tag=g\r\nCall-ID: {id}\r\n\
CSeq: {cseq} {m}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let (ack, bye) = (in_dialog("ACK", 1), in_dialog("BYE", 2));
        n += counted(|| {
            d.on_datagram(now, caller, ack.as_bytes(), &mut out);
            d.on_datagram(now, caller, bye.as_bytes(), &mut out);
        });
        let bye_ok = response(&out.last_to(gw, "BYE"), "200 OK", None);
        n += counted(|| d.on_datagram(now, gw, bye_ok.as_bytes(), &mut out));
        out.last_to(caller, "SIP/2.0 200");
        n += counted(|| d.on_timers(now, &mut out));
        per_call.push(n);
        if recycle {
            let r = rx.try_recv().expect("the call's CDR");
            assert_eq!(r.call_id, id);
            used_tx.try_send(r).unwrap();
        }
    }
    // Warm-up: slabs, tables and buffers grow until the oldest lingering transactions end.
    per_call.split_off(300)
}
