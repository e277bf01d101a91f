//! `[geoip]`: the country and ASN databases, and whether their answers are passed upstream.

use super::Dur;
use super::validate::{Errors, p, positive};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct GeoipFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_db: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    pub reload_check: Dur,
    pub headers: bool,
}

impl Default for GeoipFile {
    fn default() -> Self {
        GeoipFile {
            country_db: None,
            asn_db: None,
            reload_check: Dur::from_secs(10),
            headers: true,
        }
    }
}

/// `[geoip]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoSettings {
    pub country_db: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
    pub reload_check: Duration,
}

pub(super) fn validate_geoip(g: &GeoipFile, e: &mut Errors) -> GeoSettings {
    for (key, path) in [("country_db", &g.country_db), ("asn_db", &g.asn_db)] {
        if let Some(path) = path
            && !path.is_file()
        {
            e.at(
                p("geoip").key(key),
                format!("{} is not a readable file", path.display()),
            );
        }
    }
    positive(g.reload_check, p("geoip.reload_check"), e);
    GeoSettings {
        country_db: g.country_db.clone(),
        asn_db: g.asn_db.clone(),
        reload_check: g.reload_check.0,
    }
}
