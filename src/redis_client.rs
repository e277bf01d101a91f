//! Connections to Redis, shared by the Redis session store and the Redis rate limiter: one node
//! (`redis://`, `rediss://`) or a cluster from seed nodes, with ACL credentials, a DB index, a
//! custom CA for TLS, reconnection with backoff, a timeout on every command, and one
//! multiplexed connection per worker thread (created on first use), so a request never waits
//! on another thread's event loop to reach Redis.

use crate::secret::Secret;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value,
};
use std::future::Future;
use std::time::Duration;
use thread_local::ThreadLocal;
use tokio::sync::OnceCell;

/// `[redis]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// One URL, or the cluster's seed nodes.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub key_prefix: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    /// PEM of the CA that signs the servers' certificates (`rediss://`), if not a public one.
    pub tls_ca_pem: Option<Vec<u8>>,
}

/// Why a Redis call failed. Its text is for logs, never for clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisFailure {
    #[error("redis: {0}")]
    Error(String),
    #[error("redis command timed out")]
    Timeout,
}

/// A connection to a single node or to a cluster. Both are cheap handles onto a shared,
/// automatically reconnecting multiplexed connection.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one value per process; the size difference does not matter"
)]
enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

/// Where to connect, plus the per-thread connections.
pub struct Connections {
    target: Target,
    /// Clients for the pub/sub subscription: each node of `urls`, tried in turn.
    pub subscribe_clients: Vec<Client>,
    per_thread: ThreadLocal<OnceCell<Conn>>,
    settings: RedisSettings,
}

fn client(url: &str, s: &RedisSettings) -> Result<Client, String> {
    let mut info = url
        .into_connection_info()
        .map_err(|e| format!("invalid Redis URL {url:?}: {e}"))?;
    let mut redis = info.redis_settings().clone();
    if let Some(u) = &s.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = &s.password {
        redis = redis.set_password(p.expose());
    }
    if s.db != 0 {
        redis = redis.set_db(s.db);
    }
    info = info.set_redis_settings(redis);
    match &s.tls_ca_pem {
        Some(pem) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => Client::open(info),
    }
    .map_err(|e| format!("invalid Redis settings for {url:?}: {e}"))
}

impl Connections {
    /// Validates the settings and prepares clients; does not connect (Redis may come up later).
    pub fn new(settings: RedisSettings) -> Result<Connections, String> {
        let subscribe_clients = settings
            .urls
            .iter()
            .map(|u| client(u, &settings))
            .collect::<Result<Vec<_>, _>>()?;
        let target = if settings.cluster {
            let mut b = ClusterClient::builder(settings.urls.clone())
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.command_timeout)
                .retries(2);
            if let Some(u) = &settings.username {
                b = b.username(u);
            }
            if let Some(p) = &settings.password {
                b = b.password(p.expose());
            }
            if let Some(pem) = &settings.tls_ca_pem {
                b = b.certs(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                });
            }
            Target::Cluster(
                b.build()
                    .map_err(|e| format!("invalid Redis cluster settings: {e}"))?,
            )
        } else {
            Target::Single(subscribe_clients[0].clone())
        };
        Ok(Connections {
            target,
            subscribe_clients,
            per_thread: ThreadLocal::new(),
            settings,
        })
    }

    /// Runs `f` with this thread's connection, bounded by the command timeout.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let work = async { f(self.get().await?).await };
        self.bounded(work).await
    }

    /// As [`run`](Self::run), for the commands on the request path (session and shared
    /// answer reads, the limiters' scripts): a connection idle through a Redis restart learns
    /// it was dropped only from the first command it sends, which would turn into a 503; the
    /// manager reconnects, and the command gets one more try within the same timeout. Safe
    /// to repeat: reads are, and the limiters' scripts err on the side of counting once more
    /// (never of admitting).
    pub async fn run_retry<T, F, Fut>(&self, f: F) -> Result<T, RedisFailure>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let work = async {
            match f(self.get().await?).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    f(self.get().await?).await
                }
                r => r,
            }
        };
        self.bounded(work).await
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, RedisFailure> {
        match tokio::time::timeout(self.settings.command_timeout, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisFailure::Error(e.to_string())),
            Err(_) => Err(RedisFailure::Timeout),
        }
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// This thread's connection, created on first use.
    pub async fn get(&self) -> RedisResult<Conn> {
        let cell = self.per_thread.get_or_default();
        cell.get_or_try_init(|| async {
            match &self.target {
                Target::Single(c) => {
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.settings.connect_timeout))
                        .set_response_timeout(Some(self.settings.command_timeout))
                        .set_min_delay(std::time::Duration::from_millis(50))
                        .set_max_delay(std::time::Duration::from_secs(2))
                        .set_number_of_retries(3);
                    ConnectionManager::new_lazy_with_config(c.clone(), cfg).map(Conn::Single)
                }
                Target::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            }
        })
        .await
        .cloned()
    }
}
