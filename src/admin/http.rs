//! The admin server's HTTP/1.1 layer: a mio event loop over TCP connections, request parsing with
//! httparse, responses with Content-Length or chunked bodies produced piece by piece.
//!
//! Owns: connections (keep-alive, pipelined requests one at a time, bounded request size, header
//! and idle timeouts, a connection cap), writing responses, streaming bodies without holding them
//! whole. Must not: know any route (the [`Handler`] does) or touch the shards.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

/// Largest request accepted (request line, headers and body), bytes; more gets 413.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most header lines in a request; more gets 431.
pub const MAX_HEADERS: usize = 64;
/// Connections served at once; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A request must be complete this long after its first byte (else 408 and close).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A response that makes no write progress for this long is abandoned.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks a streamed body may produce per connection per loop turn (fairness).
const CHUNKS_PER_TURN: usize = 4;
/// The output buffer is refilled from a stream only below this size.
const REFILL_BELOW: usize = 64 * 1024;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded (without the query).
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Produces a streamed body a piece at a time. `Ok(None)`: the body is complete. `Err`: it
/// cannot be completed; the connection is closed without the final chunk, so the client sees
/// a truncated transfer rather than a short but "complete" one.
pub trait Producer: Send {
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String>;
}

pub enum Body {
    Full(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`.
    Stream(Box<dyn Producer>),
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Full(body),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers requests (the routes). Called on the admin thread; may wait (bounded) on shards.
pub trait Handler {
    fn handle(&mut self, req: &Request) -> Response;
    /// Called at least every `tick()`; for periodic work (sampling).
    fn tick(&mut self) {}
    /// How long the loop may sleep before `tick` is due again.
    fn tick_in(&self) -> Duration {
        Duration::from_secs(1)
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// What parsing the buffered bytes gave.
#[derive(Debug)]
pub enum Parsed {
    /// A whole request, and how many bytes it took.
    Complete(Request, usize),
    /// More bytes are needed.
    Partial,
    /// Refuse with this status, then close.
    Error(u16, &'static str),
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `+` is a space when `plus` (query strings). Invalid escapes stay as they
/// are; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse one request from the start of `buf`.
pub fn parse_request(buf: &[u8], peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_REQUEST_BYTES {
                Parsed::Error(413, "request too large")
            } else {
                Parsed::Partial
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Error(431, "too many header lines"),
        Err(_) => return Parsed::Error(400, "malformed HTTP request"),
    };
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let mut hs = Vec::with_capacity(req.headers.len());
    let mut content_length = 0usize;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        if name == "transfer-encoding" {
            return Parsed::Error(411, "chunked request bodies are not accepted");
        }
        if name == "content-length" {
            match value.parse::<usize>() {
                Ok(n) => content_length = n,
                Err(_) => return Parsed::Error(400, "bad Content-Length"),
            }
        }
        hs.push((name, value));
    }
    if head_len.saturating_add(content_length) > MAX_REQUEST_BYTES {
        return Parsed::Error(413, "request too large");
    }
    if buf.len() < head_len + content_length {
        return Parsed::Partial;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(kv, true), String::new()),
        })
        .collect();
    let version = req.version.unwrap_or(1);
    let mut request = Request {
        method,
        path: percent_decode(path, false),
        query,
        headers: hs,
        body: buf[head_len..head_len + content_length].to_vec(),
        peer,
    };
    if version == 0 {
        // Marked so the connection closes after the answer (no keep-alive for HTTP/1.0 unless
        // asked for).
        request.headers.push(("x-http-1.0".into(), String::new()));
    }
    Parsed::Complete(request, head_len + content_length)
}

fn wants_close(req: &Request) -> bool {
    let conn = req
        .header("connection")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    if req.header("x-http-1.0").is_some() {
        return !conn.contains("keep-alive");
    }
    conn.contains("close")
}

/// Write the status line and headers of `resp` into `out`.
pub fn write_head(out: &mut Vec<u8>, resp: &Response, close: bool) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: no-store\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type
    );
    for (n, v) in &resp.headers {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    match &resp.body {
        Body::Full(b) => {
            let _ = write!(out, "Content-Length: {}\r\n", b.len());
        }
        Body::Stream(_) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append `data` as one chunk (nothing for empty data: that would end the body).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    stream: Option<Box<dyn Producer>>,
    /// Close once `out` is written.
    close_after: bool,
    /// First byte of the request being read.
    request_started: Option<Instant>,
    last_activity: Instant,
    last_write_progress: Instant,
    /// Work is left that no readiness event will announce (a stream to go on with).
    pending: bool,
}

enum Step {
    Keep,
    Close,
}

impl Conn {
    fn new(sock: TcpStream, peer: SocketAddr, now: Instant) -> Conn {
        Conn {
            sock,
            peer,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            stream: None,
            close_after: false,
            request_started: None,
            last_activity: now,
            last_write_progress: now,
            pending: false,
        }
    }

    /// Write what is buffered. Ok(true): all written.
    fn flush(&mut self, now: Instant) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.last_write_progress = now;
                    self.last_activity = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Read what the socket has. Ok(false): the peer closed.
    fn fill(&mut self, now: Instant) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        loop {
            if self.inbuf.len() > MAX_REQUEST_BYTES {
                return Ok(true);
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    if self.inbuf.is_empty() {
                        self.request_started = Some(now);
                    }
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.last_activity = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn respond(&mut self, resp: Response, close: bool) {
        self.close_after |= close;
        write_head(&mut self.out, &resp, self.close_after);
        match resp.body {
            Body::Full(b) => self.out.extend_from_slice(&b),
            Body::Stream(p) => self.stream = Some(p),
        }
    }

    /// Drive the connection as far as it goes without blocking.
    fn drive(&mut self, handler: &mut dyn Handler, now: Instant) -> Step {
        self.pending = false;
        loop {
            match self.flush(now) {
                Ok(true) => {}
                Ok(false) => return Step::Keep,
                Err(_) => return Step::Close,
            }
            if let Some(p) = &mut self.stream {
                let mut produced = 0;
                while self.out.len() < REFILL_BELOW && produced < CHUNKS_PER_TURN {
                    match p.next_chunk() {
                        Ok(Some(c)) => {
                            write_chunk(&mut self.out, &c);
                            produced += 1;
                        }
                        Ok(None) => {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                            self.stream = None;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(peer = %self.peer, error = %e, "admin: streamed body aborted");
                            // Send what we have, then close without the last chunk.
                            self.stream = None;
                            self.close_after = true;
                            let _ = self.flush(now);
                            return Step::Close;
                        }
                    }
                }
                if self.stream.is_some() && produced == CHUNKS_PER_TURN {
                    // Let other connections have a turn; come back without waiting for an event.
                    self.pending = true;
                    let _ = self.flush(now);
                    return Step::Keep;
                }
                continue;
            }
            if self.close_after {
                return Step::Close;
            }
            match parse_request(&self.inbuf, self.peer) {
                Parsed::Complete(req, used) => {
                    self.inbuf.drain(..used);
                    self.request_started = (!self.inbuf.is_empty()).then_some(now);
                    let close = wants_close(&req);
                    let resp = handler.handle(&req);
                    self.respond(resp, close);
                }
                Parsed::Error(status, why) => {
                    self.inbuf.clear();
                    let body = format!("{{\"error\":\"{why}\"}}").into_bytes();
                    self.respond(Response::new(status, "application/json", body), true);
                }
                Parsed::Partial => match self.fill(now) {
                    Ok(true) => {
                        if matches!(parse_request(&self.inbuf, self.peer), Parsed::Partial)
                            && self.inbuf.len() <= MAX_REQUEST_BYTES
                        {
                            return Step::Keep;
                        }
                    }
                    Ok(false) | Err(_) => return Step::Close,
                },
            }
        }
    }

    /// Whether a timeout ends this connection now (with a 408 when a request was half-read).
    fn timed_out(&mut self, now: Instant) -> bool {
        if self.out_pos < self.out.len() || self.stream.is_some() {
            return now.duration_since(self.last_write_progress) > WRITE_TIMEOUT;
        }
        if let Some(t) = self.request_started {
            if !self.inbuf.is_empty() && now.duration_since(t) > HEADER_TIMEOUT {
                let resp = Response::new(
                    408,
                    "application/json",
                    b"{\"error\":\"request timeout\"}".to_vec(),
                );
                self.respond(resp, true);
                let _ = self.flush(now);
                return true;
            }
        }
        now.duration_since(self.last_activity) > IDLE_TIMEOUT
    }
}

/// Stops a running [`serve`] loop from another thread.
#[derive(Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

/// A bound listener and its poll, ready to be served on a thread.
pub struct Listener {
    poll: Poll,
    listener: TcpListener,
    local: SocketAddr,
    stop: StopHandle,
}

impl Listener {
    /// Bind `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Listener {
            poll,
            listener,
            local,
            stop: StopHandle {
                stop: Arc::new(AtomicBool::new(false)),
                waker,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serve until stopped. Connections still open then are closed.
    pub fn serve(self, handler: &mut dyn Handler) -> io::Result<()> {
        let Listener {
            mut poll,
            listener,
            stop,
            ..
        } = self;
        let mut events = Events::with_capacity(256);
        let mut conns: HashMap<usize, Conn> = HashMap::new();
        let mut next_id = FIRST_CONN;
        let mut last_sweep = Instant::now();
        loop {
            let busy = conns.values().any(|c| c.pending);
            let timeout = if busy {
                Duration::ZERO
            } else {
                handler.tick_in().min(Duration::from_secs(1))
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            if stop.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let now = Instant::now();
            let mut ready: Vec<usize> = Vec::new();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => loop {
                        match listener.accept() {
                            Ok((mut sock, peer)) => {
                                if conns.len() >= MAX_CONNECTIONS {
                                    tracing::warn!(%peer, "admin: too many connections; closing");
                                    continue;
                                }
                                let _ = sock.set_nodelay(true);
                                let id = next_id;
                                next_id += 1;
                                if poll
                                    .registry()
                                    .register(
                                        &mut sock,
                                        Token(id),
                                        Interest::READABLE | Interest::WRITABLE,
                                    )
                                    .is_ok()
                                {
                                    conns.insert(id, Conn::new(sock, peer, now));
                                    ready.push(id);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "admin: accept failed");
                                break;
                            }
                        }
                    },
                    WAKER => {}
                    Token(id) => ready.push(id),
                }
            }
            ready.extend(conns.iter().filter(|(_, c)| c.pending).map(|(&id, _)| id));
            ready.sort_unstable();
            ready.dedup();
            for id in ready {
                let Some(c) = conns.get_mut(&id) else {
                    continue;
                };
                if let Step::Close = c.drive(handler, now) {
                    if let Some(mut c) = conns.remove(&id) {
                        let _ = poll.registry().deregister(&mut c.sock);
                    }
                }
            }
            handler.tick();
            if now.duration_since(last_sweep) >= Duration::from_millis(500) {
                last_sweep = now;
                let dead: Vec<usize> = conns
                    .iter_mut()
                    .filter_map(|(&id, c)| c.timed_out(now).then_some(id))
                    .collect();
                for id in dead {
                    if let Some(mut c) = conns.remove(&id) {
                        let _ = poll.registry().deregister(&mut c.sock);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn parses_a_request_with_query_and_body() {
        let raw = b"POST /api/v1/x%20y?number=10%2B1&status=Registered&flag HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
        let Parsed::Complete(r, used) = parse_request(raw, peer()) else {
            panic!()
        };
        assert_eq!(used, raw.len() - 3);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/v1/x y");
        assert_eq!(r.param("number"), Some("10+1"));
        assert_eq!(r.param("status"), Some("Registered"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.body, b"abc");
        assert_eq!(r.header("host"), Some("a"));
    }

    #[test]
    fn partial_and_bad_requests() {
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", peer()),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", peer()),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_request(b"\x01\x02 nonsense\r\n\r\n", peer()),
            Parsed::Error(400, _)
        ));
        assert!(matches!(
            parse_request(
                b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                peer()
            ),
            Parsed::Error(413, _)
        ));
        assert!(matches!(
            parse_request(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                peer()
            ),
            Parsed::Error(411, _)
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_request(&many, peer()),
            Parsed::Error(431, _)
        ));
        let big = vec![b'a'; MAX_REQUEST_BYTES + 10];
        let mut huge = b"GET /".to_vec();
        huge.extend_from_slice(&big);
        assert!(matches!(
            parse_request(&huge, peer()),
            Parsed::Error(413, _)
        ));
    }

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%zz", false), "%zz");
        assert_eq!(percent_decode("%41%42", false), "AB");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("%", true), "%");
    }

    #[test]
    fn chunks_and_heads() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, b"");
        assert_eq!(out, b"5\r\nhello\r\n");
        let mut head = Vec::new();
        let r = Response::new(404, "application/json", b"{}".to_vec());
        write_head(&mut head, &r, true);
        let h = String::from_utf8(head).unwrap();
        assert!(h.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(h.contains("Content-Length: 2\r\n"));
        assert!(h.contains("Connection: close\r\n"));
        assert!(h.ends_with("\r\n\r\n"));
    }
}
