//! Validation of `[sudo]` and `[csrf]`.

use super::file::FileConfig;
use super::validate::{Errors, p, positive};
use crate::policy::csrf::{OriginPolicy, origin_of};
use crate::policy::sudo::SudoSettings;

pub(super) fn sudo(f: &FileConfig, e: &mut Errors) -> Option<SudoSettings> {
    let s = &f.sudo;
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

pub(super) fn csrf(f: &FileConfig, e: &mut Errors) -> OriginPolicy {
    let c = &f.csrf;
    let mut out = Vec::new();
    for (key, list) in [
        ("allowed_origins", &c.allowed_origins),
        ("additional_allowed_origins", &c.additional_allowed_origins),
    ] {
        for (i, o) in list.iter().enumerate() {
            match origin_of(o) {
                Some(n) => out.push(n),
                None => e.at(
                    p("csrf").key(key).index(i),
                    format!("{o:?} is not an origin like \"https://web.example.com\""),
                ),
            }
        }
    }
    if let Some(rp) = &c.rp_id {
        match origin_of(&format!("https://{rp}")) {
            Some(n) if !rp.contains('/') && !rp.contains(':') => out.push(n),
            _ => e.at(p("csrf.rp_id"), format!("{rp:?} is not a domain name")),
        }
    }
    OriginPolicy::new(out)
}
