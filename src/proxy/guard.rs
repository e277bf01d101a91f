//! The panic guard around the pipeline.

use crate::denial::Denial;
use crate::metrics::Metrics;
use crate::pipeline::{RouteId, Verdict};
use std::future::Future;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

pin_project_lite::pin_project! {
    /// The pipeline's future, guarded against panics and, when the request is traced, run
    /// inside its `decision` span (`trace.rs`).
    ///
    /// One hand-written future rather than `async fn`s or combinators: an `async fn` wrapper
    /// holds its argument future twice (the request filter's future measured 32.4 KB, four
    /// times the pipeline's), and a chain of combinators (catch_unwind, with_context, map,
    /// either) moves the pipeline's future once per layer. Here it is moved in once.
    pub(crate) struct Decision<'a, F> {
        #[pin]
        evaluate: F,
        peer: IpAddr,
        metrics: &'a Metrics,
        span: Option<opentelemetry::Context>,
    }
}

/// Runs the pipeline (`evaluate`) for a request from `peer`, turning a panic into a 500
/// denial, inside the `decision` span of `trace` when there is one.
pub(crate) fn decide<'a, F: Future<Output = Verdict>>(
    trace: Option<&crate::telemetry::RequestTrace>,
    evaluate: F,
    peer: IpAddr,
    metrics: &'a Metrics,
) -> Decision<'a, F> {
    Decision {
        evaluate,
        peer,
        metrics,
        span: trace.and_then(|t| t.decision()),
    }
}

impl<F: Future<Output = Verdict>> Future for Decision<'_, F> {
    type Output = Verdict;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Verdict> {
        let this = self.project();
        // The span is the current context while the stages run (their lookups nest in it).
        let _attached = this.span.as_ref().map(|cx| cx.clone().attach());
        let evaluate = this.evaluate;
        // SECURITY: a panic while deciding must refuse the request, never let it through or
        // drop the connection without an answer.
        let v = match catch_unwind(AssertUnwindSafe(|| evaluate.poll(task))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => v,
            Err(_) => {
                this.metrics.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!("panic while evaluating a request; refused with 500");
                Verdict {
                    client_ip: *this.peer,
                    route: RouteId::Unrouted,
                    stage: crate::pipeline::Stage::ClientIp,
                    outcome: Err(Denial::Internal),
                    reservation: None,
                    sudo_attempt: None,
                }
            }
        };
        if let Some(cx) = this.span.take() {
            super::trace::decided(&cx, &v);
        }
        Poll::Ready(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_pipeline_becomes_a_500_denial_not_a_forward() {
        let metrics = Metrics::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let v = decide(
            None,
            async {
                panic!("bug in a stage");
                #[allow(unreachable_code, reason = "gives the future its type")]
                Verdict {
                    client_ip: peer,
                    route: RouteId::Default,
                    stage: crate::pipeline::Stage::Identity,
                    outcome: Ok(crate::pipeline::Admitted::anonymous(Default::default())),
                    reservation: None,
                    sudo_attempt: None,
                }
            },
            peer,
            &metrics,
        )
        .await;
        assert_eq!(v.outcome.unwrap_err(), Denial::Internal);
        assert_eq!(metrics.panics.load(Ordering::Relaxed), 1);
        assert_eq!(Denial::Internal.to_response().status, 500);
    }
}
