//! The account table built the way the server builds it: `Config::load` of a file whose
//! `accounts_file` is relative, then `Accounts::build`; and a 100 000-row file (no timing: speed
//! lives in `benches/accounts.rs`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use sipshard::config::{AuthMode, Config, RegistrarConfig};
use sipshard::registrar::accounts::Accounts;
use sipshard::sip::digest::{ha1, Algorithm};

/// A temp directory removed on drop; unique per test and process.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sipshard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn hundred_thousand_accounts_from_a_file() {
    let dir = TempDir::new("accounts-100k");
    let mut text = String::from("user,password,allowed,auth_mode\n");
    for i in 0..100_000u32 {
        let (b, c) = ((i >> 8) & 0xff, i & 0xff);
        match i % 50 {
            0 => writeln!(text, "u{i},,172.16.{b}.{c},ip"),
            25 => writeln!(text, "u{i},,172.17.{b}.{c}:5060,ip_port"),
            _ => writeln!(text, "u{i},pw{i}"),
        }
        .unwrap();
    }
    let path = dir.0.join("big.csv");
    std::fs::write(&path, &text).unwrap();
    let cfg = RegistrarConfig {
        realm: "carrier.example".into(),
        accounts_file: Some(path.to_string_lossy().into_owned()),
        ..RegistrarConfig::default()
    };
    let t = Accounts::build(&cfg).unwrap();
    assert_eq!(t.len(), 100_000);
    for i in [1u32, 49, 12_345, 99_999] {
        let id = t.find(format!("u{i}").as_bytes()).unwrap();
        let a = t.get(id);
        assert_eq!(&*a.password, format!("pw{i}"));
        assert_eq!(a.auth_mode, AuthMode::Digest);
        assert_eq!(
            a.ha1_sha256,
            ha1(
                Algorithm::Sha256,
                a.user.as_bytes(),
                b"carrier.example",
                a.password.as_bytes()
            )
        );
    }
    assert_eq!(t.find(b"u100000"), None);
    // u50000: 50000 = 0xC350 → 172.16.195.80, ip mode.
    let id = t.find_by_source(sa("172.16.195.80:40000")).unwrap();
    assert_eq!(&*t.get(id).user, "u50000");
    // u25: ip_port at 172.17.0.25:5060 only.
    let id = t.find_by_source(sa("172.17.0.25:5060")).unwrap();
    assert_eq!(&*t.get(id).user, "u25");
    assert_eq!(t.find_by_source(sa("172.17.0.25:5061")), None);
    assert_eq!(t.find_by_source(sa("192.0.2.1:5060")), None);
}

#[test]
fn config_file_with_relative_accounts_file_and_inline_accounts() {
    let dir = TempDir::new("accounts-cfg");
    std::fs::create_dir_all(dir.0.join("etc")).unwrap();
    std::fs::write(
        dir.0.join("etc/accounts.csv"),
        "# bulk accounts\n1001,secret\ngw-b,,198.51.100.0/24,ip\n",
    )
    .unwrap();
    let cfg_path = dir.0.join("etc/sipshard.toml");
    std::fs::write(
        &cfg_path,
        r#"
[registrar]
realm = "voip.example"
accounts_file = "accounts.csv"

[[registrar.accounts]]
user = "gw-a"
auth_mode = "ip_port"
allowed = ["192.0.2.10:5060", "[2001:db8::10]:5060"]

[[registrar.accounts]]
user = "1000"
password = "pw"
"#,
    )
    .unwrap();
    let config = Config::load(&cfg_path).unwrap();
    assert_eq!(
        config.registrar.accounts_file.as_deref(),
        Some(dir.0.join("etc").join("accounts.csv").to_str().unwrap())
    );
    let t = Accounts::build(&config.registrar).unwrap();
    assert_eq!(t.len(), 4);
    let who = |s: &str| t.find_by_source(sa(s)).map(|id| t.get(id).user.to_string());
    assert_eq!(who("192.0.2.10:5060").as_deref(), Some("gw-a"));
    assert_eq!(who("[2001:db8::10]:5060").as_deref(), Some("gw-a"));
    assert_eq!(who("198.51.100.77:5060").as_deref(), Some("gw-b"));
    let a = t.get(t.find(b"1001").unwrap());
    assert_eq!(
        a.ha1_md5,
        ha1(Algorithm::Md5, b"1001", b"voip.example", b"secret")
    );
    assert!(a.source_allowed(sa("203.0.113.1:5060")));
}

#[test]
fn build_error_names_file_line_and_field() {
    let dir = TempDir::new("accounts-bad");
    let path = dir.0.join("bad.csv");
    std::fs::write(&path, "alice,pw\r\nbob,pw,10.0.0.300\r\n").unwrap();
    let cfg = RegistrarConfig {
        accounts_file: Some(path.to_string_lossy().into_owned()),
        ..RegistrarConfig::default()
    };
    let e = Accounts::build(&cfg).unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}:2: field 3 (allowed): `10.0.0.300` is not an IP, IP:PORT ([IPv6]:PORT) or IP/PREFIX",
            path.display()
        )
    );
}
