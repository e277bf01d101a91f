//! Fluxer's own IP authorization for new locations, in the fake (off until a test turns it on
//! with [`Fluxer::set_ip_authorization`]):
//!
//! - `POST /auth/login` with the right password from an IP the account has not used answers
//!   `403 {"code":"IP_AUTHORIZATION_REQUIRED","message","ticket","email","resend_available_in"}`
//!   and "e-mails" a one-time token (the test reads it with [`Fluxer::emailed_ip_token`]).
//!   Repeating the login from the same place reuses the pending ticket.
//! - `POST /auth/authorize-ip {"token"}` approves the ticket's IP for the account: 204; an
//!   unknown or used token: 400 `INVALID_FORM_BODY`. The IP approved is the one that logged in,
//!   not the one that opened the e-mail link.
//! - `GET /auth/ip-authorization/poll?ticket=` answers `{"completed":false}` while pending and,
//!   once approved, `{"completed":true,"token":"flx_…","user_id":…}` (as Fluxer's poll does, it
//!   finishes the login it held); that answer is given once, the ticket is then spent (400).
//! - `POST /auth/ip-authorization/resend {"ticket"}` e-mails a new token: 204.
//! - After approval a new login from that IP goes through.
//!
//! The client IP is the left-most `X-Forwarded-For` entry (what Fluxer's API trusts), else
//! `X-Real-IP`: fluxgate sets both. Every reply is recorded byte for byte ([`Fluxer::replies`]),
//! so a test can compare what the client got with what the API sent.

use super::{Account, Fluxer, Reply, State, invalid_form, random, reply};
use serde_json::{Value, json};

/// Seconds before a resend is allowed, as announced in the 403.
const RESEND_AFTER: u64 = 30;

/// A pending new-location login.
#[derive(Debug, Clone)]
pub(super) struct IpTicket {
    user_id: String,
    email: String,
    ip: String,
    /// The token in the latest e-mail.
    token: String,
    completed: bool,
}

impl Fluxer {
    /// Turns Fluxer's new-location check on (`true`) or off (the default).
    pub fn set_ip_authorization(&self, on: bool) {
        self.state().ip_check = on;
    }

    /// Records `ip` as a place `user_id` has logged in from before.
    pub fn allow_ip(&self, user_id: &str, ip: &str) {
        let mut s = self.state();
        s.known_ips
            .entry(user_id.into())
            .or_default()
            .insert(ip.into());
    }

    /// The approval token in the latest IP-authorization e-mail to `email`.
    pub fn emailed_ip_token(&self, email: &str) -> Option<String> {
        self.state()
            .mailbox
            .iter()
            .rev()
            .find(|(to, _)| to == email)
            .map(|(_, t)| t.clone())
    }

    /// How many IP-authorization e-mails were sent.
    pub fn ip_emails(&self) -> usize {
        self.state().mailbox.len()
    }
}

/// The client IP as fluxgate tells it: left-most `X-Forwarded-For`, else `X-Real-IP`.
pub(super) fn client_ip(h: &http::HeaderMap) -> String {
    let xff = h
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string());
    xff.or_else(|| {
        h.get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
    .unwrap_or_default()
}

impl State {
    /// The held login for `account` from `ip`, when the check is on and the place is new.
    pub(super) fn new_location(&mut self, account: &Account, ip: &str) -> Option<Reply> {
        let known = self
            .known_ips
            .get(account.user_id)
            .is_some_and(|s| s.contains(ip));
        if !self.ip_check || known {
            return None;
        }
        let pending = self
            .ip_tickets
            .iter()
            .find(|(_, t)| !t.completed && t.user_id == account.user_id && t.ip == ip);
        let ticket = match pending {
            Some((ticket, _)) => ticket.clone(),
            None => {
                let ticket = random(32);
                let t = IpTicket {
                    user_id: account.user_id.into(),
                    email: account.email.into(),
                    ip: ip.into(),
                    token: random(40),
                    completed: false,
                };
                self.mailbox.push((t.email.clone(), t.token.clone()));
                self.ip_tickets.insert(ticket.clone(), t);
                ticket
            }
        };
        let mut r = reply(
            403,
            json!({
                "code": "IP_AUTHORIZATION_REQUIRED",
                "message": "You must verify this new login location via the link sent to your email",
                "ticket": ticket,
                "email": account.email,
                "resend_available_in": RESEND_AFTER,
            }),
        );
        // Headers a client or a test can recognise as the API's own.
        let h = r.headers_mut();
        h.insert(
            "x-fluxer-trace",
            http::HeaderValue::from_static("ipauth-held"),
        );
        h.insert(
            "cache-control",
            http::HeaderValue::from_static("private, no-cache"),
        );
        Some(r)
    }

    pub(super) fn authorize_ip(&mut self, body: &[u8]) -> Reply {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let token = v["token"].as_str().unwrap_or_default();
        let found = self
            .ip_tickets
            .values_mut()
            .find(|t| !t.completed && !token.is_empty() && t.token == token);
        let Some(t) = found else {
            return invalid_form("Invalid or expired authorization token");
        };
        t.completed = true;
        let (user, ip) = (t.user_id.clone(), t.ip.clone());
        self.known_ips.entry(user).or_default().insert(ip);
        no_content()
    }

    pub(super) fn poll_ip(&mut self, query: Option<&str>) -> Reply {
        let ticket = query
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("ticket="))
            .unwrap_or_default()
            .to_string();
        match self.ip_tickets.get(&ticket) {
            None => invalid_form("Invalid or expired ticket"),
            Some(t) if !t.completed => reply(200, json!({"completed": false})),
            Some(_) => {
                let t = self.ip_tickets.remove(&ticket).expect("just found");
                let token = format!("flx_{}", random(36));
                self.sessions.insert(token.clone(), t.user_id.clone());
                reply(
                    200,
                    json!({"completed": true, "token": token, "user_id": t.user_id}),
                )
            }
        }
    }

    pub(super) fn resend_ip(&mut self, body: &[u8]) -> Reply {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let ticket = v["ticket"].as_str().unwrap_or_default();
        let Some(t) = self.ip_tickets.get_mut(ticket).filter(|t| !t.completed) else {
            return invalid_form("Invalid or expired ticket");
        };
        t.token = random(40);
        let mail = (t.email.clone(), t.token.clone());
        self.mailbox.push(mail);
        no_content()
    }
}

fn no_content() -> Reply {
    hyper::Response::builder()
        .status(204)
        .body(Default::default())
        .expect("a static response")
}
