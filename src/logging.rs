//! Logs: tracing for everything, plus a fast path for the one access line per request.
//!
//! Every line goes to stderr in batches written by one background thread (`logging_batch.rs`),
//! so a request never waits on `write(2)` and lines from different sources never interleave.
//! Nothing is dropped: when too much is waiting, the logging call waits.
//!
//! The access line is not a tracing event: with tracing's JSON layer, the access log cost about
//! 15 % of throughput at 28k req/s on one core (measured). It is written into a reused
//! per-thread buffer, in the same shape as tracing's lines (`timestamp`, `level`, `fields`,
//! `target`): the keys and numbers directly, every string by serde_json's escaper, so no
//! header or path byte can break the line ([`json`]).

use crate::credential::Sid;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
#[cfg(test)]
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Logfmt,
    Pretty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Where access lines go, once logging is set up (and in which format).
static ACCESS: OnceLock<(Arc<Batcher>, LogFormat)> = OnceLock::new();

/// Keeps the log thread running; dropping it writes what is queued.
pub struct LogGuard {
    batcher: Option<(Arc<Batcher>, std::thread::JoinHandle<()>)>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some((batcher, thread)) = self.batcher.take() {
            batcher.close();
            let _ = thread.join();
        }
    }
}

/// Sets up logging on stderr. Keep the guard until exit: dropping it flushes.
pub fn init(l: &LoggingSettings) -> LogGuard {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(filter_directives(&l.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (batcher, thread) = Batcher::start(Box::new(std::io::stderr()));
    if ACCESS.set((batcher.clone(), l.format)).is_err() {
        // Set up once already (a second `init` in one process): this batcher is unused.
        batcher.close();
        let _ = thread.join();
        return LogGuard { batcher: None };
    }
    let writer = MakeEventWriter(batcher.clone());
    let registry = tracing_subscriber::registry().with(filter);
    let result = match l.format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .try_init(),
        LogFormat::Logfmt => registry
            .with(tracing_logfmt::builder().layer().with_writer(writer))
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init(),
    };
    let _ = result;
    LogGuard {
        batcher: Some((batcher, thread)),
    }
}

/// The tracing filter for `logging.level`. rustls warns once per handshake about what a client
/// sent (an IP address as SNI, which wrk and some libraries send): at `warn` that is one line
/// per connection, for anyone who can open connections. It is kept to errors unless the
/// operator's directive names rustls.
fn filter_directives(level: &str) -> String {
    // SECURITY: a client must not be able to write a log line per connection.
    if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    }
}

/// One request, as the access log records it. Never a token, cookie or secret: only these.
/// Written by [`json`] or [`logfmt`]; field names are a stable interface (dashboards and
/// tests parse them), so add fields, never rename them. The derived `Serialize` (tests only)
/// is the reference [`json`] is checked against.
#[cfg_attr(test, derive(Serialize))]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// The route's configured path pattern (`/users/:id`); absent for the default route.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub route_template: Option<&'a str>,
    /// The request target as received; logged as `path`, see [`log_path`]. `None` when
    /// `logging.access_log_path` is off.
    #[cfg_attr(
        test,
        serde(
            rename = "path",
            skip_serializing_if = "Option::is_none",
            serialize_with = "ser_path"
        )
    )]
    pub target: Option<&'a [u8]>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub status: u16,
    pub latency_us: u64,
    /// From choosing the upstream to its response head; absent when nothing went upstream.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub upstream_us: Option<u64>,
    pub client_ip: IpAddr,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub user_id: Option<&'a str>,
    /// The session, logged as `sid_prefix`, see [`sid_prefix`].
    #[cfg_attr(
        test,
        serde(
            rename = "sid_prefix",
            skip_serializing_if = "Option::is_none",
            serialize_with = "ser_sid"
        )
    )]
    pub sid: Option<&'a Sid>,
    /// Body bytes read from the client and sent to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The request's trace id (32 hex digits), when it is traced.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub trace_id: Option<&'a str>,
}

/// The longest path logged, in bytes (cut back to a character boundary).
pub const PATH_MAX: usize = 256;

/// The path as logged: the target without its query (or fragment), invalid UTF-8 replaced by
/// U+FFFD, at most [`PATH_MAX`] bytes (the serializer escapes the rest).
pub fn log_path(target: &[u8]) -> Cow<'_, str> {
    // SECURITY: the query string is never logged: it may carry tokens (`?token=`, OAuth2
    // `code=`, signed-URL signatures), and logs are read by more people than sessions should be.
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let path = &target[..end];
    let mut cut = path.len().min(PATH_MAX);
    // Back off at most 3 continuation bytes so a multi-byte character is not split.
    for _ in 0..3 {
        if cut < path.len() && cut > 0 && path[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
    }
    let mut text = String::from_utf8_lossy(&path[..cut]);
    // Invalid bytes became U+FFFD (3 bytes each): cut the text again.
    if text.len() > PATH_MAX {
        // `str::floor_char_boundary` is newer than the crate's rust-version.
        let cut = (0..=PATH_MAX)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.to_mut().truncate(cut);
    }
    text
}

/// The first 8 characters of the session id's base64url form (48 of its 256 bits): enough to
/// follow one session through the log, never enough to look it up.
pub fn sid_prefix(sid: &Sid) -> [u8; 8] {
    // SECURITY: never the whole sid (it names the session in the store and the admin API) nor
    // the token it hashes; 6 bytes are exactly the first 8 characters of `Sid::encode`.
    let mut out = [0u8; 8];
    let _ = URL_SAFE_NO_PAD.encode_slice(&sid.0[..6], &mut out);
    out
}

#[cfg(test)]
fn ser_path<S: Serializer>(target: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    match target {
        Some(t) => s.serialize_str(&log_path(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
fn ser_sid<S: Serializer>(sid: &Option<&Sid>, s: S) -> Result<S::Ok, S::Error> {
    match sid {
        Some(sid) => s.serialize_str(std::str::from_utf8(&sid_prefix(sid)).unwrap_or("-")),
        None => s.serialize_none(),
    }
}

/// The JSON line around the fields, in tracing's own shape: the reference for [`json`].
#[cfg(test)]
#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'static str,
    fields: &'a AccessLine<'a>,
    target: &'static str,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Writes the access line. The access log is asked for on its own (`logging.access_log`), so
/// `logging.level` does not silence it. The line is formatted here, into this thread's reused
/// buffer, and queued whole; the background thread does the `write(2)`.
pub fn access(line: &AccessLine<'_>) {
    let Some((out, format)) = ACCESS.get() else {
        // Logging was not set up through `init` (library use, some tests): use tracing.
        tracing::info!(
            target: "fluxgate::access",
            request_id = line.request_id,
            method = line.method,
            route = line.route,
            route_template = line.route_template,
            path = line.target.map(|t| log_path(t).into_owned()),
            decision = line.decision,
            reason = line.reason,
            status = line.status,
            latency_us = line.latency_us,
            upstream_us = line.upstream_us,
            client_ip = %line.client_ip,
            user_id = line.user_id,
            bytes_in = line.bytes_in,
            bytes_out = line.bytes_out,
            trace_id = line.trace_id,
        );
        return;
    };
    BUF.with_borrow_mut(|b| {
        b.clear();
        match format {
            LogFormat::Json | LogFormat::Pretty => json(b, line, crate::clock::unix_now()),
            LogFormat::Logfmt => logfmt(b, line),
        }
        // Whole lines into the batch (`logging_batch.rs`), written by a background thread.
        out.push(b, false);
    });
}

/// The JSON line of `l` at `now` (Unix time), with its newline.
///
/// Written by hand around serde_json's string escaper rather than by serializing a derived
/// struct: that cost about 8k instructions a line, over half of them escaping the constant keys
/// byte by byte and formatting the time and numbers through `core::fmt` (callgrind, stop 25).
/// Here the keys and the constants are copied, numbers go through `itoa`, and every string
/// (whatever a request put in it) is still escaped by serde_json. A property test checks that
/// the bytes equal the derived struct's serialization for any input.
fn json(b: &mut Vec<u8>, l: &AccessLine<'_>, now: std::time::Duration) {
    let mut n = itoa::Buffer::new();
    b.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(b, now);
    b.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"request_id\":");
    json_str(b, l.request_id);
    b.extend_from_slice(b",\"method\":");
    json_str(b, l.method);
    b.extend_from_slice(b",\"route\":");
    json_str(b, l.route);
    if let Some(t) = l.route_template {
        b.extend_from_slice(b",\"route_template\":");
        json_str(b, t);
    }
    if let Some(target) = l.target {
        b.extend_from_slice(b",\"path\":");
        json_str(b, &log_path(target));
    }
    b.extend_from_slice(b",\"decision\":");
    json_str(b, l.decision);
    b.extend_from_slice(b",\"reason\":");
    json_str(b, l.reason);
    b.extend_from_slice(b",\"status\":");
    b.extend_from_slice(n.format(l.status).as_bytes());
    b.extend_from_slice(b",\"latency_us\":");
    b.extend_from_slice(n.format(l.latency_us).as_bytes());
    if let Some(us) = l.upstream_us {
        b.extend_from_slice(b",\"upstream_us\":");
        b.extend_from_slice(n.format(us).as_bytes());
    }
    b.extend_from_slice(b",\"client_ip\":\"");
    ip(b, l.client_ip);
    b.push(b'"');
    if let Some(u) = l.user_id {
        b.extend_from_slice(b",\"user_id\":");
        json_str(b, u);
    }
    if let Some(sid) = l.sid {
        // base64url: nothing to escape.
        b.extend_from_slice(b",\"sid_prefix\":\"");
        b.extend_from_slice(&sid_prefix(sid));
        b.push(b'"');
    }
    b.extend_from_slice(b",\"bytes_in\":");
    b.extend_from_slice(n.format(l.bytes_in).as_bytes());
    b.extend_from_slice(b",\"bytes_out\":");
    b.extend_from_slice(n.format(l.bytes_out).as_bytes());
    if let Some(t) = l.trace_id {
        b.extend_from_slice(b",\"trace_id\":");
        json_str(b, t);
    }
    b.extend_from_slice(b"},\"target\":\"fluxgate::access\"}\n");
}

/// `s` as a JSON string: quoted and escaped by serde_json.
fn json_str(b: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

/// An address as `Display` writes it; IPv4 without `core::fmt`.
fn ip(b: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                b.extend_from_slice(n.format(o).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(b, "{ip}");
        }
    }
}

/// [`Timestamp`]'s text, with its digits written directly for years 0 to 9999.
fn timestamp(b: &mut Vec<u8>, now: std::time::Duration) {
    let secs = now.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        let _ = write!(b, "{}", Timestamp(now));
        return;
    }
    let t = secs.rem_euclid(86_400) as u32;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u32);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, t / 3600);
    put(14, 2, t / 60 % 60);
    put(17, 2, t % 60);
    put(20, 6, now.subsec_micros());
    b.extend_from_slice(&out);
}

/// The same fields as [`json`], as `key=value` pairs. Hand-written: tracing-logfmt is a layer,
/// not a serializer, and a line of known fields needs only the quoting rule below.
fn logfmt(b: &mut Vec<u8>, l: &AccessLine<'_>) {
    let _ = write!(
        b,
        "ts={} level=info target=fluxgate::access request_id=",
        Timestamp(crate::clock::unix_now())
    );
    logfmt_str(b, l.request_id);
    b.extend_from_slice(b" method=");
    logfmt_str(b, l.method);
    b.extend_from_slice(b" route=");
    logfmt_str(b, l.route);
    if let Some(t) = l.route_template {
        b.extend_from_slice(b" route_template=");
        logfmt_str(b, t);
    }
    if let Some(target) = l.target {
        b.extend_from_slice(b" path=");
        logfmt_str(b, &log_path(target));
    }
    let _ = write!(
        b,
        " decision={} reason={} status={} latency_us={}",
        l.decision, l.reason, l.status, l.latency_us
    );
    if let Some(us) = l.upstream_us {
        let _ = write!(b, " upstream_us={us}");
    }
    let _ = write!(b, " client_ip={}", l.client_ip);
    if let Some(u) = l.user_id {
        b.extend_from_slice(b" user_id=");
        logfmt_str(b, u);
    }
    if let Some(sid) = l.sid {
        b.extend_from_slice(b" sid_prefix=");
        b.extend_from_slice(&sid_prefix(sid));
    }
    let _ = write!(b, " bytes_in={} bytes_out={}", l.bytes_in, l.bytes_out);
    if let Some(t) = l.trace_id {
        b.extend_from_slice(b" trace_id=");
        logfmt_str(b, t);
    }
    b.push(b'\n');
}

/// A bare value when it is plain printable ASCII, else a JSON string (quoted, escaped: no raw
/// newline, quote or control character can end the line or forge a field).
fn logfmt_str(b: &mut Vec<u8>, s: &str) {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'=' && c != b'\\')
    {
        b.extend_from_slice(s.as_bytes());
    } else {
        let _ = serde_json::to_writer(&mut *b, s);
    }
}

/// RFC 3339 UTC with microseconds, like tracing's own lines.
struct Timestamp(std::time::Duration);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs() as i64;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
            t / 3600,
            t / 60 % 60,
            t % 60,
            self.0.subsec_micros()
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[path = "logging_batch.rs"]
mod batch;
use batch::{Batcher, MakeEventWriter};

#[cfg(test)]
#[path = "logging_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "logging_props.rs"]
mod props;
