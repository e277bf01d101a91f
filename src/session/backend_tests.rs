//! The resolver against a tiny hyper server on 127.0.0.1:0 that answers what each test says.

use super::*;
use futures_util::StreamExt;
use http::Response;
use http_body_util::StreamBody;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;

const NOW: i64 = 1_700_000_000;
const SESSION: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
const BOT: &str = "123456789012345678.c2VjcmV0LXRva2Vu";
const OAUTH: &str = "oauth+token/with=";
const ALICE: &str =
    r#"{"id":"123456789012345678","username":"alice","mfa_enabled":true,"flags":4}"#;

type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A server answering every request with `answer`, recording what it saw.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start<F, Fut>(answer: F) -> Server
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, answer) = (s2.clone(), answer.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (seen, answer) = (seen.clone(), answer.clone());
                        async move {
                            let h = |n: http::HeaderName| {
                                req.headers()
                                    .get(n)
                                    .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
                            };
                            let mut s = Seen {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                authorization: h(AUTHORIZATION),
                                content_type: h(CONTENT_TYPE),
                                body: String::new(),
                            };
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            s.body = String::from_utf8_lossy(&body).into();
                            seen.lock().unwrap().push(s);
                            Ok::<_, Infallible>(answer().await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server { addr, seen }
    }

    /// A server that answers `status` with `body` every time.
    async fn fixed(status: u16, body: &str) -> Server {
        let body = body.to_string();
        Server::start(move || {
            let body = body.clone();
            async move { reply(status, &body) }
        })
        .await
    }

    fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    fn settings(&self) -> BackendSettings {
        let mut s = BackendSettings::new(self.url("/users/@me"));
        s.introspect_url = Some(self.url("/oauth2/introspect"));
        s.client_id = Some("fluxgate".into());
        s.client_secret = Some(Secret::new("introspect-secret-0123456789".into()));
        s.request_timeout = Duration::from_secs(5);
        s
    }

    fn resolver(&self) -> BackendResolver {
        BackendResolver::new(self.settings()).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(status: u16, body: &str) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap()
}

fn introspected(extra: &str) -> String {
    format!(
        r#"{{"active":true,"scope":"identify guilds","client_id":"app-1","token_type":"Bearer","iat":{},"exp":{}{extra}}}"#,
        NOW - 10,
        NOW + 3600
    )
    .replacen('{', r#"{"sub":"123456789012345678","#, 1)
}

#[tokio::test]
async fn session_token_is_sent_raw_and_the_user_object_becomes_a_session() {
    let srv = Server::fixed(200, ALICE).await;
    let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
    let s = got.unwrap().expect("a session");
    assert_eq!(s.record.user_id, "123456789012345678");
    assert_eq!(s.record.kind, Kind::Session);
    assert_eq!(s.record.has_mfa, Some(true));
    assert_eq!(s.record.flags, Some(4));
    assert_eq!((s.record.created_at, s.record.expires_at), (NOW, None));
    assert!(s.record.scopes.is_empty() && s.record.client_id.is_none());
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/users/@me")
    );
    assert_eq!(seen[0].authorization.as_deref(), Some(SESSION));
}

#[tokio::test]
async fn bot_token_is_sent_with_the_bot_scheme() {
    let srv = Server::fixed(200, r#"{"id":"123456789012345678","bot":true}"#).await;
    let s = srv.resolver().resolve(Kind::Bot, BOT, NOW).await.unwrap();
    let s = s.expect("a session");
    assert_eq!(s.record.kind, Kind::Bot);
    assert_eq!((s.record.has_mfa, s.record.flags), (None, None));
    let auth = srv.seen()[0].authorization.clone();
    assert_eq!(auth.as_deref(), Some(format!("Bot {BOT}").as_str()));
}

#[tokio::test]
async fn numeric_user_id_becomes_its_decimal_text() {
    let srv = Server::fixed(200, r#"{"id":123456789012345678,"flags":0}"#).await;
    let s = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
    assert_eq!(s.unwrap().unwrap().record.user_id, "123456789012345678");
}

#[tokio::test]
async fn oauth2_token_is_introspected_with_basic_auth_and_keeps_scopes_expiry_and_client() {
    let srv = Server::fixed(200, &introspected("")).await;
    let s = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
    let s = s.unwrap().expect("a session");
    assert_eq!(s.record.kind, Kind::Oauth2);
    assert_eq!(s.record.user_id, "123456789012345678");
    assert_eq!(s.record.scopes, vec!["identify", "guilds"]);
    assert_eq!(s.record.expires_at, Some(NOW + 3600));
    assert_eq!(s.record.client_id.as_deref(), Some("app-1"));
    let seen = &srv.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/oauth2/introspect")
    );
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // The token is form-encoded: '+', '/' and '=' must not change its meaning.
    assert_eq!(
        seen.body,
        "token=oauth%2Btoken%2Fwith%3D&token_type_hint=access_token"
    );
    let basic = STANDARD.encode("fluxgate:introspect-secret-0123456789");
    assert_eq!(
        seen.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
}

#[tokio::test]
async fn oauth2_without_an_introspection_url_is_no_session_and_asks_nobody() {
    let srv = Server::fixed(200, &introspected("")).await;
    let mut settings = srv.settings();
    settings.introspect_url = None;
    let r = BackendResolver::new(settings).unwrap();
    assert_eq!(r.resolve(Kind::Oauth2, OAUTH, NOW).await, Ok(None));
    assert!(srv.seen().is_empty());
}

#[tokio::test]
async fn unauthorized_and_forbidden_mean_no_session() {
    for status in [401, 403] {
        let srv = Server::fixed(status, r#"{"code":"UNAUTHORIZED","message":"no"}"#).await;
        let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
        assert_eq!(got, Ok(None), "{status}");
    }
}

#[tokio::test]
async fn server_errors_are_unavailable_never_no_session() {
    for status in [500, 502, 503, 404] {
        let srv = Server::fixed(status, r#"{"code":"INTERNAL"}"#).await;
        let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
        assert_eq!(got, Err(BackendError::Status(status)));
    }
}

#[tokio::test]
async fn introspection_refusing_our_client_credentials_is_unavailable_not_no_session() {
    let srv = Server::fixed(401, r#"{"error":"invalid_client"}"#).await;
    let got = srv.resolver().resolve(Kind::Oauth2, OAUTH, NOW).await;
    assert_eq!(got, Err(BackendError::Status(401)));
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_token_goes_nowhere_else() {
    let srv = Server::start(|| async {
        Response::builder()
            .status(302)
            .header("location", "/elsewhere")
            .body(Full::default().boxed_unsync())
            .unwrap()
    })
    .await;
    let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
    assert_eq!(got, Err(BackendError::Status(302)));
    assert_eq!(srv.seen().len(), 1);
}

#[tokio::test]
async fn a_slow_backend_times_out_at_the_request_timeout() {
    let srv = Server::start(|| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        reply(200, ALICE)
    })
    .await;
    let mut settings = srv.settings();
    settings.request_timeout = Duration::from_millis(200);
    let r = BackendResolver::new(settings).unwrap();
    let t = Instant::now();
    let got = r.resolve(Kind::Session, SESSION, NOW).await;
    assert_eq!(got, Err(BackendError::Timeout));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn an_unreachable_backend_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = BackendSettings::new(format!("http://127.0.0.1:{port}/").parse().unwrap());
    settings.connect_timeout = Duration::from_millis(500);
    let r = BackendResolver::new(settings).unwrap();
    let got = r.resolve(Kind::Session, SESSION, NOW).await;
    assert_eq!(got, Err(BackendError::Connect));
}

/// 10 MB in 16 KiB chunks, 2 ms apart, counting what the server handed to hyper.
fn ten_megabytes(pulled: Arc<AtomicUsize>, declared: bool) -> Reply {
    const CHUNK: usize = 16 * 1024;
    const TOTAL: usize = 10 * 1024 * 1024;
    let stream = futures_util::stream::iter(0..TOTAL / CHUNK).then(move |_| {
        let pulled = pulled.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            pulled.fetch_add(CHUNK, Ordering::SeqCst);
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; CHUNK])))
        }
    });
    let mut b = Response::builder().status(200);
    if declared {
        b = b.header("content-length", TOTAL);
    }
    b.body(StreamBody::new(stream).boxed_unsync()).unwrap()
}

#[tokio::test]
async fn a_ten_megabyte_answer_is_refused_without_reading_it() {
    for declared in [true, false] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let p2 = pulled.clone();
        let srv = Server::start(move || {
            let p = p2.clone();
            async move { ten_megabytes(p, declared) }
        })
        .await;
        let got = srv.resolver().resolve(Kind::Session, SESSION, NOW).await;
        assert_eq!(got, Err(BackendError::TooLarge), "declared: {declared}");
        let read = pulled.load(Ordering::SeqCst);
        assert!(
            read < 1024 * 1024,
            "declared: {declared}, {read} bytes sent"
        );
    }
}

/// A server holding each answer 100 ms, recording the most requests it had in flight at once.
async fn counting_server(max_seen: Arc<AtomicUsize>) -> Server {
    let in_flight = Arc::new(AtomicUsize::new(0));
    Server::start(move || {
        let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_seen.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            reply(200, ALICE)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_holds_ten_calls_to_two_in_flight() {
    let max_seen = Arc::new(AtomicUsize::new(0));
    let srv = counting_server(max_seen.clone()).await;
    let mut settings = srv.settings();
    settings.max_concurrency = 2;
    let r = BackendResolver::new(settings).unwrap();
    let calls = (0..10).map(|_| r.resolve(Kind::Session, SESSION, NOW));
    let results = futures_util::future::join_all(calls).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    assert_eq!(srv.seen().len(), 10);
    let max = max_seen.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max} in flight at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_cannot_get_a_slot_in_time_are_busy_and_never_reach_the_backend() {
    let srv = Server::start(|| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        reply(200, ALICE)
    })
    .await;
    let mut settings = srv.settings();
    settings.max_concurrency = 1;
    settings.request_timeout = Duration::from_millis(300);
    let r = BackendResolver::new(settings).unwrap();
    let calls = (0..4).map(|_| r.resolve(Kind::Session, SESSION, NOW));
    let results = futures_util::future::join_all(calls).await;
    let busy = results.iter().filter(|r| **r == Err(BackendError::Busy));
    assert!(busy.count() >= 2, "{results:?}");
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert!(srv.seen().len() <= 2, "{:?}", srv.seen());
}

#[test]
fn every_error_has_a_stable_reason_and_no_token_text() {
    let all = [
        (BackendError::Status(500), "status"),
        (BackendError::Timeout, "timeout"),
        (BackendError::Connect, "connect"),
        (BackendError::Transport, "transport"),
        (BackendError::TooLarge, "too_large"),
        (BackendError::Malformed("user_id"), "malformed"),
        (BackendError::Busy, "busy"),
    ];
    for (e, reason) in all {
        assert_eq!(e.reason(), reason);
    }
}

#[test]
fn settings_that_could_only_fail_later_are_refused_up_front() {
    let ok = BackendSettings::new("https://api.example.test/users/@me".parse().unwrap());
    assert!(BackendResolver::new(ok.clone()).is_ok());
    type Edit = fn(&mut BackendSettings);
    let cases: [(&str, Edit); 7] = [
        ("relative url", |s| {
            s.validate_url = "/users/@me".parse().unwrap()
        }),
        ("ftp", |s| {
            s.introspect_url = Some("ftp://x.test/".parse().unwrap())
        }),
        ("secret without id", |s| {
            s.client_secret = Some(Secret::new("x".into()))
        }),
        ("pointer", |s| s.user_id_pointer = "id".into()),
        ("zero concurrency", |s| s.max_concurrency = 0),
        ("zero timeout", |s| s.request_timeout = Duration::ZERO),
        ("not PEM", |s| {
            s.ca_pem = Some(b"not a certificate".to_vec())
        }),
    ];
    for (d, edit) in cases {
        let mut s = ok.clone();
        edit(&mut s);
        assert!(BackendResolver::new(s).is_err(), "{d}");
    }
}

#[test]
fn debug_output_never_shows_the_client_secret() {
    let mut s = BackendSettings::new("http://127.0.0.1:1/".parse().unwrap());
    s.client_id = Some("fluxgate".into());
    s.client_secret = Some(Secret::new("introspect-secret-0123456789".into()));
    let r = BackendResolver::new(s).unwrap();
    assert!(!format!("{r:?}").contains("introspect-secret"));
}

/// An https server for `127.0.0.1` with a self-signed certificate; returns its address and PEM.
async fn tls_server() -> (SocketAddr, String) {
    use rustls_pki_types::pem::PemObject;
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let pem = c.cert.pem();
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(c.signing_key.serialize_pem().as_bytes())
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(reply(200, ALICE))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, pem)
}

#[tokio::test]
async fn https_with_a_private_ca_is_trusted_and_the_public_roots_refuse_it() {
    let (addr, pem) = tls_server().await;
    let url: http::Uri = format!("https://{addr}/users/@me").parse().unwrap();
    let mut settings = BackendSettings::new(url.clone());
    settings.ca_pem = Some(pem.into_bytes());
    let r = BackendResolver::new(settings).unwrap();
    let s = r.resolve(Kind::Session, SESSION, NOW).await.unwrap();
    assert_eq!(s.unwrap().record.user_id, "123456789012345678");
    // Without the private CA the certificate is not trusted, and no request is made.
    let r = BackendResolver::new(BackendSettings::new(url)).unwrap();
    let got = r.resolve(Kind::Session, SESSION, NOW).await;
    assert_eq!(got, Err(BackendError::Connect));
}

#[path = "backend_answer_tests.rs"]
mod answers;
