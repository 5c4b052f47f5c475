//! The kernel's reuseport steering program (`io::steer`) against the shards' own ownership rules:
//! real datagrams sent over loopback to a SO_REUSEPORT group, and the socket the kernel picked
//! compared with `owner_of_aor` / `owner_of_call_id` of the parsed message.
#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sipshard::dispatch::owner_of_call_id;
use sipshard::io::steer;
use sipshard::io::{bind_udp_group, SocketOptions};
use sipshard::registrar::{aor_key, owner_of_aor};
use sipshard::sip::Parser;

struct Group {
    sockets: Vec<UdpSocket>,
    client: UdpSocket,
}

impl Group {
    fn new(n: usize) -> Group {
        let g = bind_udp_group("127.0.0.1:0".parse().unwrap(), n, &SocketOptions::default())
            .expect("bind group");
        steer::attach(g.sockets[0].as_raw_fd(), n as u32).expect("attach the program");
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(g.local_addr).unwrap();
        Group {
            sockets: g.sockets,
            client,
        }
    }

    /// Sends `data` and returns the index of the socket that received it (waits up to 5 s).
    fn deliver(&self, data: &[u8]) -> usize {
        self.client.send(data).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        loop {
            let mut fds: Vec<libc::pollfd> = self
                .sockets
                .iter()
                .map(|s| libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "datagram never arrived");
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let rc = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    left.as_millis() as i32,
                )
            };
            assert!(rc >= 0, "poll failed");
            for (i, f) in fds.iter().enumerate() {
                if f.revents & libc::POLLIN != 0 {
                    let n = self.sockets[i].recv(&mut buf).unwrap();
                    assert_eq!(&buf[..n], data, "a different datagram arrived");
                    return i;
                }
            }
        }
    }
}

fn register(to: &str, call_id: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:someone@example.com>;tag=77\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:someone@127.0.0.1:5061>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(call_id_line: &str) -> Vec<u8> {
    format!(
        "INVITE sip:1002@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@example.com>;tag=77\r\n\
         To: <sip:1002@example.com>\r\n\
         {call_id_line}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:1001@127.0.0.1:5061>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn response(call_id: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 180 Ringing\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsS0001abcdefabcdefabcd00\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport=5061\r\n\
         Record-Route: <sip:127.0.0.1:5060;lr;s=1>\r\n\
         From: <sip:1001@example.com>;tag=77\r\n\
         To: <sip:1002@example.com>;tag=88\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:1002@127.0.0.1:5070>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn software_owner_of_register(data: &[u8], shards: usize) -> usize {
    let mut p = Parser::new();
    let msg = p.parse(data).unwrap();
    let mut key = Vec::new();
    aor_key(&msg, &mut key).unwrap();
    owner_of_aor(&key, shards)
}

fn software_owner_by_call_id(data: &[u8], shards: usize) -> usize {
    let mut p = Parser::new();
    let msg = p.parse(data).unwrap();
    owner_of_call_id(msg.call_id().unwrap(), shards)
}

#[test]
fn registers_land_on_the_owner_of_their_aor() {
    for n in [2usize, 3, 4] {
        let g = Group::new(n);
        let mut seen = vec![0usize; n];
        for i in 0..60 {
            let user = format!("{}", 10_000 + i * 7);
            for to in [
                format!("<sip:{user}@example.com>"),
                format!("sip:{user}@example.com;tag=x"),
                format!("<sip:{user}@Example.COM>"),
            ] {
                let data = register(&to, &format!("reg-{i}-{n}@10.0.0.1"));
                let got = g.deliver(&data);
                assert_eq!(
                    got,
                    software_owner_of_register(&data, n),
                    "To {to}, {n} shards"
                );
                seen[got] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c > 0), "{n} shards: {seen:?}");
    }
}

#[test]
fn requests_and_responses_land_on_the_owner_of_their_call_id() {
    for n in [2usize, 4] {
        let g = Group::new(n);
        let mut seen = vec![0usize; n];
        for i in 0..100 {
            let cid = format!("{i}-31337@127.0.0.1");
            for data in [
                invite(&format!("Call-ID: {cid}")),
                invite(&format!("Call-ID:{cid}")),
                response(&cid),
            ] {
                let got = g.deliver(&data);
                assert_eq!(got, software_owner_by_call_id(&data, n), "Call-ID {cid}");
                seen[got] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c > 0), "{n} shards: {seen:?}");
    }
}

/// What the program cannot read still arrives (the kernel's own hash picks a socket), and the
/// shards hand it over as before: compact forms, display names, junk, tiny datagrams.
#[test]
fn unreadable_datagrams_are_still_delivered() {
    let g = Group::new(2);
    let mut fallback = vec![
        invite("i: compact-form@host"),
        register("\"Alice\" <sip:alice@example.com>", "x@y"),
        b"hello".to_vec(),
        vec![b'x'; 1400],
        b"\r\n\r\n".to_vec(),
    ];
    // A Call-ID beyond the scanned window.
    let mut far = invite("Call-ID: far-away@host");
    let pad = format!("X-Pad: {}\r\n", "p".repeat(800));
    let at = far.windows(4).position(|w| w == b"To: ").unwrap();
    far.splice(at..at, pad.bytes());
    fallback.push(far);
    for data in &fallback {
        let got = g.deliver(data);
        assert!(got < 2);
    }
}

mod common;

/// The real server with 2 shards and `require_auth = Off`: 40 users REGISTER from one socket (one
/// 4-tuple, which the kernel's own hash sends to one shard). With steering, every REGISTER
/// reaches its AOR's owner directly and nothing is handed over; without it, about half are.
#[test]
fn the_server_hands_nothing_over_when_the_kernel_steers() {
    let dir = common::TempDir::new("steer");
    let mut handed = Vec::new();
    for steering in ["On", "Off"] {
        let cfg = dir.write(
            &format!("steer-{steering}.toml"),
            &format!(
                "[server]\nreuseport_steering = \"{steering}\"\n\
                 [registrar]\nrate_limit_per_source = 0\nrequire_auth = \"Off\"\n"
            ),
        );
        let server = common::start_server(2, &["--config", &cfg]);
        let sock = common::client();
        let me = sock.local_addr().unwrap();
        for i in 0..40 {
            let user = format!("steer{i}");
            let req = format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK-st-{steering}-{i};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{user}@127.0.0.1>;tag=f{i}\r\n\
                 To: <sip:{user}@127.0.0.1>\r\n\
                 Call-ID: steer-{steering}-{i}@test\r\n\
                 CSeq: 1 REGISTER\r\n\
                 Contact: <sip:{user}@{me}>\r\n\
                 Expires: 600\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            sock.send_to(req.as_bytes(), server.addr).unwrap();
            let resp = common::recv_text(&sock, Duration::from_secs(5)).expect("an answer");
            assert_eq!(common::status_of(&resp), Some(200), "{resp}");
        }
        let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
        let t = common::totals(&lines);
        assert_eq!(t["bindings_live"], 40, "{t:?}");
        handed.push(t["handed_out"]);
    }
    assert_eq!(handed[0], 0, "with steering nothing is handed over");
    assert!(
        handed[1] > 0,
        "without steering some REGISTERs change shard"
    );
}
