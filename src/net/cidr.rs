//! A set of CIDR blocks (trusted proxies, secret source networks, allow and deny lists).

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// An immutable set of networks. Built once at config load; lookups allocate nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    nets: Vec<IpNet>,
}

impl CidrSet {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or bare addresses (a /32 or /128).
    /// Returns the index and message of the first entry that does not parse.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<CidrSet, (usize, String)> {
        let mut nets = Vec::with_capacity(items.len());
        for (i, s) in items.iter().enumerate() {
            nets.push(parse_net(s.as_ref()).map_err(|e| (i, e))?);
        }
        // Merging overlapping blocks keeps lookups short and makes the printed config canonical.
        Ok(CidrSet {
            nets: IpNet::aggregate(&nets),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 folded to IPv4) is inside any block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter()
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = IpNet::from_str(s) {
        if n != n.trunc() {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}?",
                n.trunc()
            ));
        }
        return Ok(n);
    }
    IpAddr::from_str(s)
        .map(|ip| IpNet::from(ip.to_canonical()))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_v4_v6_and_mapped() {
        let s = CidrSet::parse(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]).unwrap();
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(s.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(s.contains("2001:db8::1".parse().unwrap()));
        assert!(s.contains("192.0.2.7".parse().unwrap()));
        assert!(!s.contains("192.0.2.8".parse().unwrap()));
        assert!(!s.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_reported_with_their_index() {
        let (i, msg) = CidrSet::parse(&["10.0.0.0/8", "nope"]).unwrap_err();
        assert_eq!(i, 1);
        assert!(msg.contains("nope"));
        let (_, msg) = CidrSet::parse(&["10.0.0.1/8"]).unwrap_err();
        assert!(msg.contains("host bits"), "{msg}");
    }
}
