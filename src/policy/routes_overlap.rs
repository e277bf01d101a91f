//! Whether two routes can match the same request, for `check-config`: an endpoint fluxgate
//! answers itself must not share a request with a route that sends it upstream, or the request
//! goes one place while the operator expects the other.
//!
//! "Can match the same request" is exact, not a heuristic. A route matches a path when its
//! pattern matches the path, or the path without one version prefix (`/v1/x` and `/x`), so a
//! route's paths are `L(P) ∪ L(prefix·P)` for each prefix; two routes overlap when one of those
//! languages of one meets one of the other, and their method sets share a method (no methods is
//! any method; GET also matches HEAD). Trailing slashes and percent-decoding are applied to the
//! path before any pattern sees it, so they cannot make two patterns differ.

use super::{Pattern, Seg};
use http::Method;

impl Pattern {
    /// Whether some path matched through the version `prefixes` matches both `self` and `other`.
    pub fn overlaps(&self, other: &Pattern, prefixes: &[String]) -> bool {
        if segs_meet(&self.segs, &other.segs) {
            return true;
        }
        prefixes.iter().any(|pre| {
            let pre = Seg::Lit(pre.trim_start_matches('/').to_string());
            let prefixed = |p: &Pattern| {
                let mut v = Vec::with_capacity(p.segs.len() + 1);
                v.push(pre.clone());
                v.extend(p.segs.iter().cloned());
                v
            };
            segs_meet(&prefixed(self), &other.segs) || segs_meet(&self.segs, &prefixed(other))
        })
    }
}

/// Whether one segment sequence is matched by both patterns.
fn segs_meet(a: &[Seg], b: &[Seg]) -> bool {
    match (a.first(), b.first()) {
        (None, None) => true,
        // `*` takes one or more segments: anything the other side still needs fits in it.
        (Some(Seg::Rest), rest) | (rest, Some(Seg::Rest)) => rest.is_some(),
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Seg::Lit(x)), Some(Seg::Lit(y))) if x != y => false,
        (Some(_), Some(_)) => segs_meet(&a[1..], &b[1..]),
    }
}

/// Whether two routes' method lists admit a common method (empty: any method).
pub fn methods_overlap(a: &[Method], b: &[Method]) -> bool {
    let with_head = |m: &[Method]| {
        let mut v = m.to_vec();
        if v.contains(&Method::GET) {
            v.push(Method::HEAD);
        }
        v
    };
    a.is_empty() || b.is_empty() || with_head(a).iter().any(|m| with_head(b).contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: &str, b: &str) -> bool {
        let (a, b) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
        let prefixes = ["/v1".to_string()];
        let ab = a.overlaps(&b, &prefixes);
        assert_eq!(ab, b.overlaps(&a, &prefixes), "overlap is symmetric");
        ab
    }

    #[test]
    fn the_same_path_overlaps_and_different_literals_do_not() {
        assert!(overlap("/auth/authorize-ip", "/auth/authorize-ip"));
        assert!(!overlap("/auth/authorize-ip", "/auth/login"));
        assert!(!overlap("/auth", "/auth/login"));
    }

    #[test]
    fn parameters_and_wildcards_overlap_what_they_can_match() {
        assert!(overlap("/auth/:action", "/auth/authorize-ip"));
        assert!(overlap("/auth/*", "/auth/ip-authorization/poll"));
        assert!(overlap("/*", "/_fluxgate/ip-authorization/poll"));
        assert!(overlap("/auth/:a/poll", "/auth/ip-authorization/*"));
        assert!(!overlap("/auth/*", "/auth"));
        assert!(!overlap("/auth/:action", "/auth/ip-authorization/poll"));
        assert!(!overlap("/_fluxgate/*", "/auth/authorize-ip"));
    }

    #[test]
    fn a_route_written_with_the_version_prefix_overlaps_the_unprefixed_one() {
        // `/v1/auth/authorize-ip` reaches both: one pattern matches it as sent, the other
        // without the prefix.
        assert!(overlap("/v1/auth/authorize-ip", "/auth/authorize-ip"));
        assert!(overlap("/:version/auth/authorize-ip", "/auth/authorize-ip"));
        assert!(!overlap("/v2/auth/authorize-ip", "/auth/authorize-ip"));
    }

    #[test]
    fn methods_overlap_when_one_is_any_or_they_share_one() {
        let m = |s: &[&str]| {
            s.iter()
                .map(|m| m.parse().unwrap())
                .collect::<Vec<Method>>()
        };
        assert!(methods_overlap(&m(&[]), &m(&["POST"])));
        assert!(methods_overlap(&m(&["GET", "POST"]), &m(&["POST"])));
        assert!(methods_overlap(&m(&["GET"]), &m(&["HEAD"])));
        assert!(!methods_overlap(&m(&["GET"]), &m(&["POST"])));
    }
}
