//! `[identity]`: the names of the headers that tell the upstream who is calling (one per
//! variant of the identity-header table), and the signed assertion (validated in
//! `config/assertion.rs`).

use super::Dur;
use super::assertion::AssertionKeyFile;
use super::secret::SecretSource;
use super::validate::{Errors, header_name, p};
use crate::identity::{HeaderNames, IdentityHeader};
use http::HeaderName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IdentityFile {
    pub auth_kind_header: String,
    pub user_id_header: String,
    pub session_id_header: String,
    pub scopes_header: String,
    pub client_id_header: String,
    pub service_header: String,
    pub sudo_until_header: String,
    pub client_ip_header: String,
    pub country_header: String,
    pub asn_header: String,
    pub assertion_header: String,
    /// Signs `assertion_header` (HS256) when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion_secret: Option<SecretSource>,
    pub assertion_ttl: Dur,
    /// "HS256" (with `assertion_secret`), "ES256" or "EdDSA" (with `assertion_keys`).
    pub assertion_algorithm: String,
    /// The asymmetric keys, in rotation order (`config/assertion.rs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assertion_keys: Vec<AssertionKeyFile>,
}

impl IdentityFile {
    /// The configured name of `h`. The one place that maps a variant of the identity-header
    /// table to its field; `every_identity_key_maps_to_its_own_header` proves the mapping.
    pub fn name(&self, h: IdentityHeader) -> &str {
        use IdentityHeader as H;
        match h {
            H::AuthKind => &self.auth_kind_header,
            H::UserId => &self.user_id_header,
            H::SessionId => &self.session_id_header,
            H::Scopes => &self.scopes_header,
            H::ClientId => &self.client_id_header,
            H::Service => &self.service_header,
            H::SudoUntil => &self.sudo_until_header,
            H::ClientIp => &self.client_ip_header,
            H::Country => &self.country_header,
            H::Asn => &self.asn_header,
            H::Assertion => &self.assertion_header,
        }
    }
}

impl Default for IdentityFile {
    fn default() -> Self {
        use IdentityHeader as H;
        let d = |h: IdentityHeader| h.default_name().to_string();
        IdentityFile {
            auth_kind_header: d(H::AuthKind),
            user_id_header: d(H::UserId),
            session_id_header: d(H::SessionId),
            scopes_header: d(H::Scopes),
            client_id_header: d(H::ClientId),
            service_header: d(H::Service),
            sudo_until_header: d(H::SudoUntil),
            client_ip_header: d(H::ClientIp),
            country_header: d(H::Country),
            asn_header: d(H::Asn),
            assertion_header: d(H::Assertion),
            assertion_secret: None,
            assertion_ttl: Dur::from_secs(60),
            assertion_algorithm: "HS256".into(),
            assertion_keys: Vec::new(),
        }
    }
}

pub(super) fn validate_identity(i: &IdentityFile, e: &mut Errors) -> Option<HeaderNames> {
    let mut names: Vec<(IdentityHeader, HeaderName)> = Vec::new();
    for &h in IdentityHeader::ALL {
        let value = i.name(h);
        let path = p("identity").key(h.config_key());
        let Some(name) = header_name(value, path.clone(), e) else {
            continue;
        };
        let folded = name.as_str().replace('_', "-");
        if names
            .iter()
            .any(|(_, n)| n.as_str().replace('_', "-") == folded)
        {
            e.at(
                path.clone(),
                format!("{value:?} is used for two identity headers"),
            );
        }
        const RESERVED: [&str; 6] = [
            "host",
            "cookie",
            "authorization",
            "content-length",
            "transfer-encoding",
            "connection",
        ];
        if RESERVED.contains(&folded.as_str()) || folded == "x-forwarded-for" {
            e.at(
                path,
                format!("{value:?} is a standard header and cannot carry identity"),
            );
        }
        names.push((h, name));
    }
    if names.len() != IdentityHeader::ALL.len() {
        return None;
    }
    // Looked up by variant, so the order of the list above cannot matter.
    Some(HeaderNames::from_fn(|h| {
        names
            .iter()
            .find(|(k, _)| *k == h)
            .map(|(_, n)| n.clone())
            .expect("every identity header has a validated name")
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::config::tests::errors;
    use crate::identity::IdentityHeader;

    #[test]
    fn identity_header_names_must_be_distinct_and_not_standard() {
        let e = errors(
            "[identity]\nuser_id_header = \"X-Fluxgate-Session-Id\"\nscopes_header = \"Authorization\"\n",
        );
        let joined = e.join("\n");
        assert!(joined.contains("used for two identity headers"), "{joined}");
        assert!(joined.contains("standard header"), "{joined}");
    }

    #[test]
    fn every_identity_key_maps_to_its_own_header() {
        // Each key set to a distinct name must come back as that very header's name: a field
        // wired to the wrong variant would send, say, the session id under the user-id name.
        let mut src = String::from("[identity]\n");
        for (i, h) in IdentityHeader::ALL.iter().enumerate() {
            src += &format!("{} = \"X-Test-{i}\"\n", h.config_key());
        }
        let cfg = parse(&src, "identity.toml").expect("valid");
        for (i, h) in IdentityHeader::ALL.iter().enumerate() {
            assert_eq!(
                cfg.live.identity[*h].as_str(),
                format!("x-test-{i}"),
                "{h:?}"
            );
        }
        let defaults = parse("", "empty.toml").expect("valid");
        for &h in IdentityHeader::ALL {
            assert_eq!(
                defaults.live.identity[h].as_str(),
                h.default_name().to_ascii_lowercase(),
                "{h:?}"
            );
        }
    }
}
