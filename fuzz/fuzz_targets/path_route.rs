//! Request target → path checks → route match (contract §2).
//!
//! Invariants: an accepted path starts with `/`, holds no `.`/`..` or empty segment, no
//! backslash and no encoded separator, dot or NUL; checking it again gives the same answer
//! (idempotent); decoding for matching creates none of those either; and the route chosen for
//! the path as sent equals the route chosen for its decoded (canonical) form, and for a
//! re-spelling with other characters percent-encoded.
#![no_main]

use fluxgate::net::path::{check_target, decode_for_matching};
use http::Method;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Routes with literals, parameters, a wildcard and method sets, under the default `/v1`
/// prefix.
const ROUTES: &str = r#"
[sudo]
secret = { value = "0123456789abcdef0123456789abcdef" }

[[route]]
methods = ["POST"]
path = "/auth/login"
auth = "none"

[[route]]
methods = ["GET"]
path = "/users/@me"

[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/delete"
sudo = true

[[route]]
path = "/admin/*"
auth = "none"
methods = ["GET"]

[[route]]
path = "/public/*"
auth = "none"
"#;

fn table() -> &'static fluxgate::policy::RouteTable {
    static T: OnceLock<fluxgate::config::Config> = OnceLock::new();
    &T.get_or_init(|| fluxgate::config::parse(ROUTES, "fuzz.toml").expect("fuzz routes parse"))
        .live
        .routes
}

fn method(b: u8) -> Method {
    [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
    ][b as usize % 6]
        .clone()
}

fn segments_clean(p: &str) -> bool {
    let mut segs = p.split('/').skip(1).peekable();
    while let Some(s) = segs.next() {
        if s == "." || s == ".." || (s.is_empty() && segs.peek().is_some()) {
            return false;
        }
    }
    p.starts_with('/') && !p.contains('\\')
}

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (m, spell, target) = input;
    let Ok(checked) = check_target(target) else {
        return;
    };
    let p = checked.path;
    assert!(
        segments_clean(p),
        "accepted a path with a dot/empty segment: {p:?}"
    );
    let lower = p.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%2e", "%00"] {
        assert!(!lower.contains(bad), "accepted {bad} in {p:?}");
    }
    // Idempotent: the accepted path is itself an accepted target, unchanged.
    let again = check_target(p.as_bytes()).expect("an accepted path is accepted again");
    assert_eq!(again, checked);
    let decoded = if checked.has_escapes {
        decode_for_matching(p)
    } else {
        p.to_string()
    };
    assert!(
        segments_clean(&decoded),
        "decoding made {decoded:?} from {p:?}"
    );

    let t = table();
    let method = method(m);
    let sent = t.find(&method, p, checked.has_escapes);
    let canonical = t.find(&method, &decoded, false);
    assert_eq!(
        sent.index, canonical.index,
        "{p:?} vs canonical {decoded:?}"
    );
    assert_eq!(sent.match_path, canonical.match_path);

    // Re-spell: percent-encode the letters/digits chosen by `spell`'s bits. Decoding yields the
    // same canonical path, so the same route must be chosen.
    let mut respelled = String::with_capacity(p.len() * 3);
    let mut changed = false;
    for (i, c) in p.chars().enumerate() {
        if c.is_ascii_alphanumeric() && spell & (1 << (i % 16)) != 0 {
            respelled.push_str(&format!("%{:02X}", c as u8));
            changed = true;
        } else {
            respelled.push(c);
        }
    }
    if changed && !p.contains('%') {
        let r = check_target(respelled.as_bytes()).expect("an escaped letter is accepted");
        let other = t.find(&method, r.path, r.has_escapes);
        assert_eq!(other.index, sent.index, "{respelled:?} vs {p:?}");
    }
});
