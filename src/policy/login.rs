//! Login capture (the token-handler pattern): the answer of a `login` route that carries a
//! session token becomes fluxgate's session cookie, so browser code never has to hold the token.
//!
//! Pure: the proxy performs the exchange, reads the answer up to [`LoginSettings::max_body_bytes`]
//! and hands it here; this decides whether it is a login to capture, and what the client gets.
//! MFA answers (`{mfa: true, ticket}`), errors and anything not shaped as configured pass through
//! untouched, with a reason for the metrics.

use crate::credential::is_session_token;
use bytes::Bytes;
use serde_json::Value;

pub const DEFAULT_TOKEN_POINTER: &str = "/token";
pub const DEFAULT_USER_ID_POINTER: &str = "/user_id";
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// 30 days: the session cookie lives as long as a Fluxer session token is typically kept; the
/// backend's own expiry or a logout ends it sooner.
pub const DEFAULT_COOKIE_MAX_AGE_SECS: i64 = 30 * 24 * 3600;

/// `[login]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// JSON pointer to the session token in a login answer.
    pub token_pointer: String,
    /// JSON pointer to the user id (a string, or an unsigned integer).
    pub user_id_pointer: String,
    /// Remove the token from the body the browser receives.
    pub strip_token: bool,
    /// `Max-Age` of the session cookie set from a captured token.
    pub cookie_max_age_secs: i64,
    /// Answers longer than this pass through unread (and uncaptured).
    pub max_body_bytes: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            token_pointer: DEFAULT_TOKEN_POINTER.into(),
            user_id_pointer: DEFAULT_USER_ID_POINTER.into(),
            strip_token: false,
            cookie_max_age_secs: DEFAULT_COOKIE_MAX_AGE_SECS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// What to do with a login answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Set the session cookie to `token` for `user_id`; `body`, when set, replaces the answer's
    /// body (the token was stripped).
    Captured {
        token: String,
        user_id: String,
        body: Option<Bytes>,
    },
    /// Pass the answer through untouched; the reason is a metric label.
    PassThrough(&'static str),
}

/// Label for answers over [`LoginSettings::max_body_bytes`] (decided by the reader).
pub const TOO_LARGE: &str = "too_large";

/// Decides what a login route's answer means.
pub fn capture(
    s: &LoginSettings,
    status: u16,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Capture {
    use Capture::PassThrough;
    if !(200..300).contains(&status) {
        return PassThrough("not_success");
    }
    if !content_type.is_some_and(is_json) {
        return PassThrough("not_json");
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return PassThrough("not_json");
    };
    if v.get("mfa").and_then(Value::as_bool) == Some(true) {
        return PassThrough("mfa");
    }
    let token = match v.pointer(&s.token_pointer) {
        None | Some(Value::Null) => return PassThrough("no_token"),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return PassThrough("bad_token"),
    };
    // SECURITY: only a value shaped like a session token becomes the cookie: anything else
    // could break the Set-Cookie header or smuggle attributes into it
    // (`"x; Domain=evil.example"`), and would never be accepted back as a credential anyway.
    if !is_session_token(&token) {
        return PassThrough("bad_token");
    }
    let user_id = match v.pointer(&s.user_id_pointer) {
        Some(Value::String(u)) => u.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => return PassThrough("bad_user_id"),
    };
    let body = if s.strip_token {
        match strip(&mut v, &s.token_pointer) {
            Some(b) => Some(b),
            None => return PassThrough("bad_token"),
        }
    } else {
        None
    };
    Capture::Captured {
        token,
        user_id,
        body,
    }
}

/// `application/json` or `application/<something>+json`, parameters ignored.
fn is_json(ct: &[u8]) -> bool {
    let Ok(ct) = std::str::from_utf8(ct) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The answer without the member at `pointer`, serialized again.
fn strip(v: &mut Value, pointer: &str) -> Option<Bytes> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let key = last.replace("~1", "/").replace("~0", "~");
    let parent = if parent.is_empty() {
        Some(&mut *v)
    } else {
        v.pointer_mut(parent)
    };
    parent?.as_object_mut()?.remove(&key)?;
    serde_json::to_vec(v).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOK: &str = "flx_abcdefghijklmnopqrstuvwxyz0123456789";
    const JSON: Option<&[u8]> = Some(b"application/json; charset=utf-8");

    fn s() -> LoginSettings {
        LoginSettings::default()
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn login_answer_with_token_is_captured() {
        let b = body(serde_json::json!({"token": TOK, "user_id": "42"}));
        assert_eq!(
            capture(&s(), 200, JSON, &b),
            Capture::Captured {
                token: TOK.into(),
                user_id: "42".into(),
                body: None
            }
        );
    }

    #[test]
    fn numeric_user_id_is_read_in_decimal() {
        let b = body(serde_json::json!({"token": TOK, "user_id": 1234567890123u64}));
        let Capture::Captured { user_id, .. } = capture(&s(), 200, JSON, &b) else {
            panic!("not captured");
        };
        assert_eq!(user_id, "1234567890123");
    }

    #[test]
    fn mfa_answer_with_ticket_passes_through() {
        let b = body(serde_json::json!({"mfa": true, "ticket": "t1", "totp": true}));
        assert_eq!(capture(&s(), 200, JSON, &b), Capture::PassThrough("mfa"));
    }

    #[test]
    fn errors_and_non_json_pass_through() {
        let b = body(serde_json::json!({"token": TOK, "user_id": "42"}));
        assert_eq!(
            capture(&s(), 400, JSON, &b),
            Capture::PassThrough("not_success")
        );
        assert_eq!(
            capture(&s(), 200, Some(b"text/html"), &b),
            Capture::PassThrough("not_json")
        );
        assert_eq!(
            capture(&s(), 200, None, &b),
            Capture::PassThrough("not_json")
        );
        assert_eq!(
            capture(&s(), 200, JSON, b"{not json"),
            Capture::PassThrough("not_json")
        );
        assert_eq!(
            capture(&s(), 200, Some(b"application/problem+json"), &b),
            capture(&s(), 200, JSON, &b)
        );
    }

    #[test]
    fn token_that_could_inject_cookie_attributes_is_not_captured() {
        for bad in [
            "flx_x; Domain=evil.example",
            "flx_short",
            "not-a-session-token-at-all-0123456789",
            "flx_abcdefghijklmnopqrstuvwxyz01234\r\nSet-Cookie: a=b",
        ] {
            let b = body(serde_json::json!({"token": bad, "user_id": "42"}));
            assert_eq!(
                capture(&s(), 200, JSON, &b),
                Capture::PassThrough("bad_token"),
                "{bad:?}"
            );
        }
        let b = body(serde_json::json!({"token": 7, "user_id": "42"}));
        assert_eq!(
            capture(&s(), 200, JSON, &b),
            Capture::PassThrough("bad_token")
        );
    }

    #[test]
    fn missing_or_wrongly_typed_user_id_is_not_captured() {
        for uid in [Value::Null, serde_json::json!(-1), serde_json::json!(["1"])] {
            let b = body(serde_json::json!({"token": TOK, "user_id": uid}));
            assert_eq!(
                capture(&s(), 200, JSON, &b),
                Capture::PassThrough("bad_user_id")
            );
        }
    }

    #[test]
    fn strip_token_removes_only_the_token() {
        let settings = LoginSettings {
            strip_token: true,
            ..s()
        };
        let b = body(serde_json::json!({"token": TOK, "user_id": "42", "theme": "dark"}));
        let Capture::Captured {
            body: Some(out), ..
        } = capture(&settings, 200, JSON, &b)
        else {
            panic!("not captured");
        };
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v, serde_json::json!({"user_id": "42", "theme": "dark"}));
    }

    #[test]
    fn nested_pointers_are_followed() {
        let settings = LoginSettings {
            token_pointer: "/session/token".into(),
            user_id_pointer: "/user/id".into(),
            strip_token: true,
            ..s()
        };
        let b = body(serde_json::json!({"session": {"token": TOK}, "user": {"id": 9}}));
        let Capture::Captured {
            user_id,
            body: Some(out),
            ..
        } = capture(&settings, 200, JSON, &b)
        else {
            panic!("not captured");
        };
        assert_eq!(user_id, "9");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v, serde_json::json!({"session": {}, "user": {"id": 9}}));
    }
}
