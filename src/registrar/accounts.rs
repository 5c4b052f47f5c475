//! Accounts: who may register, with which password or from which addresses.
//!
//! Owns: building the immutable account table from the config and the bulk CSV file, and
//! matching a source address against an account's allowed addresses. Shared read-only by all
//! shards (`Arc<Accounts>`), swapped whole on reload.
//! Must not: touch sockets, threads, clocks or locks; the only I/O is reading the accounts file
//! once in [`Accounts::build`].
//!
//! Source matching for requests without credentials ([`Accounts::find_by_source`]) looks only at
//! `ip` and `ip_port` accounts, in this order of precedence:
//! 1. an exact `IP:PORT` entry of an `ip_port` account;
//! 2. an exact `IP` entry of an `ip` account;
//! 3. the `IP/PREFIX` entries of `ip` accounts, longest prefix first.
//!
//! Two accounts claiming the same `IP:PORT`, the same `IP` or the same network are refused at
//! build time, so the answer never depends on load order. IPv4-mapped IPv6 sources
//! (`[::ffff:192.0.2.1]:5060`) match IPv4 entries.
//!
//! The CSV format (no CSV crate; one record per line):
//! `user,password[,allowed[,auth_mode]]`, where `allowed` is `;`-separated `IP`, `IP:PORT`
//! (`[IPv6]:PORT`) or `IP/PREFIX`, and `auth_mode` is `digest` (default), `ip` or `ip_port`.
//! Blank lines and lines whose first non-blank character is `#` are skipped; a first record of
//! `user,password,...` is a header and skipped; LF or CRLF line ends; a UTF-8 BOM is ignored.
//! Fields are trimmed of spaces and tabs; a field may be double-quoted (`"a,b"`, `""` for a
//! quote inside), which keeps its spaces. Quoted fields do not span lines. Trailing empty fields
//! (`alice,pw,,,`) are ignored.

use std::net::{IpAddr, SocketAddr};

use ahash::AHashMap;

use crate::config::{
    mask_ip, mode_problem, parse_allowed, parse_auth_mode, password_problem, user_problem,
    AccountConfig, AllowedSource, AuthMode, RegistrarConfig,
};
use crate::sip::digest::{ha1, Algorithm, Hex};

/// An allowed source of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMatch {
    Ip(IpAddr),
    IpPort(SocketAddr),
    /// Network and prefix length.
    Net(IpAddr, u8),
}

impl SourceMatch {
    /// True when `src` (already canonical: IPv4-mapped addresses as IPv4) matches.
    fn matches(&self, src: SocketAddr) -> bool {
        match *self {
            SourceMatch::Ip(ip) => ip == src.ip(),
            SourceMatch::IpPort(sa) => sa == src,
            SourceMatch::Net(net, len) => {
                net.is_ipv4() == src.ip().is_ipv4() && mask_ip(src.ip(), len) == net
            }
        }
    }
}

impl From<AllowedSource> for SourceMatch {
    fn from(a: AllowedSource) -> Self {
        match a {
            AllowedSource::Ip(ip) => SourceMatch::Ip(ip),
            AllowedSource::IpPort(sa) => SourceMatch::IpPort(sa),
            AllowedSource::Net(ip, len) => SourceMatch::Net(ip, len),
        }
    }
}

/// One account, ready for the hot path.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: Box<str>,
    pub password: Box<str>,
    pub auth_mode: AuthMode,
    pub allowed: Vec<SourceMatch>,
    /// HA1 for MD5 and SHA-256 over (user, realm, password), computed once at load. Empty
    /// (`Hex::default()`) when the password is empty (ip and ip_port accounts without one):
    /// such an account cannot pass digest authentication.
    pub ha1_md5: Hex,
    pub ha1_sha256: Hex,
}

/// The source address as matched: IPv4-mapped IPv6 becomes IPv4.
fn canonical(src: SocketAddr) -> SocketAddr {
    SocketAddr::new(src.ip().to_canonical(), src.port())
}

impl Account {
    /// True when `src` matches the account's allowed sources (any source when the list is empty
    /// and the mode is Digest; IpPort mode compares the port too).
    pub fn source_allowed(&self, src: SocketAddr) -> bool {
        if self.allowed.is_empty() {
            return self.auth_mode == AuthMode::Digest;
        }
        let src = canonical(src);
        self.allowed.iter().any(|m| m.matches(src))
    }

    fn new(
        user: String,
        password: String,
        auth_mode: AuthMode,
        allowed: Vec<SourceMatch>,
        realm: &str,
    ) -> Account {
        let (ha1_md5, ha1_sha256) = if password.is_empty() {
            (Hex::default(), Hex::default())
        } else {
            let (u, r, p) = (user.as_bytes(), realm.as_bytes(), password.as_bytes());
            (
                ha1(Algorithm::Md5, u, r, p),
                ha1(Algorithm::Sha256, u, r, p),
            )
        };
        Account {
            user: user.into_boxed_str(),
            password: password.into_boxed_str(),
            auth_mode,
            allowed,
            ha1_md5,
            ha1_sha256,
        }
    }
}

/// Index of an account in [`Accounts`].
pub type AccountId = u32;

/// The account of a binding registered without authentication (`require_auth = Off`) by a user
/// that has no account. Never an index into [`Accounts`].
pub const NO_ACCOUNT: AccountId = AccountId::MAX;

/// The account table.
#[derive(Debug, Default)]
pub struct Accounts {
    list: Vec<Account>,
    by_user: AHashMap<Box<[u8]>, AccountId>,
    /// `IP:PORT` entries of ip_port accounts.
    by_ip_port: AHashMap<SocketAddr, AccountId>,
    /// `IP` entries of ip accounts.
    by_ip: AHashMap<IpAddr, AccountId>,
    /// `IP/PREFIX` entries of ip accounts, one map per (family, prefix length), longest first;
    /// keys are the masked network addresses.
    nets: Vec<NetLevel>,
}

#[derive(Debug)]
struct NetLevel {
    v4: bool,
    len: u8,
    map: AHashMap<IpAddr, AccountId>,
}

/// Where an account was defined, for duplicate messages.
#[derive(Clone, Copy)]
enum Origin {
    /// `[[registrar.accounts]]` entry, 1-based.
    Config(usize),
    /// Line of the CSV file, 1-based.
    Line(usize),
}

/// The table under construction: accounts, the user index and where each came from.
struct Builder {
    list: Vec<Account>,
    by_user: AHashMap<Box<[u8]>, AccountId>,
    origins: Vec<Origin>,
    realm: String,
    /// Name of the file being read, for messages about earlier CSV lines.
    file: String,
}

impl Builder {
    fn new(realm: &str) -> Builder {
        Builder {
            list: Vec::new(),
            by_user: AHashMap::new(),
            origins: Vec::new(),
            realm: realm.to_string(),
            file: String::new(),
        }
    }

    fn describe(&self, o: Origin) -> String {
        match o {
            Origin::Config(n) => format!("[[registrar.accounts]] #{n} of the config file"),
            Origin::Line(n) => format!("{}:{n}", self.file),
        }
    }

    /// Add one account; a user already present is an error naming where it was first defined.
    fn push(&mut self, account: Account, origin: Origin) -> Result<(), String> {
        let id = self.list.len() as AccountId;
        let key: Box<[u8]> = account.user.as_bytes().into();
        match self.by_user.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let first = self.origins[*e.get() as usize];
                Err(format!(
                    "duplicate user `{}` (first defined at {})",
                    account.user,
                    self.describe(first)
                ))
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
                self.list.push(account);
                self.origins.push(origin);
                Ok(())
            }
        }
    }

    /// Parse CSV `text` into the table. Errors: `ORIGIN:LINE: field N (NAME): why`.
    fn parse_csv(&mut self, text: &str, origin: &str) -> Result<(), String> {
        self.file = origin.to_string();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut fields: Vec<String> = Vec::with_capacity(4);
        let mut first_record = true;
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let at = |field: usize, why: &str| -> String {
                let name = ["user", "password", "allowed", "auth_mode"]
                    .get(field)
                    .copied()
                    .unwrap_or("extra");
                format!("{origin}:{line_no}: field {} ({name}): {why}", field + 1)
            };
            split_fields(line, &mut fields).map_err(|(f, why)| at(f, &why))?;
            while fields.len() > 4 && fields.last().is_some_and(|f| f.is_empty()) {
                fields.pop();
            }
            if fields.len() > 4 {
                return Err(at(
                    4,
                    &format!(
                        "{} fields; expected user,password[,allowed[,auth_mode]]",
                        fields.len()
                    ),
                ));
            }
            if std::mem::take(&mut first_record)
                && fields[0].eq_ignore_ascii_case("user")
                && fields
                    .get(1)
                    .is_some_and(|f| f.eq_ignore_ascii_case("password"))
            {
                continue;
            }
            let get = |n: usize| fields.get(n).map(String::as_str).unwrap_or("");
            let user = get(0);
            if let Some(why) = user_problem(user) {
                return Err(at(0, &why));
            }
            if let Some(why) = password_problem(get(1)) {
                return Err(at(1, &why));
            }
            let mut parsed = Vec::new();
            for entry in get(2).split(';') {
                if entry.trim().is_empty() {
                    continue;
                }
                parsed.push(parse_allowed(entry).map_err(|why| at(2, &why))?);
            }
            let mode = match get(3) {
                "" => AuthMode::Digest,
                m => parse_auth_mode(m).ok_or_else(|| {
                    at(
                        3,
                        &format!("`{m}` is not an auth mode; allowed digest|ip|ip_port"),
                    )
                })?,
            };
            if let Some((field, why)) = mode_problem(mode, get(1), &parsed) {
                let n = if field == "password" { 1 } else { 2 };
                return Err(at(n, &why));
            }
            let account = Account::new(
                user.to_string(),
                get(1).to_string(),
                mode,
                parsed.into_iter().map(SourceMatch::from).collect(),
                &self.realm,
            );
            self.push(account, Origin::Line(line_no))
                .map_err(|why| at(0, &why))?;
        }
        Ok(())
    }

    /// Build the source index of ip and ip_port accounts.
    fn finish(self) -> Result<Accounts, String> {
        let mut by_ip_port = AHashMap::new();
        let mut by_ip = AHashMap::new();
        let mut nets: Vec<NetLevel> = Vec::new();
        let clash = |what: String, a: AccountId, b: usize, list: &[Account]| {
            format!(
                "source {what} is claimed by both `{}` and `{}`; each address, address:port or \
                 network may belong to one ip/ip_port account only",
                list[a as usize].user, list[b].user
            )
        };
        for (id, a) in self.list.iter().enumerate() {
            if a.auth_mode == AuthMode::Digest {
                continue;
            }
            for m in &a.allowed {
                let prev = match *m {
                    SourceMatch::IpPort(sa) => by_ip_port.insert(sa, id as AccountId),
                    SourceMatch::Ip(ip) => by_ip.insert(ip, id as AccountId),
                    SourceMatch::Net(net, len) => {
                        let v4 = net.is_ipv4();
                        let pos = match nets.iter().position(|l| l.v4 == v4 && l.len == len) {
                            Some(p) => p,
                            None => {
                                nets.push(NetLevel {
                                    v4,
                                    len,
                                    map: AHashMap::new(),
                                });
                                nets.len() - 1
                            }
                        };
                        nets[pos].map.insert(net, id as AccountId)
                    }
                };
                if let Some(prev) = prev.filter(|&p| p as usize != id) {
                    let what = match m {
                        SourceMatch::Ip(ip) => ip.to_string(),
                        SourceMatch::IpPort(sa) => sa.to_string(),
                        SourceMatch::Net(n, l) => format!("{n}/{l}"),
                    };
                    return Err(clash(what, prev, id, &self.list));
                }
            }
        }
        nets.sort_by_key(|l| std::cmp::Reverse(l.len));
        Ok(Accounts {
            list: self.list,
            by_user: self.by_user,
            by_ip_port,
            by_ip,
            nets,
        })
    }
}

/// Split one CSV line into `out` (cleared first). Unquoted fields are trimmed of spaces and
/// tabs; quoted fields keep everything between the quotes, `""` standing for `"`. The error is
/// the 0-based field index and why.
fn split_fields(line: &str, out: &mut Vec<String>) -> Result<(), (usize, String)> {
    out.clear();
    if !line.contains('"') {
        out.extend(
            line.split(',')
                .map(|f| f.trim_matches([' ', '\t']).to_string()),
        );
        return Ok(());
    }
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        let field = out.len();
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut value = String::new();
            let mut start = i;
            loop {
                let Some(q) = line[i..].find('"').map(|q| q + i) else {
                    return Err((field, "the quoted field is not closed on its line".into()));
                };
                value.push_str(&line[start..q]);
                if b.get(q + 1) == Some(&b'"') {
                    value.push('"');
                    i = q + 2;
                    start = i;
                } else {
                    i = q + 1;
                    break;
                }
            }
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            out.push(value);
            match b.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err((
                    field,
                    "text after the closing quote; write \"\" for a quote inside a quoted field"
                        .into(),
                )),
            }
        } else {
            let end = line[i..].find(',').map_or(line.len(), |c| c + i);
            let raw = &line[i..end];
            if raw.contains('"') {
                return Err((
                    field,
                    "a quote inside an unquoted field; quote the whole field and write \"\" for the quote"
                        .into(),
                ));
            }
            out.push(raw.trim_matches([' ', '\t']).to_string());
            if end == line.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

impl Accounts {
    /// From `[[registrar.accounts]]` plus the rows of `accounts_file` (if any). Errors name the
    /// file, line and field.
    pub fn build(cfg: &RegistrarConfig) -> Result<Accounts, String> {
        let mut b = Builder::new(&cfg.realm);
        for (i, a) in cfg.accounts.iter().enumerate() {
            let n = i + 1;
            let (allowed, mode) = config_account(a)
                .map_err(|(field, why)| format!("[[registrar.accounts]] #{n}: {field}: {why}"))?;
            let account = Account::new(
                a.user.clone(),
                a.password.clone(),
                mode,
                allowed,
                &cfg.realm,
            );
            b.push(account, Origin::Config(n))
                .map_err(|why| format!("[[registrar.accounts]] #{n}: user: {why}"))?;
        }
        if let Some(path) = &cfg.accounts_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read accounts file {path}: {e}"))?;
            b.parse_csv(&text, path)?;
        }
        b.finish()
    }

    /// Parse CSV text (`user,password[,allowed[,auth_mode]]`, `#` comments, optional header row).
    pub fn parse_csv(text: &str, realm: &str, origin: &str) -> Result<Vec<Account>, String> {
        let mut b = Builder::new(realm);
        b.parse_csv(text, origin)?;
        Ok(b.list)
    }

    /// Look up by SIP user (exact, case-sensitive).
    pub fn find(&self, user: &[u8]) -> Option<AccountId> {
        self.by_user.get(user).copied()
    }

    /// Accounts in IP or IP+port mode that accept `src` (for requests without credentials).
    /// Precedence: exact `IP:PORT`, then exact `IP`, then the longest matching prefix.
    pub fn find_by_source(&self, src: SocketAddr) -> Option<AccountId> {
        let src = canonical(src);
        if let Some(&id) = self.by_ip_port.get(&src) {
            return Some(id);
        }
        let ip = src.ip();
        if let Some(&id) = self.by_ip.get(&ip) {
            return Some(id);
        }
        let v4 = ip.is_ipv4();
        self.nets
            .iter()
            .filter(|l| l.v4 == v4)
            .find_map(|l| l.map.get(&mask_ip(ip, l.len)).copied())
    }

    pub fn get(&self, id: AccountId) -> &Account {
        &self.list[id as usize]
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Check an account given in code or in the config file (the config parser checks the same
/// rules; this covers a `RegistrarConfig` built by hand).
fn config_account(
    a: &AccountConfig,
) -> Result<(Vec<SourceMatch>, AuthMode), (&'static str, String)> {
    if let Some(why) = user_problem(&a.user) {
        return Err(("user", why));
    }
    if let Some(why) = password_problem(&a.password) {
        return Err(("password", why));
    }
    let mut parsed = Vec::with_capacity(a.allowed.len());
    for s in &a.allowed {
        parsed.push(parse_allowed(s).map_err(|why| ("allowed", why))?);
    }
    if let Some(p) = mode_problem(a.auth_mode, &a.password, &parsed) {
        return Err(p);
    }
    Ok((
        parsed.into_iter().map(SourceMatch::from).collect(),
        a.auth_mode,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "sipshard";

    fn csv(text: &str) -> Result<Vec<Account>, String> {
        Accounts::parse_csv(text, REALM, "a.csv")
    }

    fn err(text: &str) -> String {
        match csv(text) {
            Ok(v) => panic!("expected an error for {text:?}, got {v:?}"),
            Err(e) => e,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn table(text: &str) -> Accounts {
        let mut b = Builder::new(REALM);
        b.parse_csv(text, "t.csv").unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn minimal_rows_and_ha1() {
        let v = csv("alice,secret\nbob,pw2,10.0.0.0/8\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(&*v[0].user, "alice");
        assert_eq!(&*v[0].password, "secret");
        assert_eq!(v[0].auth_mode, AuthMode::Digest);
        assert!(v[0].allowed.is_empty());
        assert_eq!(
            v[0].ha1_md5,
            ha1(Algorithm::Md5, b"alice", REALM.as_bytes(), b"secret")
        );
        assert_eq!(
            v[0].ha1_sha256,
            ha1(Algorithm::Sha256, b"alice", REALM.as_bytes(), b"secret")
        );
        assert_eq!(v[0].ha1_md5.as_bytes().len(), 32);
        assert_eq!(v[0].ha1_sha256.as_bytes().len(), 64);
        assert_eq!(
            v[1].allowed,
            vec![SourceMatch::Net("10.0.0.0".parse().unwrap(), 8)]
        );
    }

    #[test]
    fn comments_blank_lines_header_crlf_bom() {
        let text = "\u{feff}user,password,allowed,auth_mode\r\n\
                    # a comment, with commas\r\n\
                    \r\n\
                    \x20  # indented comment\r\n\
                    alice,pw#1\r\n\
                    \r\n";
        let v = csv(text).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(
            &*v[0].password, "pw#1",
            "no CR kept, # inside a field is data"
        );
        // A header only counts as the first record; later, `user,password` is an account.
        let v = csv("alice,pw\nuser,password\n").unwrap();
        assert_eq!(&*v[1].user, "user");
        // Header names in any case.
        assert_eq!(csv("User,Password\nbob,x\n").unwrap().len(), 1);
    }

    #[test]
    fn quoted_fields() {
        let v = csv("\"al ice\",\"p,w\"\"x\"\n").unwrap_err();
        assert!(v.contains("field 1 (user)"), "{v}");
        let v = csv("alice,\"p,w\"\"x \" ,\"10.0.0.1;10.0.0.2:5060\", \"Digest\" \n").unwrap();
        assert_eq!(&*v[0].password, "p,w\"x ");
        assert_eq!(v[0].auth_mode, AuthMode::Digest);
        assert_eq!(v[0].allowed.len(), 2);
        assert!(err("alice,\"pw\n")
            .contains("a.csv:1: field 2 (password): the quoted field is not closed"));
        assert!(err("alice,\"pw\"x\n").contains("field 2 (password): text after the closing quote"));
        assert!(
            err("alice,p\"w\n").contains("field 2 (password): a quote inside an unquoted field")
        );
        // An empty quoted password is empty: digest refuses it.
        assert!(err("alice,\"\"\n")
            .contains("field 2 (password): auth_mode digest needs a non-empty password"));
        // Unquoted fields are trimmed, quoted ones keep their spaces.
        let v = csv("  bob , pw  ,\t\n").unwrap();
        assert_eq!((&*v[0].user, &*v[0].password), ("bob", "pw"));
        let v = csv("bob,\" pw \"\n").unwrap();
        assert_eq!(&*v[0].password, " pw ");
    }

    #[test]
    fn trailing_commas_and_too_many_fields() {
        let v = csv("alice,pw,\ncarol,pw,,\ndave,pw,,digest,,\n").unwrap();
        assert_eq!(v.len(), 3);
        assert!(v
            .iter()
            .all(|a| a.allowed.is_empty() && a.auth_mode == AuthMode::Digest));
        let e = err("alice,pw,,digest,extra\n");
        assert_eq!(
            e,
            "a.csv:1: field 5 (extra): 5 fields; expected user,password[,allowed[,auth_mode]]"
        );
    }

    #[test]
    fn bad_ip_bad_mode_missing_password() {
        let e = err("alice,pw\nbob,pw,10.0.0.999\n");
        assert_eq!(
            e,
            "a.csv:2: field 3 (allowed): `10.0.0.999` is not an IP, IP:PORT ([IPv6]:PORT) or IP/PREFIX"
        );
        assert!(err("bob,pw,10.0.0.0/33\n")
            .contains("field 3 (allowed): `10.0.0.0/33`: the prefix length must be 0..=32"));
        assert!(err("bob,pw,1.2.3.4:0\n").contains("port 0"));
        let e = err("bob,pw,10.0.0.1,radius\n");
        assert_eq!(
            e,
            "a.csv:1: field 4 (auth_mode): `radius` is not an auth mode; allowed digest|ip|ip_port"
        );
        assert_eq!(
            err("bob\n"),
            "a.csv:1: field 2 (password): auth_mode digest needs a non-empty password"
        );
        assert!(err("bob,,,ip\n").contains("field 3 (allowed): auth_mode ip needs at least one"));
        assert!(err("bob,,10.0.0.1:5060,ip\n").contains("has a port, but auth_mode ip"));
        assert!(err("bob,,10.0.0.1,ip_port\n").contains("`10.0.0.1` has no port"));
        assert!(err(",pw\n").contains("field 1 (user): the user is empty"));
        assert!(err("a b,pw\n").contains("field 1 (user)"));
        assert!(err("bob,p\tw\n").contains("field 2 (password): the password contains a control"));
        // Modes in any case; ip modes need no password.
        let v = csv("gw1,,10.0.0.1,IP\ngw2,,10.0.0.2:5060,Ip_Port\n").unwrap();
        assert_eq!(v[0].auth_mode, AuthMode::Ip);
        assert_eq!(v[1].auth_mode, AuthMode::IpPort);
        assert_eq!(v[0].ha1_md5, Hex::default(), "no password, no HA1");
    }

    #[test]
    fn duplicates_in_the_file_and_across_config() {
        assert_eq!(
            err("alice,pw\nbob,pw\n\nalice,other\n"),
            "a.csv:4: field 1 (user): duplicate user `alice` (first defined at a.csv:1)"
        );
        // Users are case-sensitive.
        assert_eq!(csv("alice,pw\nAlice,pw\n").unwrap().len(), 2);

        let dir = std::env::temp_dir().join(format!("sipshard-acc-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dup.csv");
        std::fs::write(&file, "# bulk\nbob,pw\nalice,pw\n").unwrap();
        let cfg = RegistrarConfig {
            accounts_file: Some(file.to_string_lossy().into_owned()),
            accounts: vec![AccountConfig {
                user: "alice".into(),
                password: "x".into(),
                auth_mode: AuthMode::Digest,
                allowed: vec![],
            }],
            ..RegistrarConfig::default()
        };
        let e = Accounts::build(&cfg).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}:3: field 1 (user): duplicate user `alice` (first defined at \
                 [[registrar.accounts]] #1 of the config file)",
                file.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_reports_unreadable_file_and_bad_config_accounts() {
        let cfg = RegistrarConfig {
            accounts_file: Some("/nonexistent/sipshard-accounts.csv".into()),
            ..RegistrarConfig::default()
        };
        let e = Accounts::build(&cfg).unwrap_err();
        assert!(
            e.starts_with("cannot read accounts file /nonexistent/sipshard-accounts.csv"),
            "{e}"
        );
        let cfg = RegistrarConfig {
            accounts: vec![AccountConfig {
                user: "gw".into(),
                password: String::new(),
                auth_mode: AuthMode::IpPort,
                allowed: vec!["10.0.0.1".into()],
            }],
            ..RegistrarConfig::default()
        };
        let e = Accounts::build(&cfg).unwrap_err();
        assert!(
            e.starts_with("[[registrar.accounts]] #1: allowed: `10.0.0.1` has no port"),
            "{e}"
        );
        let empty = Accounts::build(&RegistrarConfig::default()).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.find(b"x"), None);
        assert_eq!(empty.find_by_source(sa("10.0.0.1:5060")), None);
    }

    #[test]
    fn find_is_exact() {
        let t = table("alice,pw\nbob,pw\n");
        let a = t.find(b"alice").unwrap();
        assert_eq!(&*t.get(a).user, "alice");
        assert_eq!(&*t.get(t.find(b"bob").unwrap()).user, "bob");
        assert_eq!(t.find(b"Alice"), None);
        assert_eq!(t.find(b"alic"), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn source_precedence_ip_port_then_ip_then_longest_prefix() {
        let t = table(
            "wide,,10.0.0.0/8,ip\n\
             mid,,10.1.0.0/16,ip\n\
             narrow,,10.1.2.0/24,ip\n\
             host,,10.1.2.3,ip\n\
             port,,10.1.2.3:5070,ip_port\n\
             digest,pw,10.1.2.4\n",
        );
        let who = |s: &str| t.find_by_source(sa(s)).map(|id| &*t.get(id).user);
        assert_eq!(who("10.1.2.3:5070"), Some("port"));
        assert_eq!(who("10.1.2.3:5060"), Some("host"));
        assert_eq!(who("10.1.2.9:5060"), Some("narrow"));
        // Digest accounts are never found by source, even with allowed entries.
        assert_eq!(who("10.1.2.4:5060"), Some("narrow"));
        assert_eq!(who("10.1.9.9:1"), Some("mid"));
        assert_eq!(who("10.200.0.1:5060"), Some("wide"));
        assert_eq!(who("11.0.0.1:5060"), None);
        // IPv4-mapped IPv6 sources match IPv4 entries.
        assert_eq!(who("[::ffff:10.1.2.3]:5070"), Some("port"));
        assert_eq!(who("[::ffff:10.9.9.9]:5070"), Some("wide"));
    }

    #[test]
    fn ipv6_sources() {
        let t = table(
            "v6net,,2001:db8::/32,ip\n\
             v6host,,2001:db8::1,ip\n\
             v6port,,[2001:db8::1]:5060;[::1]:5080,ip_port\n\
             all4,,0.0.0.0/0,ip\n",
        );
        let who = |s: &str| t.find_by_source(sa(s)).map(|id| &*t.get(id).user);
        assert_eq!(who("[2001:db8::1]:5060"), Some("v6port"));
        assert_eq!(who("[::1]:5080"), Some("v6port"));
        assert_eq!(who("[2001:db8::1]:5061"), Some("v6host"));
        assert_eq!(who("[2001:db8:ffff::7]:5061"), Some("v6net"));
        assert_eq!(who("[2001:db9::1]:5060"), None, "0.0.0.0/0 is IPv4 only");
        assert_eq!(who("192.0.2.1:5060"), Some("all4"));
        let a = t.get(t.find(b"v6port").unwrap());
        assert!(a.source_allowed(sa("[2001:db8::1]:5060")));
        assert!(!a.source_allowed(sa("[2001:db8::1]:5061")));
    }

    #[test]
    fn source_allowed_per_mode() {
        let v = csv("open,pw\n\
             limited,pw,192.0.2.0/24;198.51.100.7:5060\n\
             gw,,192.0.2.1,ip\n\
             gwp,,192.0.2.1:5060,ip_port\n")
        .unwrap();
        assert!(
            v[0].source_allowed(sa("203.0.113.9:1")),
            "digest without a list: any source"
        );
        assert!(v[1].source_allowed(sa("192.0.2.77:4000")));
        assert!(v[1].source_allowed(sa("198.51.100.7:5060")));
        assert!(
            !v[1].source_allowed(sa("198.51.100.7:5061")),
            "IP:PORT entries compare the port"
        );
        assert!(!v[1].source_allowed(sa("203.0.113.9:5060")));
        assert!(v[2].source_allowed(sa("192.0.2.1:1234")));
        assert!(v[2].source_allowed(sa("[::ffff:192.0.2.1]:1234")));
        assert!(!v[2].source_allowed(sa("192.0.2.2:1234")));
        assert!(v[3].source_allowed(sa("192.0.2.1:5060")));
        assert!(!v[3].source_allowed(sa("192.0.2.1:5061")));
        // An ip account built by hand with no list accepts nothing.
        let mut none = v[2].clone();
        none.allowed.clear();
        assert!(!none.source_allowed(sa("192.0.2.1:1234")));
    }

    #[test]
    fn host_bits_of_networks_are_cleared() {
        let v = csv("gw,,10.1.2.3/16,ip\n").unwrap();
        assert_eq!(
            v[0].allowed,
            vec![SourceMatch::Net("10.1.0.0".parse().unwrap(), 16)]
        );
        let t = table("gw,,10.1.2.3/16,ip\n");
        assert!(t.find_by_source(sa("10.1.200.1:5060")).is_some());
    }

    #[test]
    fn two_accounts_claiming_one_source_are_refused() {
        for text in [
            "a,,10.0.0.1,ip\nb,,10.0.0.1,ip\n",
            "a,,10.0.0.1:5060,ip_port\nb,,10.0.0.1:5060,ip_port\n",
            "a,,10.0.0.0/8,ip\nb,,10.9.0.0/8,ip\n",
        ] {
            let mut b = Builder::new(REALM);
            b.parse_csv(text, "t.csv").unwrap();
            let e = b.finish().unwrap_err();
            assert!(e.contains("is claimed by both `a` and `b`"), "{e}");
        }
        // The same address in a digest account's list is not a claim.
        table("a,,10.0.0.1,ip\nb,pw,10.0.0.1\n");
        // One account may list a source twice.
        table("a,,10.0.0.1;10.0.0.1,ip\n");
    }

    #[test]
    fn empty_entries_in_allowed_are_skipped() {
        let v = csv("gw,,10.0.0.1;;10.0.0.2; ,ip\n").unwrap();
        assert_eq!(v[0].allowed.len(), 2);
    }
}
