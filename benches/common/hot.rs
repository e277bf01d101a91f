//! The hot path's set-up, shared by `benches/hot_path.rs` and the allocation budget test
//! (`tests/alloc_budget.rs`): a pipeline with Fluxer-like routes, an embedded store holding
//! one session, and a cache already warmed with it.

use fluxgate::clock;
use fluxgate::credential::{Kind, Sid};
use fluxgate::metrics::Metrics;
use fluxgate::pipeline::{Pipeline, RequestFacts, Runtime};
use fluxgate::session::embedded::EmbeddedStore;
use fluxgate::session::{SessionCache, SessionRecord, SessionStore};
use http::{HeaderMap, HeaderValue, Method};
use std::net::IpAddr;
use std::sync::Arc;

pub const TOKEN: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";

const CONFIG: &str = r#"
[sessions]
# Long enough that the warmed entry outlives the whole bench run.
cache_ttl = "1h"

[client_ip]
trusted_proxies = ["10.0.0.0/8"]

[[route]]
path = "/gateway"
auth = "none"
[[route]]
methods = ["POST"]
path = "/auth/sessions/logout"
[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/delete"
[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/transfer-ownership"
[[route]]
methods = ["DELETE"]
path = "/oauth2/applications/:id"
[[route]]
methods = ["POST"]
path = "/oauth2/applications/:id/bot/reset-token"
[[route]]
methods = ["POST"]
path = "/users/@me/disable"
[[route]]
methods = ["POST"]
path = "/users/@me/delete"
[[route]]
methods = ["POST"]
path = "/users/@me/mfa/totp/enable"
[[route]]
methods = ["PATCH", "DELETE"]
path = "/users/@me/mfa/webauthn/credentials/:id"
[[route]]
methods = ["GET"]
path = "/channels/:channel_id/messages"
scopes = ["messages.read"]
"#;

pub fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Fluxer/1.0"),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
        (
            "cookie",
            "theme=dark; fluxer_session=flx_abcdefghijklmnopqrstuvwxyz0123456789; locale=en",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

pub struct Setup {
    pub pipeline: Pipeline,
    _dir: tempfile::TempDir,
}

pub fn setup() -> Setup {
    let cfg = fluxgate::config::parse(CONFIG, "bench").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = clock::system();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb"), clock.clone()).unwrap());
    let rec = SessionRecord {
        v: 1,
        user_id: "123456789012345678".into(),
        kind: Kind::Session,
        created_at: clock.now_secs(),
        expires_at: None,
        scopes: vec![],
        client_ip: None,
        has_mfa: Some(true),
        flags: None,
        client_id: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.create(&Sid::of(TOKEN), &rec)).unwrap();
    let sessions = Arc::new(SessionCache::new(
        store,
        clock,
        Arc::new(Metrics::default()),
        cfg.boot.sessions.cache,
    ));
    // Warm the cache so every measured lookup is a hit.
    assert!(
        rt.block_on(sessions.resolve(&Sid::of(TOKEN)))
            .unwrap()
            .is_some()
    );
    let mut pipeline = Pipeline::for_test(
        cfg.live.routes,
        Runtime::for_test(sessions, clock::system()),
    );
    pipeline.rules.client_ip = cfg.live.client_ip;
    pipeline.rules.secrets = cfg.live.secrets;
    pipeline.rules.accept = cfg.live.accept;
    pipeline.rules.cookie_name = cfg.live.sessions.cookie_name;
    pipeline.rules.names = cfg.live.identity;
    pipeline.rules.cookies = cfg.live.cookies;
    Setup {
        pipeline,
        _dir: dir,
    }
}

/// The facts of `GET /v1/channels/…/messages` with `headers` from `peer`.
pub fn facts<'a>(
    headers: &'a HeaderMap,
    peer: IpAddr,
    request_id: &'a HeaderValue,
) -> RequestFacts<'a> {
    RequestFacts {
        method: &Method::GET,
        version: http::Version::HTTP_11,
        length_with_chunked: false,
        body_read: false,
        target: b"/v1/channels/123456789/messages?limit=50",
        headers,
        peer,
        body: None,
        request_id,
        tls: false,
        authority: None,
    }
}
