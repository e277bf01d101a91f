//! `[csrf]`: the origins allowed to make cookie-authenticated state changes.

use super::validate::{Errors, p};
use crate::policy::csrf::{OriginPolicy, origin_of};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CsrfFile {
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp_id: Option<String>,
    pub additional_allowed_origins: Vec<String>,
}

pub(super) fn validate_csrf(c: &CsrfFile, e: &mut Errors) -> OriginPolicy {
    let mut out = Vec::new();
    for (key, list) in [
        ("allowed_origins", &c.allowed_origins),
        ("additional_allowed_origins", &c.additional_allowed_origins),
    ] {
        for (i, o) in list.iter().enumerate() {
            match origin_of(o) {
                Some(n) => out.push(n),
                None => e.at(
                    p("csrf").key(key).index(i),
                    format!("{o:?} is not an origin like \"https://web.example.com\""),
                ),
            }
        }
    }
    if let Some(rp) = &c.rp_id {
        match origin_of(&format!("https://{rp}")) {
            Some(n) if !rp.contains('/') && !rp.contains(':') => out.push(n),
            _ => e.at(p("csrf.rp_id"), format!("{rp:?} is not a domain name")),
        }
    }
    OriginPolicy::new(out)
}
