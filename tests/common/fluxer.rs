//! A small Fluxer-like API for integration tests: login (with TOTP MFA), `GET /users/@me`,
//! RFC 7662 introspection, logout, Fluxer's own IP authorization for new locations (off unless
//! a test turns it on; `fluxer_ipauth.rs`), and one sensitive route with Fluxer's in-band sudo
//! (`POST /guilds/:id/delete`: a valid `X-Fluxer-Sudo-Mode-JWT`, or in the JSON body the
//! password (accounts without MFA) or `mfa_method: "totp"` + `mfa_code` (accounts with MFA, which
//! then get a fresh 5-minute `X-Fluxer-Sudo-Mode-JWT`); a wrong proof is 400
//! `INVALID_FORM_BODY` naming the field, none is 403 `SUDO_MODE_REQUIRED`), on 127.0.0.1:0 with
//! its own runtime thread. Every other
//! path echoes the `Authorization` it received, so the fake can also stand as the upstream.
//!
//! Like Fluxer it reads credentials only from `Authorization`: a raw `flx_…` session token,
//! `Bearer <oauth2 token>` or `Bot <token>`. Tests drive it with operator switches (`revoke`,
//! `set_down`, `set_delay`) and read counters (`calls`, `me_calls_for`) and the recorded
//! requests. A `/v1` prefix is accepted on every API path; counters key on the path as sent.

use super::Recorded;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use fluxgate::clock::{Clock, SystemClock};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A user who can log in.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub email: &'static str,
    pub password: &'static str,
    pub user_id: &'static str,
    pub username: &'static str,
    /// The TOTP code that completes an MFA login; `None`: no MFA.
    pub totp: Option<&'static str>,
}

pub const ALICE: Account = Account {
    email: "alice@example.com",
    password: "correct horse",
    user_id: "100000000000000001",
    username: "alice",
    totp: None,
};

pub const BOB: Account = Account {
    email: "bob@example.com",
    password: "battery staple",
    user_id: "100000000000000002",
    username: "bob",
    totp: Some("123456"),
};

/// The introspection client the fake accepts (HTTP Basic).
pub const CLIENT_ID: &str = "fluxgate";
pub const CLIENT_SECRET: &str = "introspect-secret-0123456789";
/// The sudo secret the fake shares with fluxgate (Fluxer's `auth.sudo_mode_secret`).
pub const SUDO_SECRET: &str = "sudo-shared-secret-0123456789abcdef";

/// The OAuth2 application every `oauth2_token` is issued to.
pub const OAUTH2_APP: &str = "200000000000000001";

#[derive(Debug, Clone)]
struct Grant {
    user_id: String,
    scopes: String,
    exp: i64,
    iat: i64,
}

#[derive(Default)]
struct State {
    /// `flx_…` → user id.
    sessions: HashMap<String, String>,
    /// bot token → application (bot user) id.
    bots: HashMap<String, String>,
    oauth2: HashMap<String, Grant>,
    /// MFA ticket → user id; used once.
    tickets: HashMap<String, String>,
    down: bool,
    delay: Duration,
    /// Sensitive actions performed (sudo proven).
    actions: usize,
    /// Answers `/auth/login` with this instead (status, content type, body).
    login_reply: Option<(u16, String, Bytes)>,
    /// Fluxer's new-location check is on.
    ip_check: bool,
    /// user id → IPs the account has logged in from.
    known_ips: HashMap<String, HashSet<String>>,
    /// IP-authorization ticket → the held login.
    ip_tickets: HashMap<String, ipauth::IpTicket>,
    /// (address, approval token) of every IP-authorization e-mail, in order.
    mailbox: Vec<(String, String)>,
    /// Every answer, as sent.
    replies: Vec<SentReply>,
    calls: HashMap<String, usize>,
    me_calls: HashMap<String, usize>,
    seen: Vec<Recorded>,
}

type Reply = hyper::Response<Full<Bytes>>;

#[path = "fluxer_ipauth.rs"]
mod ipauth;

/// An answer the fake sent: status, the headers it set (hyper adds `date` and
/// `content-length` on the wire) and the body bytes.
#[derive(Debug, Clone)]
pub struct SentReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The running fake.
pub struct Fluxer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

impl Fluxer {
    pub fn start() -> Fluxer {
        let state: Arc<Mutex<State>> = Arc::default();
        let s2 = state.clone();
        let (rt, addr) = super::serve_http(move |req| {
            let state = s2.clone();
            async move { handle(&state, req).await }
        });
        Fluxer {
            addr,
            state,
            _rt: rt,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// A live session token for `user_id`, as if the user had logged in.
    pub fn session_token(&self, user_id: &str) -> String {
        let token = format!("flx_{}", random(36));
        self.state().sessions.insert(token.clone(), user_id.into());
        token
    }

    /// A bot token `<app_id>.<secret>`; `/users/@me` answers with the bot user `app_id`.
    pub fn bot_token(&self, app_id: &str) -> String {
        let token = format!("{app_id}.{}", random(32));
        self.state().bots.insert(token.clone(), app_id.into());
        token
    }

    /// An OAuth2 access token for `user_id` with space-separated `scopes`, expiring at `exp`
    /// (Unix seconds), issued to [`OAUTH2_APP`].
    pub fn oauth2_token(&self, user_id: &str, scopes: &str, exp: i64) -> String {
        let token = random(40);
        let grant = Grant {
            user_id: user_id.into(),
            scopes: scopes.into(),
            exp,
            iat: now(),
        };
        self.state().oauth2.insert(token.clone(), grant);
        token
    }

    /// Revokes a session, bot or OAuth2 token.
    pub fn revoke(&self, token: &str) {
        let mut s = self.state();
        s.sessions.remove(token);
        s.bots.remove(token);
        s.oauth2.remove(token);
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Every answer waits this long first.
    /// Answers every `/auth/login` with this (a misbehaving API); `None` restores logins.
    pub fn set_login_reply(&self, reply: Option<(u16, &str, Vec<u8>)>) {
        self.state().login_reply = reply.map(|(s, ct, b)| (s, ct.to_string(), Bytes::from(b)));
    }

    /// Sensitive actions the fake performed (each needed a sudo proof it accepted).
    pub fn actions(&self) -> usize {
        self.state().actions
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Requests received for `path` (as sent, without the query).
    pub fn calls(&self, path: &str) -> usize {
        self.state().calls.get(path).copied().unwrap_or(0)
    }

    /// `/users/@me` requests that presented `token` (with any scheme).
    pub fn me_calls_for(&self, token: &str) -> usize {
        self.state().me_calls.get(token).copied().unwrap_or(0)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().seen.clone()
    }

    /// Every answer sent, in order.
    pub fn replies(&self) -> Vec<SentReply> {
        self.state().replies.clone()
    }

    /// The last request received.
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("the fake received nothing")
    }

    pub fn clear(&self) {
        let mut s = self.state();
        s.seen.clear();
        s.calls.clear();
        s.me_calls.clear();
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SudoClaims {
    #[serde(rename = "type")]
    typ: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// A sudo JWT as Fluxer mints it: HS256, `type: sudo`, valid `secs` from now.
pub fn sudo_mint(user_id: &str, secs: i64) -> String {
    let claims = SudoClaims {
        typ: "sudo".into(),
        sub: user_id.into(),
        iat: now(),
        exp: now() + secs,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SUDO_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Fluxer's check: signature, type, user, not expired, and at most 5 minutes long.
fn sudo_valid(token: &str, user_id: &str) -> bool {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let Ok(d) = jsonwebtoken::decode::<SudoClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SUDO_SECRET.as_bytes()).unwrap(),
        &v,
    ) else {
        return false;
    };
    let c = d.claims;
    c.typ == "sudo" && c.sub == user_id && c.exp > now() && c.exp - c.iat <= 300
}

fn now() -> i64 {
    SystemClock.now_secs()
}

fn random(n: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(n)
        .collect()
}

async fn handle(state: &Mutex<State>, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    let resp = answer(state, req).await;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let sent = SentReply {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body: body.clone(),
    };
    state.lock().unwrap().replies.push(sent);
    hyper::Response::from_parts(parts, Full::new(body))
}

async fn answer(state: &Mutex<State>, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let api = path.strip_prefix("/v1").unwrap_or(&path).to_string();
    let delay = {
        let mut s = state.lock().unwrap();
        *s.calls.entry(path.clone()).or_default() += 1;
        if api == "/users/@me" {
            let token = auth.as_deref().map(bare).unwrap_or_default();
            *s.me_calls.entry(token.to_string()).or_default() += 1;
        }
        s.seen.push(record(&parts, &body));
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    if s.down {
        return reply(
            503,
            json!({"code": "SERVICE_UNAVAILABLE", "message": "down"}),
        );
    }
    let post = parts.method == http::Method::POST;
    if let (Some((status, ct, body)), "/auth/login") = (&s.login_reply, api.as_str()) {
        return hyper::Response::builder()
            .status(*status)
            .header("content-type", ct.as_str())
            .body(Full::new(body.clone()))
            .unwrap();
    }
    match (api.as_str(), auth.as_deref()) {
        ("/auth/login", _) if post => s.login(&body, &ipauth::client_ip(&parts.headers)),
        ("/auth/authorize-ip", _) if post => s.authorize_ip(&body),
        ("/auth/ip-authorization/poll", _) if parts.method == http::Method::GET => {
            s.poll_ip(parts.uri.query())
        }
        ("/auth/ip-authorization/resend", _) if post => s.resend_ip(&body),
        ("/auth/login/mfa/totp", _) if post => s.totp(&body),
        ("/users/@me", auth) if parts.method == http::Method::GET => s.me(auth),
        ("/oauth2/introspect", auth) if post => s.introspect(auth, &body),
        ("/auth/logout", auth) if post => s.logout(auth),
        (p, auth) if post && p.starts_with("/guilds/") && p.ends_with("/delete") => {
            let proof = parts
                .headers
                .get("x-fluxer-sudo-mode-jwt")
                .and_then(|v| v.to_str().ok());
            s.sensitive(auth, proof, &body)
        }
        (_, auth) => reply(200, json!({"path": path, "authorization": auth})),
    }
}

/// The token without its scheme.
fn bare(auth: &str) -> &str {
    auth.strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("Bot "))
        .unwrap_or(auth)
}

fn record(parts: &http::request::Parts, body: &[u8]) -> Recorded {
    Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body: body.to_vec(),
    }
}

fn reply(status: u16, body: Value) -> Reply {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn unauthorized() -> Reply {
    reply(
        401,
        json!({"code": "UNAUTHORIZED", "message": "401: Unauthorized"}),
    )
}

fn invalid_form(message: &str) -> Reply {
    reply(
        400,
        json!({"code": "INVALID_FORM_BODY", "message": message}),
    )
}

fn user_json(user_id: &str, bot: bool) -> Value {
    let account = [ALICE, BOB].into_iter().find(|a| a.user_id == user_id);
    json!({
        "id": user_id,
        "username": account.map_or(format!("user-{user_id}"), |a| a.username.to_string()),
        "discriminator": "0001",
        "avatar": null,
        "email": account.map(|a| a.email),
        "verified": true,
        "mfa_enabled": account.is_some_and(|a| a.totp.is_some()),
        "flags": 0,
        "bot": bot,
    })
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
            }
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| form_decode(v))
}

impl State {
    fn issue(&mut self, user_id: &str) -> Reply {
        let token = format!("flx_{}", random(36));
        self.sessions.insert(token.clone(), user_id.into());
        reply(200, json!({"token": token, "user_id": user_id}))
    }

    fn login(&mut self, body: &[u8], ip: &str) -> Reply {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let account = [ALICE, BOB]
            .into_iter()
            .find(|a| v["email"] == a.email && v["password"] == a.password);
        let Some(account) = account else {
            return invalid_form("Invalid email or password");
        };
        if let Some(held) = self.new_location(&account, ip) {
            return held;
        }
        if account.totp.is_none() {
            return self.issue(account.user_id);
        }
        let ticket = random(32);
        self.tickets.insert(ticket.clone(), account.user_id.into());
        reply(
            200,
            json!({"mfa": true, "ticket": ticket, "totp": true, "sms": false, "webauthn": false}),
        )
    }

    fn totp(&mut self, body: &[u8]) -> Reply {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let (Some(code), Some(ticket)) = (v["code"].as_str(), v["ticket"].as_str()) else {
            return invalid_form("code and ticket are required");
        };
        let Some(user_id) = self.tickets.get(ticket).cloned() else {
            return invalid_form("Invalid or expired ticket");
        };
        let account = [ALICE, BOB].into_iter().find(|a| a.user_id == user_id);
        if account.and_then(|a| a.totp) != Some(code) {
            return invalid_form("Invalid code");
        }
        self.tickets.remove(ticket);
        self.issue(&user_id)
    }

    fn me(&self, auth: Option<&str>) -> Reply {
        let Some(auth) = auth else {
            return unauthorized();
        };
        if let Some(token) = auth.strip_prefix("Bot ") {
            return match self.bots.get(token) {
                Some(app) => reply(200, user_json(app, true)),
                None => unauthorized(),
            };
        }
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return match self.oauth2.get(token) {
                Some(g) if g.exp > now() => reply(200, user_json(&g.user_id, false)),
                _ => unauthorized(),
            };
        }
        match self.sessions.get(auth) {
            Some(user_id) => reply(200, user_json(user_id, false)),
            None => unauthorized(),
        }
    }

    fn introspect(&self, auth: Option<&str>, body: &[u8]) -> Reply {
        let expected = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        if auth.and_then(|a| a.strip_prefix("Basic ")) != Some(expected.as_str()) {
            let mut r = reply(401, json!({"error": "invalid_client"}));
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static("Basic realm=\"introspect\""),
            );
            return r;
        }
        let token = form_field(body, "token").unwrap_or_default();
        match self.oauth2.get(&token) {
            Some(g) if g.exp > now() => reply(
                200,
                json!({
                    "active": true, "scope": g.scopes, "client_id": OAUTH2_APP,
                    "token_type": "Bearer", "exp": g.exp, "iat": g.iat, "sub": g.user_id,
                }),
            ),
            _ => reply(200, json!({"active": false})),
        }
    }

    /// Fluxer's sudo check on a sensitive route.
    fn sensitive(&mut self, auth: Option<&str>, proof: Option<&str>, body: &[u8]) -> Reply {
        let Some(user_id) = auth.and_then(|t| self.sessions.get(t)).cloned() else {
            return unauthorized();
        };
        let account = [ALICE, BOB].into_iter().find(|a| a.user_id == user_id);
        let has_mfa = account.is_some_and(|a| a.totp.is_some());
        if proof.is_some_and(|t| sudo_valid(t, &user_id)) {
            self.actions += 1;
            return hyper::Response::builder()
                .status(204)
                .body(Full::default())
                .unwrap();
        }
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let wrong = |field: &str| {
            reply(
                400,
                json!({"code": "INVALID_FORM_BODY", "message": "Input Validation Error",
                       "errors": [{"path": field, "code": "INVALID", "message": "Invalid"}]}),
            )
        };
        match (has_mfa, v["password"].as_str(), v["mfa_code"].as_str()) {
            (false, Some(p), _) => {
                if account.is_some_and(|a| a.password == p) {
                    self.actions += 1;
                    hyper::Response::builder()
                        .status(204)
                        .body(Full::default())
                        .unwrap()
                } else {
                    wrong("password")
                }
            }
            (true, _, Some(code)) if v["mfa_method"] == "totp" => {
                if account.and_then(|a| a.totp) == Some(code) {
                    self.actions += 1;
                    hyper::Response::builder()
                        .status(204)
                        .header("x-fluxer-sudo-mode-jwt", sudo_mint(&user_id, 300))
                        .body(Full::default())
                        .unwrap()
                } else {
                    wrong("mfa_code")
                }
            }
            _ => reply(
                403,
                json!({"code": "SUDO_MODE_REQUIRED", "message": "Sudo mode required", "has_mfa": has_mfa}),
            ),
        }
    }

    fn logout(&mut self, auth: Option<&str>) -> Reply {
        match auth.and_then(|t| self.sessions.remove(t)) {
            Some(_) => hyper::Response::builder()
                .status(204)
                .body(Full::default())
                .unwrap(),
            None => unauthorized(),
        }
    }
}
