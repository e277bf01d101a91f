//! Where a route sends a request and what it changes on the way: the upstream service (an
//! index resolved when the config is loaded, so the request path does no lookup by name),
//! prefix stripping (Caddy's `handle_path`) and the `Host` the upstream sees.
//!
//! Stripping removes whole leading segments of the path as received, so what is left is a
//! suffix of a path that passed the path checks, cut at a `/`: it still starts with `/`, has
//! no empty or dot segment and no encoded separator, and is byte for byte what the client sent
//! after the prefix. The config only accepts a prefix made of the route's own leading literal
//! segments, so every request the route matches starts with it.

use http::HeaderValue;

/// A route's forwarding rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// Index of the upstream service.
    pub upstream: usize,
    /// Leading path segments to remove (`strip_prefix = "/api"` → 1); 0 keeps the path.
    pub strip_segments: usize,
    /// Replaces the client's `Host`; `None` keeps it.
    pub set_host: Option<HeaderValue>,
}

impl Forward {
    /// The target the upstream gets, when the route rewrites it. `target` is the checked
    /// request target (path and query); `prefixed`: the route matched under a version prefix,
    /// which is kept (`/v1/api/x` with `/api` stripped → `/v1/x`).
    pub fn rewrite(&self, target: &str, prefixed: bool) -> Option<String> {
        if self.strip_segments == 0 {
            return None;
        }
        let (path, query) = match target.find('?') {
            Some(q) => target.split_at(q),
            None => (target, ""),
        };
        let keep = if prefixed { segment_end(path, 0) } else { 0 };
        let mut cut = keep;
        for _ in 0..self.strip_segments {
            cut = segment_end(path, cut);
        }
        let rest = &path[cut..];
        let mut out = String::with_capacity(target.len());
        out.push_str(&path[..keep]);
        out.push_str(rest);
        if out.is_empty() {
            out.push('/');
        }
        out.push_str(query);
        Some(out)
    }
}

/// Where the segment that starts at `from` (a `/`, or the end) ends: the next `/` or the end.
fn segment_end(path: &str, from: usize) -> usize {
    if from >= path.len() {
        return path.len();
    }
    path[from + 1..]
        .find('/')
        .map_or(path.len(), |j| from + 1 + j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::path::check_target;

    fn strip(n: usize, target: &str, prefixed: bool) -> String {
        let f = Forward {
            strip_segments: n,
            ..Default::default()
        };
        f.rewrite(target, prefixed).expect("rewrites")
    }

    #[test]
    fn the_prefix_goes_and_the_rest_stays_byte_for_byte() {
        assert_eq!(strip(1, "/api/v1/users/@me", false), "/v1/users/@me");
        assert_eq!(
            strip(1, "/api/v1/x%41y?q=%2F&a=b", false),
            "/v1/x%41y?q=%2F&a=b"
        );
        assert_eq!(strip(2, "/a/b/c/d", false), "/c/d");
        // The prefix alone leaves the root; a trailing slash leaves it too.
        assert_eq!(strip(1, "/api", false), "/");
        assert_eq!(strip(1, "/api/", false), "/");
        assert_eq!(strip(1, "/api?x=1", false), "/?x=1");
        // Under a version prefix, the version stays in front.
        assert_eq!(strip(1, "/v1/api/users", true), "/v1/users");
        assert_eq!(strip(1, "/v1/api", true), "/v1");
    }

    #[test]
    fn no_stripping_forwards_the_target_unchanged() {
        assert_eq!(Forward::default().rewrite("/api/x", false), None);
    }

    #[test]
    fn stripped_paths_still_pass_the_path_checks() {
        // SECURITY: what the upstream gets must be as safe as what was checked.
        for target in [
            "/api",
            "/api/",
            "/api/v1/a/b",
            "/api/x%41?y=..",
            "/api/a.b/c",
            "/api/...x",
        ] {
            assert!(check_target(target.as_bytes()).is_ok(), "{target}");
            let out = strip(1, target, false);
            assert!(check_target(out.as_bytes()).is_ok(), "{target} → {out}");
            assert!(out.starts_with('/'), "{out}");
        }
    }
}
