//! Secrets in the config file: given inline (`{ value = "…" }`), by file (`{ file = "…" }`) or by
//! environment variable (`{ env = "…" }`). A resolved [`Secret`] never prints its bytes.

pub use crate::secret::Secret;
use serde::{Deserialize, Serialize, Serializer};
use std::path::PathBuf;

/// Where a secret comes from, as written in the file. Exactly one field must be set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct SecretSource {
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

fn redact<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// Shortest secret we accept: anything shorter can be brute-forced over the network.
pub const MIN_SECRET_LEN: usize = 16;

impl SecretSource {
    /// Reads the secret. Errors say which source failed and why, never the secret itself.
    pub fn resolve(&self) -> Result<Secret, String> {
        let secret = self.resolve_with_min(MIN_SECRET_LEN)?;
        if let Some(why) = placeholder(secret.expose()) {
            return Err(format!(
                "secret looks like a placeholder ({why}); generate one, e.g. `openssl rand -hex 32`"
            ));
        }
        Ok(secret)
    }

    /// Like [`resolve`](Self::resolve), for secrets whose length fluxgate does not choose
    /// (a Redis password): at least `min` bytes.
    pub fn resolve_with_min(&self, min: usize) -> Result<Secret, String> {
        let set = [
            self.value.is_some(),
            self.file.is_some(),
            self.env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err("set exactly one of `value`, `file` or `env`".into());
        }
        let raw = if let Some(v) = &self.value {
            v.clone()
        } else if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
            // Files usually end with a newline that is not part of the secret.
            text.trim_end_matches(['\n', '\r']).to_string()
        } else {
            let name = self.env.as_deref().unwrap_or_default();
            std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set or not UTF-8"))?
        };
        if raw.len() < min.max(1) {
            return Err(format!(
                "secret is too short ({} bytes); use at least {} random bytes",
                raw.len(),
                min.max(1)
            ));
        }
        if raw.trim() != raw || raw.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(
                "secret must be printable ASCII without spaces (it travels in HTTP headers)".into(),
            );
        }
        Ok(Secret::new(raw))
    }
}

/// Words that mark a value someone was meant to replace.
const PLACEHOLDER_WORDS: [&str; 9] = [
    "changeme",
    "change-me",
    "change_me",
    "replace",
    "placeholder",
    "your-secret",
    "yoursecret",
    "example",
    "xxxxxx",
];

/// Why `s` looks like a placeholder rather than a secret, if it does.
// SECURITY: a shipped example value ("REPLACE-with-…", "change-me-…") or a run of one character
// passes the length check but is public knowledge; starting with it would protect nothing.
fn placeholder(s: &str) -> Option<&'static str> {
    let lower = s.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        return Some("it contains a word like \"change-me\" or \"replace\"");
    }
    let mut seen = [false; 128];
    for b in s.bytes() {
        seen[(b & 0x7f) as usize] = true;
    }
    if seen.iter().filter(|x| **x).count() < 6 {
        return Some("it repeats fewer than six different characters");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_secret_resolves_and_matches_only_itself() {
        let s = SecretSource {
            value: Some("0123456789abcdef".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(s.matches(b"0123456789abcdef"));
        assert!(!s.matches(b"0123456789abcdeF"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn exactly_one_source_is_required() {
        let none = SecretSource::default().resolve().unwrap_err();
        assert!(none.contains("exactly one"));
        let two = SecretSource {
            value: Some("0123456789abcdef".into()),
            env: Some("X".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(two.contains("exactly one"));
    }

    #[test]
    fn short_or_unprintable_secrets_are_refused() {
        let short = SecretSource {
            value: Some("short".into()),
            ..Default::default()
        };
        assert!(short.resolve().unwrap_err().contains("too short"));
        let spaced = SecretSource {
            value: Some("0123456789 abcdef".into()),
            ..Default::default()
        };
        assert!(spaced.resolve().unwrap_err().contains("printable"));
    }

    #[test]
    fn file_secret_drops_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "0123456789abcdef\n").unwrap();
        let s = SecretSource {
            file: Some(p),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(s.matches(b"0123456789abcdef"));
    }

    #[test]
    fn missing_env_and_file_say_which() {
        let e = SecretSource {
            env: Some("FLUXGATE_TEST_SURELY_UNSET_VAR".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("FLUXGATE_TEST_SURELY_UNSET_VAR"));
        let f = SecretSource {
            file: Some("/nonexistent/fluxgate/secret".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(f.contains("/nonexistent/fluxgate/secret"));
    }

    #[test]
    fn serialized_inline_value_is_redacted() {
        let s = SecretSource {
            value: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        let out = toml::to_string(&s).unwrap();
        assert!(!out.contains("0123456789abcdef"));
        assert!(out.contains("<redacted>"));
    }

    #[test]
    fn placeholder_secrets_that_pass_the_length_check_are_refused() {
        for value in [
            "REPLACE-with-output-of-openssl-rand-hex-32",
            "change-me-change-me-change-me",
            "my-placeholder-secret-0123",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababab",
            "xxxxxxxxxxxxxxxxxxxxx-01",
        ] {
            let err = SecretSource {
                value: Some(value.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(err.contains("placeholder"), "{value}: {err}");
        }
        // Real random secrets pass.
        for value in [
            "6f1c0b9e4a7d2e8f5c3b1a0d9e8f7c6b",
            "q7Wd2-Kx9_Lm4Pz8Rt1Vb6Yn",
        ] {
            SecretSource {
                value: Some(value.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap();
        }
    }
}
