//! The invalidation subscriber: listens on `<prefix>invalidate` and evicts what other instances
//! (or backends) revoked.
//!
//! While the subscription is down, invalidations may be missed, so the cache trusts no entry
//! for longer than `ttl_while_disconnected`; once subscribed again, the cache is cleared (what
//! was missed is unknown) and full TTLs resume. A PING every second on the subscription
//! connection detects silent failures.

use super::RedisStore;
use crate::metrics::Metrics;
use crate::session::SessionCache;
use crate::session::invalidation::Invalidation;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

const PING_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown` changes.
pub async fn run(
    store: RedisStore,
    cache: Arc<SessionCache>,
    metrics: Arc<Metrics>,
    cap: Duration,
    connect_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let cap_ms = cap.as_millis() as i64;
    cache.set_vouch(Some(cap_ms));
    let channel = store.channel();
    let clients = store.subscribe_clients().to_vec();
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0usize;
    loop {
        let client = &clients[attempt % clients.len()];
        attempt += 1;
        let connected = tokio::time::timeout(connect_timeout, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        match connected {
            Ok(Ok(ps)) => {
                // Subscribed first, then cleared: nothing revoked from here on can be missed,
                // and whatever was missed before is dropped.
                cache.clear();
                cache.set_vouch(None);
                metrics.invalidation_subscribed.store(1, Ordering::Relaxed);
                metrics
                    .invalidation_subscriptions
                    .fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                tracing::info!(channel = %channel, "subscribed to session invalidations");
                let (mut sink, mut stream) = ps.split();
                let mut tick = tokio::time::interval(PING_EVERY);
                tick.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(m) => handle(&cache, &metrics, m.get_payload_bytes()).await,
                            None => break,
                        },
                        _ = tick.tick() => {
                            // In subscribed mode Redis answers PING with ["pong", ""], not
                            // "PONG": accept any reply, only an error or silence means down.
                            let ping = tokio::time::timeout(connect_timeout, sink.ping::<redis::Value>()).await;
                            if !matches!(ping, Ok(Ok(_))) {
                                break;
                            }
                        }
                        _ = shutdown.changed() => return,
                    }
                }
                cache.set_vouch(Some(cap_ms));
                metrics.invalidation_subscribed.store(0, Ordering::Relaxed);
                tracing::warn!(
                    "lost the session invalidation subscription; capping cache trust until it is back"
                );
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to session invalidations"),
            Err(_) => tracing::warn!("timed out subscribing to session invalidations"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn handle(cache: &SessionCache, metrics: &Metrics, payload: &[u8]) {
    match Invalidation::parse(payload) {
        Some(inv) => {
            metrics.invalidations.fetch_add(1, Ordering::Relaxed);
            // Evicts here and deletes any backend answer shared for it.
            cache.invalidated(&inv).await;
        }
        None => tracing::debug!("ignoring an unrecognised invalidation message"),
    }
}
