//! The IP-authorization endpoints fluxgate answers itself (never forwarded):
//! `POST /auth/authorize-ip`, `GET /auth/ip-authorization/poll` and
//! `POST /auth/ip-authorization/resend` (each also under the version prefixes).

use super::Live;
use super::RequestCtx;
use super::respond::{write_denial, write_json};
use crate::denial::{BadRequest, Denial, RateLimited};
use crate::policy::Role;
use crate::policy::ipauth::Refused;
use crate::policy::ratelimit::Scope;
use bytes::Bytes;
use http::StatusCode;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde::Deserialize;

const MAX_BODY: usize = 4 * 1024;

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct TicketBody {
    ticket: String,
}

async fn read_body(session: &mut Session) -> Result<Option<Bytes>> {
    let mut buf = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(buf)))
}

fn query_param<'a>(target: &'a [u8], name: &str) -> Option<&'a str> {
    let q = std::str::from_utf8(target).ok()?.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bad(message: &'static str) -> Denial {
    Denial::BadRequest(BadRequest::Invalid(message))
}

/// Answers an IP-authorization endpoint. Returns whether `role` was one.
pub async fn answer(
    proxy: &Live,
    session: &mut Session,
    role: Role,
    ctx: &RequestCtx,
) -> Result<bool> {
    let ip_auth = &proxy.pipeline.rt.ip_auth;
    let outcome: std::result::Result<Option<serde_json::Value>, Denial> = match role {
        Role::AuthorizeIp => match read_body(session).await? {
            None => Err(bad("body too large")),
            Some(b) => match serde_json::from_slice::<TokenBody>(&b) {
                Err(_) => Err(bad("expected {\"token\": \"…\"}")),
                Ok(t) => ip_auth
                    .approve(&t.token)
                    .await
                    .map(|()| None)
                    .map_err(|r| refusal(r, proxy.pipeline.rules.store_retry_after_secs)),
            },
        },
        Role::IpAuthPoll => match query_param(session.req_header().raw_path(), "ticket") {
            None => Err(bad("expected ?ticket=…")),
            Some(t) => ip_auth
                .poll(t)
                .await
                .map(|done| Some(serde_json::json!({ "completed": done })))
                .map_err(|r| refusal(r, proxy.pipeline.rules.store_retry_after_secs)),
        },
        Role::IpAuthResend => match read_body(session).await? {
            None => Err(bad("body too large")),
            Some(b) => match serde_json::from_slice::<TicketBody>(&b) {
                Err(_) => Err(bad("expected {\"ticket\": \"…\"}")),
                Ok(t) => ip_auth
                    .resend(&t.ticket)
                    .await
                    .map(|()| None)
                    .map_err(|r| refusal(r, proxy.pipeline.rules.store_retry_after_secs)),
            },
        },
        Role::Logout | Role::LogoutAll | Role::Login => return Ok(false),
    };
    match outcome {
        Ok(Some(json)) => write_json(session, StatusCode::OK, &json, ctx).await?,
        Ok(None) => {
            write_json(
                session,
                StatusCode::NO_CONTENT,
                &serde_json::Value::Null,
                ctx,
            )
            .await?
        }
        Err(d) => write_denial(session, &d, ctx).await?,
    }
    Ok(true)
}

fn refusal(r: Refused, retry_after_secs: u32) -> Denial {
    match r {
        Refused::Invalid(why) => bad(why),
        Refused::TooEarly(secs) => Denial::RateLimited(RateLimited {
            retry_after_ms: secs * 1000,
            scope: Scope::User,
            global: false,
            bucket: None,
            lockout: false,
        }),
        Refused::Store(e) => {
            tracing::warn!(error = %e, "IP authorization: store failed");
            Denial::StoreUnavailable { retry_after_secs }
        }
    }
}
