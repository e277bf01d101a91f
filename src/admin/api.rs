//! The management API (contract §11): create, list and revoke sessions.

use super::{AdminResponse, AdminState, error, json_response};
use crate::credential::{self, Kind, Sid};
use crate::duration::Dur;
use crate::session::SessionRecord;
use crate::session::record::{RECORD_VERSION, is_scope, is_user_id};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;

/// Body of `POST /v1/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    user_id: String,
    #[serde(default = "default_kind")]
    kind: Kind,
    #[serde(default)]
    scopes: Vec<String>,
    /// e.g. "30d"; omitted: never expires.
    lifetime: Option<String>,
    client_ip: Option<String>,
    has_mfa: Option<bool>,
    /// Application id, required for bot tokens.
    app_id: Option<String>,
}

fn default_kind() -> Kind {
    Kind::Session
}

pub async fn route(method: &Method, path: &str, body: &[u8], st: &AdminState) -> AdminResponse {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::POST, ["v1", "sessions"]) => create(body, st).await,
        (&Method::DELETE, ["v1", "sessions", sid]) => revoke(sid, st).await,
        (&Method::POST, ["v1", "sessions", sid, "sudo"]) => grant_sudo(sid, st).await,
        (&Method::GET, ["v1", "users", user, "locations"]) => locations(user, st).await,
        (&Method::POST, ["v1", "users", user, "locations"]) => add_location(user, body, st).await,
        (&Method::GET, ["v1", "users", user, "sessions"]) => list(user, st).await,
        (&Method::DELETE, ["v1", "users", user, "sessions"]) => revoke_user(user, st).await,
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint"),
    }
}

fn bad(message: impl AsRef<str>) -> AdminResponse {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message.as_ref())
}

fn store_failed(e: impl std::fmt::Display) -> AdminResponse {
    tracing::error!(error = %e, "admin: session store failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "session store unavailable",
    )
}

async fn create(body: &[u8], st: &AdminState) -> AdminResponse {
    let req: CreateSession = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(format!("invalid JSON body: {e}")),
    };
    if !is_user_id(&req.user_id) {
        return bad("user_id must be 1-64 characters of letters, digits, '_' or '-'");
    }
    if let Some(s) = req.scopes.iter().find(|s| !is_scope(s)) {
        return bad(format!("invalid scope {s:?}"));
    }
    let now = st.clock.now_secs();
    let expires_at = match req.lifetime.as_deref().map(Dur::parse) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(now + d.0.as_secs() as i64),
        Some(Ok(_)) => return bad("lifetime must be greater than zero"),
        Some(Err(e)) => return bad(e),
    };
    let client_ip = match req.client_ip.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip.to_canonical().to_string()),
        Some(Err(_)) => return bad("client_ip is not an IP address"),
    };
    let app_id = match (req.kind, req.app_id.as_deref()) {
        (Kind::Bot, Some(a))
            if (1..=20).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(a)
        }
        (Kind::Bot, _) => return bad("bot tokens need app_id: 1-20 digits"),
        (_, Some(_)) => return bad("app_id only applies to kind \"bot\""),
        (_, None) => None,
    };
    let token = match credential::generate(req.kind, app_id) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "OS random number generator failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "cannot mint a token",
            );
        }
    };
    let sid = Sid::of(&token);
    let record = SessionRecord {
        v: RECORD_VERSION,
        user_id: req.user_id,
        kind: req.kind,
        created_at: now,
        expires_at,
        scopes: req.scopes,
        client_ip,
        has_mfa: req.has_mfa,
        flags: None,
        client_id: None,
    };
    if let Err(e) = st.sessions.store().create(&sid, &record).await {
        return store_failed(e);
    }
    // Creating a session authorizes the location it was created from (contract §7).
    if let Some(ip) = record.client_ip.as_deref().and_then(|i| i.parse().ok())
        && let Err(e) = st.ip_auth.authorize_ip(&record.user_id, ip).await
    {
        return store_failed(e);
    }
    // A negative entry for this sid may be cached (someone guessed it before it existed).
    st.sessions.evict(&sid).await;
    json_response(
        StatusCode::CREATED,
        json!({
            "token": token,
            "sid": sid.encode(),
            "user_id": record.user_id,
            "kind": record.kind,
            "scopes": record.scopes,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
        }),
    )
}

async fn revoke(sid: &str, st: &AdminState) -> AdminResponse {
    let Some(sid) = Sid::decode(sid) else {
        return bad("sid must be 43 base64url characters");
    };
    match st.sessions.revoke(&sid).await {
        Ok(Some(user)) => json_response(StatusCode::OK, json!({"revoked": 1, "user_id": user})),
        Ok(None) => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such session"),
        Err(e) => store_failed(e),
    }
}

async fn list(user: &str, st: &AdminState) -> AdminResponse {
    if !is_user_id(user) {
        return bad("invalid user id");
    }
    match st.sessions.store().list_user(user).await {
        Ok(list) => {
            let sessions: Vec<_> = list
                .into_iter()
                .map(|(sid, r)| {
                    json!({
                        "sid": sid.encode(),
                        "kind": r.kind,
                        "scopes": r.scopes,
                        "created_at": r.created_at,
                        "expires_at": r.expires_at,
                        "client_ip": r.client_ip,
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"user_id": user, "sessions": sessions}),
            )
        }
        Err(e) => store_failed(e),
    }
}

async fn revoke_user(user: &str, st: &AdminState) -> AdminResponse {
    if !is_user_id(user) {
        return bad("invalid user id");
    }
    match st.sessions.revoke_user(user).await {
        Ok(sids) => json_response(
            StatusCode::OK,
            json!({"revoked": sids.len(), "user_id": user}),
        ),
        Err(e) => store_failed(e),
    }
}

/// Grants sudo mode to a session whose re-authentication a backend verified itself: returns a
/// token bound to the session and sets nothing else.
async fn grant_sudo(sid: &str, st: &AdminState) -> AdminResponse {
    let Some(sudo) = st.sudo.load_full() else {
        return bad("sudo mode is not configured: set [sudo] secret");
    };
    let Some(sid) = Sid::decode(sid) else {
        return bad("sid must be 43 base64url characters");
    };
    let record = match st.sessions.store().get(&sid).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such session"),
        Err(e) => return store_failed(e),
    };
    let (token, expires_at) = sudo.grant(&record.user_id, &sid, st.clock.now_secs());
    json_response(
        StatusCode::OK,
        json!({"token": token, "sid": sid.encode(), "user_id": record.user_id, "expires_at": expires_at}),
    )
}

async fn locations(user: &str, st: &AdminState) -> AdminResponse {
    if !is_user_id(user) {
        return bad("invalid user id");
    }
    match st.sessions.store().locations(user).await {
        Ok(mut l) => {
            l.sort();
            json_response(StatusCode::OK, json!({"user_id": user, "locations": l}))
        }
        Err(e) => store_failed(e),
    }
}

/// Body of `POST /v1/users/<id>/locations`: an IP (reduced to the configured granularity).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLocation {
    ip: String,
}

async fn add_location(user: &str, body: &[u8], st: &AdminState) -> AdminResponse {
    if !is_user_id(user) {
        return bad("invalid user id");
    }
    let req: AddLocation = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(format!("invalid JSON body: {e}")),
    };
    let Ok(ip) = req.ip.parse::<IpAddr>() else {
        return bad("ip is not an IP address");
    };
    let location = st
        .ip_auth
        .location_of_str(&ip.to_string())
        .unwrap_or_default();
    match st.ip_auth.authorize_ip(user, ip).await {
        Ok(()) => json_response(
            StatusCode::CREATED,
            json!({"user_id": user, "location": location}),
        ),
        Err(e) => store_failed(e),
    }
}
