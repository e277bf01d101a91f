//! A route's forwarding keys (`upstream`, `strip_prefix`, `set_host`), checked against the
//! upstreams and the route's own path.

use super::{Ctx, RouteFile};
use crate::config::locate::KeyPath;
use crate::config::validate::Errors;
use crate::policy::forward::Forward;
use crate::policy::routes::Pattern;

/// `upstream`, `strip_prefix` and `set_host`: where the route sends requests and what it
/// changes on the way.
pub(super) fn forward(
    r: &RouteFile,
    ctx: &Ctx<'_>,
    pattern: Option<&Pattern>,
    path: &KeyPath,
    e: &mut Errors,
) -> Forward {
    let upstream = match &r.upstream {
        Some(name) => {
            crate::config::upstreams::resolve(name, ctx.upstreams, path.key("upstream"), e)
        }
        None => ctx.default_upstream,
    };
    let strip_segments = match (&r.strip_prefix, pattern) {
        (None, _) => 0,
        (Some(pre), _) if !pre.starts_with('/') => {
            e.at(path.key("strip_prefix"), format!("{pre:?} must start with '/'"));
            0
        }
        (Some(pre), Some(pt)) => pt.literal_prefix(pre).unwrap_or_else(|| {
            // SECURITY: only whole literal segments the route matches on are stripped, so the
            // upstream's path is a checked path's tail that starts with '/'.
            e.at(
                path.key("strip_prefix"),
                format!(
                    "{pre:?} must be leading literal segments of the route's path {:?} (like \"/api\" for \"/api/*\"), with no trailing '/'; anything else could leave a path that fails the path checks",
                    pt.as_str()
                ),
            );
            0
        }),
        // The default policy has no path (reported there), or the path was invalid.
        (Some(_), None) => 0,
    };
    let set_host = r.set_host.as_ref().and_then(|h| {
        let valid = h
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| !a.as_str().contains('@'));
        match http::HeaderValue::from_str(h) {
            Ok(v) if valid => Some(v),
            _ => {
                e.at(path.key("set_host"), format!("{h:?} is not a host[:port]"));
                None
            }
        }
    });
    Forward {
        upstream,
        strip_segments,
        set_host,
    }
}
