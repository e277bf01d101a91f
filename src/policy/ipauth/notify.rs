//! Telling the backend about a pending IP authorization, so it can e-mail the user: an
//! HMAC-SHA256-signed webhook and/or an entry on a Redis stream. Never on the request path:
//! notifications go through a bounded queue to a background worker that delivers each on its
//! own (up to 32 at once), retrying with backoff.

use crate::metrics::Metrics;
use crate::redis_client::Connections;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};

/// What the backend needs to e-mail the user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Notification {
    pub user_id: String,
    pub ticket: String,
    /// The one-time approval token for `POST /auth/authorize-ip`.
    pub token: String,
    pub ip: String,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub user_agent: Option<String>,
    pub location: String,
    /// Unix seconds.
    pub time: i64,
}

/// Webhook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: http::Uri,
    pub secret: Vec<u8>,
    pub timeout: Duration,
    pub retries: u32,
}

/// The sending half, held by the request path. Sending never waits.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notification>>,
    metrics: Arc<Metrics>,
}

const QUEUE: usize = 4096;
/// Deliveries in progress at once.
const CONCURRENT: usize = 32;

impl Notifier {
    /// A notifier and its worker; `None` worker when nothing is configured.
    pub fn new(
        webhook: Option<Webhook>,
        stream: Option<(Arc<Connections>, String)>,
        metrics: Arc<Metrics>,
    ) -> (Notifier, Option<Worker>) {
        if webhook.is_none() && stream.is_none() {
            return (Notifier { tx: None, metrics }, None);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = Worker {
            rx,
            webhook,
            stream,
            metrics: metrics.clone(),
        };
        (
            Notifier {
                tx: Some(tx),
                metrics,
            },
            Some(worker),
        )
    }

    /// Queues a notification; when the queue is full it is dropped and counted.
    pub fn send(&self, n: Notification) {
        let Some(tx) = &self.tx else {
            tracing::warn!(ticket = %n.ticket, "IP authorization needed but no notifier is configured");
            return;
        };
        if tx.try_send(n).is_err() {
            self.metrics.notify.inc("dropped", "");
        }
    }
}

/// The background half.
pub struct Worker {
    rx: mpsc::Receiver<Notification>,
    webhook: Option<Webhook>,
    stream: Option<(Arc<Connections>, String)>,
    metrics: Arc<Metrics>,
}

/// `sha256=<hex>` over `<timestamp>.<body>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Worker {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                let mut h = HttpConnector::new();
                h.enforce_http(false);
                h
            });
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let targets = Arc::new((client, self.webhook.take(), self.stream.take()));
        // Each notification is delivered on its own, so one that keeps failing (and retrying
        // with backoff) does not hold up the others; at most CONCURRENT at a time.
        let slots = Arc::new(Semaphore::new(CONCURRENT));
        loop {
            let n = tokio::select! {
                n = self.rx.recv() => match n { Some(n) => n, None => return },
                _ = shutdown.changed() => return,
            };
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
                _ = shutdown.changed() => return,
            };
            let (targets, metrics) = (targets.clone(), self.metrics.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let (client, webhook, stream) = &*targets;
                if let Some(w) = webhook {
                    let ok = deliver(client, w, &n).await;
                    metrics
                        .notify
                        .inc(if ok { "webhook_sent" } else { "webhook_failed" }, "");
                }
                if let Some((conns, key)) = stream {
                    let ok = xadd(conns, key, &n).await;
                    metrics
                        .notify
                        .inc(if ok { "stream_sent" } else { "stream_failed" }, "");
                }
            });
        }
    }
}

async fn deliver<C>(client: &Client<C, Full<Bytes>>, w: &Webhook, n: &Notification) -> bool
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let body = serde_json::to_vec(n).expect("a Notification always serializes");
    let mut delay = Duration::from_millis(200);
    for attempt in 0..=w.retries {
        // Real time, not the injectable clock: the receiver checks it against its own clock.
        let ts = crate::clock::unix_now().as_secs() as i64;
        let req = http::Request::post(w.url.clone())
            .header("content-type", "application/json")
            .header("x-fluxgate-timestamp", ts.to_string())
            .header("x-fluxgate-signature", signature(&w.secret, ts, &body))
            .body(Full::new(Bytes::from(body.clone())));
        let Ok(req) = req else { return false };
        match tokio::time::timeout(w.timeout, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                let _ = resp.into_body().collect().await;
                return true;
            }
            Ok(Ok(resp)) => {
                tracing::warn!(status = %resp.status(), attempt, "IP authorization webhook refused");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, attempt, "IP authorization webhook failed"),
            Err(_) => tracing::warn!(attempt, "IP authorization webhook timed out"),
        }
        if attempt < w.retries {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
    false
}

async fn xadd(conns: &Connections, key: &str, n: &Notification) -> bool {
    let fields: Vec<(&str, String)> = vec![
        ("user_id", n.user_id.clone()),
        ("ticket", n.ticket.clone()),
        ("token", n.token.clone()),
        ("ip", n.ip.clone()),
        ("country", n.country.clone().unwrap_or_default()),
        ("asn", n.asn.map(|a| a.to_string()).unwrap_or_default()),
        ("user_agent", n.user_agent.clone().unwrap_or_default()),
        ("location", n.location.clone()),
        ("time", n.time.to_string()),
    ];
    let key = key.to_string();
    let r = conns
        .run(|mut c| async move {
            redis::cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg(fields)
                .query_async::<String>(&mut c)
                .await
        })
        .await;
    if let Err(e) = &r {
        tracing::warn!(error = %e, "IP authorization stream entry failed");
    }
    r.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = signature(b"k", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature(b"k", 2, b"{}"));
        assert_ne!(a, signature(b"k", 1, b"{ }"));
        assert_ne!(a, signature(b"j", 1, b"{}"));
    }
}
