//! `[network]` (rules for every request) and `[[network_rule]]` (named rule sets routes refer
//! to): CIDR, country and ASN allow and deny lists.

use super::KeyPath;
use super::file::FileConfig;
use super::validate::{Errors, choice, p};
use crate::net::cidr::CidrSet;
use crate::policy::network::{NetworkRules, country};
use serde::{Deserialize, Serialize};

/// Network rules: `[network]` (global) and each `[[network_rule]]` (named, for routes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub allow_cidrs: Vec<String>,
    pub deny_cidrs: Vec<String>,
    pub allow_countries: Vec<String>,
    pub deny_countries: Vec<String>,
    pub allow_asns: Vec<u32>,
    pub deny_asns: Vec<u32>,
    pub unknown: String,
}

impl Default for NetworkFile {
    fn default() -> Self {
        NetworkFile {
            name: None,
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            allow_countries: Vec::new(),
            deny_countries: Vec::new(),
            allow_asns: Vec::new(),
            deny_asns: Vec::new(),
            unknown: "deny".into(),
        }
    }
}

fn rules(n: &NetworkFile, path: &KeyPath, f: &FileConfig, e: &mut Errors) -> NetworkRules {
    let cidrs = |list: &[String], key: &str, e: &mut Errors| {
        CidrSet::parse(list).unwrap_or_else(|(i, msg)| {
            e.at(path.key(key).index(i), msg);
            CidrSet::default()
        })
    };
    let countries = |list: &[String], key: &str, e: &mut Errors| {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match country(c) {
                Some(c) => out.push(c),
                None => e.at(
                    path.key(key).index(i),
                    format!("{c:?} is not a two-letter country code"),
                ),
            }
        }
        out
    };
    let allow_unknown = choice(
        &n.unknown,
        "policy",
        &[("deny", false), ("allow", true)],
        path.key("unknown"),
        e,
    )
    .unwrap_or(false);
    let r = NetworkRules {
        allow_cidrs: cidrs(&n.allow_cidrs, "allow_cidrs", e),
        deny_cidrs: cidrs(&n.deny_cidrs, "deny_cidrs", e),
        allow_countries: countries(&n.allow_countries, "allow_countries", e),
        deny_countries: countries(&n.deny_countries, "deny_countries", e),
        allow_asns: n.allow_asns.clone(),
        deny_asns: n.deny_asns.clone(),
        allow_unknown,
    };
    if !(r.allow_countries.is_empty() && r.deny_countries.is_empty())
        && f.geoip.country_db.is_none()
    {
        e.at(path.clone(), "country rules need geoip.country_db");
    }
    if !(r.allow_asns.is_empty() && r.deny_asns.is_empty()) && f.geoip.asn_db.is_none() {
        e.at(path.clone(), "ASN rules need geoip.asn_db");
    }
    r
}

/// The global rules and the named rule sets (in file order).
pub(super) fn validate_network(
    f: &FileConfig,
    e: &mut Errors,
) -> (NetworkRules, Vec<(String, NetworkRules)>) {
    let mut global = f.network.clone();
    if global.name.take().is_some() {
        e.at(p("network.name"), "the global [network] takes no name");
    }
    let global = rules(&global, &p("network"), f, e);
    let mut named = Vec::new();
    for (i, n) in f.network_rules.iter().enumerate() {
        let path = p("network_rule").index(i);
        let name = n.name.clone().unwrap_or_default();
        if name.is_empty() {
            e.at(path.key("name"), "needs a name (routes refer to it)");
        } else if named.iter().any(|(o, _)| *o == name) {
            e.at(
                path.key("name"),
                format!("network rule {name:?} is defined twice"),
            );
        }
        named.push((name, rules(n, &path, f, e)));
    }
    (global, named)
}
