//! Network rules (global and per route): allow and deny lists of CIDRs, countries and ASNs.
//!
//! Deny lists win. When any allow list is set, an address must match one of them. An address
//! the databases do not know never matches a country or ASN list; `unknown = "deny"` (the
//! default) refuses it when an allow list needs its country or ASN.

use crate::net::cidr::CidrSet;
use crate::net::geoip::GeoInfo;
use std::net::IpAddr;

/// One set of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRules {
    pub allow_cidrs: CidrSet,
    pub deny_cidrs: CidrSet,
    pub allow_countries: Vec<[u8; 2]>,
    pub deny_countries: Vec<[u8; 2]>,
    pub allow_asns: Vec<u32>,
    pub deny_asns: Vec<u32>,
    /// Admit addresses of unknown country/ASN when an allow list needs to know.
    pub allow_unknown: bool,
}

impl NetworkRules {
    pub fn is_empty(&self) -> bool {
        self.allow_cidrs.is_empty()
            && self.deny_cidrs.is_empty()
            && self.allow_countries.is_empty()
            && self.deny_countries.is_empty()
            && self.allow_asns.is_empty()
            && self.deny_asns.is_empty()
    }

    /// Whether GeoIP data is needed to decide.
    pub fn needs_geo(&self) -> bool {
        !(self.allow_countries.is_empty()
            && self.deny_countries.is_empty()
            && self.allow_asns.is_empty()
            && self.deny_asns.is_empty())
    }

    // SECURITY: deny lists are checked first and always win; an allow list admits only what
    // it names, and an address of unknown origin is not assumed to be from an allowed place.
    pub fn permits(&self, ip: IpAddr, geo: &GeoInfo) -> bool {
        let in_country = |list: &[[u8; 2]]| geo.country.is_some_and(|c| list.contains(&c));
        let in_asn = |list: &[u32]| geo.asn.is_some_and(|a| list.contains(&a));
        if self.deny_cidrs.contains(ip)
            || in_country(&self.deny_countries)
            || in_asn(&self.deny_asns)
        {
            return false;
        }
        let any_allow = !self.allow_cidrs.is_empty()
            || !self.allow_countries.is_empty()
            || !self.allow_asns.is_empty();
        if !any_allow {
            return true;
        }
        if self.allow_cidrs.contains(ip)
            || in_country(&self.allow_countries)
            || in_asn(&self.allow_asns)
        {
            return true;
        }
        let geo_needed_but_unknown = (!self.allow_countries.is_empty() && geo.country.is_none())
            || (!self.allow_asns.is_empty() && geo.asn.is_none());
        self.allow_unknown && geo_needed_but_unknown
    }
}

/// Parses a country code list entry (`"GB"`, case-insensitive).
pub fn country(code: &str) -> Option<[u8; 2]> {
    let b = code.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic))
        .then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(country: Option<&str>, asn: Option<u32>) -> GeoInfo {
        GeoInfo {
            country: country.and_then(self::country),
            asn,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_rules_permit_everything() {
        assert!(NetworkRules::default().permits(ip("192.0.2.1"), &GeoInfo::default()));
    }

    #[test]
    fn deny_lists_win() {
        let r = NetworkRules {
            deny_countries: vec![*b"GB"],
            allow_cidrs: CidrSet::parse(&["81.2.69.0/24"]).unwrap(),
            ..Default::default()
        };
        assert!(!r.permits(ip("81.2.69.142"), &geo(Some("GB"), None)));
        let r = NetworkRules {
            deny_asns: vec![15169],
            ..Default::default()
        };
        assert!(!r.permits(ip("1.0.0.1"), &geo(None, Some(15169))));
        assert!(r.permits(ip("1.0.0.2"), &geo(None, Some(7018))));
        let r = NetworkRules {
            deny_cidrs: CidrSet::parse(&["10.0.0.0/8"]).unwrap(),
            ..Default::default()
        };
        assert!(!r.permits(ip("10.1.1.1"), &GeoInfo::default()));
    }

    #[test]
    fn allow_lists_admit_only_what_they_name() {
        let r = NetworkRules {
            allow_countries: vec![*b"SE"],
            allow_asns: vec![15169],
            ..Default::default()
        };
        assert!(r.permits(ip("89.160.20.112"), &geo(Some("SE"), None)));
        assert!(r.permits(ip("1.0.0.1"), &geo(None, Some(15169))));
        assert!(!r.permits(ip("81.2.69.142"), &geo(Some("GB"), Some(1))));
    }

    #[test]
    fn unknown_addresses_follow_the_unknown_policy() {
        let mut r = NetworkRules {
            allow_countries: vec![*b"SE"],
            ..Default::default()
        };
        assert!(!r.permits(ip("10.0.0.1"), &GeoInfo::default()));
        r.allow_unknown = true;
        assert!(r.permits(ip("10.0.0.1"), &GeoInfo::default()));
        // A known, non-allowed country is still refused.
        assert!(!r.permits(ip("81.2.69.142"), &geo(Some("GB"), None)));
        // Unknown never matches a deny list.
        let d = NetworkRules {
            deny_countries: vec![*b"GB"],
            ..Default::default()
        };
        assert!(d.permits(ip("10.0.0.1"), &GeoInfo::default()));
    }
}
