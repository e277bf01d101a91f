//! `[admin]`: the admin listener (health, readiness, metrics) and the management API's secret.

use super::secret::{Secret, SecretSource};
use super::validate::{Errors, p, socket};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminFile {
    pub listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretSource>,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            listen: "127.0.0.1:9090".into(),
            secret: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `None`: the management API refuses every call.
    pub secret: Option<Secret>,
}

pub(super) fn validate_admin(a: &AdminFile, e: &mut Errors) -> Option<AdminSettings> {
    let listen = socket(&a.listen, p("admin.listen"), e);
    let secret: Option<Secret> = match &a.secret {
        None => None,
        Some(s) => match s.resolve() {
            Ok(s) => Some(s),
            Err(msg) => {
                e.at(p("admin.secret"), msg);
                None
            }
        },
    };
    Some(AdminSettings {
        listen: listen?,
        secret,
    })
}
