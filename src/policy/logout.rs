//! Logout routes (contract §9): after the upstream accepts a logout (2xx), fluxgate revokes the
//! session(s) in its store, which evicts them on every instance, and clears the cookies.

pub use super::routes::Role;
use crate::credential::Sid;
use crate::session::SessionCache;
use serde::Deserialize;

/// Largest `POST /auth/sessions/logout` body fluxgate reads; a larger one is forwarded
/// untouched and revokes nothing.
pub const MAX_LOGOUT_BODY: usize = 16 * 1024;
/// Most sids one request may revoke.
const MAX_SIDS: usize = 256;

#[derive(Deserialize)]
struct Body {
    session_id_hashes: Vec<String>,
}

/// Parses `{"session_id_hashes": [...]}` into sids.
pub fn parse_body(body: &[u8]) -> Result<Vec<Sid>, String> {
    let b: Body =
        serde_json::from_slice(body).map_err(|e| format!("not the expected JSON: {e}"))?;
    if b.session_id_hashes.len() > MAX_SIDS {
        return Err(format!("more than {MAX_SIDS} session_id_hashes"));
    }
    b.session_id_hashes
        .iter()
        .map(|s| Sid::decode(s).ok_or_else(|| format!("{s:?} is not a session id hash")))
        .collect()
}

/// What a listed logout did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    pub count: usize,
    /// One of the revoked sessions is the caller's own (so its cookies should be cleared).
    pub includes_caller: bool,
}

/// Revokes each listed session that belongs to `user_id`.
// SECURITY: a user may only log out their own sessions; sids of other users are ignored, so a
// leaked sid cannot be used to log someone else out.
pub async fn revoke_listed(
    cache: &SessionCache,
    user_id: &str,
    caller: &Sid,
    sids: &[Sid],
) -> Result<Revoked, String> {
    let mut out = Revoked::default();
    for sid in sids {
        let owner = cache
            .store()
            .get(sid)
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.user_id);
        if owner.as_deref() != Some(user_id) {
            tracing::info!(sid = %sid, "logout: skipping a session that is not the caller's");
            continue;
        }
        cache.revoke(sid).await.map_err(|e| e.to_string())?;
        out.count += 1;
        out.includes_caller |= sid == caller;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_body_and_refuses_others() {
        let a = Sid::of("a");
        let body = format!(r#"{{"session_id_hashes": ["{}"]}}"#, a.encode());
        assert_eq!(parse_body(body.as_bytes()).unwrap(), vec![a]);
        assert!(parse_body(b"{}").is_err());
        assert!(parse_body(b"not json").is_err());
        assert!(parse_body(br#"{"session_id_hashes": ["short"]}"#).is_err());
        let many = format!(
            r#"{{"session_id_hashes": [{}]}}"#,
            vec![format!("\"{}\"", a.encode()); 257].join(",")
        );
        assert!(parse_body(many.as_bytes()).is_err());
    }
}
