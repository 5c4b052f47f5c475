//! Shared helpers for black-box tests: start the real `sipshard` binary on a loopback port, talk
//! to it over UDP, stop it with SIGTERM and collect what it printed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server process. Killed on drop if the test did not stop it.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Lines printed on stdout after the ready line (collected by a reader thread).
    lines: mpsc::Receiver<String>,
    stderr: Option<std::process::ChildStderr>,
    /// stderr lines, once [`Server::wait_for_stderr`] started reading them.
    stderr_lines: Option<mpsc::Receiver<String>>,
    /// The management HTTP server's address, from its line before the ready line.
    pub admin: Option<SocketAddr>,
}

/// `sipshard run --listen 127.0.0.1:0 --shards N [extra...]`, waiting for the ready line.
pub fn start_server(shards: usize, extra: &[&str]) -> Server {
    let shards = shards.to_string();
    let mut args = vec!["run", "--listen", "127.0.0.1:0", "--shards", &shards];
    args.extend_from_slice(extra);
    start_with_args(&args).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// Start the binary with `args`; Ok once it printed its ready line, Err(output) if it exited first.
pub fn start_with_args(args: &[&str]) -> Result<Server, String> {
    start_with_log(args, "warn")
}

/// As [`start_with_args`], with `RUST_LOG` set to `rust_log`.
/// `run` without `--admin-listen` gets `--admin-listen 127.0.0.1:0`, so parallel tests never
/// fight over the default admin port.
pub fn start_with_log(args: &[&str], rust_log: &str) -> Result<Server, String> {
    let mut args = args.to_vec();
    if args.first() == Some(&"run") && !args.contains(&"--admin-listen") {
        args.extend(["--admin-listen", "127.0.0.1:0"]);
    }
    let mut admin = None;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipshard"))
        .args(&args)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sipshard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("sipshard admin listening on http ") {
                    admin = a.trim().parse().ok();
                }
                if let Some(addr) = parse_ready_line(&line) {
                    let stderr = child.stderr.take();
                    return Ok(Server {
                        child: Some(child),
                        addr,
                        lines: rx,
                        stderr,
                        stderr_lines: None,
                        admin,
                    });
                }
            }
            Err(_) => {
                // Exited (channel closed) or timed out: report what it said.
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                return Err(format!(
                    "status {:?}; stderr: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
}

/// `sipshard listening on udp 127.0.0.1:5060 (...)` → the address.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("sipshard listening on udp ")?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Server {
    /// SIGTERM, then wait (bounded) for exit. Returns (exit code, stdout lines, stderr, elapsed).
    pub fn terminate(mut self, within: Duration) -> (Option<i32>, Vec<String>, String, Duration) {
        let started = Instant::now();
        let mut child = self.child.take().expect("child");
        let pid = child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let mut err = String::new();
        let stderr = self.stderr.take();
        let stderr_lines = self.stderr_lines.take();
        if stderr.is_some() || stderr_lines.is_some() {
            // stderr closes when the process exits; read it on a thread so a hang cannot block us.
            let (etx, erx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut e) = stderr {
                    let _ = e.read_to_string(&mut s);
                } else if let Some(lines) = stderr_lines {
                    for l in lines {
                        s.push_str(&l);
                        s.push('\n');
                    }
                }
                let _ = etx.send(s);
            });
            let (wtx, wrx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = wtx.send(child.wait());
            });
            let status = match wrx.recv_timeout(within) {
                Ok(st) => st.ok(),
                Err(_) => {
                    // SAFETY: as above; the process overran its shutdown bound.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                    let _ = wrx.recv_timeout(Duration::from_secs(5));
                    None
                }
            };
            let elapsed = started.elapsed();
            err = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            let mut lines = Vec::new();
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                lines.push(l);
            }
            return (status.and_then(|s| s.code()), lines, err, elapsed);
        }
        let status = child.wait().ok();
        (
            status.and_then(|s| s.code()),
            Vec::new(),
            err,
            started.elapsed(),
        )
    }

    /// Wait (at most `within`) for a stderr line containing `needle`; the lines read are kept
    /// for [`Server::terminate`]. True when it came.
    pub fn wait_for_stderr(&mut self, needle: &str, within: Duration) -> bool {
        if let Some(e) = self.stderr.take() {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(e).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            self.stderr_lines = Some(rx);
        }
        let Some(rx) = self.stderr_lines.take() else {
            return false;
        };
        let deadline = Instant::now() + within;
        let (keep_tx, keep_rx) = mpsc::channel();
        let mut found = false;
        while !found {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    found = line.contains(needle);
                    let _ = keep_tx.send(line);
                }
                Err(_) => break,
            }
        }
        // Lines seen so far first, then the rest as they come.
        std::thread::spawn(move || {
            for l in rx {
                if keep_tx.send(l).is_err() {
                    break;
                }
            }
        });
        self.stderr_lines = Some(keep_rx);
        found
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A UDP client on 127.0.0.1 with a receive timeout.
pub fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Receive one datagram as text, or None on timeout.
pub fn recv_text(sock: &UdpSocket, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// The status code of a response text.
pub fn status_of(resp: &str) -> Option<u16> {
    resp.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The RFC 4475 folder beside the checkout; None (with a notice) when absent outside CI.
pub fn rfc4475_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/rfc4475");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing and CI=true", dir.display());
    }
    eprintln!(
        "notice: {} is missing; skipping (this fails when CI=true)",
        dir.display()
    );
    None
}

/// True when sipp is on PATH; panics when it is missing and CI=true.
pub fn have_sipp() -> bool {
    have_tool("sipp", "-v", "sip-tester")
}

/// True when sipsak is on PATH; panics when it is missing and CI=true.
pub fn have_sipsak() -> bool {
    have_tool("sipsak", "--version", "sipsak")
}

fn have_tool(cmd: &str, version_flag: &str, package: &str) -> bool {
    let found = Command::new(cmd)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{cmd} is missing and CI=true (Debian package {package})");
    }
    if !found {
        eprintln!("notice: {cmd} is missing; skipping (this fails when CI=true)");
    }
    found
}

/// A minimal OPTIONS request to `addr` from `from`.
pub fn options_request(addr: SocketAddr, from: SocketAddr, call_id: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:{addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{from}>;tag=t1\r\n\
         To: <sip:{addr}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The `key=value` pairs of the server's shutdown line (`sipshard stopped in N ms: ...`).
pub fn totals(lines: &[String]) -> std::collections::HashMap<String, u64> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("sipshard stopped"))
        .expect("totals line");
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A temp directory for config and data files, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("sipshard-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Writes `text` to `name` inside the directory; returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
