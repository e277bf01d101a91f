//! `[credentials]`: the credential kinds accepted at all (routes may narrow them).

use super::locate::KeyPath;
use super::validate::{Errors, p};
use crate::credential::Kind;
use crate::policy::routes::KindSet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CredentialsFile {
    pub accept: Vec<String>,
}

impl Default for CredentialsFile {
    fn default() -> Self {
        CredentialsFile {
            accept: vec!["session".into(), "oauth2".into()],
        }
    }
}

pub(super) fn validate_credentials(c: &CredentialsFile, e: &mut Errors) -> KindSet {
    kinds(&c.accept, p("credentials.accept"), e)
}

/// A list of credential kinds (`credentials.accept`, a route's `kinds`).
pub(super) fn kinds(list: &[String], path: KeyPath, e: &mut Errors) -> KindSet {
    let mut out = Vec::new();
    for (i, k) in list.iter().enumerate() {
        match Kind::parse(k) {
            Some(k) => out.push(k),
            None => e.at(
                path.index(i),
                format!("unknown credential kind {k:?}; use \"session\", \"oauth2\" or \"bot\""),
            ),
        }
    }
    KindSet::of(&out)
}
