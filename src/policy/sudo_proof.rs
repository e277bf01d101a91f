//! In-band sudo proofs (Fluxer's dialect, contract §6): the client sends the sensitive request
//! itself with a verification object in its JSON body (`password`; or `mfa_method` +
//! `mfa_code`; or `webauthn_response` + `webauthn_challenge`), the upstream checks it, acts, and
//! answers with a fresh `X-Fluxer-Sudo-Mode-JWT` for accounts with MFA.
//!
//! fluxgate cannot check such a proof (it does not know the password), so on routes that allow
//! it the request is forwarded and the upstream's answer is watched: a wrong proof counts as a
//! failure in a per-user lockout, so guessing a password through sensitive routes stops at the
//! edge. Pure: the pipeline asks [`carries_proof`], the proxy asks [`proof_failed`].

use serde_json::Value;

/// Where a sudo route's proof may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SudoProofs {
    /// Only fluxgate's own proof (cookie or header): today's rule.
    #[default]
    Edge,
    /// The upstream decides: requests are forwarded with or without a proof (in-band proofs
    /// are still watched for the lockout).
    Upstream,
    /// An edge proof, or else an in-band proof forwarded for the upstream to verify; neither:
    /// 403 at the edge.
    Both,
}

/// The body fields that make up a verification object, for recognising the upstream's
/// "wrong proof" answers.
const PROOF_FIELDS: [&str; 5] = [
    "password",
    "mfa_method",
    "mfa_code",
    "webauthn_response",
    "webauthn_challenge",
];

fn text(v: &Value, key: &str) -> bool {
    v.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// Whether a (parsed) request body carries a verification object.
pub fn carries_proof(body: &Value) -> bool {
    text(body, "password")
        || (text(body, "mfa_method") && text(body, "mfa_code"))
        || (body.get("webauthn_response").is_some_and(|v| !v.is_null())
            && text(body, "webauthn_challenge"))
}

/// Whether the upstream's answer to a request carrying an in-band proof says the proof was
/// wrong. `body` is the start of the answer (it may be cut), `encoded` whether it has a
/// `Content-Encoding` other than identity.
// SECURITY: fail closed. A 400 or 403 counts as a failed proof unless its body plainly says it
// is about something else; otherwise a client could hide its wrong guesses from the lockout by
// asking for a compressed or oversized error.
pub fn proof_failed(status: u16, encoded: bool, body: &[u8]) -> bool {
    if status != 400 && status != 403 {
        return false;
    }
    if encoded {
        return true;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return true;
    };
    match (status, v.get("code").and_then(Value::as_str)) {
        (403, Some("SUDO_MODE_REQUIRED")) => true,
        (403, Some(_)) => false,
        (400, Some("INVALID_FORM_BODY")) => names_a_proof_field(v.get("errors")),
        (400, Some(_)) => false,
        _ => true,
    }
}

/// Fluxer's `errors`: a list of `{path, …}` or an object keyed by field.
fn names_a_proof_field(errors: Option<&Value>) -> bool {
    let named = |s: &str| PROOF_FIELDS.contains(&s);
    match errors {
        Some(Value::Array(items)) => items.iter().any(|e| {
            e.get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| named(p.trim_start_matches('/')))
        }),
        Some(Value::Object(m)) => m.keys().any(|k| named(k)),
        // No detail: the form was refused, and a proof was in it.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verification_objects_are_recognised() {
        assert!(carries_proof(&json!({"password": "hunter2"})));
        assert!(carries_proof(
            &json!({"mfa_method": "totp", "mfa_code": "123456"})
        ));
        assert!(carries_proof(
            &json!({"webauthn_response": {"id": "x"}, "webauthn_challenge": "c"})
        ));
        for none in [
            json!({}),
            json!({"password": ""}),
            json!({"password": 7}),
            json!({"mfa_code": "123456"}),
            json!({"webauthn_response": null, "webauthn_challenge": "c"}),
            json!(["password"]),
        ] {
            assert!(!carries_proof(&none), "{none}");
        }
    }

    #[test]
    fn wrong_password_and_wrong_code_answers_are_failures() {
        let wrong_password = json!({"code": "INVALID_FORM_BODY", "message": "Invalid form body",
            "errors": [{"path": "password", "code": "PASSWORD_INCORRECT", "message": "Wrong"}]});
        assert!(proof_failed(
            400,
            false,
            wrong_password.to_string().as_bytes()
        ));
        let wrong_code = json!({"code": "INVALID_FORM_BODY", "errors": {"mfa_code": ["bad"]}});
        assert!(proof_failed(400, false, wrong_code.to_string().as_bytes()));
        let sudo = json!({"code": "SUDO_MODE_REQUIRED", "message": "Sudo mode required"});
        assert!(proof_failed(403, false, sudo.to_string().as_bytes()));
    }

    #[test]
    fn other_refusals_and_successes_are_not_failures() {
        let name = json!({"code": "INVALID_FORM_BODY", "errors": [{"path": "name"}]});
        assert!(!proof_failed(400, false, name.to_string().as_bytes()));
        let perms = json!({"code": "MISSING_PERMISSIONS"});
        assert!(!proof_failed(403, false, perms.to_string().as_bytes()));
        for status in [200, 204, 401, 404, 429, 500] {
            assert!(!proof_failed(status, false, b"{}"), "{status}");
        }
    }

    #[test]
    fn a_compressed_or_unreadable_error_hides_nothing_from_the_lockout() {
        let name = json!({"code": "INVALID_FORM_BODY", "errors": [{"path": "name"}]});
        assert!(proof_failed(400, true, name.to_string().as_bytes()));
        assert!(proof_failed(400, false, b"\x1f\x8b\x08\x00garbage"));
        assert!(proof_failed(403, false, b"{\"code\":\"SUDO_MODE_REQ"));
    }
}
