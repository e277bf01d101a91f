//! A webhook receiver for tests: records each POST (headers and body) and answers 200, or a
//! chosen status for the first N requests (to exercise retries).

use bytes::Bytes;
use fluxgate::clock::monotonic_now;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Delivery>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// Fails the first `fail_first` deliveries with 500.
    pub fn start(fail_first: usize) -> Receiver {
        Self::start_with(fail_first, None)
    }

    /// Fails every delivery for `user_id` with 500 (and the others not).
    pub fn start_refusing(user_id: &str) -> Receiver {
        Self::start_with(0, Some(format!("\"user_id\":\"{user_id}\"")))
    }

    fn start_with(fail_first: usize, refuse: Option<String>) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let failures = Arc::new(AtomicUsize::new(fail_first));
        let s2 = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, failures, refuse) = (s2.clone(), failures.clone(), refuse.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, failures, refuse) =
                            (seen.clone(), failures.clone(), refuse.clone());
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (timestamp, signature) =
                                (h("x-fluxgate-timestamp"), h("x-fluxgate-signature"));
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let refused = refuse
                                .as_deref()
                                .is_some_and(|r| String::from_utf8_lossy(&body).contains(r));
                            let fail = refused
                                || failures
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                            let status = if fail {
                                500
                            } else {
                                seen.lock().unwrap().push(Delivery {
                                    timestamp,
                                    signature,
                                    body: body.to_vec(),
                                });
                                200
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            seen,
            _rt: rt,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (bounded) for the n-th delivery.
    pub fn wait_for(&self, n: usize) -> Delivery {
        let deadline = monotonic_now() + Duration::from_secs(10);
        loop {
            if let Some(d) = self.seen.lock().unwrap().get(n - 1).cloned() {
                return d;
            }
            assert!(
                monotonic_now() < deadline,
                "webhook delivery {n} never arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
