//! Report mode in the pipeline (see `policy::rollout` for what is reportable and why): a denial
//! on a route in report mode becomes an anonymous admission that carries the denial it would
//! have been, so the face counts and logs it and forwards the request with no identity.

use super::{Admitted, Identity, Pipeline, Prelude, RequestFacts};
use crate::denial::Denial;
use crate::net::hygiene::Upgrade;
use crate::policy::rollout::{Rollout, reportable};
use crate::session::Session;

impl Pipeline {
    /// `d`, or, on a route in report mode and for a reportable denial, an anonymous admission
    /// that records `d` as a would-deny.
    pub(super) fn refuse_or_report(
        &self,
        f: &RequestFacts<'_>,
        pre: &mut Prelude<'_>,
        d: Denial,
    ) -> Result<Admitted, Denial> {
        if pre.policy.rollout != Rollout::Report || !reportable(&d) {
            return Err(d);
        }
        // SECURITY: a would-be denial goes upstream with no identity at all: the plan of an
        // anonymous request strips every client-sent identity header and fluxgate's cookies,
        // and sets none of a session's (nor its token as `Authorization`, nor a sudo proof).
        let plan = self.plan(f, pre, &Identity::Anonymous, None);
        Ok(Admitted {
            role: pre.policy.role,
            websocket: pre.upgrade == Upgrade::WebSocket,
            would_deny: Some(d),
            ..Admitted::anonymous(plan)
        })
    }

    /// Stage 8 in report mode: whether the location is new, without opening a ticket or
    /// notifying the user (they would be asked to approve a request that went through anyway).
    /// The would-deny carries no ticket: it is counted and logged, never sent to a client.
    pub(super) async fn ip_authorization_reported(
        &self,
        pre: &Prelude<'_>,
        s: &Session,
        retry_after_secs: u32,
    ) -> Result<(), Denial> {
        let new = self
            .rt
            .ip_auth
            .unapproved(s, pre.client_ip, &pre.geo, retry_after_secs)
            .await?;
        match new {
            Some(_) => Err(Denial::IpAuthorizationRequired {
                ticket: String::new(),
                resend_available_in: 0,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
