//! `[cookies]`: the attributes of the cookies fluxgate reads and hardens (the session and
//! sudo cookies).

use super::file::FileConfig;
use super::validate::{Errors, choice, p};
use crate::identity::{CookiePolicy, SameSite};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CookiesFile {
    pub secure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub session_same_site: String,
    pub sudo_same_site: String,
}

impl Default for CookiesFile {
    fn default() -> Self {
        CookiesFile {
            secure: true,
            domain: None,
            session_same_site: "lax".into(),
            sudo_same_site: "strict".into(),
        }
    }
}

fn same_site(s: &str, key: &str, e: &mut Errors) -> SameSite {
    let opts = [
        ("strict", SameSite::Strict),
        ("lax", SameSite::Lax),
        ("none", SameSite::None),
    ];
    choice(s, "SameSite", &opts, p(key), e).unwrap_or(SameSite::Strict)
}

pub(super) fn validate_cookies(f: &FileConfig, e: &mut Errors) -> CookiePolicy {
    let c = &f.cookies;
    let session_same_site = same_site(&c.session_same_site, "cookies.session_same_site", e);
    let sudo_same_site = same_site(&c.sudo_same_site, "cookies.sudo_same_site", e);
    for (ss, key) in [
        (session_same_site, "cookies.session_same_site"),
        (sudo_same_site, "cookies.sudo_same_site"),
    ] {
        if ss == SameSite::None && !c.secure {
            e.at(
                p(key),
                "SameSite=None needs cookies.secure = true (browsers refuse it otherwise)",
            );
        }
    }
    if let Some(d) = &c.domain
        && (d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    {
        e.at(
            p("cookies.domain"),
            format!("{d:?} is not a domain name; omit it for host-only cookies"),
        );
    }
    CookiePolicy {
        secure: c.secure,
        domain: c.domain.clone(),
        session_name: f.sessions.cookie_name.clone(),
        session_same_site,
        sudo_name: f.sudo.cookie_name.clone(),
        sudo_same_site,
    }
}
