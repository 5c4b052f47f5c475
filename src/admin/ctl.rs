//! `sipshard ctl`: the management API from a shell (a plain blocking HTTP/1.1 client on std).
//!
//! Owns: the ctl commands (list, show, unregister, export, status, trunks, reregister, gateways,
//! calls), their
//! requests and how answers are printed.
//! Must not: know anything of the server's insides: it only speaks the HTTP API.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// Connect and I/O timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin server is and how to authenticate.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub token: Option<String>,
}

/// A response: status, headers (lowercased names) and a reader positioned at the body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Copy the body (de-chunked) to `out` as it arrives.
    pub fn copy_body(mut self, out: &mut dyn Write) -> io::Result<u64> {
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if !chunked {
            let mut n = 0;
            let len = self
                .header("content-length")
                .map(|l| l.parse::<u64>().unwrap_or(0));
            let mut limited: Box<dyn Read> = match len {
                Some(l) => Box::new((&mut self.reader).take(l)),
                None => Box::new(&mut self.reader),
            };
            let mut buf = [0u8; 16 * 1024];
            loop {
                let k = limited.read(&mut buf)?;
                if k == 0 {
                    return Ok(n);
                }
                out.write_all(&buf[..k])?;
                n += k as u64;
            }
        }
        let mut total = 0u64;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server ended the transfer early (incomplete body)",
                ));
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    let mut t = String::new();
                    if self.reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        return Ok(total);
                    }
                }
            }
            let mut chunk = vec![0u8; size];
            self.reader.read_exact(&mut chunk)?;
            out.write_all(&chunk)?;
            total += size as u64;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf)?;
        }
    }

    pub fn body_bytes(self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.copy_body(&mut v)?;
        Ok(v)
    }

    pub fn json(self) -> io::Result<Value> {
        let b = self.body_bytes()?;
        serde_json::from_slice(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        )
    })
}

/// Percent-encode a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Send one request (`Connection: close`) and read the status line and headers.
pub fn request(t: &Target, method: &str, path: &str) -> io::Result<Reply> {
    let addr = resolve(&t.addr)?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
        t.addr
    );
    if let Some(tok) = &t.token {
        head.push_str(&format!("Authorization: Bearer {tok}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Reply {
        status,
        headers,
        reader,
    })
}

/// A ctl command.
#[derive(Clone, Debug)]
pub enum Action {
    List {
        number: Option<String>,
        ip: Option<String>,
        account: Option<String>,
        status: Option<String>,
        offset: usize,
        limit: usize,
    },
    Show(String),
    Unregister(String),
    Export,
    Status,
    Trunks,
    Reregister(String),
    Gateways,
    /// Recent calls from the CDR ring: (filter name, value) pairs as in the API, paging.
    Calls {
        filters: Vec<(&'static str, String)>,
        offset: usize,
        limit: usize,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Run `action` against `t`, printing to `out`. Returns the exit status (0 ok; 1 the server
/// refused or failed; 2 could not talk to it).
pub fn run(t: &Target, action: &Action, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(t, action, out) {
        Ok(Ok(())) => 0,
        Ok(Err((status, msg))) => {
            let _ = writeln!(err, "sipshard ctl: HTTP {status}: {msg}");
            1
        }
        Err(e) => {
            let _ = writeln!(err, "sipshard ctl: {e}");
            2
        }
    }
}

type Outcome = io::Result<Result<(), (u16, String)>>;

fn refused(r: Reply) -> Outcome {
    let status = r.status;
    let msg = match r.json() {
        Ok(v) => s(&v["error"]),
        Err(e) => e.to_string(),
    };
    Ok(Err((status, msg)))
}

fn run_inner(t: &Target, action: &Action, out: &mut dyn Write) -> Outcome {
    match action {
        Action::List {
            number,
            ip,
            account,
            status,
            offset,
            limit,
        } => {
            let mut q = format!("offset={offset}&limit={limit}");
            for (k, v) in [
                ("number", number),
                ("ip", ip),
                ("account", account),
                ("status", status),
            ] {
                if let Some(v) = v {
                    q.push_str(&format!("&{k}={}", encode(v)));
                }
            }
            let r = request(t, "GET", &format!("/api/v1/registrations?{q}"))?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{:<32} {:<22} {:<12} {:>8} {:<12} {:<20} CONTACT",
                "AOR", "SOURCE", "STATUS", "EXPIRES", "ACCOUNT", "USER-AGENT"
            )?;
            for row in v["rows"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{:<32} {:<22} {:<12} {:>8} {:<12} {:<20} {}",
                    s(&row["aor"]),
                    s(&row["source"]),
                    s(&row["status"]),
                    s(&row["expires_in_s"]),
                    s(&row["account"]),
                    s(&row["user_agent"]),
                    s(&row["contact"])
                )?;
            }
            let shown = v["rows"].as_array().map_or(0, Vec::len);
            writeln!(
                out,
                "({shown} shown, rows {}..{} of {})",
                offset,
                offset + shown,
                s(&v["total"])
            )?;
            Ok(Ok(()))
        }
        Action::Show(aor) => {
            let r = request(t, "GET", &format!("/api/v1/registrations/{}", encode(aor)))?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )?;
            Ok(Ok(()))
        }
        Action::Unregister(aor) => {
            let r = request(
                t,
                "DELETE",
                &format!("/api/v1/registrations/{}", encode(aor)),
            )?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{}: {} binding(s) removed",
                s(&v["aor"]),
                s(&v["removed"])
            )?;
            Ok(Ok(()))
        }
        Action::Export => {
            let r = request(t, "GET", "/api/v1/registrations/export.csv")?;
            if r.status != 200 {
                return refused(r);
            }
            r.copy_body(out)?;
            Ok(Ok(()))
        }
        Action::Status => {
            let r = request(t, "GET", "/api/v1/status")?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )?;
            Ok(Ok(()))
        }
        Action::Trunks => {
            let r = request(t, "GET", "/api/v1/trunks")?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{:<20} {:<14} {:<28} {:>7} {:<24} LAST ERROR",
                "NAME", "STATE", "REGISTRAR", "EXPIRY", "NEXT ACTION"
            )?;
            for row in v["trunks"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{:<20} {:<14} {:<28} {:>7} {:<24} {}",
                    s(&row["name"]),
                    s(&row["state"]),
                    s(&row["registrar"]),
                    s(&row["effective_expiry_s"]),
                    s(&row["next_action_at"]),
                    s(&row["last_error"])
                )?;
            }
            Ok(Ok(()))
        }
        Action::Gateways => {
            let r = request(t, "GET", "/api/v1/gateways")?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{:<16} {:<22} {:<5} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
                "NAME",
                "ADDRESS",
                "STATE",
                "ACTIVE",
                "ATTEMPTS",
                "ANSWERED",
                "FAILURES",
                "REJECTED",
                "SKIPPED",
                "PROBES"
            )?;
            for g in v["gateways"].as_array().into_iter().flatten() {
                let skipped = g["skipped"]["down"].as_u64().unwrap_or(0)
                    + g["skipped"]["full"].as_u64().unwrap_or(0);
                writeln!(
                    out,
                    "{:<16} {:<22} {:<5} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
                    s(&g["name"]),
                    s(&g["address"]),
                    s(&g["state"]),
                    s(&g["active_calls"]),
                    s(&g["attempts"]),
                    s(&g["answered"]),
                    s(&g["failures_total"]),
                    s(&g["rejected"]),
                    skipped,
                    s(&g["probes_sent"])
                )?;
            }
            Ok(Ok(()))
        }
        Action::Calls {
            filters,
            offset,
            limit,
        } => {
            let mut q = format!("offset={offset}&limit={limit}");
            for (k, v) in filters {
                q.push_str(&format!("&{k}={}", encode(v)));
            }
            let r = request(t, "GET", &format!("/api/v1/calls?{q}"))?;
            if r.status != 200 {
                return refused(r);
            }
            let v = r.json()?;
            writeln!(
                out,
                "{:<24} {:<16} {:<16} {:>6} {:<20} {:<12} {:>9} CALL-ID",
                "START", "CALLER", "CALLEE", "STATUS", "END REASON", "GATEWAY", "TALK MS"
            )?;
            for c in v["rows"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{:<24} {:<16} {:<16} {:>6} {:<20} {:<12} {:>9} {}",
                    s(&c["start"]),
                    s(&c["caller"]),
                    s(&c["callee"]),
                    s(&c["final_status"]),
                    s(&c["end_reason"]),
                    s(&c["gateway"]),
                    s(&c["duration_ms"]),
                    s(&c["call_id"])
                )?;
            }
            let shown = v["rows"].as_array().map_or(0, Vec::len);
            writeln!(
                out,
                "({shown} shown, rows {}..{} of {} matching; {} held)",
                offset,
                offset + shown,
                s(&v["total"]),
                s(&v["held"])
            )?;
            Ok(Ok(()))
        }
        Action::Reregister(name) => {
            let r = request(
                t,
                "POST",
                &format!("/api/v1/trunks/{}/reregister", encode(name)),
            )?;
            if r.status != 200 {
                return refused(r);
            }
            writeln!(out, "{name}: re-registration started")?;
            Ok(Ok(()))
        }
    }
}
