use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(text)
}

fn errs(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(c) => panic!("expected errors for {text:?}, got {c:?}"),
        Err(e) => e.iter().map(|e| e.message.clone()).collect(),
    }
}

fn one_err(text: &str) -> String {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error for {text:?}: {e:?}");
    e.into_iter().next().unwrap()
}

fn sip(body: &str) -> String {
    format!("[sip]\n{body}\n")
}

fn intervals(value: &str) -> Result<Vec<u64>, ConfigErrors> {
    parse(&sip(&format!("resend_interval = {value}"))).map(|c| c.sip.timers.resend_intervals_ms)
}

// ---- embedded default -------------------------------------------------------------------

#[test]
fn embedded_default_parses_and_equals_builtin_defaults() {
    let c = Config::embedded_default();
    assert_eq!(c, Config::default());
    assert_eq!(c.server.listen, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(c.sip.timers, TransactionTimers::default());
    assert_eq!(c.sip.timers.send_retry, 10);
}

#[test]
fn embedded_default_writes_every_key() {
    for p in PARAMS {
        let mut section = "";
        let found = DEFAULT_TOML.lines().any(|l| {
            let l = l.trim();
            if l.starts_with('[') {
                section = l.trim_matches(|c| c == '[' || c == ']');
            }
            section == p.section.name() && l.starts_with(&format!("{} = ", p.key))
        });
        assert!(found, "default.toml lacks {}", p.dotted());
    }
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(
        parse("[server]\n[sip]\n[log]\n").unwrap(),
        Config::default()
    );
}

#[test]
fn value_text_round_trips_through_the_parser() {
    // Every value as `params` prints it is accepted back by the parser (as a string).
    let c = parse(
        "[sip]\nresend_interval = [0.25, 1.5]\nuser_agent_expire = 600\nuser_agent_privacy = \"id\"\n",
    )
    .unwrap();
    let overrides: Vec<Override> = PARAMS
        .iter()
        .map(|p| Override {
            key: p.dotted(),
            value: c.value_text(p),
            origin: "test".into(),
        })
        .collect();
    assert_eq!(
        Config::from_toml_str_with_overrides("", &overrides).unwrap(),
        c
    );
}

// ---- aliases ----------------------------------------------------------------------------

const SNAKE: &str = r#"
[server]
listen = "0.0.0.0:5070"
shards = 4
pin_shards = true
io_backend = "portable"

[sip]
resend_interval = [0.5, 1, 2, 4, 4, 4]
send_retry = 3
timeout_invite = 15
timeout_trying = 30
timeout_ringing = 90
user_agent_expire = 1800
user_agent_retry_delay = 120
user_agent_send_unregister = false
user_agent_privacy = "id"
endpoint_expire = 600
endpoint_nat_expire = 60
endpoint_register_retry = 3
endpoint_register_suspend = 600
endpoint_register_replace = false
registrar_max_bindings = 5

[log]
level = "debug"
"#;

const VOS: &str = r#"
[server]
listen = "0.0.0.0:5070"
shards = 4
pin_shards = "On"
io_backend = "Portable"

[sip]
SS_SIP_RESEND_INTERVAL = "0.5,1,2,4,4,4"
SS_SIP_SEND_RETRY = "3"
SS_SIP_TIMEOUT_INVITE = "15"
SS_SIP_TIMEOUT_TRYING = 30
SS_SIP_TIMEOUT_RINGING = "90"
SS_SIP_USER_AGENT_EXPIRE = "1800"
SS_SIP_USER_AGENT_RETRY_DELAY = "120"
SS_SIP_USER_AGENT_SEND_UNREGISTER = "Off"
SS_SIP_USER_AGENT_PRIVACY = "Id"
SS_ENDPOINT_EXPIRE = "600"
SS_ENDPOINT_NAT_EXPIRE = "60"
SS_ENDPOINT_REGISTER_RETRY = "3"
SS_ENDPOINT_REGISTER_SUSPEND = "600"
SS_ENDPOINT_REGISTER_REPLACE = "OFF"
SERVER_REGISTRAR_MAX_BINDINGS = "5"

[log]
level = "debug"
"#;

#[test]
fn both_spellings_give_the_same_config() {
    let a = parse(SNAKE).unwrap();
    let b = parse(VOS).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, Config::default());
    let t = &a.sip.timers;
    assert_eq!(
        t.resend_intervals_ms,
        vec![500, 1000, 2000, 4000, 4000, 4000]
    );
    assert_eq!(t.send_retry, 3);
    assert_eq!(t.timeout_invite_ms, 15_000);
    assert_eq!(t.timeout_trying_ms, 30_000);
    assert_eq!(t.timeout_ringing_ms, 90_000);
    assert_eq!(a.sip.user_agent_expire_s, Some(1800));
    assert_eq!(a.sip.user_agent_retry_delay_s, 120);
    assert!(!a.sip.user_agent_send_unregister);
    assert_eq!(a.sip.user_agent_privacy, Privacy::Id);
    assert_eq!(a.sip.endpoint_expire_s, 600);
    assert_eq!(a.sip.endpoint_nat_expire_s, 60);
    assert_eq!(a.sip.endpoint_register_retry, 3);
    assert_eq!(a.sip.endpoint_register_suspend_s, 600);
    assert!(!a.sip.endpoint_register_replace);
    assert_eq!(a.sip.registrar_max_bindings, 5);
    assert_eq!(a.server.listen, "0.0.0.0:5070".parse().unwrap());
    assert_eq!(a.server.shards, 4);
    assert!(a.server.pin_shards);
    assert_eq!(a.server.io_backend, IoBackendKind::Portable);
    assert_eq!(a.log_level, "debug");
}

#[test]
fn vos_names_match_in_any_case() {
    let a = parse(&sip("ss_sip_timeout_invite = 12")).unwrap();
    assert_eq!(a.sip.timers.timeout_invite_ms, 12_000);
}

#[test]
fn every_vos_name_is_an_alias_of_its_key() {
    for p in PARAMS.iter().filter(|p| p.vos_name.is_some()) {
        let v = Config::default().value_text(p);
        let by_key = parse(&format!("[sip]\n{} = \"{v}\"\n", p.key)).unwrap();
        let by_vos = parse(&format!("[sip]\n{} = \"{v}\"\n", p.vos_name.unwrap())).unwrap();
        assert_eq!(by_key, by_vos, "{}", p.key);
    }
}

#[test]
fn user_agent_expire_forms() {
    for auto in [
        "auto",
        "Auto",
        "AUTO",
        "Auto Negotiation",
        "auto  negotiation",
        " Auto ",
    ] {
        let c = parse(&sip(&format!("user_agent_expire = {auto:?}"))).unwrap();
        assert_eq!(c.sip.user_agent_expire_s, None, "{auto}");
    }
    let c = parse(&sip("SS_SIP_USER_AGENT_EXPIRE = \"Auto Negotiation\"")).unwrap();
    assert_eq!(c.sip.user_agent_expire_s, None);
    let c = parse(&sip("user_agent_expire = 3600")).unwrap();
    assert_eq!(c.sip.user_agent_expire_s, Some(3600));
    let e = one_err(&sip("user_agent_expire = \"sometimes\""));
    assert!(
        e.contains("sip.user_agent_expire (SS_SIP_USER_AGENT_EXPIRE) = \"sometimes\""),
        "{e}"
    );
    assert!(e.contains("20..=7200"), "{e}");
}

#[test]
fn booleans_accept_on_off_and_toml_booleans() {
    for (text, want) in [
        ("true", true),
        ("false", false),
        ("\"On\"", true),
        ("\"Off\"", false),
        ("\"on\"", true),
        ("\"OFF\"", false),
    ] {
        let c = parse(&sip(&format!("endpoint_register_replace = {text}"))).unwrap();
        assert_eq!(c.sip.endpoint_register_replace, want, "{text}");
        let c = parse(&format!("[server]\npin_shards = {text}\n")).unwrap();
        assert_eq!(c.server.pin_shards, want, "{text}");
    }
    let e = one_err(&sip("SS_SIP_USER_AGENT_SEND_UNREGISTER = \"yes\""));
    assert!(e.contains("sip.user_agent_send_unregister (SS_SIP_USER_AGENT_SEND_UNREGISTER) = \"yes\" is not valid"), "{e}");
    assert!(e.contains("On/Off"), "{e}");
    let e = one_err(&sip("user_agent_send_unregister = 1"));
    assert!(e.contains("= 1 is not valid"), "{e}");
}

#[test]
fn privacy_and_io_backend_are_case_insensitive() {
    for (text, want) in [
        ("Ignore", Privacy::Ignore),
        ("IGNORE", Privacy::Ignore),
        ("Id", Privacy::Id),
        ("id", Privacy::Id),
        ("None", Privacy::None),
        ("none", Privacy::None),
    ] {
        let c = parse(&sip(&format!("SS_SIP_USER_AGENT_PRIVACY = {text:?}"))).unwrap();
        assert_eq!(c.sip.user_agent_privacy, want);
    }
    let e = one_err(&sip("user_agent_privacy = \"full\""));
    assert!(e.contains("= \"full\" is not valid"), "{e}");
    assert!(e.contains("ignore|id|none"), "{e}");
    for (text, want) in [
        ("auto", IoBackendKind::Auto),
        ("MMSG", IoBackendKind::Mmsg),
        ("portable", IoBackendKind::Portable),
    ] {
        let c = parse(&format!("[server]\nio_backend = {text:?}\n")).unwrap();
        assert_eq!(c.server.io_backend, want);
    }
    let e = one_err("[server]\nio_backend = \"xdp\"\n");
    assert!(
        e.contains("server.io_backend = \"xdp\" is not valid"),
        "{e}"
    );
}

// ---- duplicates, unknown keys and sections ---------------------------------------------------

#[test]
fn key_and_alias_together_is_an_error() {
    let e = one_err("[sip]\nresend_interval = [1]\nSS_SIP_RESEND_INTERVAL = \"1\"\n");
    assert!(
        e.contains("sip.resend_interval (SS_SIP_RESEND_INTERVAL) is given twice"),
        "{e}"
    );
    assert!(
        e.contains("`resend_interval`") && e.contains("`SS_SIP_RESEND_INTERVAL`"),
        "{e}"
    );
    // Two spellings of the VOS3000 name count too.
    let e = one_err("[sip]\nSS_SIP_TIMEOUT_INVITE = 10\nss_sip_timeout_invite = 10\n");
    assert!(e.contains("given twice"), "{e}");
}

#[test]
fn exact_duplicate_key_is_a_syntax_error() {
    let e = one_err("[sip]\ntimeout_invite = 10\ntimeout_invite = 11\n");
    assert!(e.starts_with("TOML syntax error"), "{e}");
}

#[test]
fn unknown_key_names_key_section_line_and_suggestion() {
    let err = parse("[sip]\ntimeout_invit = 10\n").unwrap_err();
    let e = &err.0[0];
    assert_eq!(err.len(), 1);
    assert_eq!(e.line, Some(2));
    assert_eq!(e.key, "sip.timeout_invit");
    assert!(
        e.message.contains("unknown key `timeout_invit` in [sip]"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("did you mean `timeout_invite`?"),
        "{}",
        e.message
    );

    let e = one_err(&sip("SS_SIP_TIMEOUT_INVIT = 10"));
    assert!(e.contains("did you mean `SS_SIP_TIMEOUT_INVITE`?"), "{e}");

    let e = one_err(&sip("completely_different_thing = 1"));
    assert!(
        e.contains("unknown key `completely_different_thing` in [sip]"),
        "{e}"
    );
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn key_in_the_wrong_section_says_where_it_belongs() {
    let e = one_err("[server]\nlevel = \"debug\"\n");
    assert!(
        e.contains("unknown key `level` in [server]; `level` belongs in [log]"),
        "{e}"
    );
    let e = one_err("[server]\nSS_SIP_TIMEOUT_INVITE = 10\n");
    assert!(e.contains("belongs in [sip]"), "{e}");
    let e = one_err("timeout_invite = 10\n[sip]\n");
    assert!(
        e.contains("unknown key `timeout_invite` at top level"),
        "{e}"
    );
    assert!(e.contains("belongs in [sip]"), "{e}");
}

#[test]
fn unknown_section_is_an_error() {
    let err = parse("[sip]\n\n[dialplan]\nx = 1\n").unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.0[0].line, Some(3));
    assert!(
        err.0[0].message.contains("unknown section [dialplan]"),
        "{err}"
    );
    let e = one_err("[sipp]\ntimeout_invite = 1\n");
    assert!(
        e.contains("unknown section [sipp]; did you mean [sip]?"),
        "{e}"
    );
    let e = one_err("sip = 3\n");
    assert!(e.contains("must be a section [sip]"), "{e}");
}

#[test]
fn syntax_error_is_reported() {
    let e = one_err("[sip\ntimeout_invite = \n");
    assert!(e.starts_with("TOML syntax error"), "{e}");
}

#[test]
fn all_errors_are_collected() {
    let text = "[server]\nshards = 999\nbogus = 1\n[sip]\ntimeout_invite = 0\n\
                SS_ENDPOINT_EXPIRE = \"x\"\nresend_interval = \"0,1\"\n[log]\nlevel = \"\"\n[x]\n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.len(), 7, "{err}");
    let lines: Vec<Option<usize>> = err.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        vec![
            Some(2),
            Some(3),
            Some(5),
            Some(6),
            Some(7),
            Some(9),
            Some(10)
        ]
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 7);
    assert!(text.contains("line 5: sip.timeout_invite (SS_SIP_TIMEOUT_INVITE) = 0 is out of range: allowed 1..=600 seconds"), "{text}");
}

// ---- ranges ---------------------------------------------------------------------------------

/// (section, key, VOS3000 name, min, max): written from the spec and the documented choices,
/// not read from PARAMS, so a wrong row there fails here.
const INT_RANGES: &[(&str, &str, Option<&str>, i64, i64)] = &[
    ("server", "shards", None, 0, 256),
    ("server", "recv_buffer_bytes", None, 65_536, 1_073_741_824),
    ("server", "send_buffer_bytes", None, 65_536, 1_073_741_824),
    ("server", "io_batch", None, 1, 1024),
    ("server", "mailbox_capacity", None, 64, 1_048_576),
    ("server", "shutdown_timeout_ms", None, 100, 600_000),
    ("server", "max_datagram_bytes", None, 1024, 65_535),
    ("sip", "send_retry", Some("SS_SIP_SEND_RETRY"), 0, 10),
    (
        "sip",
        "timeout_invite",
        Some("SS_SIP_TIMEOUT_INVITE"),
        1,
        600,
    ),
    (
        "sip",
        "timeout_trying",
        Some("SS_SIP_TIMEOUT_TRYING"),
        1,
        600,
    ),
    (
        "sip",
        "timeout_ringing",
        Some("SS_SIP_TIMEOUT_RINGING"),
        1,
        3600,
    ),
    (
        "sip",
        "user_agent_expire",
        Some("SS_SIP_USER_AGENT_EXPIRE"),
        20,
        7200,
    ),
    (
        "sip",
        "user_agent_retry_delay",
        Some("SS_SIP_USER_AGENT_RETRY_DELAY"),
        30,
        600,
    ),
    (
        "sip",
        "endpoint_expire",
        Some("SS_ENDPOINT_EXPIRE"),
        60,
        86_400,
    ),
    (
        "sip",
        "endpoint_nat_expire",
        Some("SS_ENDPOINT_NAT_EXPIRE"),
        20,
        3600,
    ),
    (
        "sip",
        "endpoint_register_retry",
        Some("SS_ENDPOINT_REGISTER_RETRY"),
        1,
        100,
    ),
    (
        "sip",
        "endpoint_register_suspend",
        Some("SS_ENDPOINT_REGISTER_SUSPEND"),
        10,
        86_400,
    ),
    (
        "sip",
        "registrar_max_bindings",
        Some("SERVER_REGISTRAR_MAX_BINDINGS"),
        1,
        1000,
    ),
    ("registrar", "min_expires", None, 10, 3600),
    ("registrar", "max_expires", None, 60, 86_400),
    ("registrar", "expiry_spread_percent", None, 0, 50),
    ("registrar", "nonce_lifetime", None, 10, 3600),
    ("registrar", "nat_keepalive_max_failures", None, 1, 100),
    ("registrar", "rate_limit_per_source", None, 0, 100_000),
    ("registrar", "rate_limit_burst", None, 1, 1_000_000),
    ("registrar", "failed_log_capacity", None, 0, 1_000_000),
    ("admin", "trend_interval", None, 1, 3600),
    ("admin", "recent_calls", None, 0, 100_000),
];

/// Other keys that make the range edges of `section.key` pass the cross-field checks (expiries
/// granted by the registrar must lie within `[min_expires, max_expires]`).
fn edge_context(section: &str, key: &str) -> &'static str {
    match (section, key) {
        ("sip", "endpoint_expire" | "endpoint_nat_expire") => {
            "[registrar]\nmin_expires = 10\nmax_expires = 86400\n"
        }
        ("registrar", "min_expires") => {
            "[sip]\nendpoint_expire = 3600\nendpoint_nat_expire = 3600\n"
        }
        ("registrar", "max_expires") => "[sip]\nendpoint_expire = 60\nendpoint_nat_expire = 60\n",
        _ => "",
    }
}

#[test]
fn every_numeric_parameter_is_in_the_range_table() {
    for p in PARAMS {
        if matches!(p.kind, Kind::Int { .. } | Kind::UaExpire) {
            assert!(
                INT_RANGES
                    .iter()
                    .any(|r| r.0 == p.section.name() && r.1 == p.key),
                "{} missing from INT_RANGES",
                p.dotted()
            );
        }
    }
}

#[test]
fn range_edges_of_every_numeric_parameter() {
    for &(section, key, vos, min, max) in INT_RANGES {
        let p = &PARAMS[lookup(Section::from_name(section).unwrap(), key).unwrap()];
        let mut names = vec![key];
        names.extend(vos);
        for name in names {
            for ok in [min, max] {
                for text in [ok.to_string(), format!("\"{ok}\"")] {
                    let ctx = edge_context(section, key);
                    let c = parse(&format!("[{section}]\n{name} = {text}\n{ctx}"))
                        .unwrap_or_else(|e| panic!("{name} = {text}: {e}"));
                    assert_eq!(c.value_text(p), ok.to_string(), "{name} = {text}");
                }
            }
            for bad in [min - 1, max + 1] {
                let ctx = edge_context(section, key);
                let e = one_err(&format!("[{section}]\n{name} = {bad}\n{ctx}"));
                let label = match vos {
                    Some(v) => format!("{section}.{key} ({v})"),
                    None => format!("{section}.{key}"),
                };
                let want = format!("{label} = {bad} is out of range: allowed ");
                assert!(
                    e.starts_with(&want),
                    "{e}\n  wanted it to start with {want}"
                );
                assert!(e.contains(&format!("{min}..={max}")), "{e}");
            }
        }
    }
}

#[test]
fn numbers_must_be_whole() {
    let e = one_err(&sip("timeout_invite = 1.5"));
    assert_eq!(
        e,
        "sip.timeout_invite (SS_SIP_TIMEOUT_INVITE) = 1.5 is not valid: expected a whole number; \
         allowed 1..=600 seconds"
    );
    let e = one_err(&sip("SS_SIP_TIMEOUT_INVITE = \"ten\""));
    assert!(
        e.contains("= \"ten\" is not valid: expected a whole number"),
        "{e}"
    );
    let e = one_err("[server]\nshards = \"99999999999999999999999999999999999\"\n");
    assert!(e.contains("is not valid"), "{e}");
}

#[test]
fn timeouts_are_converted_to_ms() {
    let c = parse(&sip(
        "timeout_invite = 600\ntimeout_trying = 1\ntimeout_ringing = 3600",
    ))
    .unwrap();
    assert_eq!(c.transaction_timers().timeout_invite_ms, 600_000);
    assert_eq!(c.transaction_timers().timeout_trying_ms, 1_000);
    assert_eq!(c.transaction_timers().timeout_ringing_ms, 3_600_000);
}

#[test]
fn listen_must_be_a_socket_address() {
    let c = parse("[server]\nlisten = \"[::1]:5070\"\n").unwrap();
    assert_eq!(c.server.listen, "[::1]:5070".parse().unwrap());
    for bad in [
        "\"127.0.0.1\"",
        "\"localhost:5060\"",
        "\"1.2.3.4:70000\"",
        "5060",
    ] {
        let e = one_err(&format!("[server]\nlisten = {bad}\n"));
        assert!(
            e.starts_with(&format!("server.listen = {bad} is not valid")),
            "{e}"
        );
        assert!(e.contains("IP:PORT"), "{e}");
    }
}

#[test]
fn log_level_is_a_filter() {
    let c = parse("[log]\nlevel = \"sipshard=debug,warn\"\n").unwrap();
    assert_eq!(c.log_level, "sipshard=debug,warn");
    let e = one_err("[log]\nlevel = \"\"\n");
    assert!(e.starts_with("log.level = \"\" is not valid"), "{e}");
    let e = one_err("[log]\nlevel = \"sipshard=loud\"\n");
    assert!(
        e.starts_with("log.level = \"sipshard=loud\" is not valid"),
        "{e}"
    );
}

// ---- resend interval ------------------------------------------------------------------------

#[test]
fn resend_interval_string_forms() {
    assert_eq!(
        intervals("\"0.5,1,2,4,4,4\"").unwrap(),
        vec![500, 1000, 2000, 4000, 4000, 4000]
    );
    assert_eq!(
        intervals("\" 0.5 , 1,  2 \"").unwrap(),
        vec![500, 1000, 2000]
    );
    assert_eq!(intervals("\"4\"").unwrap(), vec![4000]);
    assert_eq!(
        intervals("\".25,1.500,0.05,60\"").unwrap(),
        vec![250, 1500, 50, 60_000]
    );
    assert_eq!(
        intervals("\"1,1,1,1,1,1,1,1,1,1\"").unwrap(),
        vec![1000; 10]
    );
}

#[test]
fn resend_interval_array_forms() {
    assert_eq!(intervals("[0.5, 1, 2]").unwrap(), vec![500, 1000, 2000]);
    // Exact, no float drift.
    assert_eq!(
        intervals("[0.1, 0.3, 0.7, 1.001, 2.675]").unwrap(),
        vec![100, 300, 700, 1001, 2675]
    );
    assert_eq!(intervals("[0.05, 60]").unwrap(), vec![50, 60_000]);
}

#[test]
fn resend_interval_errors() {
    let label = "sip.resend_interval (SS_SIP_RESEND_INTERVAL)";
    let allowed = "allowed 1 to 10 values, each 0.05..=60 seconds in whole milliseconds";
    let cases: &[(&str, &str)] = &[
        ("\"0.5,abc,2\"", "value 2 (abc) is not a number"),
        ("\"0.5,1,\"", "value 3 is empty"),
        ("\"0\"", "value 1 (0) is out of range"),
        ("\"0.5,0,1\"", "value 2 (0) is out of range"),
        ("\"0.04\"", "value 1 (0.04) is out of range"),
        ("\"60.001\"", "value 1 (60.001) is out of range"),
        ("\"-1\"", "value 1 (-1) is out of range"),
        ("\"0.0005\"", "value 1 (0.0005) is finer than 1 ms"),
        ("\"1e3\"", "value 1 (1e3) is not a number"),
        ("\"\"", "it has no values"),
        ("\"1,1,1,1,1,1,1,1,1,1,1\"", "it has 11 values"),
        ("[1,1,1,1,1,1,1,1,1,1,1]", "it has 11 values"),
        ("[]", "it has no values"),
        ("[0, 1]", "value 1 (0) is out of range"),
        ("[0.5, -2]", "value 2 (-2) is out of range"),
        ("[0.5, \"1\"]", "value 2 (\"1\") is not a number"),
        ("[100000000000000000.0]", "is out of range"),
        ("5", "expected an array of seconds"),
    ];
    for (value, why) in cases {
        let e = one_err(&sip(&format!("resend_interval = {value}")));
        // The value is shown as TOML writes it back ("[1, 1]" for "[1,1]").
        let shown = format!("x = {value}").parse::<toml::Table>().unwrap()["x"].to_string();
        assert!(
            e.starts_with(&format!("{label} = {shown} is not valid: ")),
            "{e}"
        );
        assert!(e.contains(why), "{value}: {e}\n  wanted {why}");
        if !why.starts_with("expected") {
            assert!(e.ends_with(allowed), "{e}");
        }
    }
    // Several bad values are all named.
    let e = one_err(&sip("SS_SIP_RESEND_INTERVAL = \"x,0,0.5\""));
    assert!(
        e.contains("value 1 (x) is not a number, value 2 (0) is out of range"),
        "{e}"
    );
}

#[test]
fn send_retry_defaults_to_the_number_of_intervals() {
    let c = parse(&sip("SS_SIP_RESEND_INTERVAL = \"0.5,1,2,4,4,4\"")).unwrap();
    assert_eq!(c.sip.timers.send_retry, 6);
    let c = parse(&sip("resend_interval = [1]")).unwrap();
    assert_eq!(c.sip.timers.send_retry, 1);
    let c = parse(&sip("resend_interval = [1]\nsend_retry = 0")).unwrap();
    assert_eq!(c.sip.timers.send_retry, 0);
    let c = parse(&sip("send_retry = 3")).unwrap();
    assert_eq!(c.sip.timers.send_retry, 3);
    assert_eq!(c.sip.timers.resend_intervals_ms.len(), 10);
}

#[test]
fn schedule_matches_the_spec_examples() {
    let t = |text: &str| parse(&sip(text)).unwrap().sip.timers;
    // Default: sends at 0 .. 27.5 s (9 re-sends), failure at 31.5 s.
    let d = t("");
    assert_eq!(d.effective_resends(), 9);
    assert_eq!(d.give_up_after_ms(), 31_500);
    // 0.5,1,2,4,4,4: sends up to 11.5 s, failure at 15.5 s.
    let s = t("resend_interval = \"0.5,1,2,4,4,4\"");
    assert_eq!(s.effective_resends(), 5);
    assert_eq!(s.give_up_after_ms(), 15_500);
    // send_retry 3: sends at 0, 0.5, 1.5, 3.5, failure at 7.5 s.
    let r = t("SS_SIP_SEND_RETRY = 3");
    assert_eq!(r.effective_resends(), 3);
    assert_eq!(r.give_up_after_ms(), 7_500);
    // send_retry 0: one send, failure after the first interval.
    assert_eq!(t("send_retry = 0").give_up_after_ms(), 500);
    // Above intervals - 1: no effect beyond the schedule.
    let big = t("resend_interval = [1, 2]\nsend_retry = 10");
    assert_eq!(big.effective_resends(), 1);
    assert_eq!(big.give_up_after_ms(), 3_000);
}

#[test]
fn seconds_to_ms_is_exact() {
    assert_eq!(seconds_to_ms("0.5"), Ok(500));
    assert_eq!(seconds_to_ms("1"), Ok(1000));
    assert_eq!(seconds_to_ms("0.001"), Ok(1));
    assert_eq!(seconds_to_ms("2.5000"), Ok(2500));
    assert_eq!(seconds_to_ms("007.250"), Ok(7250));
    assert_eq!(seconds_to_ms(".5"), Ok(500));
    assert_eq!(seconds_to_ms("0.0001"), Err(DecimalError::FinerThanMs));
    assert_eq!(seconds_to_ms("-0.5"), Err(DecimalError::Negative));
    assert_eq!(seconds_to_ms("1."), Err(DecimalError::NotANumber));
    assert_eq!(seconds_to_ms("."), Err(DecimalError::NotANumber));
    assert_eq!(seconds_to_ms("1,5"), Err(DecimalError::NotANumber));
    assert_eq!(seconds_to_ms("9999999999999"), Err(DecimalError::TooLarge));
    assert_eq!(fmt_ms(500), "0.5");
    assert_eq!(fmt_ms(50), "0.05");
    assert_eq!(fmt_ms(4000), "4");
    assert_eq!(fmt_ms(1001), "1.001");
}

// ---- overrides and loading --------------------------------------------------------------------

#[test]
fn overrides_replace_file_values_and_are_checked() {
    let o = |key: &str, value: &str| Override {
        key: key.into(),
        value: value.into(),
        origin: "--x".into(),
    };
    let c = Config::from_toml_str_with_overrides(
        "[server]\nshards = 2\n",
        &[o("server.shards", "8"), o("SS_SIP_TIMEOUT_INVITE", "20")],
    )
    .unwrap();
    assert_eq!(c.server.shards, 8);
    assert_eq!(c.sip.timers.timeout_invite_ms, 20_000);
    let err = Config::from_toml_str_with_overrides(
        "",
        &[o("server.shards", "-1"), o("server.nope", "1")],
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("--x: unknown parameter `server.nope`"),
        "{text}"
    );
    assert!(
        text.contains("--x: server.shards = \"-1\" is out of range: allowed 0..=256"),
        "{text}"
    );
}

#[test]
fn load_reports_missing_file() {
    let err = Config::load("/nonexistent/sipshard.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/sipshard.toml"),
        "{err}"
    );
}

// ---- [registrar] --------------------------------------------------------------------------------

const REGISTRAR: &str = r#"
[registrar]
realm = "carrier.example"
min_expires = 30
max_expires = 3600
expiry_spread_percent = 10
nonce_lifetime = 120
digest_algorithms = ["md5"]
nat_keepalive_interval = 0
nat_keepalive_max_failures = 5
rate_limit_per_source = 0
rate_limit_burst = 1
trusted_sources = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
failed_log_capacity = 0
accounts_file = "accounts.csv"

[[registrar.accounts]]
user = "1001"
password = "secret"

[[registrar.accounts]]
user = "gw"
auth_mode = "IP"
allowed = ["198.51.100.0/24", "203.0.113.9"]

[[registrar.accounts]]
user = "gw-port"
auth_mode = "ip_port"
allowed = ["[2001:db8::5]:5060"]
"#;

#[test]
fn registrar_section_sets_every_field() {
    let c = parse(REGISTRAR).unwrap();
    let r = &c.registrar;
    assert_eq!(r.realm, "carrier.example");
    assert_eq!(r.min_expires_s, 30);
    assert_eq!(r.max_expires_s, 3600);
    assert_eq!(r.expiry_spread_percent, 10);
    assert_eq!(r.nonce_lifetime_s, 120);
    assert_eq!(r.digest_algorithms, vec!["MD5".to_string()]);
    assert_eq!(r.nat_keepalive_interval_s, 0);
    assert_eq!(r.nat_keepalive_max_failures, 5);
    assert_eq!(r.rate_limit_per_source, 0);
    assert_eq!(r.rate_limit_burst, 1);
    assert_eq!(
        r.trusted_sources,
        vec!["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
    );
    assert_eq!(r.failed_log_capacity, 0);
    assert_eq!(r.accounts_file.as_deref(), Some("accounts.csv"));
    assert_eq!(
        r.accounts,
        vec![
            AccountConfig {
                user: "1001".into(),
                password: "secret".into(),
                auth_mode: AuthMode::Digest,
                allowed: vec![],
            },
            AccountConfig {
                user: "gw".into(),
                password: String::new(),
                auth_mode: AuthMode::Ip,
                allowed: vec!["198.51.100.0/24".into(), "203.0.113.9".into()],
            },
            AccountConfig {
                user: "gw-port".into(),
                password: String::new(),
                auth_mode: AuthMode::IpPort,
                allowed: vec!["[2001:db8::5]:5060".into()],
            },
        ]
    );
    // The rest is untouched.
    assert_eq!(c.sip, SipParams::default());
    // The embedded default has no accounts and no file.
    let d = Config::embedded_default().registrar;
    assert!(d.accounts.is_empty());
    assert_eq!(d.accounts_file, None);
    assert_eq!(d, RegistrarConfig::default());
}

#[test]
fn registrar_value_text_round_trips() {
    let c = parse(REGISTRAR).unwrap();
    let overrides: Vec<Override> = PARAMS
        .iter()
        .filter(|p| p.section == Section::Registrar)
        .map(|p| Override {
            key: p.dotted(),
            value: c.value_text(p),
            origin: "test".into(),
        })
        .collect();
    let back = Config::from_toml_str_with_overrides("", &overrides).unwrap();
    let mut want = c.registrar.clone();
    want.accounts.clear();
    assert_eq!(back.registrar, want);
}

fn reg(body: &str) -> String {
    format!("[registrar]\n{body}\n")
}

#[test]
fn digest_algorithms_forms_and_errors() {
    for (text, want) in [
        ("[\"SHA-256\", \"MD5\"]", vec!["SHA-256", "MD5"]),
        ("[\"md5\", \"sha-256\"]", vec!["MD5", "SHA-256"]),
        ("\"Sha-256\"", vec!["SHA-256"]),
        ("\"MD5, SHA-256\"", vec!["MD5", "SHA-256"]),
    ] {
        let c = parse(&reg(&format!("digest_algorithms = {text}"))).unwrap();
        assert_eq!(c.registrar.digest_algorithms, want, "{text}");
    }
    let e = one_err(&reg("digest_algorithms = []"));
    assert_eq!(
        e,
        "registrar.digest_algorithms = [] is not valid: it has no values; allowed one or both of \
         SHA-256, MD5 (in order of preference)"
    );
    let e = one_err(&reg("digest_algorithms = [\"MD5\", \"md5\"]"));
    assert!(e.contains("MD5 is listed twice"), "{e}");
    let e = one_err(&reg("digest_algorithms = [\"SHA-512\"]"));
    assert!(e.contains("`SHA-512` is not an algorithm"), "{e}");
    let e = one_err(&reg("digest_algorithms = [1]"));
    assert!(e.contains("expected an array of strings"), "{e}");
}

#[test]
fn trusted_sources_are_validated() {
    let c = parse(&reg("trusted_sources = \"10.1.2.3/8, ::1\"")).unwrap();
    assert_eq!(c.registrar.trusted_sources, vec!["10.0.0.0/8", "::1"]);
    let e = one_err(&reg(
        "trusted_sources = [\"10.0.0.1:5060\", \"nope\", \"10.0.0.0/40\"]",
    ));
    assert!(
        e.starts_with("registrar.trusted_sources = [\"10.0.0.1:5060\", \"nope\", \"10.0.0.0/40\"] is not valid: "),
        "{e}"
    );
    assert!(
        e.contains("`10.0.0.1:5060` has a port; write the IP only"),
        "{e}"
    );
    assert!(
        e.contains("`nope` is not an IP, IP:PORT ([IPv6]:PORT) or IP/PREFIX"),
        "{e}"
    );
    assert!(e.contains("the prefix length must be 0..=32"), "{e}");
}

#[test]
fn nat_keepalive_interval_is_off_or_5_to_3600() {
    for (text, want) in [("0", 0), ("5", 5), ("3600", 3600), ("\"30\"", 30)] {
        let c = parse(&reg(&format!("nat_keepalive_interval = {text}"))).unwrap();
        assert_eq!(c.registrar.nat_keepalive_interval_s, want);
    }
    for bad in ["1", "4", "3601", "-1"] {
        let e = one_err(&reg(&format!("nat_keepalive_interval = {bad}")));
        assert_eq!(
            e,
            format!(
                "registrar.nat_keepalive_interval = {bad} is out of range: allowed 0 (off) or \
                 5..=3600 seconds"
            )
        );
    }
}

#[test]
fn realm_and_accounts_file_values() {
    for bad in ["\"\"", "\"a\\\"b\"", "\"a\\\\b\"", "5"] {
        let e = one_err(&reg(&format!("realm = {bad}")));
        assert!(e.starts_with("registrar.realm = "), "{e}");
        assert!(
            e.contains(" is not valid: expected a non-empty string; allowed a non-empty string"),
            "{e}"
        );
    }
    let c = parse(&reg("accounts_file = \"\"")).unwrap();
    assert_eq!(c.registrar.accounts_file, None);
    let c = parse(&reg("accounts_file = \"/etc/sipshard/accounts.csv\"")).unwrap();
    assert_eq!(
        c.registrar.accounts_file.as_deref(),
        Some("/etc/sipshard/accounts.csv")
    );
    let e = one_err(&reg("accounts_file = 3"));
    assert!(e.contains("expected a string"), "{e}");
}

#[test]
fn load_makes_accounts_file_relative_to_the_config_file() {
    let dir = std::env::temp_dir().join(format!("sipshard-cfg-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[registrar]\naccounts_file = \"sub/a.csv\"\n").unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.registrar.accounts_file.as_deref(),
        Some(dir.join("sub/a.csv").to_str().unwrap())
    );
    std::fs::write(&file, "[registrar]\naccounts_file = \"/abs/a.csv\"\n").unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.registrar.accounts_file.as_deref(), Some("/abs/a.csv"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn expiry_cross_checks() {
    let e = one_err(&reg("min_expires = 600\nmax_expires = 300"));
    assert_eq!(
        e,
        "registrar.max_expires = 300 is below registrar.min_expires = 600: max_expires must be \
         >= min_expires"
    );
    let err = parse("[sip]\nendpoint_nat_expire = 30\n").unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.0[0].line, Some(2));
    assert_eq!(err.0[0].key, "sip.endpoint_nat_expire");
    assert_eq!(
        err.0[0].message,
        "sip.endpoint_nat_expire (SS_ENDPOINT_NAT_EXPIRE) = 30 is outside the registrar's expiry \
         bounds: allowed registrar.min_expires..=registrar.max_expires (60..=7200 seconds)"
    );
    // Raising max_expires without moving endpoint_expire is fine; lowering it below is not.
    let err = parse("[registrar]\nmax_expires = 1800\n").unwrap_err();
    assert_eq!(err.0[0].key, "sip.endpoint_expire");
    assert_eq!(
        err.0[0].line,
        Some(2),
        "points at the registrar key when sip's is not written"
    );
    // Both errors at once: endpoint_expire (3600) and endpoint_nat_expire (300) below 900.
    let e = errs("[registrar]\nmin_expires = 900\n");
    assert_eq!(e.len(), 1, "{e:?}");
    let e = errs("[registrar]\nmin_expires = 3600\nmax_expires = 3600\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("endpoint_nat_expire"), "{e:?}");
    parse("[registrar]\nmin_expires = 300\n").unwrap();
}

#[test]
fn registrar_unknown_keys_and_sections() {
    let err = parse("[registrar]\nrelm = \"x\"\n").unwrap_err();
    assert_eq!(err.0[0].line, Some(2));
    assert!(
        err.0[0]
            .message
            .contains("unknown key `relm` in [registrar]; did you mean `realm`?"),
        "{err}"
    );
    let e = one_err("[registrar]\nendpoint_expire = 60\n");
    assert!(e.contains("`endpoint_expire` belongs in [sip]"), "{e}");
    let e = one_err("[registar]\nrealm = \"x\"\n");
    assert!(e.contains("did you mean [registrar]?"), "{e}");
}

#[test]
fn account_entries_are_checked() {
    let text = r#"
[[registrar.accounts]]
user = "a"

[[registrar.accounts]]
user = "b"
auth_mode = "ip"

[[registrar.accounts]]
user = "c"
auth_mode = "ip_port"
allowed = ["10.0.0.1", "10.0.0.2:5060"]

[[registrar.accounts]]
user = "d"
password = "x"
auth_mode = "radius"

[[registrar.accounts]]
user = "e"
password = "x"
allowed = ["10.0.0.256"]
colour = "blue"

[[registrar.accounts]]
password = "x"

[[registrar.accounts]]
user = "a"
password = "x"

[[registrar.accounts]]
user = "g"
password = "x"
allowed = "10.0.0.1"

[[registrar.accounts]]
user = "h i"
password = "x"

[[registrar.accounts]]
user = "j"
auth_mode = "ip"
allowed = ["10.0.0.1:5060"]
"#;
    let err = parse(text).unwrap_err();
    let got: Vec<(Option<usize>, &str)> =
        err.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(2), "registrar.accounts #1: (user `a`) password: auth_mode digest needs a non-empty password"),
            (Some(5), "registrar.accounts #2: (user `b`) allowed: auth_mode ip needs at least one allowed IP or IP/PREFIX"),
            (Some(12), "registrar.accounts #3: (user `c`) allowed: `10.0.0.1` has no port; auth_mode ip_port needs IP:PORT entries"),
            (Some(17), "registrar.accounts #4: auth_mode = \"radius\" is not valid: allowed digest|ip|ip_port"),
            (Some(23), "registrar.accounts #5: unknown key `colour`; known: user, password, auth_mode, allowed"),
            (Some(25), "registrar.accounts #6: `user` is missing"),
            (Some(29), "registrar.accounts #7: duplicate user `a` (first in #1)"),
            (Some(35), "registrar.accounts #8: allowed = \"10.0.0.1\" is not valid: expected an array of strings like [\"10.0.0.0/8\", \"192.0.2.7:5060\"]"),
            (Some(38), "registrar.accounts #9: (user `h i`) user: user `h i` contains ' '"),
            (Some(44), "registrar.accounts #10: (user `j`) allowed: `10.0.0.1:5060` has a port, but auth_mode ip matches the source IP only: drop the port or use auth_mode ip_port"),
        ]
    );
    // Account #5's bad address is reported once its unknown key is fixed.
    let e = one_err(
        "[[registrar.accounts]]\nuser = \"e\"\npassword = \"x\"\nallowed = [\"10.0.0.256\"]\n",
    );
    assert_eq!(e, "registrar.accounts #1: (user `e`) allowed: `10.0.0.256` is not an IP, IP:PORT ([IPv6]:PORT) or IP/PREFIX");
    let e = one_err("[registrar]\naccounts = 5\n");
    assert!(
        e.contains("must be written as [[registrar.accounts]] tables"),
        "{e}"
    );
}

// ---- [[trunks]] ---------------------------------------------------------------------------

#[test]
fn trunks_defaults_come_from_sip_user_agent_values() {
    let c = parse(
        "[sip]\nuser_agent_expire = 900\nuser_agent_retry_delay = 120\nuser_agent_privacy = \"id\"\n\
         [[trunks]]\nname = \"a\"\nregistrar = \"sip.example.com\"\nusername = \"4420\"\npassword = \"pw\"\n",
    )
    .unwrap();
    assert_eq!(c.trunks.len(), 1);
    let t = &c.trunks[0];
    assert_eq!(t.name, "a");
    assert_eq!(t.registrar, "sip.example.com");
    assert_eq!(t.port, 5060);
    assert_eq!(t.outbound_proxy, None);
    assert_eq!(t.auth_username, "4420");
    assert_eq!(t.contact_user, "4420");
    assert_eq!(t.password, "pw");
    assert_eq!(t.realm, None);
    assert_eq!(t.expire_s, Some(900));
    assert_eq!(t.retry_delay_s, 120);
    assert_eq!(t.privacy, Privacy::Id);
    // No [sip]: the built-in defaults (auto, 60, ignore).
    let c =
        parse("[[trunks]]\nname = \"a\"\nregistrar = \"192.0.2.1\"\nusername = \"u\"\n").unwrap();
    assert_eq!(c.trunks[0].expire_s, None);
    assert_eq!(c.trunks[0].retry_delay_s, 60);
    assert_eq!(c.trunks[0].privacy, Privacy::Ignore);
}

#[test]
fn trunks_every_key_and_overrides() {
    let c = parse(
        "[[trunks]]\nname = \"carrier b\"\nregistrar = \"[2001:db8::1]\"\nport = 5080\n\
         outbound_proxy = \"proxy.example.net:5070\"\nusername = \"u1\"\nauth_username = \"auth1\"\n\
         password = \"p\"\nrealm = \"r\"\nexpire = \"Auto Negotiation\"\nretry_delay = 30\n\
         privacy = \"None\"\ncontact_user = \"c1\"\n\
         [[trunks]]\nname = \"c\"\nregistrar = \"10.0.0.1\"\nusername = \"u2\"\nexpire = 7200\n\
         outbound_proxy = \"10.0.0.2\"\n",
    )
    .unwrap();
    let b = &c.trunks[0];
    assert_eq!(b.registrar, "[2001:db8::1]");
    assert_eq!(b.port, 5080);
    assert_eq!(
        b.outbound_proxy,
        Some(("proxy.example.net".to_string(), 5070))
    );
    assert_eq!(
        (b.auth_username.as_str(), b.contact_user.as_str()),
        ("auth1", "c1")
    );
    assert_eq!(b.realm.as_deref(), Some("r"));
    assert_eq!(b.expire_s, None);
    assert_eq!(b.retry_delay_s, 30);
    assert_eq!(b.privacy, Privacy::None);
    assert_eq!(c.trunks[1].expire_s, Some(7200));
    assert_eq!(
        c.trunks[1].outbound_proxy,
        Some(("10.0.0.2".to_string(), 5060))
    );
}

#[test]
fn trunks_errors_name_the_value_and_range_all_at_once() {
    let text = "[[trunks]]\nname = \"a\"\nregistrar = \"sip.example.com\"\nusername = \"u\"\n\
                expire = 10\nretry_delay = 601\nprivacy = \"full\"\nport = 0\ncolour = \"red\"\n\
                [[trunks]]\nname = \"a\"\nregistrar = \"bad host!\"\nusername = \"u\"\n\
                outbound_proxy = \"p.example:99999\"\n\
                [[trunks]]\nregistrar = \"x.example\"\n";
    let e = errs(text);
    let has = |s: &str| assert!(e.iter().any(|m| m.contains(s)), "no {s:?} in {e:#?}");
    has("trunks #1 (`a`): expire = 10 is out of range: allowed");
    has("20..=7200");
    has("retry_delay = 601 is out of range: allowed 30..=600 seconds");
    has("privacy = \"full\" is not valid");
    has("port = 0 is out of range: allowed 1..=65535");
    has("unknown key `colour`; known: name, registrar, port");
    has("trunks #2 (`a`): duplicate name `a` (first in #1)");
    has("registrar = \"bad host!\" is not valid: is not a host name or IP address");
    has("outbound_proxy = \"p.example:99999\" is not valid: has a port outside 1..=65535");
    has("trunks #3: `name` is missing");
    has("trunks #3: `username` is missing");
    assert_eq!(e.len(), 10, "{e:#?}");
    // Lines point into the right table.
    let lines: Vec<Option<usize>> = parse(text).unwrap_err().iter().map(|e| e.line).collect();
    assert!(
        lines.contains(&Some(5)) && lines.contains(&Some(12)),
        "{lines:?}"
    );
}

#[test]
fn trunks_must_be_an_array_of_tables() {
    let e = one_err("trunks = 3\n");
    assert!(
        e.contains("trunks must be written as [[trunks]] tables"),
        "{e}"
    );
    let e = one_err("[[trunk]]\nname = \"a\"\n");
    assert!(
        e.contains("unknown `trunk` at top level; did you mean [[trunks]]?"),
        "{e}"
    );
}

#[test]
fn default_toml_has_a_commented_trunk_example_and_no_trunks() {
    assert!(DEFAULT_TOML.contains("# [[trunks]]"));
    assert!(Config::embedded_default().trunks.is_empty());
}

#[test]
fn advertised_address_takes_host_and_optional_port() {
    let c = |v: &str| {
        parse(&format!("[server]\nadvertised_address = {v:?}\n"))
            .map(|c| c.server.advertised_address)
    };
    assert_eq!(c("").unwrap(), None);
    assert_eq!(
        c("203.0.113.9").unwrap(),
        Some(("203.0.113.9".into(), None))
    );
    assert_eq!(
        c("203.0.113.9:5080").unwrap(),
        Some(("203.0.113.9".into(), Some(5080)))
    );
    assert_eq!(
        c("sbc.example.net").unwrap(),
        Some(("sbc.example.net".into(), None))
    );
    assert_eq!(
        c("2001:db8::1").unwrap(),
        Some(("[2001:db8::1]".into(), None))
    );
    assert_eq!(
        c("[2001:db8::1]:5062").unwrap(),
        Some(("[2001:db8::1]".into(), Some(5062)))
    );
    let e = one_err("[server]\nadvertised_address = \"a b:5060\"\n");
    assert!(
        e.contains("advertised_address") && e.contains("HOST[:PORT]"),
        "{e}"
    );
    let e = one_err("[server]\nadvertised_address = \"host:0\"\n");
    assert!(e.contains("port outside 1..=65535"), "{e}");
    let e = one_err("[server]\nadvertised_address = 5060\n");
    assert!(e.contains("advertised_address"), "{e}");
}

#[test]
fn routing_tables() {
    let c = parse(
        "[routing]\nno_route_status = 403\nfailover_statuses = [503]\ngateway_down_after = 2\n\
         gateway_probe_interval = 5\ninvite_auth = \"Off\"\nmax_call_duration = 0\n\
         [[gateways]]\nname = \"gw1\"\naddress = \"127.0.0.1:5080\"\nstrip_digits = 1\nprepend = \"00\"\nmax_calls = 3\n\
         [[gateways]]\nname = \"gw2\"\naddress = \"[::1]:5090\"\n\
         [[routes]]\nprefix = \"\"\ngateways = [\"gw1\", \"gw2\"]\n\
         [[peers]]\nname = \"a\"\naddress = \"127.0.0.1\"\n\
         [[peers]]\nname = \"b\"\nusername = \"u\"\npassword = \"p\"\n",
    )
    .unwrap();
    assert_eq!(c.routing.no_route_status, 403);
    assert_eq!(c.routing.failover_statuses, vec![503]);
    assert_eq!(c.routing.gateway_down_after, 2);
    assert_eq!(c.routing.gateway_probe_interval_s, 5);
    assert!(!c.routing.invite_auth);
    assert_eq!(c.routing.max_call_duration_s, 0);
    assert_eq!(Config::default().routing.max_call_duration_s, 7200);
    assert_eq!(
        parse("[routing]\nmax_call_duration = 604800\n")
            .unwrap()
            .routing
            .max_call_duration_s,
        604_800
    );
    assert_eq!(c.gateways.len(), 2);
    assert_eq!(c.gateways[0].strip_digits, 1);
    assert_eq!(c.gateways[0].prepend, "00");
    assert_eq!(c.gateways[0].max_calls, 3);
    assert_eq!(c.gateways[1].address, "[::1]:5090".parse().unwrap());
    assert_eq!(c.routes[0].gateways, vec!["gw1", "gw2"]);
    assert_eq!(
        c.peers[0].address,
        Some(crate::config::PeerAddress::Ip("127.0.0.1".parse().unwrap()))
    );
    assert_eq!(c.peers[1].username.as_deref(), Some("u"));
}

#[test]
fn routing_errors_name_parameter_value_and_range() {
    let e = one_err("[routing]\ngateway_down_after = 0\n");
    assert!(
        e.contains("routing.gateway_down_after = 0 is out of range: allowed 1..=1000"),
        "{e}"
    );
    let e = one_err("[routing]\nno_route_status = 500\n");
    assert!(e.contains("allowed 404 or 403"), "{e}");
    let e = one_err("[routing]\ngateway_probe_interval = 3601\n");
    assert!(e.contains("allowed 1..=3600"), "{e}");
    let e = one_err("[routing]\nmax_call_duration = 604801\n");
    assert!(
        e.contains("routing.max_call_duration = 604801 is out of range: allowed 0..=604800"),
        "{e}"
    );
    let e = one_err("[routing]\nmax_call_duration = -1\n");
    assert!(e.contains("max_call_duration"), "{e}");
    let e = one_err(
        "[[gateways]]\nname = \"gw1\"\naddress = \"127.0.0.1:5080\"\n\
         [[routes]]\nprefix = \"1\"\ngateways = [\"gw9\"]\n",
    );
    assert!(e.contains("unknown gateway `gw9`"), "{e}");
    let e = one_err("[[gateways]]\nname = \"g\"\naddress = \"gw.example:5060\"\n");
    assert!(e.contains("host names are not supported"), "{e}");
    let e = one_err("[[gateways]]\nname = \"g\"\naddress = \"127.0.0.1:1\"\nstrip_digits = 33\n");
    assert!(
        e.contains("strip_digits = 33 is out of range: allowed 0..=32"),
        "{e}"
    );
    let err = parse(
        "[[gateways]]\nname = \"g\"\naddress = \"127.0.0.1:1\"\n\
         [[gateways]]\nname = \"g\"\naddress = \"127.0.0.1:2\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("duplicate name `g`"), "{err}");
    let e = one_err("[[peers]]\nname = \"p\"\nusername = \"u\"\n");
    assert!(e.contains("both `username` and `password`"), "{e}");
}
