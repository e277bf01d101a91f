//! The demo's upstreams: an echo server, and (for `fluxgate demo --backend`) a tiny Fluxer-like
//! API that issues its own session tokens, so the demo can show fluxgate in front of an API it
//! does not own: login capture, sessions validated by `/users/@me`, logout.
//!
//! Hand-written on hyper rather than a framework: five routes, for a demo, in the binary.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The account that logs in without MFA.
pub const DEMO_EMAIL: &str = "demo@example.com";
/// The account whose login asks for a TOTP code ([`DEMO_TOTP`]).
pub const MFA_EMAIL: &str = "mfa@example.com";
pub const DEMO_PASSWORD: &str = "demo";
pub const DEMO_TOTP: &str = "123456";
pub const DEMO_API_USER: &str = "1000000000000000002";
pub const MFA_API_USER: &str = "1000000000000000003";

type Reply = Response<Full<Bytes>>;

/// Serves `handler` on 127.0.0.1 (a free port) from its own thread.
fn serve<F, Fut>(name: &str, handler: F) -> std::io::Result<SocketAddr>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let h = handler.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let h = h.clone();
                            async move { Ok::<_, Infallible>(h(req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            })
        })?;
    Ok(addr)
}

/// The echo upstream: answers every request with JSON of its method, path and headers.
pub fn start_echo() -> std::io::Result<SocketAddr> {
    serve("demo-echo", |req| async move { echo(&req) })
}

/// The Fluxer-like API; every path it does not know is echoed.
pub fn start_api() -> std::io::Result<SocketAddr> {
    let api = Arc::new(Api::default());
    serve("demo-api", move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    })
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    let body = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static parts make a valid response")
}

fn echo<B>(req: &Request<B>) -> Reply {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({
            "method": req.method().as_str(),
            "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            "headers": headers,
        }),
    )
}

#[derive(Default)]
struct Api {
    /// token → user id.
    sessions: Mutex<HashMap<String, &'static str>>,
    /// MFA ticket → user id.
    tickets: Mutex<HashMap<String, &'static str>>,
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, 16 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let input: Value = serde_json::from_slice(&body).unwrap_or_default();
        let auth = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/auth/login") => self.login(&input),
            (&Method::POST, "/auth/login/mfa/totp") => self.totp(&input),
            (&Method::GET, "/users/@me") => self.me(auth.as_deref()),
            (&Method::POST, "/auth/logout") => self.logout(auth.as_deref()),
            _ => echo(&Request::from_parts(parts, ())),
        }
    }

    fn login(&self, v: &Value) -> Reply {
        if v["password"] != DEMO_PASSWORD {
            return invalid("Invalid email or password");
        }
        if v["email"] == DEMO_EMAIL {
            return self.issue(DEMO_API_USER);
        }
        if v["email"] != MFA_EMAIL {
            return invalid("Invalid email or password");
        }
        let Ok(ticket) = crate::credential::generate(crate::credential::Kind::Oauth2, None) else {
            return unavailable();
        };
        lock(&self.tickets).insert(ticket.clone(), MFA_API_USER);
        json_reply(
            StatusCode::OK,
            &json!({"mfa": true, "ticket": ticket, "totp": true, "sms": false, "webauthn": false}),
        )
    }

    fn totp(&self, v: &Value) -> Reply {
        let ticket = v["ticket"].as_str().unwrap_or("");
        if v["code"] != DEMO_TOTP {
            return invalid("Invalid code");
        }
        match lock(&self.tickets).remove(ticket) {
            Some(user) => self.issue(user),
            None => invalid("Invalid or expired ticket"),
        }
    }

    fn issue(&self, user: &'static str) -> Reply {
        let Ok(token) = crate::credential::generate(crate::credential::Kind::Session, None) else {
            return unavailable();
        };
        lock(&self.sessions).insert(token.clone(), user);
        json_reply(StatusCode::OK, &json!({"token": token, "user_id": user}))
    }

    fn me(&self, auth: Option<&str>) -> Reply {
        match auth.and_then(|t| lock(&self.sessions).get(t).copied()) {
            Some(user) => json_reply(
                StatusCode::OK,
                &json!({"id": user, "username": "demo", "mfa_enabled": user == MFA_API_USER, "flags": 0}),
            ),
            None => unauthorized(),
        }
    }

    fn logout(&self, auth: Option<&str>) -> Reply {
        match auth.and_then(|t| lock(&self.sessions).remove(t)) {
            Some(_) => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::default())
                .expect("static parts make a valid response"),
            None => unauthorized(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(message: &str) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({"code": "INVALID_FORM_BODY", "message": message}),
    )
}

fn unauthorized() -> Reply {
    json_reply(
        StatusCode::UNAUTHORIZED,
        &json!({"code": "UNAUTHORIZED", "message": "401: Unauthorized"}),
    )
}

fn unavailable() -> Reply {
    json_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"code": "SERVICE_UNAVAILABLE", "message": "no randomness"}),
    )
}
