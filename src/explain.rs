//! `fluxgate explain`: one request through the same pipeline the proxy runs, without a
//! network. It prints the route that matched, each stage's outcome, and the denial (with its
//! exact response) or the upstream plan (the headers stripped and set), as text or JSON.
//!
//! It never writes: session lookups go to the configured store (or to one assumed session,
//! `--session`), but nothing is created, revoked or authorized there, no IP-authorization
//! notification is sent, and rate limits are counted in a private local table.

use crate::clock::{self, SharedClock};
use crate::config::{self, Config, StoreSettings};
use crate::credential::{Kind, Sid};
use crate::denial::Denial;
use crate::identity;
use crate::metrics::Metrics;
use crate::net::geoip::GeoIp;
use crate::pipeline::{Pipeline, RequestFacts, RouteId, Runtime, Stage, Verdict};
use crate::policy::ipauth::IpAuth;
use crate::policy::ipauth::notify::Notifier;
use crate::redis_client::Connections;
use crate::session::locations::Ticket;
use crate::session::{SessionCache, SessionRecord, SessionStore, StoreError};
use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What to explain.
#[derive(Debug, Clone)]
pub struct Request {
    pub config: PathBuf,
    /// `METHOD TARGET`, e.g. `GET /v1/users/@me`.
    pub line: String,
    /// `Name: value`.
    pub headers: Vec<String>,
    /// The TCP peer the request comes from.
    pub peer: IpAddr,
    /// Assume this session for any credential: `user=ID[,kind=session|oauth2|bot]
    /// [,scopes=a b][,mfa=true|false][,ip=ADDR]`.
    pub session: Option<String>,
}

/// Why a request could not be explained (a usage problem, not a decision).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Store(String),
}

/// Runs the decision and returns it as JSON (see [`render_text`] for the text form).
pub fn explain(req: &Request) -> Result<Value, ExplainError> {
    let cfg = config::load(&req.config).map_err(|e| ExplainError::Config(e.to_string()))?;
    let (method, target) = request_line(&req.line)?;
    let headers = header_map(&req.headers)?;
    let assumed = req
        .session
        .as_deref()
        .map(|s| assumed_record(s, req.peer))
        .transpose()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExplainError::Store(e.to_string()))?;
    rt.block_on(async {
        let pipeline = pipeline(cfg, assumed)?;
        let request_id = identity::request_id(&headers);
        let facts = RequestFacts {
            method: &method,
            version: http::Version::HTTP_11,
            target: target.as_bytes(),
            headers: &headers,
            peer: req.peer,
            body: None,
            body_read: false,
            length_with_chunked: false,
            request_id: &request_id,
            tls: false,
            authority: None,
        };
        let verdict = pipeline.evaluate(&facts).await;
        Ok(report(
            &pipeline, &method, &target, req.peer, &headers, &verdict,
        ))
    })
}

fn request_line(line: &str) -> Result<(Method, String), ExplainError> {
    let bad = || {
        ExplainError::Input(format!(
            "{line:?} is not a request like 'GET /v1/users/@me'"
        ))
    };
    let (m, t) = line.trim().split_once(' ').ok_or_else(bad)?;
    let method = Method::from_bytes(m.as_bytes()).map_err(|_| bad())?;
    let target = t.trim();
    if target.is_empty() || target.contains(' ') {
        return Err(bad());
    }
    Ok((method, target.to_string()))
}

fn header_map(lines: &[String]) -> Result<HeaderMap, ExplainError> {
    let mut map = HeaderMap::new();
    for l in lines {
        let bad = |what: &str| ExplainError::Input(format!("header {l:?}: {what}"));
        let (name, value) = l
            .split_once(':')
            .ok_or_else(|| bad("write it as 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|_| bad("not a valid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Parses `--session user=…,kind=…,scopes=…,mfa=…,ip=…`. Without `ip`, the session counts as
/// created from the peer (so IP authorization sees a known location).
fn assumed_record(spec: &str, peer: IpAddr) -> Result<SessionRecord, ExplainError> {
    let bad = |m: String| ExplainError::Input(format!("--session {spec:?}: {m}"));
    let mut rec = SessionRecord {
        v: 1,
        user_id: String::new(),
        kind: Kind::Session,
        created_at: clock::system().now_secs(),
        expires_at: None,
        scopes: vec![],
        client_ip: Some(peer.to_string()),
        has_mfa: None,
        flags: None,
        client_id: None,
    };
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
        match k.trim() {
            "user" => rec.user_id = v.trim().to_string(),
            "kind" => {
                rec.kind = Kind::parse(v.trim())
                    .ok_or_else(|| bad(format!("kind {v:?}: use session, oauth2 or bot")))?
            }
            "scopes" => rec.scopes = v.split_whitespace().map(str::to_string).collect(),
            "mfa" => {
                rec.has_mfa = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| bad(format!("mfa {v:?}: use true or false")))?,
                )
            }
            "ip" => rec.client_ip = Some(v.trim().to_string()),
            other => {
                return Err(bad(format!(
                    "unknown key {other:?}; use user, kind, scopes, mfa or ip"
                )));
            }
        }
    }
    if rec.user_id.is_empty() {
        return Err(bad("needs user=ID".into()));
    }
    // The same validation a stored record gets (user id charset and so on).
    crate::session::Session::new(Sid::of("explain"), rec.clone())
        .map_err(|e| bad(e.to_string()))?;
    Ok(rec)
}

/// The pipeline as the proxy would build it, over a store that never writes.
fn pipeline(cfg: Config, assumed: Option<SessionRecord>) -> Result<Arc<Pipeline>, ExplainError> {
    let Config { boot, mut live, .. } = cfg;
    let clock = clock::system();
    let metrics = Arc::new(Metrics::default());
    let inner: Option<Arc<dyn SessionStore>> = match (&assumed, &boot.sessions.store) {
        (Some(_), _) => None,
        // No store file yet: nothing to look up, and explain must not create one.
        (None, StoreSettings::Embedded { path, .. }) if !path.exists() => None,
        (None, StoreSettings::Embedded { path, .. }) => Some(Arc::new(
            crate::session::embedded::EmbeddedStore::open(path, clock.clone()).map_err(|e| {
                ExplainError::Store(format!(
                    "{e} (a running fluxgate holds the embedded store: pass --session to assume one)"
                ))
            })?,
        )),
        (None, StoreSettings::Redis { .. }) => {
            let settings = boot.redis.clone().ok_or_else(|| {
                ExplainError::Config("the Redis store needs [redis] settings".into())
            })?;
            let conns = Connections::new(settings).map_err(ExplainError::Store)?;
            Some(Arc::new(crate::session::redis::RedisStore::new(
                Arc::new(conns),
                clock.clone(),
            )))
        }
    };
    let store = Arc::new(ReadOnly { inner, assumed });
    let sessions = Arc::new(SessionCache::new(
        store,
        clock.clone(),
        metrics.clone(),
        boot.sessions.cache,
    ));
    let geo = Arc::new(
        GeoIp::open(
            boot.geoip.country_db.as_deref(),
            boot.geoip.asn_db.as_deref(),
        )
        .map_err(ExplainError::Config)?,
    );
    let rt = Runtime {
        ip_auth: Arc::new(IpAuth::new(
            boot.ip_auth.settings.clone(),
            sessions.clone(),
            geo.clone(),
            Notifier::new(None, None, metrics.clone()).0,
            clock.clone(),
            metrics.clone(),
        )),
        sessions,
        geo,
        clock: clock.clone() as SharedClock,
        metrics,
        // Limits are counted locally and privately, never in the shared Redis state.
        redis: None,
    };
    let limiter = Arc::new(crate::app::limiter(live.limits.clone(), &rt));
    let sudo =
        crate::app::sudo(live.sudo.take()).map_err(|e| ExplainError::Config(e.to_string()))?;
    let live = crate::app::live(live, &boot.server.limits, &rt, limiter, sudo, None);
    Ok(live.pipeline)
}

/// Reads from the configured store (or answers every sid with the assumed session) and
/// writes nothing: explain is a dry run.
struct ReadOnly {
    inner: Option<Arc<dyn SessionStore>>,
    assumed: Option<SessionRecord>,
}

#[async_trait]
impl SessionStore for ReadOnly {
    fn name(&self) -> &'static str {
        "explain"
    }
    async fn get(&self, sid: &Sid) -> Result<Option<SessionRecord>, StoreError> {
        match (&self.assumed, &self.inner) {
            (Some(r), _) => Ok(Some(r.clone())),
            (None, Some(s)) => s.get(sid).await,
            (None, None) => Ok(None),
        }
    }
    async fn create(&self, _: &Sid, _: &SessionRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn revoke(&self, _: &Sid) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn list_user(&self, _: &str) -> Result<Vec<(Sid, SessionRecord)>, StoreError> {
        Ok(vec![])
    }
    async fn revoke_user(&self, _: &str) -> Result<Vec<Sid>, StoreError> {
        Ok(vec![])
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn locations(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        match (&self.assumed, &self.inner) {
            (None, Some(s)) => s.locations(user_id).await,
            _ => Ok(vec![]),
        }
    }
    async fn add_location(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn open_ticket(&self, t: &Ticket, _: &[u8; 32]) -> Result<Ticket, StoreError> {
        Ok(t.clone())
    }
    async fn ticket(&self, _: &str) -> Result<Option<Ticket>, StoreError> {
        Ok(None)
    }
    async fn save_ticket(&self, _: &Ticket) -> Result<(), StoreError> {
        Ok(())
    }
    async fn add_token(&self, _: &[u8; 32], _: &Ticket) -> Result<(), StoreError> {
        Ok(())
    }
    async fn consume_token(&self, _: &[u8; 32]) -> Result<Option<Ticket>, StoreError> {
        Ok(None)
    }
}

fn route_name(p: &Pipeline, r: RouteId) -> Value {
    match r {
        RouteId::Unrouted => Value::Null,
        RouteId::Default => json!("default"),
        RouteId::Index(i) => json!(p.rules.routes.routes()[i].name),
    }
}

fn stage_outcome(s: Stage, v: &Verdict) -> (&'static str, Value) {
    use std::cmp::Ordering::*;
    match (s.cmp(&v.stage), &v.outcome) {
        (Less, _) => ("passed", Value::Null),
        (Equal, Err(d)) => ("refused", json!(d.reason())),
        (Equal, Ok(a)) => match &a.would_deny {
            Some(d) => ("would refuse (report mode)", json!(d.reason())),
            None => ("admitted", Value::Null),
        },
        (Greater, _) => ("not reached", Value::Null),
    }
}

fn header_pairs(h: &HeaderMap) -> Value {
    Value::Array(
        h.iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect(),
    )
}

fn report(
    p: &Pipeline,
    method: &Method,
    target: &str,
    peer: IpAddr,
    headers: &HeaderMap,
    v: &Verdict,
) -> Value {
    let stages: Vec<Value> = Stage::ALL
        .iter()
        .map(|&s| {
            let (outcome, reason) = stage_outcome(s, v);
            json!({"stage": s.number(), "name": s.name(), "outcome": outcome, "reason": reason})
        })
        .collect();
    let mut out = json!({
        "request": {"method": method.as_str(), "target": target, "peer": peer.to_string()},
        "client_ip": v.client_ip.to_string(),
        "route": route_name(p, v.route),
        "stages": stages,
    });
    match &v.outcome {
        Err(d) => {
            out["decision"] = json!("denied");
            out["denial"] = denial(d);
        }
        Ok(a) => {
            let mut forwarded = headers.clone();
            identity::apply(&mut forwarded, &p.rules.names, &p.rules.cookies, &a.plan);
            // Client headers the upstream will not see as sent: removed, rewritten (cookies)
            // or replaced by fluxgate's own value.
            let removed: Vec<&str> = headers
                .keys()
                .filter(|k| !forwarded.get_all(*k).iter().eq(headers.get_all(*k).iter()))
                .map(|k| k.as_str())
                .collect();
            out["decision"] = json!("admitted");
            if let Some(d) = &a.would_deny {
                // Report mode: the denial an enforcing route would answer, and the anonymous
                // request that goes upstream instead.
                out["decision"] = json!("would_deny");
                out["would_deny"] = denial(d);
            }
            out["auth_kind"] = json!(a.identity.auth_kind());
            out["upstream"] = json!({
                // What the upstream's request line carries (a route may strip a prefix).
                "target": a.plan.path.as_deref().unwrap_or(target),
                "removed": removed,
                "set": a.plan.set.iter().map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())])).collect::<Vec<_>>(),
                "own_cookies_removed": a.plan.strip_own_cookies,
                "headers": header_pairs(&forwarded),
            });
        }
    }
    out
}

fn denial(d: &Denial) -> Value {
    let r = d.to_response();
    json!({
        "status": r.status.as_u16(),
        "reason": d.reason(),
        "headers": r.headers.iter().map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())])).collect::<Vec<_>>(),
        "body": serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
    })
}

/// The report as text for a terminal.
pub fn render_text(r: &Value) -> String {
    use std::fmt::Write;
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let mut out = String::new();
    let req = &r["request"];
    let _ = writeln!(
        out,
        "request   {} {}  (peer {}, client IP {})",
        s(&req["method"]),
        s(&req["target"]),
        s(&req["peer"]),
        s(&r["client_ip"])
    );
    let _ = writeln!(out, "route     {}", s(&r["route"]));
    for st in r["stages"].as_array().into_iter().flatten() {
        let reason = match &st["reason"] {
            Value::Null => String::new(),
            v => format!(" ({})", s(v)),
        };
        let _ = writeln!(
            out,
            "  {:>2} {:<24} {}{}",
            st["stage"].as_u64().unwrap_or(0),
            s(&st["name"]),
            s(&st["outcome"]),
            reason
        );
    }
    if let Some(d) = r.get("denial") {
        let _ = writeln!(out, "decision  denied: {} {}", d["status"], s(&d["reason"]));
        for h in d["headers"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {}: {}", s(&h[0]), s(&h[1]));
        }
        let _ = writeln!(out, "  {}", d["body"]);
    }
    if let Some(d) = r.get("would_deny") {
        let _ = writeln!(
            out,
            "decision  would deny, only reported (route in report mode): {} {}",
            d["status"],
            s(&d["reason"])
        );
        let _ = writeln!(
            out,
            "          enforced, the client would get: {}",
            d["body"]
        );
    }
    if let Some(u) = r.get("upstream") {
        let _ = writeln!(out, "decision  admitted as {}", s(&r["auth_kind"]));
        let removed: Vec<String> = u["removed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let removed = if removed.is_empty() {
            "-".to_string()
        } else {
            removed.join(", ")
        };
        let _ = writeln!(out, "upstream  target: {}", s(&u["target"]));
        let _ = writeln!(out, "          stripped or rewritten: {removed}");
        let _ = writeln!(out, "          set:");
        for h in u["set"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "            {}: {}", s(&h[0]), s(&h[1]));
        }
    }
    out
}
