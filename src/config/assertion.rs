//! `[identity] assertion_*`: how `X-Fluxgate-Assertion` is signed. HS256 with
//! `assertion_secret` (the default algorithm), or ES256 / EdDSA with the PKCS#8 PEM keys of
//! `[[identity.assertion_keys]]`, whose public halves fluxgate publishes at
//! `/.well-known/jwks.json`. Key files are read here, at load and on every reload, so a missing
//! or wrong key is a config error naming the file, never a failure at the first request.

use super::ConfigError;
use super::identity::IdentityFile;
use super::locate::KeyPath;
use super::validate::{Errors, choice, p};
use crate::identity::assertion::Asserter;
use crate::identity::keys::{KeyAlg, KeyRing, SigningKey, Window, generate_pem};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One `[[identity.assertion_keys]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AssertionKeyFile {
    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub file: PathBuf,
    /// The `kid` in the header and the JWKS; default: the key's RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// RFC 3339 time from which this key signs (absent: from the start). Set in the future,
    /// the key is published before it signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_from: Option<String>,
    /// RFC 3339 time until which this key is published (absent: while listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_until: Option<String>,
    /// When `file` does not exist, `run` (and a reload) writes a new key there, mode 0600.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,
}

/// What `assertion_algorithm` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Hs256,
    Key(KeyAlg),
}

/// The signer of `X-Fluxgate-Assertion`, when a secret or keys are configured.
pub(super) fn validate_assertion(i: &IdentityFile, e: &mut Errors) -> Option<Arc<Asserter>> {
    let ttl = i.assertion_ttl.0;
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(300) {
        e.at(
            p("identity.assertion_ttl"),
            "must be between 1s and 5m: an assertion is meant to be used at once",
        );
    }
    let ttl = ttl.as_secs() as i64;
    let alg = choice(
        &i.assertion_algorithm,
        "assertion algorithm",
        &[
            ("HS256", Alg::Hs256),
            ("ES256", Alg::Key(KeyAlg::Es256)),
            ("EdDSA", Alg::Key(KeyAlg::EdDsa)),
        ],
        p("identity.assertion_algorithm"),
        e,
    )?;
    match alg {
        Alg::Hs256 => {
            if !i.assertion_keys.is_empty() {
                e.at(
                    p("identity.assertion_keys"),
                    "keys are for assertion_algorithm = \"ES256\" or \"EdDSA\"; HS256 signs \
                     with assertion_secret",
                );
            }
            // HS256 wants a key as long as its output: 32 bytes.
            match i.assertion_secret.as_ref()?.resolve_with_min(32) {
                Ok(s) => Some(Arc::new(Asserter::new(&s, ttl))),
                Err(msg) => {
                    e.at(p("identity.assertion_secret"), msg);
                    None
                }
            }
        }
        Alg::Key(alg) => {
            if i.assertion_secret.is_some() {
                e.at(
                    p("identity.assertion_secret"),
                    format!(
                        "is for HS256, but assertion_algorithm is {:?}: remove it (backends \
                         verify with the published keys)",
                        i.assertion_algorithm
                    ),
                );
            }
            let ring = key_ring(&i.assertion_keys, alg, ttl, e)?;
            Some(Arc::new(Asserter::with_keys(ring, ttl)))
        }
    }
}

/// The asymmetric algorithm `assertion_algorithm` names, if any (validation reports the rest).
fn key_alg(name: &str) -> Option<KeyAlg> {
    match name {
        "ES256" => Some(KeyAlg::Es256),
        "EdDSA" => Some(KeyAlg::EdDsa),
        _ => None,
    }
}

/// Writes a new key for each `generate = true` entry whose file does not exist (mode 0600,
/// never replacing a file). For `run` and reload only: `check-config` never writes.
/// Returns the files written.
pub(super) fn generate_missing(i: &IdentityFile) -> Result<Vec<PathBuf>, ConfigError> {
    let mut written = Vec::new();
    let Some(alg) = key_alg(&i.assertion_algorithm) else {
        return Ok(written);
    };
    for (n, f) in i.assertion_keys.iter().enumerate() {
        if !f.generate || f.file.exists() {
            continue;
        }
        let fail = |msg: String| ConfigError {
            path: p("identity.assertion_keys").index(n).key("file"),
            message: format!("cannot generate {}: {msg}", f.file.display()),
            at_key: false,
        };
        let pem = generate_pem(alg).map_err(fail)?;
        write_private(&f.file, pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        written.push(f.file.clone());
    }
    Ok(written)
}

/// Creates `path` readable by its owner only, failing if it exists.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Loads every key, each problem reported at its own key path.
fn key_ring(files: &[AssertionKeyFile], alg: KeyAlg, ttl: i64, e: &mut Errors) -> Option<KeyRing> {
    if files.is_empty() {
        e.at(
            p("identity.assertion_keys"),
            "ES256 and EdDSA need at least one [[identity.assertion_keys]] with a PEM file",
        );
        return None;
    }
    let before = e.0.len();
    let mut keys: Vec<SigningKey> = Vec::with_capacity(files.len());
    for (n, f) in files.iter().enumerate() {
        let at = p("identity.assertion_keys").index(n);
        let window = Window {
            sign_from: time(f.sign_from.as_deref(), at.key("sign_from"), e),
            publish_until: time(f.publish_until.as_deref(), at.key("publish_until"), e),
        };
        if let Some(kid) = &f.kid
            && (kid.is_empty() || kid.len() > 128 || kid.bytes().any(|b| !b.is_ascii_graphic()))
        {
            e.at(at.key("kid"), "must be 1-128 printable ASCII characters");
            continue;
        }
        // A key still to be generated (check-config, explain): checked with a throwaway one.
        let read = if f.generate && !f.file.exists() {
            generate_pem(alg).map(String::into_bytes)
        } else {
            std::fs::read(&f.file).map_err(|err| format!("cannot read {}: {err}", f.file.display()))
        };
        let key = read.and_then(|pem| {
            SigningKey::from_pem(&pem, alg, f.kid.as_deref(), window)
                .map_err(|why| format!("{} {why}", f.file.display()))
        });
        match key {
            Ok(k) => {
                if keys.iter().any(|o| o.kid() == k.kid()) {
                    e.at(
                        at.key("kid"),
                        format!(
                            "{:?} is the kid of another key (the same key twice?)",
                            k.kid()
                        ),
                    );
                }
                keys.push(k);
            }
            Err(msg) => e.at(at.key("file"), msg),
        }
    }
    if e.0.len() != before {
        return None;
    }
    check_overlap(&keys, ttl, e);
    (e.0.len() == before).then(|| KeyRing::new(keys))
}

/// A key that stops being published must have a successor that signs early enough for the
/// last assertion the old key signed to expire while the old key is still published.
fn check_overlap(keys: &[SigningKey], ttl: i64, e: &mut Errors) {
    for (n, k) in keys.iter().enumerate() {
        let Some(until) = k.publish_until else {
            continue;
        };
        if k.sign_from.is_some_and(|from| from >= until) {
            e.at(
                p("identity.assertion_keys").index(n).key("publish_until"),
                "must be later than sign_from",
            );
            continue;
        }
        let taken_over = keys[n + 1..]
            .iter()
            .any(|later| later.sign_from.is_none_or(|from| from + ttl <= until));
        if !taken_over {
            e.at(
                p("identity.assertion_keys").index(n).key("publish_until"),
                format!(
                    "this key would still sign, or its last assertions still be valid, when it \
                     stops being published: list a later key whose sign_from is at least \
                     assertion_ttl ({ttl}s) before this time"
                ),
            );
        }
    }
}

/// An RFC 3339 time as Unix seconds.
fn time(s: Option<&str>, at: KeyPath, e: &mut Errors) -> Option<i64> {
    let s = s?;
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.timestamp()),
        Err(_) => {
            e.at(
                at,
                format!("{s:?} is not an RFC 3339 time (e.g. \"2026-12-03T12:00:00Z\")"),
            );
            None
        }
    }
}

#[cfg(test)]
#[path = "assertion_tests.rs"]
mod tests;
