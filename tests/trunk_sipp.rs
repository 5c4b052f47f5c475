//! Black-box outbound registration against sipp acting as a challenging registrar
//! (tests/sipp/challenging_registrar.xml, sipp's `verifyauth`): the wire carries the right
//! Authorization, Privacy and Expires headers; a wrong password ends in 403 and is retried.
//! Fails (not skips) when CI=true and sipp is missing.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sipshard::sip::digest::{ha1, response, Algorithm};
use sipshard::sip::{parse_auth, HeaderKind, Parser};

/// One message of sipp's `-trace_msg` file.
#[derive(Debug)]
struct Traced {
    /// true: sipp sent it; false: sipp received it.
    sent: bool,
    text: String,
}

/// Splits sipp's message trace into messages (each entry starts with a dashed line and a
/// "UDP message received|sent" line, then a blank line, then the message).
fn read_trace(path: &PathBuf) -> Vec<Traced> {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for block in raw.split("----------------------------------------------- ") {
        let Some((head, body)) = block.split_once("\n\n") else {
            continue;
        };
        let sent = head.contains("message sent");
        if !sent && !head.contains("message received") {
            continue;
        }
        // sipp writes bare \n in its trace; keep the message as SIP text with CRLF.
        let text = body.trim_end().replace("\r\n", "\n").replace('\n', "\r\n") + "\r\n\r\n";
        out.push(Traced { sent, text });
    }
    out
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn count(trace: &[Traced], sent: bool, start: &str) -> usize {
    trace
        .iter()
        .filter(|m| m.sent == sent && m.text.starts_with(start))
        .count()
}

fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until `done(trace)`; returns the last trace read.
fn wait_trace(path: &PathBuf, within: Duration, done: impl Fn(&[Traced]) -> bool) -> Vec<Traced> {
    let deadline = Instant::now() + within;
    loop {
        let t = read_trace(path);
        if done(&t) || Instant::now() >= deadline {
            return t;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn trunks_register_to_sipp_verifyauth_with_privacy_and_expires_and_retry_a_wrong_password() {
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("trunk-sipp");
    let scenario =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/challenging_registrar.xml");
    let trace = dir.0.join("messages.log");
    let port = free_udp_port();
    // One call per trunk; the wrong-password call ends after its second 403, the others after
    // the unregister. -timeout bounds sipp whatever happens.
    let sipp = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "4"])
        .args([
            "-timeout",
            "120s",
            "-nostdin",
            "-trace_msg",
            "-message_file",
        ])
        .arg(&trace)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sipp");
    let mut sipp = Sipp(sipp);

    // Four trunks to the same registrar: three with the right password and each privacy
    // setting, one with a wrong password. All ask for 300 s; the retry delay is the minimum.
    let mut cfg = String::from("[log]\nlevel = \"info\"\n");
    for (name, privacy, password) in [
        ("p-id", "id", "secret"),
        ("p-none", "none", "secret"),
        ("p-ignore", "ignore", "secret"),
        ("wrong", "ignore", "not-the-password"),
    ] {
        cfg.push_str(&format!(
            "[[trunks]]\nname = \"{name}\"\nregistrar = \"127.0.0.1\"\nport = {port}\n\
             username = \"trunk1\"\npassword = \"{password}\"\nexpire = 300\n\
             retry_delay = 30\nprivacy = \"{privacy}\"\ncontact_user = \"{name}\"\n"
        ));
    }
    let cfg = dir.write("b.toml", &cfg);
    let mut server = start_with_log(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--config",
            &cfg,
        ],
        "info",
    )
    .unwrap_or_else(|e| panic!("sipshard did not start: {e}"));

    // Three 200s (one per good trunk) and the wrong trunk's two attempts, each ending in 403:
    // the second attempt comes one retry delay (30 s) after the first 403.
    let t = wait_trace(&trace, Duration::from_secs(75), |t| {
        count(t, true, "SIP/2.0 200") >= 3 && count(t, true, "SIP/2.0 403") >= 2
    });
    let registered_logged = server.wait_for_stderr("expires_s=120", Duration::from_secs(1));
    assert_eq!(
        count(&t, true, "SIP/2.0 200"),
        3,
        "three trunks registered: {t:#?}"
    );
    assert_eq!(
        count(&t, true, "SIP/2.0 403"),
        2,
        "wrong password retried once: {t:#?}"
    );

    // Shutdown: the three registered trunks unregister (Expires: 0), challenged again.
    let (code, lines, err, _) = server.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{err}");
    let exited = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match sipp.0.try_wait() {
                Ok(Some(st)) => break Some(st),
                _ if Instant::now() >= deadline => break None,
                _ => std::thread::park_timeout(Duration::from_millis(100)),
            }
        }
    };
    let t = read_trace(&trace);
    assert!(
        exited.is_some_and(|s| s.success()),
        "sipp ended all four calls: {exited:?}; {t:#?}"
    );
    assert!(
        registered_logged,
        "the granted 120 s is the effective expiry: {err}"
    );
    let totals = totals(&lines);
    assert_eq!(totals["trunk_registrations"], 3, "{totals:?}");

    let mut parser = Parser::new();
    let registers: Vec<&Traced> = t
        .iter()
        .filter(|m| !m.sent && m.text.starts_with("REGISTER "))
        .collect();
    let uri = format!("sip:127.0.0.1:{port}");
    let ha1_right = ha1(Algorithm::Md5, b"trunk1", b"sipp.test", b"secret");
    let mut seen_nc = Vec::new();
    for name in ["p-id", "p-none", "p-ignore", "wrong"] {
        let mine: Vec<&str> = registers
            .iter()
            .map(|m| m.text.as_str())
            .filter(|r| header(r, "Contact").is_some_and(|c| c.contains(&format!("sip:{name}@"))))
            .collect();
        // Good trunks: challenged, answered, then at shutdown challenged and answered again.
        // The wrong one: two attempts of two requests each.
        assert_eq!(mine.len(), 4, "{name}: {mine:#?}");
        let call_ids: Vec<_> = mine.iter().map(|r| header(r, "Call-ID")).collect();
        assert!(
            call_ids.windows(2).all(|w| w[0] == w[1]),
            "{name}: one Call-ID"
        );
        let privacy = mine
            .iter()
            .map(|r| header(r, "Privacy"))
            .collect::<Vec<_>>();
        let want = match name {
            "p-id" => Some("id"),
            "p-none" => Some("none"),
            _ => None,
        };
        assert!(privacy.iter().all(|p| *p == want), "{name}: {privacy:?}");
        let expires: Vec<_> = mine.iter().map(|r| header(r, "Expires").unwrap()).collect();
        if name == "wrong" {
            assert_eq!(expires, ["300"; 4], "{name}");
        } else {
            assert_eq!(expires, ["300", "300", "0", "0"], "{name}");
        }
        for (i, r) in mine.iter().enumerate() {
            let msg = parser.parse(r.as_bytes()).expect("a REGISTER sipp logged");
            let auth = msg.header(HeaderKind::Authorization);
            if i % 2 == 0 {
                assert!(
                    auth.is_none(),
                    "{name} #{i}: first request of an attempt: {r}"
                );
                continue;
            }
            let a = parse_auth(auth.expect("an answer to the challenge")).unwrap();
            let d = a.digest;
            assert_eq!(d.username, Some(&b"trunk1"[..]), "{r}");
            assert_eq!(d.realm, Some(&b"sipp.test"[..]), "{r}");
            assert_eq!(d.nonce, Some(&b"5f2c0a9d3e8b41aa"[..]), "{r}");
            assert_eq!(d.uri, Some(uri.as_bytes()), "{r}");
            assert_eq!(d.qop, Some(&b"auth"[..]), "{r}");
            assert_eq!(
                Algorithm::from_param(d.algorithm),
                Some(Algorithm::Md5),
                "{r}"
            );
            let nc = std::str::from_utf8(d.nc.unwrap()).unwrap();
            seen_nc.push((name, i, nc.to_string()));
            // sipp's nonce is fixed: the second answer to it counts up.
            let want_nc = if i == 1 { "00000001" } else { "00000002" };
            assert_eq!(nc, want_nc, "{name} #{i}");
            let cnonce = d.cnonce.expect("cnonce");
            assert!(cnonce.len() >= 8, "{r}");
            let right = response(
                Algorithm::Md5,
                &ha1_right,
                b"REGISTER",
                uri.as_bytes(),
                d.nonce.unwrap(),
                Some((d.nc.unwrap(), cnonce)),
            );
            let matches = d.response == Some(right.as_bytes());
            assert_eq!(matches, name != "wrong", "{name} #{i}: response: {r}");
        }
    }
    // What sipp answered to whom: every good answer got 200, the wrong ones 403.
    let sent_finals: Vec<&str> = t
        .iter()
        .filter(|m| m.sent && !m.text.starts_with("SIP/2.0 401"))
        .map(|m| m.text.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(sent_finals.len(), 3 * 2 + 2, "{sent_finals:?} {seen_nc:?}");
    let _ = sipp.0.stderr.take();
}
