//! The HTTP client the OTLP exporter posts its batches with: the hyper client fluxgate already
//! builds (so no second HTTP stack), on a one-thread tokio runtime of its own. The SDK's batch
//! processor exports from its own thread with a plain executor, which has no tokio reactor: each
//! request is spawned onto this runtime and its handle awaited, so an export never runs on, or
//! waits for, a proxy thread.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A collector's answer is a small protobuf status; more than this is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long one export may take, connection included.
pub(super) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct OtlpClient {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpClient").finish_non_exhaustive()
    }
}

impl OtlpClient {
    pub(super) fn new(rt: Arc<tokio::runtime::Runtime>) -> Result<OtlpClient, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| format!("tracing: TLS setup failed: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Built inside the runtime: the pool's idle-connection timer needs its reactor.
        let _in = rt.enter();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(OtlpClient { rt, client })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let (parts, body) = request.into_parts();
            let answer = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let task = self
            .rt
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, exchange).await });
        match task.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("OTLP export timed out".into()),
            Err(e) => Err(format!("OTLP export task failed: {e}").into()),
        }
    }
}
