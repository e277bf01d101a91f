//! Forward auth: reading the original request an edge describes in headers
//! (src/forward_auth/original.rs `read`), with the default `[forward_auth]` rules (loopback
//! edges, nginx/Traefik/Caddy header names).
//!
//! Invariants: only a trusted peer is believed; an accepted description had exactly one
//! original method and one original URI across the configured names, the URI is origin-form
//! visible ASCII within the size limit; the headers handed to the pipeline carry none of the
//! description or forwarding headers, and `Host` is the described host.
#![no_main]

use arbitrary::Arbitrary;
use fluxgate::fuzzing::forward_auth_read;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;

const NAMES: [&str; 14] = [
    "x-original-method",
    "x-forwarded-method",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "connection",
    "content-length",
    "host",
    "cookie",
    "x-fluxgate-user-id",
];
const DESCRIPTION: [&str; 10] = [
    "x-original-method",
    "x-forwarded-method",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "connection",
    "content-length",
];

#[derive(Arbitrary, Debug)]
struct Input {
    peer: u8,
    headers: Vec<(u8, Vec<u8>)>,
    asked: String,
}

fn rules() -> &'static fluxgate::config::forward_auth::ForwardAuthRules {
    static C: OnceLock<fluxgate::config::Config> = OnceLock::new();
    &C.get_or_init(|| fluxgate::config::parse("", "fuzz.toml").expect("defaults parse"))
        .live
        .forward_auth
}

fn values<'a>(h: &'a HeaderMap, names: &[&str]) -> Vec<&'a HeaderValue> {
    names.iter().flat_map(|n| h.get_all(*n).iter()).collect()
}

fuzz_target!(|input: Input| {
    let peer: IpAddr = match input.peer % 3 {
        0 => "127.0.0.1".parse().expect("ip"),
        1 => "::1".parse().expect("ip"),
        _ => "203.0.113.9".parse().expect("ip"),
    };
    let mut h = HeaderMap::new();
    for (n, v) in input.headers.iter().take(12) {
        let Ok(v) = HeaderValue::from_bytes(v) else {
            continue;
        };
        h.append(HeaderName::from_static(NAMES[*n as usize % NAMES.len()]), v);
    }
    let rules = rules();
    let Ok(o) = forward_auth_read(rules, peer, &Method::GET, &input.asked, &h) else {
        return;
    };
    assert!(peer.is_loopback(), "believed an untrusted peer {peer}");
    let methods = values(&h, &["x-original-method", "x-forwarded-method"]);
    let uris = values(&h, &["x-original-uri", "x-forwarded-uri"]);
    assert_eq!(
        (methods.len(), uris.len()),
        (1, 1),
        "ambiguous description accepted"
    );
    assert_eq!(o.method.as_str().as_bytes(), methods[0].as_bytes());
    assert_eq!(o.target, uris[0].as_bytes());
    assert!(o.target.starts_with(b"/") && !o.target.starts_with(b"//"));
    assert!(o.target.iter().all(|b| (0x21..0x7f).contains(b)));
    assert!(o.target.len() <= rules.max_uri_bytes);
    for n in DESCRIPTION {
        assert!(!o.headers.contains_key(n), "{n} handed to the pipeline");
    }
    let hosts = values(&h, &["x-forwarded-host"]);
    match hosts[..] {
        [] => assert_eq!(
            o.headers.get_all("host").iter().count(),
            h.get_all("host").iter().count()
        ),
        [one] => assert_eq!(
            o.headers.get_all("host").iter().collect::<Vec<_>>(),
            vec![one]
        ),
        _ => panic!("two described hosts accepted"),
    }
    let proto = values(&h, &["x-forwarded-proto"]);
    assert_eq!(
        o.tls,
        proto
            .first()
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
    );
});
