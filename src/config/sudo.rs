//! `[sudo]`: the re-authentication proof (its secret, lifetime and cookie), where proofs may
//! come from (`proofs`: fluxgate's own, or in the request body for the upstream to verify) and
//! the per-user lockout on wrong in-band proofs.

use super::Dur;
use super::file::FileConfig;
use super::secret::SecretSource;
use super::validate::{Errors, choice, is_cookie_name, p, positive};
use crate::policy::ratelimit::gcra::Rate;
use crate::policy::ratelimit::keys::KeySpec;
use crate::policy::ratelimit::{LockoutDef, name_hash};
use crate::policy::sudo::{CaptureWindow, SudoSettings};
use crate::policy::sudo_proof::SudoProofs;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SudoFile {
    pub cookie_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
    pub lifetime: Dur,
    pub leeway: Dur,
    pub bind_to_session: bool,
    pub forward_upstream_token: bool,
    /// The upstream's own sudo window (Fluxer: 5 minutes), for the tokens fluxgate forwards.
    pub upstream_lifetime: Dur,
    /// "edge", "upstream" or "both"; a route can say `sudo_proofs`.
    pub proofs: String,
    /// Wrong in-band proofs per user allowed in `proof_find_time` (Fluxer's TOTP limit).
    pub proof_max_failures: i64,
    pub proof_find_time: Dur,
    pub proof_ban_time: Dur,
    /// "proof" or "lifetime": how long a cookie captured from an upstream's proof lasts.
    pub capture_window: String,
}

impl Default for SudoFile {
    fn default() -> Self {
        SudoFile {
            cookie_name: "fluxer_sudo_mode".into(),
            secret: None,
            lifetime: Dur::from_secs(900),
            leeway: Dur::from_secs(1),
            bind_to_session: false,
            forward_upstream_token: true,
            upstream_lifetime: Dur::from_secs(300),
            proofs: "edge".into(),
            proof_max_failures: 10,
            proof_find_time: Dur::from_secs(900),
            proof_ban_time: Dur::from_secs(900),
            capture_window: "proof".into(),
        }
    }
}

/// The lockout on wrong in-band proofs, as a limiter lockout keyed by user.
pub const PROOF_LOCKOUT: &str = "sudo:proof";

const CAPTURE_WINDOWS: &[(&str, CaptureWindow)] = &[
    ("proof", CaptureWindow::Proof),
    ("lifetime", CaptureWindow::Lifetime),
];

pub(super) const PROOFS: &[(&str, SudoProofs)] = &[
    ("edge", SudoProofs::Edge),
    ("upstream", SudoProofs::Upstream),
    ("both", SudoProofs::Both),
];

/// `sudo.proofs`, the routes' default.
pub(super) fn validate_proofs(s: &SudoFile, e: &mut Errors) -> SudoProofs {
    choice(&s.proofs, "sudo proofs", PROOFS, p("sudo.proofs"), e).unwrap_or_default()
}

/// The lockout counting wrong in-band proofs, as lockout number `id` of the limiter.
pub(super) fn proof_lockout(s: &SudoFile, id: u32, e: &mut Errors) -> LockoutDef {
    let most = crate::policy::ratelimit::window::MAX_FAILURES as i64;
    if !(1..=most).contains(&s.proof_max_failures) {
        e.at(
            p("sudo.proof_max_failures"),
            format!("must be between 1 and {most}"),
        );
    }
    positive(s.proof_find_time, p("sudo.proof_find_time"), e);
    positive(s.proof_ban_time, p("sudo.proof_ban_time"), e);
    LockoutDef {
        name: PROOF_LOCKOUT.into(),
        id,
        key: KeySpec::User,
        // Failures are judged from the answer's body (policy::sudo_proof), not by status.
        statuses: vec![],
        rate: Rate {
            limit: s.proof_max_failures.clamp(1, most),
            window_ms: s.proof_find_time.as_millis().max(1),
        },
        ban_ms: s.proof_ban_time.as_millis().max(1),
        name_hash: name_hash(PROOF_LOCKOUT),
    }
}

/// The settings, when a secret is configured; `proof_lockout` is the limiter's lockout for
/// wrong in-band proofs.
pub(super) fn validate_sudo(
    s: &SudoFile,
    proof_lockout: Option<u32>,
    e: &mut Errors,
) -> Option<SudoSettings> {
    positive(s.lifetime, p("sudo.lifetime"), e);
    if s.lifetime.0.as_secs() > 86_400 {
        e.at(p("sudo.lifetime"), "must be at most 1d");
    }
    if s.leeway.0.as_secs() > 5 || (s.leeway.as_millis() % 1000 != 0) {
        e.at(p("sudo.leeway"), "must be whole seconds, at most 5s");
    }
    positive(s.upstream_lifetime, p("sudo.upstream_lifetime"), e);
    let capture_window = choice(
        &s.capture_window,
        "capture window",
        CAPTURE_WINDOWS,
        p("sudo.capture_window"),
        e,
    )
    .unwrap_or_default();
    let secret = s.secret.as_ref()?;
    let secret = match secret.resolve() {
        Ok(v) => v,
        Err(msg) => {
            e.at(p("sudo.secret"), msg);
            return None;
        }
    };
    Some(SudoSettings {
        secret: secret.expose().as_bytes().to_vec(),
        lifetime_secs: s.lifetime.0.as_secs() as i64,
        leeway_secs: s.leeway.0.as_secs() as i64,
        bind_to_session: s.bind_to_session,
        forward_upstream_token: s.forward_upstream_token,
        upstream_lifetime_secs: s.upstream_lifetime.0.as_secs().max(1) as i64,
        cookie_name: s.cookie_name.clone(),
        proof_lockout,
        capture_window,
    })
}

/// A line per sudo route that the upstream would refuse: gated by fluxgate's own proof, but
/// with `forward_upstream_token = false` an upstream that enforces sudo itself (Fluxer does)
/// never sees a proof it accepts.
pub fn warnings(routes: &crate::policy::RouteTable, sudo: Option<&SudoSettings>) -> Vec<String> {
    if sudo.is_none_or(|s| s.forward_upstream_token) {
        return Vec::new();
    }
    routes
        .routes()
        .iter()
        .filter(|r| r.policy.sudo && r.policy.sudo_proofs != SudoProofs::Upstream)
        .map(|r| {
            format!(
                "route {:?} is sudo-gated at the edge but sudo.forward_upstream_token = false: an \
                 upstream that enforces sudo itself will refuse what fluxgate admitted",
                r.name
            )
        })
        .collect()
}

/// `sudo.cookie_name`: a cookie name, and not the session cookie's.
pub(super) fn validate_sudo_cookie_name(f: &FileConfig, e: &mut Errors) {
    if f.sudo.cookie_name.is_empty() || !is_cookie_name(&f.sudo.cookie_name) {
        e.at(
            p("sudo.cookie_name"),
            "must be a cookie name (letters, digits, '_', '-')",
        );
    }
    if f.sudo.cookie_name == f.sessions.cookie_name {
        e.at(
            p("sudo.cookie_name"),
            "must differ from sessions.cookie_name",
        );
    }
}
