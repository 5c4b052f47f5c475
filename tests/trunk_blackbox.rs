//! Black-box outbound registration: sipshard B registers its `[[trunks]]` to sipshard A (a
//! registrar with a digest account), answers the challenge, and unregisters on shutdown.

mod common;

use std::time::Duration;

use common::*;

/// Trunks in B's config. The first attempts are spread by index over min(retry delay,
/// 30 × 100 ms) = 3 s, so the first one starts within 100 ms.
const TRUNKS: usize = 30;

#[test]
fn a_trunk_registers_with_digest_and_unregisters_on_shutdown() {
    let dir = TempDir::new("trunk-bb");
    let a_cfg = dir.write(
        "a.toml",
        "[registrar]\nrate_limit_per_source = 0\n\
         [[registrar.accounts]]\nuser = \"trunk1\"\npassword = \"secret\"\n",
    );
    let a = start_server(2, &["--config", &a_cfg]);

    let mut b_text = String::from("[log]\nlevel = \"info\"\n");
    for i in 0..TRUNKS {
        b_text.push_str(&format!(
            "[[trunks]]\nname = \"carrier{i}\"\nregistrar = \"127.0.0.1\"\nport = {port}\n\
             username = \"trunk1\"\npassword = \"secret\"\nexpire = 120\n\
             contact_user = \"t{i}\"\nretry_delay = 30\n",
            port = a.addr.port()
        ));
    }
    let b_cfg = dir.write("b.toml", &b_text);
    let mut b = start_with_log(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--config",
            &b_cfg,
        ],
        "info",
    )
    .unwrap_or_else(|e| panic!("B did not start: {e}"));

    // The first trunk's slot is the first second; its REGISTER is challenged, then accepted.
    let registered = b.wait_for_stderr("trunk registered", Duration::from_secs(10));

    // B unregisters on shutdown (Expires: 0) before it exits; then A is stopped.
    let (b_code, b_lines, b_err, _) = b.terminate(Duration::from_secs(15));
    let (a_code, a_lines, a_err, _) = a.terminate(Duration::from_secs(10));
    assert!(registered, "no trunk registered within 10 s; B: {b_err}");
    assert_eq!(b_code, Some(0), "{b_err}");
    assert_eq!(a_code, Some(0), "{a_err}");
    assert!(b_err.contains("trunk stopped"), "{b_err}");

    let ta = totals(&a_lines);
    assert!(ta["bindings_added"] >= 1, "{ta:?}");
    assert!(ta["register_ok"] >= 2, "register and unregister: {ta:?}");
    assert_eq!(ta["bindings_live"], 0, "B unregistered on shutdown: {ta:?}");

    let tb = totals(&b_lines);
    assert!(tb["trunk_registrations"] >= 1, "{tb:?}");
    assert!(
        tb["trunk_registers_sent"] >= 3,
        "challenged, answered, unregister: {tb:?}"
    );
    assert_eq!(tb["trunks_registered"], 0, "all stopped: {tb:?}");
}

#[test]
fn an_unresolvable_trunk_host_stops_the_start_naming_the_trunk() {
    let dir = TempDir::new("trunk-dns");
    let cfg = dir.write(
        "b.toml",
        "[[trunks]]\nname = \"nowhere\"\nregistrar = \"sipshard-test.invalid\"\n\
         username = \"u\"\npassword = \"p\"\n",
    );
    let err = match start_with_args(&["run", "--listen", "127.0.0.1:0", "--config", &cfg]) {
        Ok(_) => panic!("started with an unresolvable trunk host"),
        Err(e) => e,
    };
    assert!(
        err.contains("nowhere") && err.contains("sipshard-test.invalid"),
        "{err}"
    );
}

#[test]
fn trunk_destinations_are_resolved_at_start() {
    let sip = sipshard::config::SipParams::default();
    let mut by_ip = sipshard::config::TrunkConfig::new("a", "127.0.0.1", "u", &sip);
    by_ip.port = 5080;
    let mut by_name = sipshard::config::TrunkConfig::new("b", "localhost", "u", &sip);
    by_name.outbound_proxy = Some(("127.0.0.1".to_string(), 5090));
    let got = sipshard::server::resolve_trunks(&[by_ip, by_name]).unwrap();
    assert_eq!(
        got,
        vec![
            Some("127.0.0.1:5080".parse().unwrap()),
            Some("127.0.0.1:5090".parse().unwrap()),
        ],
        "the outbound proxy, when set, is the destination"
    );
}

#[test]
fn the_kernels_local_address_toward_a_destination() {
    let dst: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        sipshard::server::local_ip_toward(dst),
        Some("127.0.0.1".parse().unwrap())
    );
    let dst6: std::net::SocketAddr = "[::1]:9".parse().unwrap();
    // Hosts without IPv6 have no route: None, never a panic or 0.0.0.0.
    if let Some(ip) = sipshard::server::local_ip_toward(dst6) {
        assert_eq!(ip, "::1".parse::<std::net::IpAddr>().unwrap());
    }
}

#[test]
fn advertised_address_is_the_via_and_contact_of_outbound_registers() {
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = registrar.local_addr().unwrap().port();
    let dir = TempDir::new("trunk-adv");
    let cfg = dir.write(
        "b.toml",
        &format!(
            "[server]\nadvertised_address = \"sbc.example.net\"\n\
             [[trunks]]\nname = \"c\"\nregistrar = \"127.0.0.1\"\nport = {port}\n\
             username = \"4420\"\npassword = \"p\"\n"
        ),
    );
    let server = start_server(1, &["--config", &cfg]);
    let req = recv_text(&registrar, Duration::from_secs(5)).expect("a REGISTER within 5 s");
    let listen_port = server.addr.port();
    let _ = server.terminate(Duration::from_secs(10));
    assert!(req.starts_with("REGISTER "), "{req}");
    assert!(
        req.contains(&format!("Via: SIP/2.0/UDP sbc.example.net:{listen_port};")),
        "the listen port when none is given: {req}"
    );
    assert!(
        req.contains(&format!(
            "Contact: <sip:4420@sbc.example.net:{listen_port}>"
        )),
        "{req}"
    );
}
