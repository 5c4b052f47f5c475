//! The management side: an HTTP server on its own thread serving the JSON API (`/api/v1/...`),
//! its OpenAPI description and Prometheus `/metrics`; and the `sipshard ctl` client.
//!
//! Owns: the admin thread ([`start`] → [`AdminHandle`]), the routes, bearer-token checks, the
//! registration-count trend (a bounded ring sampled every `admin.trend_interval`), JSON and CSV
//! rendering.
//! Must not: touch shard state except through mail with bounded waits ([`RegistrarClient`],
//! [`AdminClient`]) and the shards' published atomic counters ([`Control::stats`]); so a slow or
//! busy admin side never blocks a shard. Big answers (the CSV export) are streamed a slice at a
//! time, never held whole.

pub mod calls;
pub mod ctl;
pub mod http;
pub mod metrics;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cdr::writer::CdrMonitor;
use crate::config::{mask_ip, AdminConfig};
use crate::dispatch::{GatewayStat, OwnedBindingRow, OwnedListFilter, ShardId, TrunkRow};
use crate::registrar::core::{IpFilter, Status};
use crate::registrar::RemovalReason;
use crate::server::{AdminClient, QueryError, RegistrarClient};
use crate::shard::{Clock, Control};
use crate::timer::Millis;

use http::{Body, Handler, Listener, Producer, Request, Response, StopHandle};

/// Every route served: (method, path template). The OpenAPI description must list exactly these
/// (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/registrations"),
    ("GET", "/api/v1/registrations/export.csv"),
    ("GET", "/api/v1/registrations/{aor}"),
    ("DELETE", "/api/v1/registrations/{aor}"),
    ("GET", "/api/v1/analysis/trend"),
    ("GET", "/api/v1/analysis/networks"),
    ("GET", "/api/v1/analysis/user-agents"),
    ("GET", "/api/v1/analysis/failed"),
    ("GET", "/api/v1/trunks"),
    ("POST", "/api/v1/trunks/{name}/reregister"),
    ("GET", "/api/v1/gateways"),
    ("GET", "/api/v1/calls"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/metrics"),
];

/// The management web page: one self-contained file (styles and script inline, no CDN), so it
/// works offline; built into the binary.
pub const INDEX_HTML: &str = include_str!("web/index.html");

/// What the page may load: only itself and the API (no third-party hosts).
const PAGE_CSP: &str =
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'";

/// The OpenAPI 3 description of [`ROUTES`].
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Rows per page when `limit` is not given, and the most one page may ask for.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Deepest page start: each shard keeps and sends `offset + limit` rows to build a page, so
/// deeper walks go through the export (or narrower filters) instead.
pub const MAX_OFFSET: usize = 100_000;
/// Rows per slice when walking the whole table (export, networks).
pub const SCAN_SLICE: usize = 1000;
/// The trend ring keeps at least this long.
pub const TREND_KEEP: Duration = Duration::from_secs(24 * 3600);

/// What the admin thread works with.
pub struct AdminContext {
    pub config: AdminConfig,
    pub registrar: Option<RegistrarClient>,
    pub admin: Option<AdminClient>,
    pub control: Control,
    pub clock: Clock,
    pub shards: usize,
    /// The CDR writer's counts and recent-calls ring (None: CDRs are off).
    pub cdr: Option<CdrMonitor>,
}

/// The running admin server.
pub struct AdminHandle {
    local: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl AdminHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stop serving and wait for the thread (open connections are closed).
    pub fn stop(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "admin server ended with an error"),
                Err(_) => tracing::error!("admin server thread panicked"),
            }
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Bind the admin listener (an error here stops the server's start).
pub fn bind(config: &AdminConfig) -> io::Result<Listener> {
    Listener::bind(config.listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("admin.listen {}: cannot listen: {e}", config.listen),
        )
    })
}

/// Serve `listener` on a new thread named `admin`.
pub fn start(listener: Listener, ctx: AdminContext) -> io::Result<AdminHandle> {
    let local = listener.local_addr();
    let stop = listener.stop_handle();
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let mut api = Api::new(ctx);
            listener.serve(&mut api)
        })?;
    Ok(AdminHandle {
        local,
        stop,
        thread: Some(thread),
    })
}

/// Milliseconds since the Unix epoch now.
fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `2026-11-21T07:01:02Z` for a Unix time in ms (UTC).
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Registered => "Registered",
        Status::Expiring => "Expiring",
        Status::Unregistered => "Unregistered",
    }
}

fn removal_name(r: RemovalReason) -> &'static str {
    match r {
        RemovalReason::Unregistered => "unregistered",
        RemovalReason::Expired => "expired",
        RemovalReason::Replaced => "replaced",
        RemovalReason::Forced => "forced",
        RemovalReason::KeepaliveFailed => "keepalive failed",
    }
}

/// The network a source belongs to for the breakdown (/24 for IPv4, /48 for IPv6): its masked
/// address and prefix length.
pub fn network_key(ip: IpAddr) -> (IpAddr, u8) {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    (mask_ip(ip, prefix), prefix)
}

/// [`network_key`] as text, e.g. `192.0.2.0/24`.
pub fn network_of(ip: IpAddr) -> String {
    let (net, prefix) = network_key(ip);
    format!("{net}/{prefix}")
}

/// Parse `IP` or `IP/PREFIX` for the `ip` filter.
fn parse_ip_filter(s: &str) -> Option<IpFilter> {
    match s.split_once('/') {
        Some((ip, len)) => {
            let ip: IpAddr = ip.trim().parse().ok()?;
            let ip = ip.to_canonical();
            let len: u8 = len.trim().parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (len <= max).then(|| IpFilter::Net(mask_ip(ip, len), len))
        }
        None => s
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| IpFilter::Addr(ip.to_canonical())),
    }
}

/// `sip:1000@Example.COM` or `1000@example.com` → the registrar's AOR key `1000@example.com`.
pub fn aor_key_of(text: &str) -> Vec<u8> {
    let t = text.trim();
    let t = t
        .strip_prefix("sips:")
        .or_else(|| t.strip_prefix("sip:"))
        .unwrap_or(t);
    match t.rsplit_once('@') {
        Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()).into_bytes(),
        None => t.to_ascii_lowercase().into_bytes(),
    }
}

/// CSV field: quoted when it holds a comma, quote, CR or LF.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

pub const CSV_HEADER: &str =
    "aor,contact,source_ip,source_port,account,user_agent,registered_at,expires_in_s,status,nat,call_id\r\n";

/// Converts the shards' clock to wall time.
#[derive(Clone, Copy)]
struct WallClock {
    /// Unix ms when the shards' clock read 0.
    epoch0_ms: u64,
}

impl WallClock {
    fn new(clock: Clock) -> Self {
        WallClock {
            epoch0_ms: unix_ms_now().saturating_sub(clock.now()),
        }
    }
    fn unix_ms(&self, at: Millis) -> u64 {
        self.epoch0_ms.saturating_add(at)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn row_json(w: WallClock, r: &OwnedBindingRow) -> Value {
    let aor = lossy(&r.aor);
    let number = aor.split('@').next().unwrap_or("").to_string();
    let at = w.unix_ms(r.registered_at);
    json!({
        "aor": aor,
        "number": number,
        "contact": lossy(&r.contact),
        "source": r.source.to_string(),
        "source_ip": r.source.ip().to_canonical().to_string(),
        "source_port": r.source.port(),
        "account": r.account.as_deref(),
        "user_agent": lossy(&r.user_agent),
        "registered_at": iso8601(at),
        "registered_at_unix_ms": at,
        "expires_in_s": r.expires_in_s,
        "status": status_name(r.status),
        "nat": r.nat,
        "call_id": lossy(&r.call_id),
        "removal": r.removal.map(removal_name),
    })
}

fn csv_row(out: &mut String, w: WallClock, r: &OwnedBindingRow) {
    csv_field(out, &lossy(&r.aor));
    out.push(',');
    csv_field(out, &lossy(&r.contact));
    out.push(',');
    out.push_str(&r.source.ip().to_canonical().to_string());
    out.push(',');
    out.push_str(&r.source.port().to_string());
    out.push(',');
    csv_field(out, r.account.as_deref().unwrap_or(""));
    out.push(',');
    csv_field(out, &lossy(&r.user_agent));
    out.push(',');
    out.push_str(&iso8601(w.unix_ms(r.registered_at)));
    out.push(',');
    out.push_str(&r.expires_in_s.to_string());
    out.push(',');
    out.push_str(status_name(r.status));
    out.push(',');
    out.push_str(if r.nat { "1" } else { "0" });
    out.push(',');
    csv_field(out, &lossy(&r.call_id));
    out.push_str("\r\n");
}

/// One gateway (counters already summed over shards) as JSON.
pub fn gateway_json(g: &GatewayStat) -> Value {
    let c = &g.counters;
    json!({
        "name": g.name,
        "address": g.address.to_string(),
        "up": g.up,
        "state": if g.up { "up" } else { "down" },
        "active_calls": g.active_calls,
        "attempts": c.attempts,
        "answered": c.answered,
        "failures": {
            "no_response": c.fail_no_response,
            "trying_timeout": c.fail_trying_timeout,
            "failover_status": c.fail_status,
        },
        "failures_total": c.fail_no_response + c.fail_trying_timeout + c.fail_status,
        "ringing_timeout": c.ringing_timeout,
        "rejected": c.rejected,
        "skipped": { "down": c.skipped_down, "full": c.skipped_full },
        "marked_down": c.marked_down,
        "marked_up": c.marked_up,
        "probes_sent": c.probes_sent,
    })
}

/// Walks every shard's live bindings a slice at a time (shard 0..n, slot 0..).
struct Walk {
    client: RegistrarClient,
    shard: ShardId,
    from: u32,
}

impl Walk {
    fn new(client: RegistrarClient) -> Walk {
        Walk {
            client,
            shard: 0,
            from: 0,
        }
    }

    /// The next non-empty slice; None at the end.
    fn next_slice(&mut self) -> Result<Option<Vec<OwnedBindingRow>>, QueryError> {
        while self.shard < self.client.shard_count() {
            let (rows, next) = self.client.scan(self.shard, self.from, SCAN_SLICE)?;
            match next {
                Some(n) => self.from = n,
                None => {
                    self.shard += 1;
                    self.from = 0;
                }
            }
            if !rows.is_empty() {
                return Ok(Some(rows));
            }
        }
        Ok(None)
    }
}

/// The streamed CSV export.
struct CsvExport {
    walk: Walk,
    wall: WallClock,
    header_sent: bool,
}

impl Producer for CsvExport {
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        if !self.header_sent {
            self.header_sent = true;
            return Ok(Some(CSV_HEADER.as_bytes().to_vec()));
        }
        match self.walk.next_slice().map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(rows) => {
                let mut s = String::with_capacity(rows.len() * 160);
                for r in &rows {
                    csv_row(&mut s, self.wall, r);
                }
                Ok(Some(s.into_bytes()))
            }
        }
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::new(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": msg.into() }))
}

fn query_error(e: QueryError) -> Response {
    let status = match e {
        QueryError::Timeout => 504,
        QueryError::Unavailable(_) => 503,
        QueryError::Unexpected => 500,
    };
    error(status, e.to_string())
}

/// Constant-time comparison of two byte strings (length is not hidden).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_usize(req: &Request, name: &str, default: usize) -> Result<usize, Response> {
    match req.param(name) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| error(400, format!("{name} must be a whole number, got `{v}`"))),
    }
}

/// The routes and the admin thread's state.
pub struct Api {
    ctx: AdminContext,
    wall: WallClock,
    started: Instant,
    trend: VecDeque<(u64, u64)>,
    trend_cap: usize,
    next_sample: Instant,
}

impl Api {
    pub fn new(ctx: AdminContext) -> Api {
        let interval = u64::from(ctx.config.trend_interval_s.max(1));
        let trend_cap = (TREND_KEEP.as_secs() / interval + 1) as usize;
        Api {
            wall: WallClock::new(ctx.clock),
            ctx,
            started: Instant::now(),
            trend: VecDeque::with_capacity(trend_cap.min(4096)),
            trend_cap,
            next_sample: Instant::now(),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.ctx.config.trend_interval_s.max(1)))
    }

    fn sample(&mut self) {
        let Some(reg) = &self.ctx.registrar else {
            return;
        };
        match reg.counts() {
            Ok(c) => {
                if self.trend.len() >= self.trend_cap {
                    self.trend.pop_front();
                }
                self.trend.push_back((unix_ms_now(), c.bindings_live));
            }
            Err(e) => tracing::debug!(error = %e, "admin: trend sample skipped"),
        }
    }

    fn registrar(&self) -> Result<&RegistrarClient, Response> {
        self.ctx
            .registrar
            .as_ref()
            .ok_or_else(|| error(503, "this server has no registrar"))
    }

    fn admin(&self) -> Result<&AdminClient, Response> {
        self.ctx
            .admin
            .as_ref()
            .ok_or_else(|| error(503, "this server's shards take no management queries"))
    }

    /// The token rule: every mutating call needs it; every call when listening beyond loopback.
    fn authorize(&self, req: &Request) -> Result<(), Response> {
        // Anything but a read (GET, HEAD, OPTIONS) counts as a change, unknown methods included.
        let mutating = !matches!(req.method.as_str(), "GET" | "HEAD" | "OPTIONS");
        if !mutating && !self.ctx.config.token_required_for_all() {
            return Ok(());
        }
        let token = self.ctx.config.token.as_bytes();
        if token.is_empty() {
            return Err(error(
                403,
                "changes are disabled: no admin.token is configured",
            ));
        }
        let given = req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match given {
            Some(t) if same_secret(t.as_bytes(), token) => Ok(()),
            _ => Err(error(401, "a valid bearer token is required")
                .with_header("WWW-Authenticate", "Bearer realm=\"sipshard\"")),
        }
    }

    fn route(&mut self, req: &Request) -> Result<Response, Response> {
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let m = req.method.as_str();
        match (m, segs.as_slice()) {
            ("GET", []) => Ok(page()),
            ("GET", ["metrics"]) => self.metrics(),
            ("GET", ["api", "v1", "openapi.json"]) => Ok(Response::new(
                200,
                "application/json",
                OPENAPI_JSON.as_bytes().to_vec(),
            )),
            ("GET", ["api", "v1", "status"]) => self.status(),
            ("GET", ["api", "v1", "registrations"]) => self.list(req),
            ("GET", ["api", "v1", "registrations", "export.csv"]) => self.export(),
            ("GET", ["api", "v1", "registrations", aor]) => self.details(aor),
            ("DELETE", ["api", "v1", "registrations", aor]) => self.unregister(aor),
            ("GET", ["api", "v1", "analysis", "trend"]) => Ok(self.trend()),
            ("GET", ["api", "v1", "analysis", "networks"]) => self.networks(req),
            ("GET", ["api", "v1", "analysis", "user-agents"]) => self.user_agents(),
            ("GET", ["api", "v1", "analysis", "failed"]) => self.failed(req),
            ("GET", ["api", "v1", "trunks"]) => self.trunks(),
            ("POST", ["api", "v1", "trunks", name, "reregister"]) => self.reregister(name),
            ("GET", ["api", "v1", "gateways"]) => self.gateways(),
            ("GET", ["api", "v1", "calls"]) => self.calls(req),
            (_, segs) => {
                // Known path, other method → 405 with Allow; else 404.
                let allowed: Vec<&str> = ROUTES
                    .iter()
                    .filter(|(_, t)| template_matches(t, segs))
                    .map(|(m, _)| *m)
                    .collect();
                if allowed.is_empty() {
                    Err(error(404, format!("no such resource: {}", req.path)))
                } else {
                    Err(error(405, format!("{m} is not allowed here"))
                        .with_header("Allow", allowed.join(", ")))
                }
            }
        }
    }

    fn status(&self) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let c = reg.counts().map_err(query_error)?;
        let mut total = crate::shard::ShardStats::default();
        for s in self.ctx.control.stats() {
            total += s;
        }
        let runtime: serde_json::Map<String, Value> = total
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Ok(json_response(
            200,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
                "shards": self.ctx.shards,
                "bindings_live": c.bindings_live,
                "bindings_nat": c.nat_bindings,
                "runtime": runtime,
            }),
        ))
    }

    fn list(&self, req: &Request) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let offset = parse_usize(req, "offset", 0)?;
        let limit = parse_usize(req, "limit", DEFAULT_LIMIT)?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(error(400, format!("limit must be 1..={MAX_LIMIT}")));
        }
        if offset > MAX_OFFSET {
            return Err(error(
                400,
                format!(
                    "offset must be 0..={MAX_OFFSET}: narrow the filters, or walk the whole \
                     table with /api/v1/registrations/export.csv"
                ),
            ));
        }
        let mut filter = OwnedListFilter::default();
        if let Some(n) = req.param("number").filter(|s| !s.is_empty()) {
            filter.number = Some(n.as_bytes().into());
        }
        if let Some(ip) = req.param("ip").filter(|s| !s.is_empty()) {
            filter.ip =
                Some(parse_ip_filter(ip).ok_or_else(|| {
                    error(400, format!("ip must be IP or IP/PREFIX, got `{ip}`"))
                })?);
        }
        if let Some(a) = req.param("account").filter(|s| !s.is_empty()) {
            filter.account = Some(a.into());
        }
        if let Some(s) = req.param("status").filter(|s| !s.is_empty()) {
            filter.status = Some(match s.to_ascii_lowercase().as_str() {
                "registered" => Status::Registered,
                "expiring" => Status::Expiring,
                "unregistered" => Status::Unregistered,
                _ => {
                    return Err(error(
                        400,
                        format!("status must be Registered, Expiring or Unregistered, got `{s}`"),
                    ))
                }
            });
        }
        let page = reg.list(&filter, offset, limit).map_err(query_error)?;
        let rows: Vec<Value> = page.rows.iter().map(|r| row_json(self.wall, r)).collect();
        Ok(json_response(
            200,
            &json!({ "total": page.total, "offset": offset, "limit": limit, "rows": rows }),
        ))
    }

    fn details(&self, aor: &str) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let key = aor_key_of(aor);
        let rows = reg.details(&key).map_err(query_error)?;
        let contacts = reg.lookup(&key).map_err(query_error)?;
        if rows.is_empty() {
            return Err(error(404, format!("no live binding for {}", lossy(&key))));
        }
        let bindings: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v = row_json(self.wall, r);
                if let Some(c) = contacts.iter().find(|c| c.uri == r.contact) {
                    v["send_to"] = json!(c.send_to.to_string());
                    v["q"] = json!(c.q.map(|q| f64::from(q) / 1000.0));
                }
                v
            })
            .collect();
        Ok(json_response(
            200,
            &json!({ "aor": lossy(&key), "bindings": bindings }),
        ))
    }

    fn unregister(&self, aor: &str) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let key = aor_key_of(aor);
        let n = reg.force_unregister(&key).map_err(query_error)?;
        if n == 0 {
            return Err(error(404, format!("no binding for {}", lossy(&key))));
        }
        tracing::info!(aor = %lossy(&key), removed = n, "admin: forced unregister");
        Ok(json_response(
            200,
            &json!({ "aor": lossy(&key), "removed": n }),
        ))
    }

    fn export(&self) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let p = CsvExport {
            walk: Walk::new(reg.clone()),
            wall: self.wall,
            header_sent: false,
        };
        Ok(Response {
            status: 200,
            content_type: "text/csv; charset=utf-8",
            headers: vec![(
                "Content-Disposition",
                "attachment; filename=\"registrations.csv\"".to_string(),
            )],
            body: Body::Stream(Box::new(p)),
        })
    }

    fn trend(&self) -> Response {
        let samples: Vec<Value> = self
            .trend
            .iter()
            .map(|&(t, n)| json!({ "at": iso8601(t), "unix_ms": t, "registrations": n }))
            .collect();
        json_response(
            200,
            &json!({
                "interval_s": self.ctx.config.trend_interval_s,
                "capacity": self.trend_cap,
                "samples": samples,
            }),
        )
    }

    fn networks(&self, req: &Request) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let limit = parse_usize(req, "limit", DEFAULT_LIMIT)?;
        let mut walk = Walk::new(reg.clone());
        let mut counts: HashMap<(IpAddr, u8), u64> = HashMap::new();
        let mut total = 0u64;
        while let Some(rows) = walk.next_slice().map_err(query_error)? {
            for r in rows {
                *counts.entry(network_key(r.source.ip())).or_default() += 1;
                total += 1;
            }
        }
        let distinct = counts.len();
        let mut v: Vec<((IpAddr, u8), u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        let nets: Vec<Value> = v
            .into_iter()
            .map(|((net, p), c)| json!({ "network": format!("{net}/{p}"), "count": c }))
            .collect();
        Ok(json_response(
            200,
            &json!({ "total": total, "distinct": distinct, "networks": nets }),
        ))
    }

    fn user_agents(&self) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let v = reg.user_agents().map_err(query_error)?;
        let total: u64 = v.iter().map(|(_, n)| n).sum();
        let rows: Vec<Value> = v
            .iter()
            .map(|(ua, n)| json!({ "user_agent": lossy(ua), "count": n }))
            .collect();
        Ok(json_response(
            200,
            &json!({ "total": total, "user_agents": rows }),
        ))
    }

    fn failed(&self, req: &Request) -> Result<Response, Response> {
        let reg = self.registrar()?;
        let limit = parse_usize(req, "limit", DEFAULT_LIMIT)?.clamp(1, 10_000);
        let v = reg.failed_log(limit).map_err(query_error)?;
        let rows: Vec<Value> = v
            .iter()
            .map(|e| {
                let t = self.wall.unix_ms(e.at);
                json!({
                    "at": iso8601(t),
                    "unix_ms": t,
                    "source": e.source.to_string(),
                    "account": &*e.account,
                    "reason": e.reason.as_str(),
                })
            })
            .collect();
        Ok(json_response(200, &json!({ "entries": rows })))
    }

    fn trunk_json(&self, t: &TrunkRow) -> Value {
        let when = |at: Option<Millis>| at.map(|a| iso8601(self.wall.unix_ms(a)));
        json!({
            "name": t.name,
            "state": t.state,
            "shard": t.shard,
            "registrar": t.registrar,
            "outbound_proxy": t.outbound_proxy,
            "username": t.username,
            "requested_expiry_s": t.requested_expiry_s,
            "effective_expiry_s": t.effective_expiry_s,
            "registered_until": when(t.registered_until),
            "next_action_at": when(t.next_action_at),
            "last_status": t.last_status,
            "last_error": t.last_error,
            "requests": t.requests,
            "attempts": t.attempts,
            "successes": t.successes,
            "failures": t.failures,
        })
    }

    fn trunks(&self) -> Result<Response, Response> {
        let a = self.admin()?;
        let v = a.trunks().map_err(query_error)?;
        let rows: Vec<Value> = v.iter().map(|t| self.trunk_json(t)).collect();
        Ok(json_response(200, &json!({ "trunks": rows })))
    }

    fn reregister(&self, name: &str) -> Result<Response, Response> {
        let a = self.admin()?;
        if a.reregister(name).map_err(query_error)? {
            tracing::info!(trunk = name, "admin: forced re-register");
            Ok(json_response(
                200,
                &json!({ "name": name, "started": true }),
            ))
        } else {
            Err(error(404, format!("no running trunk named `{name}`")))
        }
    }

    fn gateways(&self) -> Result<Response, Response> {
        let a = self.admin()?;
        let v = a.gateways().map_err(query_error)?;
        let rows: Vec<Value> = v.iter().map(gateway_json).collect();
        Ok(json_response(200, &json!({ "gateways": rows })))
    }

    fn calls(&self, req: &Request) -> Result<Response, Response> {
        let filter = calls::CallFilter::from_params(|n| req.param(n)).map_err(|e| error(400, e))?;
        let offset = parse_usize(req, "offset", 0)?;
        let limit = parse_usize(req, "limit", DEFAULT_LIMIT)?;
        if limit == 0 || limit > MAX_LIMIT {
            return Err(error(400, format!("limit must be 1..={MAX_LIMIT}")));
        }
        let recent = self.ctx.cdr.as_ref().and_then(|c| c.recent());
        if offset > recent.map_or(0, |r| r.capacity()) {
            return Err(error(
                400,
                format!(
                    "offset must be 0..={} (admin.recent_calls)",
                    recent.map_or(0, |r| r.capacity())
                ),
            ));
        }
        let Some(recent) = recent else {
            let why = if self.ctx.cdr.is_none() {
                "CDRs are off ([cdr] enabled)"
            } else {
                "admin.recent_calls is 0"
            };
            return Ok(json_response(
                200,
                &json!({ "total": 0, "offset": offset, "limit": limit, "held": 0,
                         "capacity": 0, "note": why, "rows": [] }),
            ));
        };
        let wall = recent.wall();
        let snap = recent.snapshot();
        let mut total = 0usize;
        let mut rows = Vec::new();
        for r in &snap.newest_first {
            if filter.matches(r, wall) {
                if total >= offset && rows.len() < limit {
                    rows.push(calls::call_json(r, wall));
                }
                total += 1;
            }
        }
        Ok(json_response(
            200,
            &json!({
                "total": total,
                "offset": offset,
                "limit": limit,
                "held": snap.newest_first.len(),
                "capacity": recent.capacity(),
                "recorded": snap.pushed,
                "rows": rows,
            }),
        ))
    }

    fn metrics(&self) -> Result<Response, Response> {
        let stats = self.ctx.control.stats();
        let (core, reg, trunks, depths, gateways) = match (&self.ctx.admin, &self.ctx.registrar) {
            (Some(a), Some(r)) => (
                a.core_counters().map_err(query_error)?,
                Some(r.counts().map_err(query_error)?),
                a.trunks().map_err(query_error)?,
                a.mailbox_depths(),
                a.gateways().map_err(query_error)?,
            ),
            _ => (Vec::new(), None, Vec::new(), Vec::new(), Vec::new()),
        };
        let text = metrics::render(&metrics::Snapshot {
            shards: &stats,
            core: &core,
            registrar: reg.as_ref(),
            trunks: &trunks,
            mailbox_depths: &depths,
            busy: self.ctx.control.busy(),
            gateways: &gateways,
            cdr: self.ctx.cdr.as_ref().map(CdrMonitor::counts),
            recent_calls: self
                .ctx
                .cdr
                .as_ref()
                .and_then(CdrMonitor::recent)
                .map(|r| r.len()),
        });
        Ok(Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        ))
    }
}

/// Whether `segs` (a path split at '/') fits a route template such as `/api/v1/trunks/{name}`.
fn template_matches(template: &str, segs: &[&str]) -> bool {
    let t: Vec<&str> = template.split('/').skip(1).collect();
    t.len() == segs.len()
        && t.iter()
            .zip(segs)
            .all(|(a, b)| a.starts_with('{') || a == b)
}

fn page() -> Response {
    Response::new(
        200,
        "text/html; charset=utf-8",
        INDEX_HTML.as_bytes().to_vec(),
    )
    .with_header("Content-Security-Policy", PAGE_CSP)
    .with_header("X-Content-Type-Options", "nosniff")
}

impl Handler for Api {
    fn handle(&mut self, req: &Request) -> Response {
        // The page itself is static (no data): a browser cannot send a bearer token when it
        // navigates, so it is served without one; every API call it makes carries the token.
        if req.method == "GET" && req.path == "/" {
            return page();
        }
        if let Err(r) = self.authorize(req) {
            return r;
        }
        match self.route(req) {
            Ok(r) | Err(r) => r,
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next_sample {
            self.sample();
            self.next_sample = now + self.interval();
        }
    }

    fn tick_in(&self) -> Duration {
        self.next_sample.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_222_923_000), "2026-11-21T01:02:03Z");
    }

    #[test]
    fn networks_and_filters() {
        assert_eq!(network_of("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            network_of("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert_eq!(
            network_of("::ffff:192.0.2.9".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            parse_ip_filter("10.1.2.3/8"),
            Some(IpFilter::Net("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(
            parse_ip_filter("10.1.2.3"),
            Some(IpFilter::Addr("10.1.2.3".parse().unwrap()))
        );
        assert_eq!(parse_ip_filter("10.1.2.3/33"), None);
        assert_eq!(parse_ip_filter("nope"), None);
    }

    #[test]
    fn aor_keys_from_user_text() {
        assert_eq!(aor_key_of("sip:1000@Example.COM"), b"1000@example.com");
        assert_eq!(aor_key_of("Alice@HOST"), b"Alice@host");
        assert_eq!(aor_key_of("sips:a@b"), b"a@b");
    }

    #[test]
    fn csv_quoting() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\"");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn openapi_lists_every_route_and_nothing_else() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["info"]["title"].is_string());
        assert!(doc["info"]["version"].is_string());
        let paths = doc["paths"].as_object().expect("paths");
        for (m, p) in ROUTES {
            let op = &paths
                .get(*p)
                .unwrap_or_else(|| panic!("{p} missing from openapi.json"))[m.to_ascii_lowercase()];
            assert!(op.is_object(), "{m} {p} missing from openapi.json");
            assert!(op["responses"].is_object(), "{m} {p} has no responses");
            // Every {param} of the template is declared as a path parameter.
            for seg in p.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(paths[*p]["parameters"].as_array().into_iter().flatten())
                    .any(|prm| prm["name"] == name && prm["in"] == "path");
                assert!(declared, "{m} {p}: path parameter {name} not declared");
            }
        }
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"];
        for (p, item) in paths {
            for m in methods {
                if item.get(m).is_some() {
                    assert!(
                        ROUTES
                            .iter()
                            .any(|(rm, rp)| rp == p && rm.eq_ignore_ascii_case(m)),
                        "openapi.json documents {m} {p}, which is not served"
                    );
                }
            }
        }
        // Every $ref points at a schema that exists.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k == "$ref" {
                            out.push(x.as_str().unwrap_or("").to_string());
                        } else {
                            refs(x, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "$ref {r} does not resolve"
            );
        }
    }

    #[test]
    fn templates_match_segments() {
        assert!(template_matches(
            "/api/v1/trunks/{name}/reregister",
            &["api", "v1", "trunks", "x", "reregister"]
        ));
        assert!(!template_matches(
            "/api/v1/trunks",
            &["api", "v1", "trunks", "x"]
        ));
    }
}
