//! The chaos soak's traffic: load clients with valid sessions, and the canary, which only ever
//! sends tokens that must be refused (revoked ones and an invalid one). Tokio clients on
//! keep-alive connections; every response is counted by status class, and each failure (5xx or
//! a broken connection) keeps its time so that the report can tell those during a fault from
//! those outside one.

use bytes::Bytes;
use fluxgate::clock::monotonic_now;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// No fault waiting for its first success.
const NONE: u64 = u64::MAX;

/// Counters shared by the clients and the fault thread. Times are milliseconds since `t0`.
pub struct Stats {
    pub t0: Instant,
    /// Load responses by class: [1xx, 2xx, 3xx, 4xx, 5xx]; connection failures apart.
    pub class: [AtomicU64; 5],
    pub conn_errors: AtomicU64,
    /// When each load 5xx or connection failure happened.
    pub failures: Mutex<Vec<u64>>,
    /// Canary requests, by class, and its admissions (any 2xx).
    pub canary_class: [AtomicU64; 5],
    pub canary_conn_errors: AtomicU64,
    pub canary_admitted: AtomicU64,
    /// Set by the fault thread when a dependency is back; the first load success of a request
    /// sent at or after it stores its time in `recovered_at`.
    pub back_at: AtomicU64,
    pub recovered_at: AtomicU64,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            t0: monotonic_now(),
            class: Default::default(),
            conn_errors: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            canary_class: Default::default(),
            canary_conn_errors: AtomicU64::new(0),
            canary_admitted: AtomicU64::new(0),
            back_at: AtomicU64::new(NONE),
            recovered_at: AtomicU64::new(NONE),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// A dependency is back: start waiting for the first success after now.
    pub fn mark_back(&self) -> u64 {
        let now = self.now_ms();
        self.recovered_at.store(NONE, Ordering::SeqCst);
        self.back_at.store(now, Ordering::SeqCst);
        now
    }

    /// The first success after [`Stats::mark_back`], if one came; stops waiting.
    pub fn take_recovered(&self) -> Option<u64> {
        let r = self.recovered_at.load(Ordering::SeqCst);
        if r == NONE {
            return None;
        }
        self.back_at.store(NONE, Ordering::SeqCst);
        Some(r)
    }

    pub fn requests(&self) -> u64 {
        self.class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.conn_errors.load(Ordering::Relaxed)
    }

    fn load_result(&self, sent_ms: u64, status: Option<u16>) {
        match status {
            Some(s) => {
                let i = usize::from(s / 100).clamp(1, 5) - 1;
                self.class[i].fetch_add(1, Ordering::Relaxed);
                if s >= 500 {
                    self.failures.lock().unwrap().push(self.now_ms());
                } else if (200..300).contains(&s) && sent_ms >= self.back_at.load(Ordering::Relaxed)
                {
                    let _ = self.recovered_at.compare_exchange(
                        NONE,
                        self.now_ms(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
            }
            None => {
                self.conn_errors.fetch_add(1, Ordering::Relaxed);
                self.failures.lock().unwrap().push(self.now_ms());
            }
        }
    }

    fn canary_result(&self, status: Option<u16>) {
        match status {
            Some(s) => {
                let i = usize::from(s / 100).clamp(1, 5) - 1;
                self.canary_class[i].fetch_add(1, Ordering::Relaxed);
                if (200..300).contains(&s) {
                    self.canary_admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.canary_conn_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a client sends: the tokens it cycles through (read again before each request, so the
/// canary picks up each newly revoked token).
#[derive(Clone)]
pub struct Tokens(pub Arc<Mutex<Vec<String>>>);

impl Tokens {
    pub fn new(t: Vec<String>) -> Tokens {
        Tokens(Arc::new(Mutex::new(t)))
    }
    pub fn push(&self, t: String) {
        self.0.lock().unwrap().push(t);
    }
    fn nth(&self, i: usize) -> String {
        let t = self.0.lock().unwrap();
        t[i % t.len()].clone()
    }
}

/// One keep-alive client, sending until `end`: the load (valid tokens, counted as load) or the
/// canary (tokens that must be refused).
pub async fn client(
    addr: SocketAddr,
    path: &'static str,
    tokens: Tokens,
    first: usize,
    canary: bool,
    stats: Arc<Stats>,
    end: Instant,
) {
    let mut i = first;
    while monotonic_now() < end {
        let Some(mut send) = connect(addr).await else {
            record(&stats, canary, 0, None);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while monotonic_now() < end {
            // A connection the server closed after its last answer (as after a 502) is not a
            // failure: open another.
            match tokio::time::timeout(Duration::from_secs(5), send.ready()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            i += 1;
            let req = hyper::Request::get(path)
                .header("host", "chaos")
                .header("authorization", tokens.nth(i))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let sent = stats.now_ms();
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let resp = send.send_request(req).await.ok()?;
                let status = resp.status().as_u16();
                resp.into_body().collect().await.ok()?;
                Some(status)
            })
            .await
            .ok()
            .flatten();
            record(&stats, canary, sent, answer);
            if answer.is_none() {
                break;
            }
        }
    }
}

fn record(stats: &Stats, canary: bool, sent: u64, status: Option<u16>) {
    if canary {
        stats.canary_result(status);
    } else {
        stats.load_result(sent, status);
    }
}

async fn connect(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}
