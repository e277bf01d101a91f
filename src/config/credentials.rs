//! `[credentials]`: the credential kinds accepted at all (routes may narrow them).

use super::locate::KeyPath;
use super::validate::{Errors, choice, p};
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
    let opts = Kind::ALL.map(|k| (k.as_str(), k));
    let out: Vec<Kind> = list
        .iter()
        .enumerate()
        .filter_map(|(i, k)| choice(k, "credential kind", &opts, path.index(i), e))
        .collect();
    KindSet::of(&out)
}
