//! Black-box call tests (issue 4): the real binary with `[[gateways]]`, `[[routes]]` and
//! `[[peers]]`, callers and gateways on 127.0.0.1 (our own UDP sockets, or sipp), timelines
//! measured on the wire and the CDR file read back after a clean shutdown.
//!
//! Timing assertions here are about the server's timers (seconds apart), with
//! generous tolerances; nothing asserts how fast the server runs.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{have_sipp, start_with_args, status_of, totals, Server, TempDir};
use sipshard::cdr::csv::{parse_csv, HEADER};

// ---- small SIP helpers --------------------------------------------------------------------------

/// The value of the first header `name` (case-insensitive), without the name.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name).into_iter().next()
}

/// Every value of header `name`, in order.
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

fn method_of(msg: &str) -> Option<&str> {
    let first = msg.split("\r\n").next()?;
    (!first.starts_with("SIP/2.0")).then(|| first.split(' ').next().unwrap_or(""))
}

fn cseq_method(msg: &str) -> String {
    header(msg, "CSeq")
        .and_then(|c| c.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string()
}

/// A response to `req` copying Via, From, To (with `to_tag` added when it has none), Call-ID, CSeq
/// and Record-Route.
fn response(req: &str, status: u16, reason: &str, to_tag: &str, contact: Option<&str>) -> String {
    let mut r = format!("SIP/2.0 {status} {reason}\r\n");
    for v in headers(req, "Via") {
        r.push_str(&format!("Via: {v}\r\n"));
    }
    for rr in headers(req, "Record-Route") {
        r.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    r.push_str(&format!("From: {}\r\n", header(req, "From").unwrap_or("")));
    let to = header(req, "To").unwrap_or("");
    if to.contains(";tag=") || status == 100 {
        r.push_str(&format!("To: {to}\r\n"));
    } else {
        r.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    r.push_str(&format!(
        "Call-ID: {}\r\n",
        header(req, "Call-ID").unwrap_or("")
    ));
    r.push_str(&format!("CSeq: {}\r\n", header(req, "CSeq").unwrap_or("")));
    if let Some(c) = contact {
        r.push_str(&format!("Contact: <{c}>\r\n"));
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

/// One datagram, waiting no longer than 100 ms (and not past `until`): None on silence.
fn recv_from(sock: &UdpSocket, until: Instant) -> Option<(String, SocketAddr)> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    sock.set_read_timeout(Some(left.min(Duration::from_millis(100))))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from)),
        Err(_) => None,
    }
}

// ---- a gateway on a plain UDP socket ----------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Never answers anything.
    Silent,
    /// 180, then 200 to INVITE; 200 to BYE.
    Answer,
    /// This final status to INVITE (absorbs the ACK).
    Reject(u16),
    /// 180 only; CANCEL gets 200 and the INVITE 487.
    RingOnly,
}

/// A gateway thread: answers per its behaviour and records every request with its arrival time.
struct Gateway {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gateway {
    fn start(behaviour: Behaviour) -> Gateway {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let contact = format!("sip:gw@{addr}");
            while !st2.load(Ordering::Relaxed) {
                let Some((msg, from)) =
                    recv_from(&sock, Instant::now() + Duration::from_millis(100))
                else {
                    continue;
                };
                let Some(method) = method_of(&msg).map(str::to_string) else {
                    continue;
                };
                s2.lock().unwrap().push((Instant::now(), msg.clone()));
                let send = |text: String| {
                    let _ = sock.send_to(text.as_bytes(), from);
                };
                match (behaviour, method.as_str()) {
                    (Behaviour::Silent, _) | (_, "ACK") => {}
                    (Behaviour::Answer, "INVITE") => {
                        send(response(&msg, 180, "Ringing", "gwtag", Some(&contact)));
                        send(response(&msg, 200, "OK", "gwtag", Some(&contact)));
                    }
                    (Behaviour::Reject(status), "INVITE") => {
                        send(response(&msg, status, "Rejected", "gwtag", None));
                    }
                    (Behaviour::RingOnly, "INVITE") => {
                        send(response(&msg, 180, "Ringing", "gwtag", Some(&contact)));
                    }
                    (Behaviour::RingOnly, "CANCEL") => {
                        send(response(&msg, 200, "OK", "gwtag", None));
                        // The 487 answers the INVITE: same Via and CSeq number, method INVITE.
                        let inv = s2
                            .lock()
                            .unwrap()
                            .iter()
                            .rev()
                            .find(|(_, m)| method_of(m) == Some("INVITE"))
                            .map(|(_, m)| m.clone());
                        if let Some(inv) = inv {
                            send(response(&inv, 487, "Request Terminated", "gwtag", None));
                        }
                    }
                    (_, _) => send(response(&msg, 200, "OK", "gwtag", None)),
                }
            }
        });
        Gateway {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Arrival times of requests with this method.
    fn arrivals(&self, method: &str) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| method_of(m) == Some(method))
            .map(|(t, _)| *t)
            .collect()
    }

    fn count(&self, method: &str) -> usize {
        self.arrivals(method).len()
    }

    /// Waits (bounded) until `n` requests of `method` have arrived.
    fn wait_for(&self, method: &str, n: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.count(method) < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- a caller on a plain UDP socket ------------------------------------------------------------

struct Caller {
    sock: UdpSocket,
    server: SocketAddr,
    call_id: String,
}

impl Caller {
    fn new(server: SocketAddr, call_id: &str) -> Caller {
        Caller {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            server,
            call_id: call_id.to_string(),
        }
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn request(
        &self,
        method: &str,
        ruri: &str,
        branch: &str,
        cseq: u32,
        to: &str,
        route: &[&str],
    ) -> String {
        let me = self.me();
        let mut r = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@{me}>;tag=caller1\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{me}>\r\n",
            self.call_id
        );
        for rt in route {
            r.push_str(&format!("Route: {rt}\r\n"));
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        r
    }

    fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.server).unwrap();
    }

    fn invite(&self, number: &str) -> String {
        let ruri = format!("sip:{number}@{}", self.server);
        let inv = self.request("INVITE", &ruri, "z9hG4bKinv1", 1, &format!("<{ruri}>"), &[]);
        self.send(&inv);
        inv
    }

    /// Responses to `method` until a final one (or the deadline): (provisional statuses, final).
    fn final_response(&self, method: &str, within: Duration) -> (Vec<u16>, Option<String>) {
        let deadline = Instant::now() + within;
        let mut provisional = Vec::new();
        // `recv_from` gives up after at most 100 ms of silence: keep reading until the deadline
        // (a failover or a ringing timeout leaves the caller seconds without a message).
        while Instant::now() < deadline {
            let Some((msg, _)) = recv_from(&self.sock, deadline) else {
                continue;
            };
            if cseq_method(&msg) != method {
                continue;
            }
            match status_of(&msg) {
                Some(s) if s < 200 => provisional.push(s),
                Some(_) => return (provisional, Some(msg)),
                None => {}
            }
        }
        (provisional, None)
    }

    /// ACK for a non-2xx final response: hop-by-hop, the INVITE's branch.
    fn ack_failure(&self, invite: &str, resp: &str) {
        let ruri = invite.split(' ').nth(1).unwrap();
        let to = header(resp, "To").unwrap();
        self.send(&self.request("ACK", ruri, "z9hG4bKinv1", 1, to, &[]));
    }

    /// ACK then BYE for a 200, following its Record-Route (reversed) and Contact; the BYE's final
    /// status.
    fn ack_and_bye(&self, ok: &str) -> Option<u16> {
        let to = header(ok, "To").unwrap();
        let target = header(ok, "Contact")
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .unwrap();
        let mut route: Vec<&str> = headers(ok, "Record-Route");
        route.reverse();
        self.send(&self.request("ACK", &target, "z9hG4bKack1", 1, to, &route));
        self.send(&self.request("BYE", &target, "z9hG4bKbye1", 2, to, &route));
        let (_, fin) = self.final_response("BYE", Duration::from_secs(10));
        fin.and_then(|f| status_of(&f))
    }
}

// ---- the server, its config, its CDRs ---------------------------------------------------------

struct Setup {
    dir: TempDir,
    server: Server,
}

impl Setup {
    /// Starts the binary with `body` (TOML) plus a `[cdr]` section writing into the temp dir.
    fn start(tag: &str, body: &str) -> Setup {
        let dir = TempDir::new(tag);
        let cdr = dir.0.join("cdr").join("calls.csv");
        let text = format!(
            "[log]\nlevel = \"warn\"\n\n[cdr]\npath = \"{}\"\n\n{body}",
            cdr.display()
        );
        let cfg = dir.write("sipshard.toml", &text);
        let server = start_with_args(&[
            "run",
            "--config",
            &cfg,
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
        ])
        .unwrap_or_else(|e| panic!("server did not start with\n{text}\n{e}"));
        Setup { dir, server }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Stops the server (SIGTERM) and returns its totals and every CDR row (header checked).
    fn stop(self) -> (std::collections::HashMap<String, u64>, Vec<Vec<String>>) {
        let (code, lines, err, _) = self.server.terminate(Duration::from_secs(15));
        assert_eq!(code, Some(0), "server exit; stderr: {err}");
        let t = totals(&lines);
        (t, cdr_rows(&self.dir.0))
    }
}

fn cdr_rows(dir: &Path) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("cdr")) else {
        return rows;
    };
    for e in entries {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let mut r = parse_csv(&text);
        assert_eq!(r.remove(0), parse_csv(HEADER)[0]);
        rows.extend(r);
    }
    rows
}

/// The row of `call_id`; the columns are those of `HEADER`.
fn row<'a>(rows: &'a [Vec<String>], call_id: &str) -> &'a Vec<String> {
    rows.iter()
        .find(|r| r[0] == call_id)
        .unwrap_or_else(|| panic!("no CDR for {call_id} in {rows:?}"))
}

/// The attempts column as (target, destination, outcome).
fn attempts(r: &[String]) -> Vec<(String, String, String)> {
    r[11]
        .split('|')
        .filter(|a| !a.is_empty())
        .map(|a| {
            let mut right = a.rsplitn(5, ':');
            let (_end, _start, _called, outcome) = (
                right.next().unwrap(),
                right.next().unwrap(),
                right.next().unwrap(),
                right.next().unwrap(),
            );
            let (target, dest) = right.next().unwrap().split_once(':').unwrap();
            (target.to_string(), dest.to_string(), outcome.to_string())
        })
        .collect()
}

fn gateways_toml(gws: &[(&str, SocketAddr)], route: &[&str]) -> String {
    let mut s = String::from(
        "[routing]\nno_route_status = 404\nfailover_statuses = [408, 500, 502, 503, 504]\n\n",
    );
    for (name, addr) in gws {
        s.push_str(&format!(
            "[[gateways]]\nname = \"{name}\"\naddress = \"{addr}\"\n\n"
        ));
    }
    let list: Vec<String> = route.iter().map(|g| format!("\"{g}\"")).collect();
    s.push_str(&format!(
        "[[routes]]\nprefix = \"\"\ngateways = [{}]\n\n",
        list.join(", ")
    ));
    s
}

const TRUSTED_LOOPBACK: &str = "[[peers]]\nname = \"loadgen\"\naddress = \"127.0.0.1\"\n\n";

/// Asserts `got` is `want` seconds after `t0`, within `tol_ms`.
fn assert_at(t0: Instant, got: Instant, want_s: f64, tol_ms: u64, what: &str) {
    let at = got.duration_since(t0).as_secs_f64();
    assert!(
        (at - want_s).abs() * 1000.0 <= tol_ms as f64,
        "{what} at {at:.3} s, expected {want_s} s ± {tol_ms} ms"
    );
}

// ---- sipp -------------------------------------------------------------------------------------

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A sipp process, killed on drop.
struct Sipp(Option<Child>);

impl Sipp {
    fn spawn(dir: &Path, args: &[&str]) -> Sipp {
        let child = Command::new("sipp")
            .current_dir(dir)
            .args(args)
            .args([
                "-nostdin",
                "-timeout",
                "40s",
                "-timeout_error",
                "-trace_err",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sipp");
        Sipp(Some(child))
    }

    /// Waits (bounded) for sipp to exit; its exit code (None if it had to be killed).
    fn wait(mut self, within: Duration) -> Option<i32> {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free UDP port on 127.0.0.1 (bound and released; sipp binds it right after).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something is bound to UDP `port` on 127.0.0.1 (our bind fails).
fn wait_bound(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn sipp_log(dir: &Path) -> String {
    let mut s = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("errors.log") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    s
}

// ---- tests that run today ---------------------------------------------------------------------

#[test]
fn cdr_counters_are_in_the_totals_and_no_file_without_calls() {
    let s = Setup::start("calls-cdr-idle", "");
    let dir = s.dir.0.clone();
    let (code, lines, err, _) = s.server.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    for k in ["cdr_written", "cdr_refused", "cdr_lost", "cdr_rotations"] {
        assert_eq!(t.get(k), Some(&0), "{k} in {lines:?}");
    }
    assert!(!dir.join("cdr").exists(), "no call, no CDR file");
    drop(s.dir);

    // The writer off: no cdr_* counters at all.
    let dir = TempDir::new("calls-cdr-off");
    let cfg = dir.write(
        "off.toml",
        "[log]\nlevel = \"warn\"\n[cdr]\nenabled = \"Off\"\n",
    );
    let server = start_with_args(&["run", "--config", &cfg, "--listen", "127.0.0.1:0"]).unwrap();
    let (code, lines, _, _) = server.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(!totals(&lines).contains_key("cdr_written"), "{lines:?}");
}

// ---- the proxy ----------------------------------------------------------------------------------

#[test]
fn failover_timeline_with_gateway_1_silent() {
    let gw1 = Gateway::start(Behaviour::Silent);
    let gw2 = Gateway::start(Behaviour::Answer);
    let s = Setup::start(
        "calls-failover",
        &(gateways_toml(&[("gw1", gw1.addr), ("gw2", gw2.addr)], &["gw1", "gw2"])
            + TRUSTED_LOOPBACK),
    );
    let caller = Caller::new(s.addr(), "failover-1@test");
    let t0 = Instant::now();
    caller.invite("5551234");
    let (prov, ok) = caller.final_response("INVITE", Duration::from_secs(20));
    let ok = ok.expect("a final response within 20 s");
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    assert!(prov.contains(&100), "100 Trying at once: {prov:?}");
    // On the wire: gateway 1 got the INVITE at 0, 0.5, 1.5, 3.5, 7.5 s; gateway 2 at 10 s.
    let at1 = gw1.arrivals("INVITE");
    assert_eq!(at1.len(), 5, "INVITEs at gateway 1");
    for (t, want) in at1.iter().zip([0.0, 0.5, 1.5, 3.5, 7.5]) {
        assert_at(t0, *t, want, 300, "INVITE to gateway 1");
    }
    let at2 = gw2.arrivals("INVITE");
    assert_eq!(at2.len(), 1, "one INVITE at gateway 2");
    assert_at(t0, at2[0], 10.0, 300, "INVITE to gateway 2");
    assert_eq!(caller.ack_and_bye(&ok), Some(200));
    assert!(gw2.wait_for("BYE", 1, Duration::from_secs(5)));
    assert!(gw2.wait_for("ACK", 1, Duration::from_secs(5)));
    // Gateway 1 may have been CANCELed after the failover; it got no further INVITE.
    assert_eq!(gw1.count("INVITE"), 5);

    let (t, rows) = s.stop();
    assert_eq!(t.get("cdr_written"), Some(&1));
    let r = row(&rows, "failover-1@test");
    assert_eq!(r[9], "200");
    assert_eq!(r[10], "caller_hangup");
    assert_eq!(
        attempts(r),
        vec![
            ("gw1".into(), gw1.addr.to_string(), "no_response".into()),
            ("gw2".into(), gw2.addr.to_string(), "answered".into()),
        ]
    );
}

#[test]
fn immediate_failover_on_503() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("calls-503-sipp");
    let port = free_port();
    let p = port.to_string();
    let gw1 = Sipp::spawn(
        &dir.0,
        &[
            "-sf",
            scenario("gw_503.xml").to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-m",
            "1",
        ],
    );
    assert!(
        wait_bound(port, Duration::from_secs(10)),
        "sipp gateway not listening"
    );
    let gw1_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let gw2 = Gateway::start(Behaviour::Answer);
    let s = Setup::start(
        "calls-503",
        &(gateways_toml(&[("gw1", gw1_addr), ("gw2", gw2.addr)], &["gw1", "gw2"])
            + TRUSTED_LOOPBACK),
    );
    let caller = Caller::new(s.addr(), "fail503-1@test");
    let t0 = Instant::now();
    caller.invite("5551234");
    let (_, ok) = caller.final_response("INVITE", Duration::from_secs(10));
    let ok = ok.expect("a final response");
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    // At once: well before gateway 1's first retransmission would have been due (0.5 s).
    let at2 = gw2.arrivals("INVITE");
    assert_eq!(at2.len(), 1);
    assert!(
        at2[0].duration_since(t0) < Duration::from_millis(450),
        "failover took {:?}",
        at2[0].duration_since(t0)
    );
    assert_eq!(caller.ack_and_bye(&ok), Some(200));
    // The sipp gateway got its INVITE, answered 503 and got the ACK: exit code 0.
    assert_eq!(
        gw1.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        sipp_log(&dir.0)
    );
    let (_, rows) = s.stop();
    let r = row(&rows, "fail503-1@test");
    let a = attempts(r);
    assert_eq!(a[0], ("gw1".into(), gw1_addr.to_string(), "503".into()));
    assert_eq!(a[1].2, "answered");
}

#[test]
fn no_gateway_left_gives_the_caller_a_final_error() {
    let gw1 = Gateway::start(Behaviour::Reject(503));
    let gw2 = Gateway::start(Behaviour::Reject(502));
    let s = Setup::start(
        "calls-nogw",
        &(gateways_toml(&[("gw1", gw1.addr), ("gw2", gw2.addr)], &["gw1", "gw2"])
            + TRUSTED_LOOPBACK),
    );
    let caller = Caller::new(s.addr(), "nogw-1@test");
    let inv = caller.invite("5551234");
    let (_, fin) = caller.final_response("INVITE", Duration::from_secs(10));
    let fin = fin.expect("a final response");
    let status = status_of(&fin).unwrap();
    assert!((400..700).contains(&status) && status != 200, "{fin}");
    caller.ack_failure(&inv, &fin);
    assert_eq!(gw1.count("INVITE"), 1);
    assert_eq!(gw2.count("INVITE"), 1);
    let (_, rows) = s.stop();
    let r = row(&rows, "nogw-1@test");
    assert_eq!(r[9], status.to_string());
    assert_eq!(r[10], "all_gateways_failed");
    assert_eq!(r[6], "", "never answered");
    let outcomes: Vec<String> = attempts(r).into_iter().map(|a| a.2).collect();
    assert_eq!(outcomes, vec!["503", "502"]);
}

#[test]
fn ringing_timeout_cancels_and_fails_without_failover() {
    let gw1 = Gateway::start(Behaviour::RingOnly);
    let gw2 = Gateway::start(Behaviour::Answer);
    let s = Setup::start(
        "calls-ringing",
        &("[sip]\ntimeout_ringing = 2\n\n".to_string()
            + &gateways_toml(&[("gw1", gw1.addr), ("gw2", gw2.addr)], &["gw1", "gw2"])
            + TRUSTED_LOOPBACK),
    );
    let caller = Caller::new(s.addr(), "ring-1@test");
    let inv = caller.invite("5551234");
    let (prov, fin) = caller.final_response("INVITE", Duration::from_secs(10));
    assert!(prov.contains(&180), "{prov:?}");
    let fin = fin.expect("a final response");
    let status = status_of(&fin).unwrap();
    assert!(status == 408 || status == 480, "{fin}");
    caller.ack_failure(&inv, &fin);
    // The gateway got the CANCEL about 2 s after its 180 (so after its INVITE).
    assert!(gw1.wait_for("CANCEL", 1, Duration::from_secs(5)));
    let invite_at = gw1.arrivals("INVITE")[0];
    assert_at(
        invite_at,
        gw1.arrivals("CANCEL")[0],
        2.0,
        500,
        "CANCEL to gateway 1",
    );
    assert!(
        gw1.wait_for("ACK", 1, Duration::from_secs(5)),
        "ACK for the 487"
    );
    assert_eq!(gw2.count("INVITE"), 0, "no failover after ringing");
    let (_, rows) = s.stop();
    let r = row(&rows, "ring-1@test");
    assert_eq!(r[10], "no_answer");
    assert_eq!(attempts(r)[0].2, "ringing_timeout");
    assert_eq!(attempts(r).len(), 1);
}

#[test]
fn cancel_from_the_caller_reaches_the_gateway() {
    if !have_sipp() {
        return;
    }
    let gw1 = Gateway::start(Behaviour::RingOnly);
    let s = Setup::start(
        "calls-cancel",
        &(gateways_toml(&[("gw1", gw1.addr)], &["gw1"]) + TRUSTED_LOOPBACK),
    );
    let caller = Sipp::spawn(
        &s.dir.0,
        &[
            &s.addr().to_string(),
            "-sf",
            scenario("uac_cancel.xml").to_str().unwrap(),
            "-s",
            "5551234",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "1",
            "-cid_str",
            "cancel-%u@test",
        ],
    );
    assert_eq!(
        caller.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        sipp_log(&s.dir.0)
    );
    assert_eq!(gw1.count("CANCEL"), 1);
    assert!(
        gw1.wait_for("ACK", 1, Duration::from_secs(5)),
        "ACK for the 487"
    );
    let (_, rows) = s.stop();
    let r = row(&rows, "cancel-1@test");
    assert_eq!(r[10], "caller_cancel");
    assert_eq!(r[9], "487");
    assert_eq!(attempts(r)[0].2, "caller_cancel");
}

#[test]
fn digest_on_invite_then_the_call_completes() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("calls-digest-sipp");
    let gw_port = free_port();
    let gw = Sipp::spawn(
        &dir.0,
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &gw_port.to_string(),
            "-m",
            "1",
        ],
    );
    assert!(wait_bound(gw_port, Duration::from_secs(10)));
    let gw_addr: SocketAddr = format!("127.0.0.1:{gw_port}").parse().unwrap();
    // No [[peers]]: the caller must prove who it is. Account 1001 registers first (the issue's
    // "registered endpoints"), then calls.
    let s = Setup::start(
        "calls-digest",
        &(gateways_toml(&[("gw1", gw_addr)], &["gw1"]).replace(
            "[routing]\n",
            "[routing]\ninvite_auth = true\n",
        ) + "[registrar]\ndigest_algorithms = [\"MD5\"]\n\n[[registrar.accounts]]\nuser = \"1001\"\npassword = \"s3cret\"\n\n"),
    );
    let users = s.dir.write("users.csv", "SEQUENTIAL\n1001;s3cret\n");
    let reg = Sipp::spawn(
        &s.dir.0,
        &[
            &s.addr().to_string(),
            "-sf",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/register_auth.xml"),
            "-inf",
            &users,
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "1",
        ],
    );
    assert_eq!(
        reg.wait(Duration::from_secs(20)),
        Some(0),
        "REGISTER: {}",
        sipp_log(&s.dir.0)
    );
    let call = Sipp::spawn(
        &s.dir.0,
        &[
            &s.addr().to_string(),
            "-sf",
            scenario("uac_invite_auth.xml").to_str().unwrap(),
            "-s",
            "5551234",
            "-inf",
            &users,
            "-au",
            "1001",
            "-ap",
            "s3cret",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "1",
            "-cid_str",
            "digest-%u@test",
        ],
    );
    assert_eq!(
        call.wait(Duration::from_secs(30)),
        Some(0),
        "call: {}",
        sipp_log(&s.dir.0)
    );
    assert_eq!(
        gw.wait(Duration::from_secs(10)),
        Some(0),
        "gateway: {}",
        sipp_log(&dir.0)
    );
    let (t, rows) = s.stop();
    let r = row(&rows, "digest-1@test");
    assert_eq!(r[4], "account:1001");
    assert_eq!(r[9], "200");
    assert_eq!(attempts(r)[0].2, "answered");
    // The first INVITE (no credentials) was challenged, not routed: one CDR for the call.
    assert_eq!(t.get("cdr_written"), Some(&(rows.len() as u64)));
}

#[test]
fn call_to_a_registered_sipp_uas() {
    if !have_sipp() {
        return;
    }
    // A gateway nobody should reach: the callee is a registered user, found by location lookup.
    let unused = Gateway::start(Behaviour::Silent);
    let s = Setup::start(
        "calls-registered",
        &(gateways_toml(&[("gw1", unused.addr)], &["gw1"])
            .replace("prefix = \"\"", "prefix = \"9\"")
            + TRUSTED_LOOPBACK
            + "[registrar]\nrequire_auth = \"Off\"\nrate_limit_per_source = 0\n\n"),
    );
    // The phone: sipp registers 2001 with Contact sip:2001@127.0.0.1:PORT (and exits on the 200),
    // then a sipp UAS takes calls on that port. (One sipp cannot do both: a client-mode sipp
    // discards requests with a Call-ID it did not create.)
    let phone_port = free_port();
    let reg = Sipp::spawn(
        &s.dir.0,
        &[
            &s.addr().to_string(),
            "-sf",
            scenario("register_phone.xml").to_str().unwrap(),
            "-s",
            "2001",
            "-i",
            "127.0.0.1",
            "-p",
            &phone_port.to_string(),
            "-m",
            "1",
        ],
    );
    assert_eq!(
        reg.wait(Duration::from_secs(10)),
        Some(0),
        "the phone's REGISTER: {}",
        sipp_log(&s.dir.0)
    );
    let phone = Sipp::spawn(
        &s.dir.0,
        &[
            "-sf",
            scenario("uas_registered.xml").to_str().unwrap(),
            "-s",
            "2001",
            "-i",
            "127.0.0.1",
            "-p",
            &phone_port.to_string(),
            "-m",
            "1",
        ],
    );
    assert!(
        wait_bound(phone_port, Duration::from_secs(10)),
        "the phone's sipp UAS is not listening"
    );
    let caller_dir = TempDir::new("calls-registered-uac");
    let uac = Sipp::spawn(
        &caller_dir.0,
        &[
            &s.addr().to_string(),
            "-sn",
            "uac",
            "-s",
            "2001",
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-m",
            "1",
            "-cid_str",
            "reg-%u@test",
        ],
    );
    assert_eq!(
        uac.wait(Duration::from_secs(20)),
        Some(0),
        "caller: {}",
        sipp_log(&caller_dir.0)
    );
    assert_eq!(
        phone.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        sipp_log(&s.dir.0)
    );
    assert_eq!(unused.count("INVITE"), 0);
    let (_, rows) = s.stop();
    let r = row(&rows, "reg-1@test");
    assert_eq!(r[9], "200");
    assert_eq!(attempts(r)[0].0, "user");
}

#[test]
fn max_call_duration_hangs_up_both_sides() {
    let gw = Gateway::start(Behaviour::Answer);
    let s = Setup::start(
        "calls-maxdur",
        &(gateways_toml(&[("gw1", gw.addr)], &["gw1"])
            .replace("[routing]\n", "[routing]\nmax_call_duration = 1\n")
            + TRUSTED_LOOPBACK),
    );
    let caller = Caller::new(s.addr(), "maxdur-1@test");
    caller.invite("5551234");
    let (_, ok) = caller.final_response("INVITE", Duration::from_secs(10));
    let ok = ok.expect("a final response");
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    let to = header(&ok, "To").unwrap().to_string();
    let mut route: Vec<&str> = headers(&ok, "Record-Route");
    route.reverse();
    caller.send(&caller.request("ACK", "sip:gw@127.0.0.1", "z9hG4bKack1", 1, &to, &route));
    // About 1 s after the answer the server sends the caller a BYE of the dialog...
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bye = None;
    while Instant::now() < deadline && bye.is_none() {
        if let Some((msg, _)) = recv_from(&caller.sock, deadline) {
            if method_of(&msg) == Some("BYE") {
                bye = Some(msg);
            }
        }
    }
    let bye = bye.expect("a BYE to the caller");
    assert_eq!(header(&bye, "Call-ID"), Some("maxdur-1@test"));
    assert_eq!(header(&bye, "From"), Some(to.as_str()), "the callee's side");
    assert!(header(&bye, "To").unwrap().contains("tag=caller1"), "{bye}");
    // ... and the gateway one.
    assert!(gw.wait_for("BYE", 1, Duration::from_secs(5)));
    let (t, rows) = s.stop();
    assert_eq!(t.get("calls_max_duration"), Some(&1), "{t:?}");
    let r = row(&rows, "maxdur-1@test");
    assert_eq!(r[10], "max_duration");
    assert_eq!(r[9], "200");
}
