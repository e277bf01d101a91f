//! `[login]`: login capture on routes with `role = "login"`: where the token and user id sit in
//! the upstream's login answer, whether the browser still sees the token, and the cookie's
//! lifetime.

use super::Dur;
use super::validate::{Errors, p, positive};
use crate::policy::login::LoginSettings;
use serde::{Deserialize, Serialize};

/// The largest `max_body_bytes` accepted: login answers are small JSON documents.
const MAX_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginFile {
    pub token_pointer: String,
    pub user_id_pointer: String,
    pub strip_token: bool,
    pub cookie_max_age: Dur,
    pub max_body_bytes: usize,
}

impl Default for LoginFile {
    fn default() -> Self {
        let d = LoginSettings::default();
        LoginFile {
            token_pointer: d.token_pointer,
            user_id_pointer: d.user_id_pointer,
            strip_token: d.strip_token,
            cookie_max_age: Dur::from_secs(d.cookie_max_age_secs as u64),
            max_body_bytes: d.max_body_bytes,
        }
    }
}

pub(super) fn validate_login(f: &LoginFile, e: &mut Errors) -> LoginSettings {
    for (v, key) in [
        (&f.token_pointer, "login.token_pointer"),
        (&f.user_id_pointer, "login.user_id_pointer"),
    ] {
        // The root ("") is not a member: the token must be one member of the answer.
        if !v.starts_with('/') || v.len() < 2 {
            e.at(
                p(key),
                "must be a JSON pointer to a member, like \"/token\"",
            );
        }
    }
    positive(f.cookie_max_age, p("login.cookie_max_age"), e);
    if f.max_body_bytes == 0 || f.max_body_bytes > MAX_BODY_LIMIT {
        e.at(
            p("login.max_body_bytes"),
            format!("must be between 1 and {MAX_BODY_LIMIT}"),
        );
    }
    LoginSettings {
        token_pointer: f.token_pointer.clone(),
        user_id_pointer: f.user_id_pointer.clone(),
        strip_token: f.strip_token,
        cookie_max_age_secs: f.cookie_max_age.0.as_secs().min(i64::MAX as u64) as i64,
        max_body_bytes: f.max_body_bytes,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn errors(toml: &str) -> String {
        match parse(toml, "t.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_login_settings_are_each_reported() {
        let out = errors(
            "[login]\ntoken_pointer = \"token\"\nuser_id_pointer = \"/\"\ncookie_max_age = \"0s\"\nmax_body_bytes = 0\n",
        );
        for key in [
            "login.token_pointer",
            "login.user_id_pointer",
            "login.cookie_max_age",
            "login.max_body_bytes",
        ] {
            assert!(out.contains(key), "{key} not reported in:\n{out}");
        }
    }

    #[test]
    fn login_route_needs_a_backend_and_no_auth() {
        let out = errors(
            "[[route]]\npath = \"/auth/login\"\nmethods = [\"POST\"]\nauth = \"required\"\nrole = \"login\"\n",
        );
        assert!(out.contains("login routes are public"), "{out}");
        assert!(out.contains("needs a backend session source"), "{out}");
    }

    #[test]
    fn login_route_with_backend_is_accepted() {
        let out = errors(
            "[sessions]\nstore = \"backend\"\n[[route]]\npath = \"/auth/login\"\nmethods = [\"POST\"]\nauth = \"none\"\nrole = \"login\"\n",
        );
        assert_eq!(out, "");
    }
}
