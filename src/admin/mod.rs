//! The admin listener (loopback by default): health, readiness, Prometheus metrics and the
//! management API (contract §11). Served by hyper, apart from the proxy's listeners, so an
//! operator's probes and scrapes never compete with client traffic for a proxy worker.

mod api;
pub mod client;
mod upstreams;

use crate::clock::SharedClock;
use crate::metrics::{Format, Metrics};
use crate::secret::Secret;
use crate::session::SessionCache;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Largest management request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What the admin handlers work with.
pub struct AdminState {
    pub sessions: Arc<SessionCache>,
    pub metrics: Arc<Metrics>,
    pub secret: Option<Secret>,
    /// To grant sudo mode (when configured).
    pub sudo: Arc<arc_swap::ArcSwapOption<crate::policy::sudo::Sudo>>,
    /// To authorize sessions' creating locations and manage locations.
    pub ip_auth: Arc<crate::policy::ipauth::IpAuth>,
    pub clock: SharedClock,
    /// The proxy's current rules (swapped on reload), for the roll-out mode `/readyz` reports.
    pub live: Arc<arc_swap::ArcSwap<crate::proxy::Live>>,
}

pub type AdminResponse = Response<Full<Bytes>>;

pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> AdminResponse {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static parts make a valid response")
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> AdminResponse {
    json_response(status, json!({ "code": code, "message": message }))
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
            });
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, state: &AdminState) -> AdminResponse {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    match (&parts.method, path.as_str()) {
        (&Method::GET, "/livez") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/readyz") => readyz(state).await,
        (&Method::GET, crate::identity::keys::JWKS_PATH) => jwks(state),
        (&Method::GET, "/metrics") => {
            let accept = parts.headers.get(hyper::header::ACCEPT);
            let format = Format::negotiate(accept.and_then(|v| v.to_str().ok()));
            Response::builder()
                .header("content-type", format.content_type())
                .body(Full::new(Bytes::from(upstreams::metrics_text(
                    state, format,
                ))))
                .expect("static parts make a valid response")
        }
        (_, p) if p.starts_with("/v1/") => {
            if let Err(resp) = authorize(&parts.headers, state) {
                return *resp;
            }
            let body = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "BAD_REQUEST",
                        "request body too large or unreadable",
                    );
                }
            };
            api::route(&parts.method, p, &body, state).await
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
    }
}

/// The assertion keys' JWKS, as on the proxy listener: public, so no admin secret is asked.
fn jwks(state: &AdminState) -> AdminResponse {
    let live = state.live.load();
    let Some(ring) = live
        .pipeline
        .rules
        .assertion
        .as_ref()
        .and_then(|a| a.keys())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "assertions are not signed with published keys (identity.assertion_algorithm)",
        );
    };
    Response::builder()
        .header("content-type", "application/jwk-set+json")
        .header("cache-control", crate::identity::keys::JWKS_CACHE_CONTROL)
        .body(Full::new(Bytes::from(ring.jwks(state.clock.now_secs()))))
        .expect("static parts make a valid response")
}

async fn readyz(state: &AdminState) -> AdminResponse {
    let ping = tokio::time::timeout(Duration::from_secs(2), state.sessions.store().ping()).await;
    let (status, body) = match ping {
        Ok(Ok(())) => (StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store is not answering");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "reason": "store"}),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": "store timeout"}),
        ),
    };
    // An upstream with no usable address fails every request routed to it: not ready.
    let down = upstreams::down(state);
    let (status, mut body) = if down.is_empty() || status != StatusCode::OK {
        (status, body)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": "upstream"}),
        )
    };
    body["upstreams_down"] = json!(down);
    // Report mode forwards requests fluxgate would refuse: a probe or a dashboard should see it.
    let (mode, routes) = crate::policy::rollout::summary(&state.live.load().pipeline.rules.routes);
    body["rollout"] = json!(mode);
    body["report_routes"] = json!(routes);
    json_response(status, body)
}

// SECURITY: the management API mints and revokes credentials; without the admin secret it
// answers nothing, and the secret is compared in constant time.
fn authorize(headers: &http::HeaderMap, state: &AdminState) -> Result<(), Box<AdminResponse>> {
    let Some(secret) = &state.secret else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the management API is disabled: set admin.secret in the config",
        )));
    };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if secret.matches(p.as_bytes()) => Ok(()),
        _ => {
            let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Unauthorized");
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static(r#"Bearer realm="fluxgate-admin""#),
            );
            Err(Box::new(r))
        }
    }
}
