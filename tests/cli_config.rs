//! Black-box tests of the built `sipshard` binary: check-config and params.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sipshard");

/// A temp file removed on drop; unique per test and process.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("sipshard-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sipshard(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run sipshard");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:5070"
shards = 2

[sip]
SS_SIP_RESEND_INTERVAL = "0.5, 1, 2, 4, 4, 4"
timeout_invite = 15
SS_SIP_USER_AGENT_EXPIRE = "Auto Negotiation"
SS_ENDPOINT_REGISTER_REPLACE = "Off"

[log]
level = "warn"
"#;

const BAD: &str = r#"
[server]
shards = 300

[sip]
timeout_invite = 0
resend_interval = [0.5, 1]
SS_SIP_RESEND_INTERVAL = "0.5,1"
endpoint_expires = 3600

[dialplan]
x = 1
"#;

#[test]
fn check_config_good_file() {
    let f = TempFile::new("good.toml", GOOD);
    let (code, out, _) = sipshard(&["check-config", f.path()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("{}: OK\n", f.path()));
}

#[test]
fn check_config_bad_file_lists_every_error() {
    let f = TempFile::new("bad.toml", BAD);
    let (code, out, _) = sipshard(&["check-config", f.path()]);
    assert_eq!(code, 2, "{out}");
    let p = f.path();
    for want in [
        format!("{p}:3: server.shards = 300 is out of range: allowed 0..=256"),
        format!(
            "{p}:6: sip.timeout_invite (SS_SIP_TIMEOUT_INVITE) = 0 is out of range: \
             allowed 1..=600 seconds"
        ),
        "sip.resend_interval (SS_SIP_RESEND_INTERVAL) is given twice".to_string(),
        format!("{p}:9: unknown key `endpoint_expires` in [sip]; did you mean `endpoint_expire`?"),
        format!("{p}:11: unknown section [dialplan]"),
        format!("{p}: 5 errors"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn check_config_missing_file_and_syntax_error() {
    let (code, out, _) = sipshard(&["check-config", "/nonexistent/x.toml"]);
    assert_eq!(code, 2);
    assert!(out.contains("cannot read /nonexistent/x.toml"), "{out}");
    let f = TempFile::new("syntax.toml", "[sip\n");
    let (code, out, _) = sipshard(&["check-config", f.path()]);
    assert_eq!(code, 2);
    assert!(out.contains("TOML syntax error"), "{out}");
}

#[test]
fn params_shows_defaults() {
    let (code, out, _) = sipshard(&["params"]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("KEY"), "{header}");
    for col in ["VOS3000 NAME", "DEFAULT", "RANGE", "VALUE"] {
        assert!(header.contains(col), "{header}");
    }
    let line = out
        .lines()
        .find(|l| l.starts_with("sip.timeout_invite "))
        .unwrap();
    let cells: Vec<&str> = line.split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(
        cells.iter().map(|c| c.trim()).collect::<Vec<_>>(),
        [
            "sip.timeout_invite",
            "SS_SIP_TIMEOUT_INVITE",
            "10",
            "1..=600 seconds",
            "10"
        ]
    );
    // Columns are aligned: every row has its VOS3000 name where the header has it.
    let col = header.find("VOS3000 NAME").unwrap();
    for l in out.lines().skip(1).filter(|l| l.contains('.')) {
        assert_ne!(l.as_bytes()[col], b' ', "{l}");
        assert_eq!(l.as_bytes()[col - 1], b' ', "{l}");
    }
    assert!(out.contains("server.listen"));
    assert!(out.contains("127.0.0.1:5060"));
}

#[test]
fn params_shows_values_in_force_from_a_file() {
    let f = TempFile::new("params.toml", GOOD);
    let (code, out, _) = sipshard(&["params", "--config", f.path()]);
    assert_eq!(code, 0, "{out}");
    let row = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row {key}"))
            .to_string()
    };
    assert!(row("sip.timeout_invite").ends_with(" 15 *"));
    assert!(row("sip.resend_interval").ends_with(" 0.5,1,2,4,4,4 *"));
    assert!(
        row("sip.send_retry").ends_with(" 6"),
        "{}",
        row("sip.send_retry")
    );
    assert!(row("sip.user_agent_expire").ends_with(" auto"));
    assert!(row("sip.endpoint_register_replace").ends_with(" Off *"));
    assert!(row("server.listen").ends_with(" 127.0.0.1:5070 *"));
    assert!(row("log.level").ends_with(" warn *"));
}

#[test]
fn params_with_bad_file_exits_2() {
    let f = TempFile::new("params-bad.toml", BAD);
    let (code, out, err) = sipshard(&["params", "--config", f.path()]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("server.shards = 300 is out of range"), "{err}");
}

#[test]
fn run_with_bad_config_exits_2_before_starting() {
    let f = TempFile::new("run-bad.toml", BAD);
    let (code, _, err) = sipshard(&["run", "--config", f.path()]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown section [dialplan]"), "{err}");
    let (code, _, err) = sipshard(&["run", "--shards", "many"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--shards: server.shards = \"many\" is not valid"),
        "{err}"
    );
}

#[test]
fn docs_list_every_key_and_vos_name() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let (_, out, _) = sipshard(&["params"]);
    for line in out.lines().skip(1).filter(|l| l.contains('.')) {
        let mut cells = line.split_whitespace();
        let key = cells.next().unwrap();
        let vos = cells.next().unwrap();
        let short = key.split_once('.').unwrap().1;
        assert!(docs.contains(&format!("| `{short}` |")), "docs lack {key}");
        if vos != "-" {
            assert!(docs.contains(&format!("`{vos}`")), "docs lack {vos}");
        }
    }
}

#[test]
fn check_config_reports_registrar_and_account_errors() {
    let f = TempFile::new(
        "registrar-bad.toml",
        r#"[registrar]
min_expires = 600
max_expires = 300
digest_algorithms = ["MD5", "md5"]

[[registrar.accounts]]
user = "gw"
auth_mode = "ip_port"
allowed = ["10.0.0.1"]
"#,
    );
    let (code, out, _) = sipshard(&["check-config", f.path()]);
    assert_eq!(code, 2, "{out}");
    let p = f.path();
    assert!(
        out.contains(&format!(
            "{p}:4: registrar.digest_algorithms = [\"MD5\", \"md5\"] is not valid: MD5 is listed twice"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{p}:9: registrar.accounts #1: (user `gw`) allowed: `10.0.0.1` has no port"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("{p}: 2 errors")), "{out}");
    // Cross-field checks come once the values themselves are valid.
    let f = TempFile::new(
        "registrar-cross.toml",
        "[registrar]\nmin_expires = 600\nmax_expires = 300\n",
    );
    let (code, out, _) = sipshard(&["check-config", f.path()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("registrar.max_expires = 300 is below registrar.min_expires = 600"),
        "{out}"
    );
}

#[test]
fn params_shows_registrar_values_but_not_accounts() {
    let f = TempFile::new(
        "registrar-params.toml",
        "[registrar]\nrealm = \"carrier.example\"\ntrusted_sources = [\"10.0.0.0/8\"]\n\
         [[registrar.accounts]]\nuser = \"1001\"\npassword = \"pw\"\n",
    );
    let (code, out, _) = sipshard(&["params", "--config", f.path()]);
    assert_eq!(code, 0, "{out}");
    let row = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no row {key}"))
            .to_string()
    };
    assert!(row("registrar.realm").ends_with(" carrier.example *"));
    assert!(row("registrar.trusted_sources").ends_with(" 10.0.0.0/8 *"));
    assert!(row("registrar.digest_algorithms").ends_with(" MD5,SHA-256"));
    assert!(
        !out.contains("pw"),
        "accounts and passwords are not parameters: {out}"
    );
}
