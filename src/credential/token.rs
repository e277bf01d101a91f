//! Token formats: recognising them (charset and length) and minting fresh ones from the OS CSPRNG.

use super::{Kind, MAX_CREDENTIAL_LEN};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SESSION_PREFIX: &str = "flx_";
const SESSION_BODY_LEN: usize = 36;

/// `flx_` followed by exactly 36 ASCII letters or digits.
pub fn is_session_token(t: &str) -> bool {
    t.len() == SESSION_PREFIX.len() + SESSION_BODY_LEN
        && t.starts_with(SESSION_PREFIX)
        && t.as_bytes()[SESSION_PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
}

/// An OAuth2 access token: RFC 6750 `b64token` characters, at most 512 bytes, not `flx_…`.
pub fn is_oauth2_token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && t.len() <= MAX_CREDENTIAL_LEN
        && !t.starts_with(SESSION_PREFIX)
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// `<app_id>.<secret>`: a numeric application id (a snowflake) and a base64url secret.
pub fn is_bot_token(t: &str) -> bool {
    let Some((app, secret)) = t.split_once('.') else {
        return false;
    };
    t.len() <= MAX_CREDENTIAL_LEN
        && (1..=20).contains(&app.len())
        && app.bytes().all(|b| b.is_ascii_digit())
        && !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

const BASE62: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Mints a fresh token of the given kind from the operating system's CSPRNG.
/// `app_id` is required for bot tokens.
pub fn generate(kind: Kind, app_id: Option<&str>) -> Result<String, getrandom::Error> {
    match kind {
        Kind::Session => {
            let mut out = String::with_capacity(SESSION_PREFIX.len() + SESSION_BODY_LEN);
            out.push_str(SESSION_PREFIX);
            // Rejection sampling keeps every base62 character equally likely.
            let mut filled = 0;
            let mut buf = [0u8; 64];
            while filled < SESSION_BODY_LEN {
                getrandom::fill(&mut buf)?;
                for b in buf {
                    if filled == SESSION_BODY_LEN {
                        break;
                    }
                    if b < 248 {
                        out.push(BASE62[(b % 62) as usize] as char);
                        filled += 1;
                    }
                }
            }
            Ok(out)
        }
        Kind::Oauth2 => {
            let mut buf = [0u8; 32];
            getrandom::fill(&mut buf)?;
            Ok(URL_SAFE_NO_PAD.encode(buf))
        }
        Kind::Bot => {
            let mut buf = [0u8; 32];
            getrandom::fill(&mut buf)?;
            Ok(format!(
                "{}.{}",
                app_id.unwrap_or("0"),
                URL_SAFE_NO_PAD.encode(buf)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_formats() {
        let s = generate(Kind::Session, None).unwrap();
        assert!(is_session_token(&s), "{s}");
        let o = generate(Kind::Oauth2, None).unwrap();
        assert_eq!(o.len(), 43);
        assert!(is_oauth2_token(&o), "{o}");
        let b = generate(Kind::Bot, Some("1234567890")).unwrap();
        assert!(b.starts_with("1234567890."));
        assert!(is_bot_token(&b), "{b}");
    }

    #[test]
    fn generated_tokens_differ() {
        let a = generate(Kind::Session, None).unwrap();
        let b = generate(Kind::Session, None).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn session_token_shape_is_exact() {
        assert!(is_session_token("flx_abcdefghijklmnopqrstuvwxyz0123456789"));
        assert!(!is_session_token("flx_abcdefghijklmnopqrstuvwxyz012345678"));
        assert!(!is_session_token(
            "flx_abcdefghijklmnopqrstuvwxyz01234567890"
        ));
        assert!(!is_session_token(
            "flx_abcdefghijklmnopqrstuvwxyz012345678-"
        ));
        assert!(!is_session_token(
            "FLX_abcdefghijklmnopqrstuvwxyz0123456789"
        ));
    }

    #[test]
    fn oauth2_and_bot_shapes() {
        assert!(is_oauth2_token("abc.DEF-_~+/=="));
        assert!(!is_oauth2_token("=="));
        assert!(!is_oauth2_token("a b"));
        assert!(!is_oauth2_token("flx_short"));
        assert!(!is_oauth2_token(&"a".repeat(513)));
        assert!(is_bot_token("123.abc_DEF-9"));
        assert!(!is_bot_token("abc.def"));
        assert!(!is_bot_token("123."));
        assert!(!is_bot_token("123.a.b"));
        assert!(!is_bot_token("123456789012345678901.x"));
    }
}
