//! `[[internal_secrets]]`: the shared secrets that admit `auth = "internal"` routes, each
//! limited to its networks.

use super::secret::SecretSource;
use super::validate::{Errors, cidrs, p};
use crate::policy::{InternalSecret, InternalSecrets};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InternalSecretFile {
    pub name: String,
    pub secret: SecretSource,
    pub networks: Vec<String>,
}

pub(super) fn validate_internal_secrets(
    list: &[InternalSecretFile],
    e: &mut Errors,
) -> InternalSecrets {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let path = p("internal_secrets").index(i);
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            e.at(
                path.key("name"),
                "needs a name of 1–64 letters, digits, '-', '_' or '.'",
            );
        }
        if list[..i].iter().any(|o| o.name == s.name) {
            e.at(path.key("name"), format!("name {:?} is used twice", s.name));
        }
        let networks = cidrs(&s.networks, path.key("networks"), e);
        match s.secret.resolve() {
            Ok(secret) if name_ok => out.push(InternalSecret {
                name: s.name.clone(),
                name_header: HeaderValue::from_str(&s.name).expect("checked charset"),
                secret,
                networks,
            }),
            Ok(_) => {}
            Err(msg) => e.at(path.key("secret"), msg),
        }
    }
    for (i, a) in out.iter().enumerate() {
        if out[..i]
            .iter()
            .any(|b| b.secret.digest() == a.secret.digest())
        {
            e.at(
                p("internal_secrets").index(i).key("secret"),
                "the same secret is configured twice; rotation needs two different secrets",
            );
        }
    }
    InternalSecrets { secrets: out }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn short_and_duplicate_internal_secrets_are_refused() {
        let src = r#"
[[internal_secrets]]
name = "a"
secret = { value = "short" }

[[internal_secrets]]
name = "a"
secret = { value = "0123456789abcdef" }
networks = ["10.0.0.0/33"]
"#;
        let joined = errors(src).join("\n");
        assert!(
            joined.contains("internal_secrets[0].secret @4:10: secret is too short"),
            "{joined}"
        );
        assert!(
            joined.contains("internal_secrets[1].name @7:8: name \"a\" is used twice"),
            "{joined}"
        );
        assert!(
            joined.contains("internal_secrets[1].networks[0]"),
            "{joined}"
        );
    }
}
