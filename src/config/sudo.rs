//! `[sudo]`: the re-authentication proof (its secret, lifetime and cookie).

use super::Dur;
use super::file::FileConfig;
use super::secret::SecretSource;
use super::validate::{Errors, is_cookie_name, p, positive};
use crate::policy::sudo::SudoSettings;
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
}

impl Default for SudoFile {
    fn default() -> Self {
        SudoFile {
            cookie_name: "fluxer_sudo_mode".into(),
            secret: None,
            lifetime: Dur::from_secs(900),
            leeway: Dur::from_secs(1),
            bind_to_session: false,
            forward_upstream_token: false,
        }
    }
}

/// The settings, when a secret is configured.
pub(super) fn validate_sudo(s: &SudoFile, e: &mut Errors) -> Option<SudoSettings> {
    positive(s.lifetime, p("sudo.lifetime"), e);
    if s.lifetime.0.as_secs() > 86_400 {
        e.at(p("sudo.lifetime"), "must be at most 1d");
    }
    if s.leeway.0.as_secs() > 5 || (s.leeway.as_millis() % 1000 != 0) {
        e.at(p("sudo.leeway"), "must be whole seconds, at most 5s");
    }
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
        cookie_name: s.cookie_name.clone(),
    })
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
