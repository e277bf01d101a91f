//! Internal services' shared secrets (contract §1, last row): named, several at once for
//! rotation, each optionally limited to source networks.

use crate::net::cidr::CidrSet;
use crate::secret::Secret;
use http::HeaderValue;
use std::net::IpAddr;

/// One configured secret.
#[derive(Debug, Clone)]
pub struct InternalSecret {
    pub name: String,
    /// The name as a header value, for `X-Fluxgate-Service`.
    pub name_header: HeaderValue,
    pub secret: Secret,
    /// Empty means any network.
    pub networks: CidrSet,
}

/// Why an internal secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRefusal {
    Wrong,
    Network,
}

/// All configured secrets.
#[derive(Debug, Clone, Default)]
pub struct InternalSecrets {
    pub secrets: Vec<InternalSecret>,
}

impl InternalSecrets {
    /// The secret `presented` matches, checked from `client`.
    pub fn check(
        &self,
        presented: &[u8],
        client: IpAddr,
    ) -> Result<&InternalSecret, SecretRefusal> {
        // SECURITY: every configured secret is compared (in constant time) before deciding, so
        // timing does not reveal which one, if any, matched.
        let mut found = None;
        for s in &self.secrets {
            if s.secret.matches(presented) && found.is_none() {
                found = Some(s);
            }
        }
        let s = found.ok_or(SecretRefusal::Wrong)?;
        // SECURITY: a secret limited to networks is worthless from anywhere else, so a leaked
        // secret cannot be replayed from outside them.
        if !s.networks.is_empty() && !s.networks.contains(client) {
            return Err(SecretRefusal::Network);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str, nets: &[&str]) -> InternalSecret {
        InternalSecret {
            name: name.into(),
            name_header: HeaderValue::from_str(name).unwrap(),
            secret: Secret::new(value.into()),
            networks: CidrSet::parse(nets).unwrap(),
        }
    }

    #[test]
    fn rotated_secrets_both_work_and_report_their_name() {
        let s = InternalSecrets {
            secrets: vec![
                secret("old", "old-secret-0123456789", &[]),
                secret("new", "new-secret-0123456789", &[]),
            ],
        };
        let ip = "10.0.0.1".parse().unwrap();
        assert_eq!(s.check(b"old-secret-0123456789", ip).unwrap().name, "old");
        assert_eq!(s.check(b"new-secret-0123456789", ip).unwrap().name, "new");
        assert_eq!(s.check(b"wrong", ip).unwrap_err(), SecretRefusal::Wrong);
    }

    #[test]
    fn secret_from_a_disallowed_network_is_refused() {
        let s = InternalSecrets {
            secrets: vec![secret("gw", "gw-secret-0123456789", &["10.0.0.0/8"])],
        };
        assert!(
            s.check(b"gw-secret-0123456789", "10.1.1.1".parse().unwrap())
                .is_ok()
        );
        assert_eq!(
            s.check(b"gw-secret-0123456789", "192.0.2.1".parse().unwrap())
                .unwrap_err(),
            SecretRefusal::Network
        );
    }
}
