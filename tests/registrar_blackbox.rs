//! Black-box registrar tests: the real binary with accounts from a config file, spoken to with
//! our own UDP client (answering challenges with RFC digest arithmetic), sipsak and sipp.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use sipshard::sip::digest::{write_authorization, Credentials};
use sipshard::sip::{parse_auth, HeaderKind, Parser};

/// A temp directory removed on drop.
fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

struct Ua {
    sock: UdpSocket,
    server: SocketAddr,
    user: String,
    call_id: String,
    cseq: u32,
}

impl Ua {
    fn new(server: SocketAddr, user: &str) -> Ua {
        Ua {
            sock: client(),
            server,
            user: user.into(),
            call_id: format!("{user}-{}@test", std::process::id()),
            cseq: 0,
        }
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends a REGISTER (optionally with an Authorization value) and returns the response text.
    fn send(&mut self, contact: &str, expires: u32, auth: Option<&str>) -> String {
        self.cseq += 1;
        let me = self.me();
        let mut req = format!(
            "REGISTER sip:{s} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{u}-{c};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@{s}>;tag=f{c}\r\nTo: <sip:{u}@{s}>\r\n\
             Call-ID: {id}\r\nCSeq: {c} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n\
             User-Agent: blackbox-ua/1.0\r\n",
            s = self.server,
            u = self.user,
            c = self.cseq,
            id = self.call_id,
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        self.sock.send_to(req.as_bytes(), self.server).unwrap();
        loop {
            let r = recv_text(&self.sock, Duration::from_secs(5)).expect("a response");
            // Skip anything that is not the answer to this request (e.g. a keepalive OPTIONS, or
            // a stray datagram for an earlier owner of this ephemeral port).
            if header(&r, "CSeq")
                .first()
                .is_some_and(|c| c.starts_with(&format!("{} ", self.cseq)))
                && header(&r, "Call-ID").first() == Some(&self.call_id.as_str())
            {
                return r;
            }
        }
    }

    /// REGISTER, answer the challenge of `algorithm` with `password`, return the final response.
    fn register(&mut self, password: &str, algorithm: &str, contact: &str, expires: u32) -> String {
        let first = self.send(contact, expires, None);
        if status_of(&first) != Some(401) {
            return first;
        }
        let challenge = header(&first, "WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains(&format!("algorithm={algorithm}")))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in\n{first}"))
            .to_string();
        let parsed = parse_auth(challenge.as_bytes()).expect("challenge parses");
        let uri = format!("sip:{}", self.server);
        let mut auth = Vec::new();
        let creds = Credentials {
            username: self.user.as_bytes(),
            password: password.as_bytes(),
            method: b"REGISTER",
            digest_uri: uri.as_bytes(),
            cnonce: b"0a4f113b",
            nc: 1,
        };
        write_authorization(&mut auth, &parsed, &creds).expect("answerable challenge");
        self.send(contact, expires, Some(&String::from_utf8(auth).unwrap()))
    }
}

const CONFIG: &str = r#"
[sip]
endpoint_register_retry = 2
endpoint_register_suspend = 10
[registrar]
rate_limit_per_source = 0
[[registrar.accounts]]
user = "alice"
password = "wonderland"
[[registrar.accounts]]
user = "bob"
password = "builder"
"#;

#[test]
fn digest_registration_refresh_and_unregister() {
    let dir = TempDir::new("reg-digest");
    let cfg = dir.write("sipshard.toml", CONFIG);
    let server = start_server(4, &["--config", &cfg]);
    let mut ua = Ua::new(server.addr, "alice");
    let contact = format!("<sip:alice@{}>", ua.me());
    // A first REGISTER is challenged, once per algorithm, MD5 first.
    let first = ua.send(&contact, 600, None);
    assert_eq!(status_of(&first), Some(401), "{first}");
    let challenges = header(&first, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "{first}");
    assert!(challenges[0].contains("algorithm=MD5") && challenges[1].contains("algorithm=SHA-256"));
    // SHA-256 credentials register; the 200 lists the binding with its granted expiry.
    let ok = ua.register("wonderland", "SHA-256", &contact, 600);
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    let contacts = header(&ok, "Contact");
    assert_eq!(contacts.len(), 1, "{ok}");
    let expires: u32 = contacts[0]
        .rsplit("expires=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (570..=600).contains(&expires),
        "granted {expires} (600 minus at most 5 % spread)"
    );
    // A refresh with MD5 credentials keeps one binding.
    let again = ua.register("wonderland", "MD5", &contact, 600);
    assert_eq!(status_of(&again), Some(200), "{again}");
    assert_eq!(header(&again, "Contact").len(), 1, "{again}");
    // Too short an expiry: 423 with Min-Expires.
    let brief = ua.register("wonderland", "MD5", &contact, 5);
    assert_eq!(status_of(&brief), Some(423), "{brief}");
    assert!(!header(&brief, "Min-Expires").is_empty(), "{brief}");
    // Expires 0 removes it: the 200 lists no binding.
    let gone = ua.register("wonderland", "MD5", &contact, 0);
    assert_eq!(status_of(&gone), Some(200), "{gone}");
    assert!(header(&gone, "Contact").is_empty(), "{gone}");
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert_eq!(t["bindings_added"], 1, "{t:?}");
    assert_eq!(t["bindings_live"], 0, "{t:?}");
    assert!(t["bindings_removed"] >= 1, "{t:?}");
}

#[test]
fn wrong_passwords_suspend_the_endpoint_and_unknown_users_look_the_same() {
    let dir = TempDir::new("reg-lockout");
    let cfg = dir.write("sipshard.toml", CONFIG);
    let server = start_server(2, &["--config", &cfg]);
    let mut bob = Ua::new(server.addr, "bob");
    let contact = format!("<sip:bob@{}>", bob.me());
    // endpoint_register_retry = 2: the first wrong answer is challenged again, the second suspends.
    let r1 = bob.register("wrong", "MD5", &contact, 600);
    assert_eq!(status_of(&r1), Some(401), "{r1}");
    let r2 = bob.register("wrong", "MD5", &contact, 600);
    assert_eq!(status_of(&r2), Some(403), "{r2}");
    // Suspended: even the right password is refused now.
    let r3 = bob.register("builder", "MD5", &contact, 600);
    assert_eq!(status_of(&r3), Some(403), "{r3}");
    // An unknown user gets the same challenge shape as a known one.
    let mut mallory = Ua::new(server.addr, "mallory");
    let c = mallory.send("<sip:mallory@127.0.0.1:1>", 600, None);
    assert_eq!(status_of(&c), Some(401), "{c}");
    assert_eq!(header(&c, "WWW-Authenticate").len(), 2, "{c}");
    let (code, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let t = totals(&lines);
    assert!(t["register_suspended"] >= 2, "{t:?}");
    assert_eq!(t["bindings_live"], 0, "{t:?}");
}

#[test]
fn a_flooding_source_is_rate_limited() {
    let dir = TempDir::new("reg-flood");
    let cfg = dir.write(
        "sipshard.toml",
        "[registrar]\nrate_limit_per_source = 1\nrate_limit_burst = 3\n",
    );
    let server = start_server(1, &["--config", &cfg]);
    let mut ua = Ua::new(server.addr, "flood");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = ua.send("<sip:flood@127.0.0.1:1>", 600, None);
        statuses.push(status_of(&r).unwrap());
    }
    // The burst of 3 is challenged; the rest, sent at once, exceed 1/s.
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|&s| s == 503), "{statuses:?}");
    let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(totals(&lines)["register_rate_limited"], 3);
}

#[test]
fn nat_bindings_get_options_keepalives() {
    let dir = TempDir::new("reg-nat");
    let cfg = dir.write(
        "sipshard.toml",
        &format!("{CONFIG}\n").replace(
            "rate_limit_per_source = 0",
            "rate_limit_per_source = 0\nnat_keepalive_interval = 5",
        ),
    );
    let server = start_server(2, &["--config", &cfg]);
    let mut ua = Ua::new(server.addr, "alice");
    // The contact claims a private address the packet did not come from: behind NAT.
    let ok = ua.register("wonderland", "MD5", "<sip:alice@10.20.30.40:5060>", 3600);
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    let expires: u32 = header(&ok, "Contact")[0]
        .rsplit("expires=")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        expires <= 300,
        "NAT bindings get endpoint_nat_expire (300): {expires}"
    );
    // Within one keepalive interval (5 s) an OPTIONS arrives at the address the REGISTER came from.
    let ka = loop {
        let r = recv_text(&ua.sock, Duration::from_secs(8)).expect("a keepalive OPTIONS");
        if r.starts_with("OPTIONS ") {
            break r;
        }
    };
    // Answer it as a UA would.
    let mut parser = Parser::new();
    let msg = parser.parse(ka.as_bytes()).expect("keepalive parses");
    assert!(msg.validate().is_ok(), "{ka}");
    let via = msg.header(HeaderKind::Via).unwrap();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=ua\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(via),
        String::from_utf8_lossy(msg.header(HeaderKind::From).unwrap()),
        String::from_utf8_lossy(msg.header(HeaderKind::To).unwrap()),
        String::from_utf8_lossy(msg.call_id().unwrap()),
        String::from_utf8_lossy(msg.header(HeaderKind::CSeq).unwrap()),
    );
    ua.sock.send_to(reply.as_bytes(), server.addr).unwrap();
    // A probe orders the shutdown after the 200 was handled.
    let probe = options_request(server.addr, ua.me(), "probe@test", "z9hG4bK-probe");
    ua.sock.send_to(probe.as_bytes(), server.addr).unwrap();
    loop {
        let r = recv_text(&ua.sock, Duration::from_secs(5)).expect("probe answer");
        if r.contains("probe@test") {
            break;
        }
    }
    let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
    let t = totals(&lines);
    assert_eq!(t["bindings_nat"], 1, "{t:?}");
    assert!(t["keepalives_sent"] >= 1, "{t:?}");
    assert_eq!(t["keepalives_failed"], 0, "{t:?}");
}

#[test]
fn sipsak_registers_with_digest() {
    if !have_sipsak() {
        return;
    }
    let dir = TempDir::new("reg-sipsak");
    let cfg = dir.write("sipshard.toml", CONFIG);
    let server = start_server(2, &["--config", &cfg]);
    let out = Command::new("sipsak")
        .args([
            "-U",
            "-s",
            &format!("sip:alice@{}", server.addr),
            "-u",
            "alice",
            "-a",
            "wonderland",
        ])
        .args(["-x", "120", "-i"])
        .output()
        .expect("run sipsak");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
    let t = totals(&lines);
    assert_eq!(t["register_ok"], 1, "{t:?}");
    assert_eq!(t["bindings_added"], 1, "{t:?}");
}

#[test]
fn sipp_registers_many_users_with_digest() {
    if !have_sipp() {
        return;
    }
    let users = 300;
    let dir = TempDir::new("reg-sipp");
    let mut inject = String::from("SEQUENTIAL\n");
    let mut accounts = String::from("user,password\n");
    for i in 0..users {
        inject.push_str(&format!("u{i:05};pw{i}x\n"));
        accounts.push_str(&format!("u{i:05},pw{i}x\n"));
    }
    let inject = dir.write("users.csv", &inject);
    let accounts_file = dir.write("accounts.csv", &accounts);
    let cfg = dir.write(
        "sipshard.toml",
        &format!("[registrar]\nrate_limit_per_source = 0\naccounts_file = \"{accounts_file}\"\n"),
    );
    let server = start_server(2, &["--config", &cfg]);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/register_auth.xml");
    let out = Command::new("sipp")
        .current_dir(&dir.0)
        .args(["-sf", scenario, &server.addr.to_string(), "-i", "127.0.0.1"])
        .args([
            "-inf",
            &inject,
            "-m",
            &users.to_string(),
            "-r",
            "200",
            "-l",
            "400",
        ])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sipp");
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert_eq!(t["register_ok"], users, "{t:?}");
    assert_eq!(t["bindings_live"], users, "{t:?}");
    // One sipp socket is one 4-tuple, but the kernel's steering program (on by default) delivers
    // each REGISTER to the shard that owns its AOR, so nothing changes shard.
    assert_eq!(t["handed_out"], 0, "{t:?}");
}

#[test]
fn ip_accounts_and_require_auth_off_register_without_a_challenge() {
    // An IP-mode account registers from its allowed address at once.
    let dir = TempDir::new("reg-ip");
    let cfg = dir.write(
        "sipshard.toml",
        "[registrar]\nrate_limit_per_source = 0\n[[registrar.accounts]]\nuser = \"pbx1\"\n\
         auth_mode = \"ip\"\nallowed = [\"127.0.0.1\"]\n",
    );
    let server = start_server(2, &["--config", &cfg]);
    let mut pbx = Ua::new(server.addr, "pbx1");
    let contact = format!("<sip:pbx1@{}>", pbx.me());
    let ok = pbx.send(&contact, 600, None);
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    // Another user from the same address is still challenged.
    let mut other = Ua::new(server.addr, "someone");
    let c = other.send("<sip:someone@127.0.0.1:1>", 600, None);
    assert_eq!(status_of(&c), Some(401), "{c}");
    let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(totals(&lines)["bindings_live"], 1);

    // require_auth = Off: any user registers without credentials.
    let cfg = dir.write(
        "open.toml",
        "[registrar]\nrate_limit_per_source = 0\nrequire_auth = \"Off\"\n",
    );
    let server = start_server(2, &["--config", &cfg]);
    for user in ["u1", "u2", "u3"] {
        let mut ua = Ua::new(server.addr, user);
        let contact = format!("<sip:{user}@{}>", ua.me());
        let ok = ua.send(&contact, 600, None);
        assert_eq!(status_of(&ok), Some(200), "{ok}");
    }
    let (_, lines, _, _) = server.terminate(Duration::from_secs(10));
    let t = totals(&lines);
    assert_eq!(t["bindings_live"], 3, "{t:?}");
    assert_eq!(t["register_challenged"], 0, "{t:?}");
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
fn parse_http_date(s: &str) -> Option<u64> {
    let p: Vec<&str> = s.split_whitespace().collect();
    if p.len() != 6 || p[5] != "GMT" {
        return None;
    }
    let day: u64 = p[1].parse().ok()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == p[2])? as u64 + 1;
    let year: u64 = p[3].parse().ok()?;
    let hms: Vec<u64> = p[4].split(':').filter_map(|x| x.parse().ok()).collect();
    // Days from civil (proleptic Gregorian).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms.first()? * 3600 + hms.get(1)? * 60 + hms.get(2)?)
}

#[test]
fn date_header_digest_uri_check_and_replays_on_the_wire() {
    let dir = TempDir::new("reg-replay");
    let cfg = dir.write("sipshard.toml", CONFIG);
    let server = start_server(2, &["--config", &cfg]);
    let mut ua = Ua::new(server.addr, "bob");
    let contact = format!("<sip:bob@{}>", ua.me());
    let first = ua.send(&contact, 600, None);
    assert_eq!(status_of(&first), Some(401), "{first}");
    let challenge = header(&first, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains("algorithm=MD5"))
        .unwrap()
        .to_string();
    let parsed = parse_auth(challenge.as_bytes()).unwrap();
    let answer = |uri: &str| {
        let mut v = Vec::new();
        let creds = Credentials {
            username: b"bob",
            password: b"builder",
            method: b"REGISTER",
            digest_uri: uri.as_bytes(),
            cnonce: b"1f2e3d4c",
            nc: 1,
        };
        write_authorization(&mut v, &parsed, &creds).unwrap();
        String::from_utf8(v).unwrap()
    };
    // Credentials for another Request-URI: 400, whatever the password.
    let wrong_uri = ua.send(&contact, 600, Some(&answer("sip:elsewhere.example")));
    assert_eq!(status_of(&wrong_uri), Some(400), "{wrong_uri}");
    // The right ones: 200 with a Date close to the test's own clock.
    let good = answer(&format!("sip:{}", server.addr));
    let ok = ua.send(&contact, 600, Some(&good));
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    let date = header(&ok, "Date");
    assert_eq!(date.len(), 1, "{ok}");
    let when = parse_http_date(date[0]).unwrap_or_else(|| panic!("bad Date: {}", date[0]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(when.abs_diff(now) <= 120, "Date {} vs now {now}", date[0]);
    // The same Authorization again in a new request (a replay): a stale challenge.
    let replay = ua.send(&contact, 600, Some(&good));
    assert_eq!(status_of(&replay), Some(401), "{replay}");
    assert!(
        header(&replay, "WWW-Authenticate")
            .iter()
            .all(|c| c.contains("stale=true")),
        "{replay}"
    );
    let (code, lines, err, _) = server.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{err}");
    let t = totals(&lines);
    assert_eq!(t["register_bad_credentials"], 1, "{t:?}");
    assert_eq!(t["register_ok"], 1, "{t:?}");
}
