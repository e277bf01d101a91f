//! The real client IP (contract §5).
//!
//! The TCP peer is the client unless it is a trusted proxy; then the forwarding header is walked
//! from the right, skipping trusted hops, and the first untrusted entry is the client. Walking
//! from the right matters: everything left of the last trusted hop was written by the client.

use super::cidr::CidrSet;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// Never walk more hops than this; a longer chain of trusted proxies is a misconfiguration
/// or an attack, and stopping early only ever yields a trusted proxy's own address.
const MAX_HOPS: usize = 32;

#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: CidrSet,
    header: HeaderName,
}

impl ClientIpResolver {
    pub fn new(trusted: CidrSet, header: HeaderName) -> Self {
        ClientIpResolver { trusted, header }
    }

    /// The proxies whose forwarding header is believed.
    pub fn trusted(&self) -> &CidrSet {
        &self.trusted
    }

    /// The forwarding header walked.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Resolves the client address of a request that arrived from `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.resolve_lines(peer, headers.get_all(&self.header).iter())
    }

    /// As [`resolve`](Self::resolve), from the lines of the configured header found without a
    /// header map (the forward-auth server reads fields in wire order).
    pub fn resolve_lines<'a>(
        &self,
        peer: IpAddr,
        lines: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> IpAddr {
        let mut current = peer.to_canonical();
        // SECURITY: an empty trust list, or an untrusted peer, means forwarding headers are the
        // client's own words and are ignored.
        if self.trusted.is_empty() || !self.trusted.contains(current) {
            return current;
        }
        // Several header lines are one list, in order (RFC 9110 §5.3); walk them last to first.
        let mut hops = 0;
        for line in lines.rev() {
            for entry in line.as_bytes().rsplit(|&b| b == b',') {
                hops += 1;
                if hops > MAX_HOPS {
                    return current;
                }
                // Unparseable entries stop the walk: we cannot tell who wrote what is left of it.
                let Some(ip) = parse_entry(entry) else {
                    return current;
                };
                current = ip;
                if !self.trusted.contains(ip) {
                    return ip;
                }
            }
        }
        current
    }
}

/// One forwarding-header entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, optionally with a
/// port (`1.2.3.4:80`, `[2001:db8::1]:80`). Zone ids and anything else do not parse.
fn parse_entry(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(trusted: &[&str]) -> ClientIpResolver {
        ClientIpResolver::new(
            CidrSet::parse(trusted).unwrap(),
            HeaderName::from_static("x-forwarded-for"),
        )
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("203.0.113.9"), &xff(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn empty_trust_list_trusts_nobody() {
        let r = resolver(&[]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_hops_are_walked_right_to_left() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, 198.51.100.4, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.4"));
        // Several header lines are one list.
        let h = xff(&["6.6.6.6", "198.51.100.4", "10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.4"));
    }

    #[test]
    fn unparseable_entry_stops_the_walk_at_the_last_trusted_hop() {
        let r = resolver(&["10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, garbage, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        let h = xff(&["fe80::1%eth0"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["198.51.100.4:5555"])),
            ip("198.51.100.4")
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["[2001:db8::5]:443"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["[2001:db8::5]"])),
            ip("2001:db8::5")
        );
        assert_eq!(
            r.resolve(ip("::ffff:10.0.0.1"), &xff(&["::ffff:198.51.100.4"])),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn five_thousand_entries_do_not_crash_and_stop_at_the_hop_limit() {
        let r = resolver(&["10.0.0.0/8"]);
        let long = vec!["10.0.0.3"; 5000].join(", ");
        assert_eq!(r.resolve(ip("10.0.0.1"), &xff(&[&long])), ip("10.0.0.3"));
        let garbage = "x,".repeat(5000);
        assert_eq!(r.resolve(ip("10.0.0.1"), &xff(&[&garbage])), ip("10.0.0.1"));
    }

    #[test]
    fn all_trusted_chain_yields_the_leftmost_trusted_entry() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["10.0.0.9, 10.0.0.2"])),
            ip("10.0.0.9")
        );
        assert_eq!(r.resolve(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }
}
