//! What the backend's answers mean: a validation answer's user object, and an RFC 7662
//! introspection answer, each becomes a session, no session, or `Malformed` (contract §8).
//! Pure functions over the body, fuzzed through `fuzzing.rs`.

use super::{BackendError, BackendSession, BackendSettings};
use crate::credential::Kind;
use crate::session::record::{RECORD_VERSION, RecordError, SessionRecord};
use serde_json::Value;

/// A validation answer: the user object.
pub(crate) fn user_session(
    s: &BackendSettings,
    kind: Kind,
    body: &[u8],
    now: i64,
) -> Result<BackendSession, BackendError> {
    let v = json_object(body)?;
    let user_id = user_id(v.pointer(&s.user_id_pointer), "user_id")?;
    let has_mfa = optional(&v, &s.mfa_pointer, Value::as_bool, "mfa")?;
    let flags = optional(&v, &s.flags_pointer, Value::as_u64, "flags")?;
    let record = SessionRecord {
        v: RECORD_VERSION,
        user_id,
        kind,
        created_at: now,
        expires_at: None,
        scopes: vec![],
        client_ip: None,
        has_mfa,
        flags,
        client_id: None,
    };
    session(record)
}

/// An RFC 7662 introspection answer.
pub(crate) fn introspection(body: &[u8], now: i64) -> Result<Option<BackendSession>, BackendError> {
    let v = json_object(body)?;
    match v.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(None),
        _ => return Err(BackendError::Malformed("active")),
    }
    let exp = optional(&v, "/exp", Value::as_i64, "exp")?;
    let nbf = optional(&v, "/nbf", Value::as_i64, "nbf")?;
    let token_type = optional(&v, "/token_type", Value::as_str, "token_type")?;
    // SECURITY: the backend's word is bounded by the token's own times, and only access tokens
    // open the API: a refresh token presented as a bearer token is no session, even if the
    // introspection endpoint calls it active.
    if exp.is_some_and(|e| e <= now)
        || nbf.is_some_and(|n| n > now)
        || token_type.is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Ok(None);
    }
    let user_id = user_id(v.get("sub"), "sub")?;
    let scopes = optional(&v, "/scope", Value::as_str, "scope")?
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).map(String::from))
        .into_iter()
        .flatten()
        .collect();
    let client_id = optional(&v, "/client_id", Value::as_str, "client_id")?.map(String::from);
    let record = SessionRecord {
        v: RECORD_VERSION,
        user_id,
        kind: Kind::Oauth2,
        created_at: now,
        expires_at: exp,
        scopes,
        client_ip: None,
        has_mfa: None,
        flags: None,
        client_id,
    };
    session(record).map(Some)
}

fn json_object(body: &[u8]) -> Result<Value, BackendError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(BackendError::Malformed("not_an_object")),
        Err(_) => Err(BackendError::Malformed("json")),
    }
}

/// A user id: a string, or an unsigned integer written in decimal.
fn user_id(v: Option<&Value>, what: &'static str) -> Result<String, BackendError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        _ => Err(BackendError::Malformed(what)),
    }
}

/// The value at `pointer` (`""`: not read); absent or null is `None`, another type is malformed.
fn optional<'a, T>(
    v: &'a Value,
    pointer: &str,
    get: fn(&'a Value) -> Option<T>,
    what: &'static str,
) -> Result<Option<T>, BackendError> {
    if pointer.is_empty() {
        return Ok(None);
    }
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => get(x).map(Some).ok_or(BackendError::Malformed(what)),
    }
}

fn session(record: SessionRecord) -> Result<BackendSession, BackendError> {
    // SECURITY: the user id, scopes and client id become identity headers; the record's own
    // validation (the same the store's records pass) refuses anything that could break a
    // header, so a backend answering `"id": "1\r\nX-Fluxgate-User-Id: 2"` yields an error,
    // never a session.
    record.validate().map_err(|e| match e {
        RecordError::Field(f) => BackendError::Malformed(f),
        _ => BackendError::Malformed("record"),
    })?;
    Ok(BackendSession { record })
}
