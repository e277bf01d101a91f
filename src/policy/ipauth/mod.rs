//! IP authorization for new locations (contract §7): a session used from a location its user
//! never approved is stopped with 403 `IP_AUTHORIZATION_REQUIRED` and a ticket, and the user gets
//! a one-time approval token by e-mail (through the notifier). `POST /auth/authorize-ip` with that
//! token approves the location; `GET …/poll` and `POST …/resend` serve the waiting client.

pub mod notify;
mod quota;

use crate::clock::SharedClock;
use crate::denial::Denial;
use crate::metrics::Metrics;
use crate::net::cidr::CidrSet;
use crate::net::geoip::{GeoInfo, GeoIp};
use crate::session::locations::Ticket;
use crate::session::{Session, SessionCache, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use notify::{Notification, Notifier};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

/// How finely a location is told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Ip,
    Network,
    Asn,
    Country,
}

/// `[ip_authorization]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAuthSettings {
    pub granularity: Granularity,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub ticket_ttl_secs: i64,
    pub resend_after_secs: i64,
    /// Requests from these networks are exempt.
    pub trusted: CidrSet,
}

/// Why an approval failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Unknown, used or expired token/ticket, or a resend already used.
    Invalid(&'static str),
    /// Too early to resend: seconds to wait.
    TooEarly(i64),
    Store(String),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e.to_string())
    }
}

pub struct IpAuth {
    pub settings: IpAuthSettings,
    sessions: Arc<SessionCache>,
    geo: Arc<GeoIp>,
    notifier: Notifier,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    quota: quota::TicketQuota,
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS CSPRNG failing is not recoverable; fluxgate cannot mint secrets without it.
    getrandom::fill(&mut buf).expect("the OS random number generator works");
    URL_SAFE_NO_PAD.encode(buf)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 429 for a spent ticket quota (Fluxer's format, scope `user`).
fn quota_denial(wait_secs: i64) -> Denial {
    Denial::RateLimited(crate::denial::RateLimited {
        retry_after_ms: wait_secs.max(1).saturating_mul(1000),
        scope: crate::policy::ratelimit::Scope::User,
        global: false,
        bucket: None,
        lockout: false,
    })
}

impl IpAuth {
    pub fn new(
        settings: IpAuthSettings,
        sessions: Arc<SessionCache>,
        geo: Arc<GeoIp>,
        notifier: Notifier,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        IpAuth {
            quota: quota::TicketQuota::new(settings.ticket_ttl_secs),
            settings,
            sessions,
            geo,
            notifier,
            clock,
            metrics,
        }
    }

    /// Network granularity (/24, /48), 15-minute tickets, no GeoIP and no notifier: for tests
    /// and benches that do not exercise IP authorization.
    pub fn with_defaults(sessions: Arc<SessionCache>, clock: SharedClock) -> Self {
        let metrics = Arc::new(Metrics::default());
        IpAuth::new(
            IpAuthSettings {
                granularity: Granularity::Network,
                v4_prefix: 24,
                v6_prefix: 48,
                ticket_ttl_secs: 900,
                resend_after_secs: 30,
                trusted: CidrSet::default(),
            },
            sessions,
            Arc::new(GeoIp::none()),
            Notifier::new(None, None, metrics.clone()).0,
            clock,
            metrics,
        )
    }

    /// The location of `ip` at the configured granularity. When the ASN or country is
    /// unknown, the network stands in (stricter, never looser).
    pub fn location(&self, ip: IpAddr, geo: &GeoInfo) -> String {
        let ip = ip.to_canonical();
        let network = || {
            let prefix = match ip {
                IpAddr::V4(_) => self.settings.v4_prefix,
                IpAddr::V6(_) => self.settings.v6_prefix,
            };
            let net = IpNet::new(ip, prefix)
                .map(|n| n.trunc())
                .unwrap_or_else(|_| IpNet::from(ip));
            format!("net:{net}")
        };
        match self.settings.granularity {
            Granularity::Ip => format!("ip:{ip}"),
            Granularity::Network => network(),
            Granularity::Asn => geo.asn.map_or_else(network, |a| format!("asn:{a}")),
            Granularity::Country => geo
                .country_str()
                .map_or_else(network, |c| format!("country:{c}")),
        }
    }

    /// The location of an IP given as text (from a session record), looked up fresh.
    pub fn location_of_str(&self, ip: &str) -> Option<String> {
        let ip: IpAddr = ip.parse().ok()?;
        Some(self.location(ip, &self.geo.lookup(ip)))
    }

    /// Checks a session's request from `ip`. A new location opens (or reuses) a ticket,
    /// notifies, and refuses. `retry_after_secs`: `Retry-After` when the store fails.
    pub async fn check(
        &self,
        s: &Session,
        ip: IpAddr,
        geo: &GeoInfo,
        user_agent: Option<&str>,
        retry_after_secs: u32,
    ) -> Result<(), Denial> {
        let Some(here) = self.unapproved(s, ip, geo, retry_after_secs).await? else {
            return Ok(());
        };
        let unavailable = |e: StoreError| {
            tracing::warn!(error = %e, "IP authorization: store failed; refusing");
            Denial::StoreUnavailable { retry_after_secs }
        };
        // SECURITY: a session from a place its user never approved is held until the user
        // approves it from their inbox; a stolen cookie used elsewhere is stopped here.
        let now = self.clock.now_secs();
        // SECURITY: new tickets per user and per network are bounded, so one client cannot
        // open a ticket (and send a mail) per address of a /64.
        if let Err(wait) = self.quota.take(s.user_id(), ip, now) {
            self.metrics.ip_auth.inc("ticket_quota", "");
            return Err(quota_denial(wait));
        }
        let token = random(32);
        let fresh = Ticket {
            v: 1,
            ticket: random(16),
            user_id: s.user_id().to_string(),
            location: here.clone(),
            ip: ip.to_string(),
            country: geo.country_str().map(str::to_string),
            asn: geo.asn,
            user_agent: user_agent.map(|u| u.chars().take(512).collect()),
            created_at: now,
            expires_at: now + self.settings.ticket_ttl_secs,
            completed: false,
            notified_at: now,
            resent: false,
        };
        let live = self
            .sessions
            .store()
            .open_ticket(&fresh, &hash(&token))
            .await
            .map_err(|e| {
                self.quota.give_back(s.user_id(), ip);
                unavailable(e)
            })?;
        if live.ticket == fresh.ticket {
            self.metrics.ip_auth.inc("ticket_opened", "");
            self.notify(&live, token);
        } else {
            self.quota.give_back(s.user_id(), ip);
        }
        Err(Denial::IpAuthorizationRequired {
            ticket: live.ticket.clone(),
            resend_available_in: (live.notified_at + self.settings.resend_after_secs - now).max(0),
        })
    }

    /// The location of a request from `ip` when the session's user has not approved it, without
    /// opening a ticket or notifying anyone (report mode asks only this).
    pub async fn unapproved(
        &self,
        s: &Session,
        ip: IpAddr,
        geo: &GeoInfo,
        retry_after_secs: u32,
    ) -> Result<Option<String>, Denial> {
        if self.settings.trusted.contains(ip) {
            return Ok(None);
        }
        let here = self.location(ip, geo);
        // The location a session was created from is authorized by its creation.
        if s.client_ip
            .is_some_and(|c| self.location(c, &self.geo.lookup(c)) == here)
        {
            return Ok(None);
        }
        let known = self.sessions.locations(s.user_id()).await.map_err(|e| {
            tracing::warn!(error = %e, "IP authorization: store failed; refusing");
            Denial::StoreUnavailable { retry_after_secs }
        })?;
        Ok((!known.set.contains(&here)).then_some(here))
    }

    fn notify(&self, t: &Ticket, token: String) {
        self.notifier.send(Notification {
            user_id: t.user_id.clone(),
            ticket: t.ticket.clone(),
            token,
            ip: t.ip.clone(),
            country: t.country.clone(),
            asn: t.asn,
            user_agent: t.user_agent.clone(),
            location: t.location.clone(),
            time: self.clock.now_secs(),
        });
    }

    /// Approves the location of the ticket a token belongs to; the token works once.
    pub async fn approve(&self, token: &str) -> Result<(), Refused> {
        if token.is_empty() || token.len() > 128 {
            return Err(Refused::Invalid("invalid token"));
        }
        let store = self.sessions.store();
        let Some(mut t) = store.consume_token(&hash(token)).await? else {
            return Err(Refused::Invalid("unknown, used or expired token"));
        };
        if t.completed {
            return Err(Refused::Invalid("already approved"));
        }
        self.sessions.add_location(&t.user_id, &t.location).await?;
        t.completed = true;
        store.save_ticket(&t).await?;
        self.metrics.ip_auth.inc("approved", "");
        Ok(())
    }

    /// Whether the ticket's location was approved. Unknown or expired tickets are not.
    pub async fn poll(&self, ticket: &str) -> Result<bool, Refused> {
        if ticket.is_empty() || ticket.len() > 64 {
            return Err(Refused::Invalid("invalid ticket"));
        }
        Ok(self
            .sessions
            .store()
            .ticket(ticket)
            .await?
            .is_some_and(|t| t.completed))
    }

    /// Sends the notification again with a new token: once per ticket, and not before
    /// `resend_after` since the last one.
    pub async fn resend(&self, ticket: &str) -> Result<(), Refused> {
        let store = self.sessions.store();
        let Some(mut t) = store.ticket(ticket).await? else {
            return Err(Refused::Invalid("unknown or expired ticket"));
        };
        if t.completed {
            return Err(Refused::Invalid("already approved"));
        }
        if t.resent {
            return Err(Refused::Invalid("already resent"));
        }
        let now = self.clock.now_secs();
        let wait = t.notified_at + self.settings.resend_after_secs - now;
        if wait > 0 {
            return Err(Refused::TooEarly(wait));
        }
        let token = random(32);
        t.resent = true;
        t.notified_at = now;
        store.save_ticket(&t).await?;
        store.add_token(&hash(&token), &t).await?;
        self.notify(&t, token);
        Ok(())
    }

    /// Authorizes the location of `ip` for a user (a session was created from there).
    pub async fn authorize_ip(&self, user_id: &str, ip: IpAddr) -> Result<(), StoreError> {
        let loc = self.location(ip, &self.geo.lookup(ip));
        self.sessions.add_location(user_id, &loc).await
    }
}
