//! The two rate-limit stages of the pipeline: pre-auth (IP-, parameter- and body-keyed buckets,
//! then the lockout) and per-user (the global bucket, then user-keyed buckets).

use super::keys::{KeyFacts, derive};
use super::{Attempt, BucketDef, Checked, Limiter, LockoutDef, Reservation, Scope};
use crate::denial::{BucketHeaders, Denial, RateLimited};
use crate::policy::Policy;

fn headers(b: &BucketDef, c: &Checked) -> BucketHeaders {
    BucketHeaders {
        limit: b.rate.limit,
        remaining: c.outcome.remaining,
        reset_at_ms: c.at_ms + c.outcome.reset_after_ms,
        reset_after_ms: c.outcome.reset_after_ms,
        name_hash: b.name_hash.clone(),
    }
}

fn limited(b: &BucketDef, c: &Checked) -> Denial {
    Denial::RateLimited(RateLimited {
        retry_after_ms: c.outcome.retry_after_ms,
        scope: b.scope,
        global: b.scope == Scope::Global,
        lockout: false,
        bucket: (b.scope != Scope::Global).then(|| headers(b, c)),
    })
}

fn locked(l: &LockoutDef, retry_after_ms: i64, at_ms: i64) -> Denial {
    Denial::RateLimited(RateLimited {
        retry_after_ms,
        scope: Scope::User,
        global: false,
        lockout: true,
        bucket: Some(BucketHeaders {
            limit: l.rate.limit,
            remaining: 0,
            reset_at_ms: at_ms + retry_after_ms,
            reset_after_ms: retry_after_ms,
            name_hash: l.name_hash.clone(),
        }),
    })
}

/// What the limit stages hand on: the lockout attempt to settle, and the headers of the most
/// constrained bucket for successful responses (when configured).
#[derive(Debug, Default, Clone)]
pub struct Passed {
    pub reservation: Option<Reservation>,
    /// An in-band sudo proof's attempt on the per-user proof lockout.
    pub sudo_attempt: Option<Reservation>,
    pub headers: Option<BucketHeaders>,
}

impl Passed {
    fn note(&mut self, limiter: &Limiter, b: &BucketDef, c: &Checked) {
        if limiter.headers_on_success
            && self
                .headers
                .as_ref()
                .is_none_or(|h| c.outcome.remaining < h.remaining)
        {
            self.headers = Some(headers(b, c));
        }
    }
}

async fn run_buckets(
    limiter: &Limiter,
    policy: &Policy,
    facts: &KeyFacts<'_>,
    pre_auth: bool,
    passed: &mut Passed,
) -> Result<(), Denial> {
    for id in &policy.buckets {
        let Some(b) = limiter.buckets.get(*id as usize) else {
            continue;
        };
        if b.key.pre_auth() != pre_auth {
            continue;
        }
        let c = limiter
            .check(b, &derive(&b.key, facts))
            .await
            .map_err(|_| Denial::LimiterUnavailable)?;
        if !c.outcome.allowed {
            return Err(limited(b, &c));
        }
        passed.note(limiter, b, &c);
    }
    Ok(())
}

/// Before the session is resolved: buckets keyed by IP, parameter or body, then the lockout.
/// The lockout goes last so that no other refusal leaves an attempt reserved.
pub async fn pre_auth(
    limiter: &Limiter,
    policy: &Policy,
    facts: &KeyFacts<'_>,
) -> Result<Passed, Denial> {
    let mut passed = Passed::default();
    run_buckets(limiter, policy, facts, true, &mut passed).await?;
    if let Some(l) = policy
        .lockout
        .and_then(|i| limiter.lockouts.get(i as usize))
    {
        match limiter.attempt(l, &derive(&l.key, facts)).await {
            Ok(Attempt::Allowed(r)) => passed.reservation = Some(r),
            Ok(Attempt::Denied {
                retry_after_ms,
                at_ms,
            }) => return Err(locked(l, retry_after_ms, at_ms)),
            Err(_) => return Err(Denial::LimiterUnavailable),
        }
    }
    Ok(passed)
}

/// An in-band sudo proof about to be forwarded: one attempt on the per-user proof lockout
/// (`lockout`), taken last so no later refusal leaves it reserved.
pub async fn sudo_attempt(
    limiter: &Limiter,
    lockout: u32,
    facts: &KeyFacts<'_>,
    passed: &mut Passed,
) -> Result<(), Denial> {
    let Some(l) = limiter.lockouts.get(lockout as usize) else {
        return Ok(());
    };
    match limiter.attempt(l, &derive(&l.key, facts)).await {
        Ok(Attempt::Allowed(r)) => {
            passed.sudo_attempt = Some(r);
            Ok(())
        }
        Ok(Attempt::Denied {
            retry_after_ms,
            at_ms,
        }) => Err(locked(l, retry_after_ms, at_ms)),
        Err(_) => Err(Denial::LimiterUnavailable),
    }
}

/// After authentication: the global per-user bucket, then the route's user-keyed buckets.
pub async fn per_user(
    limiter: &Limiter,
    policy: &Policy,
    facts: &KeyFacts<'_>,
    passed: &mut Passed,
) -> Result<(), Denial> {
    if let (Some(g), Some(_)) = (&limiter.global, facts.user) {
        let c = limiter
            .check(g, &derive(&g.key, facts))
            .await
            .map_err(|_| Denial::LimiterUnavailable)?;
        if !c.outcome.allowed {
            return Err(limited(g, &c));
        }
    }
    run_buckets(limiter, policy, facts, false, passed).await
}
