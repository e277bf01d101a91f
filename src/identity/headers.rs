//! Stripping and injecting identity headers.

use super::table::{HeaderNames, IdentityHeader as H};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// The reserved prefix: every request header that could be read as `x-fluxgate-*` is removed.
const PREFIX: &[u8] = b"x-fluxgate-";

/// The header operations fluxgate needs, so this room does not depend on pingora.
pub trait HeaderEdit {
    fn headers(&self) -> &HeaderMap;
    fn remove(&mut self, name: &HeaderName);
    fn insert(&mut self, name: HeaderName, value: HeaderValue);
}

/// A plain header map (tests, benches, and anything not behind pingora).
impl HeaderEdit for HeaderMap {
    fn headers(&self) -> &HeaderMap {
        self
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::insert(self, name, value);
    }
}

/// Whether two header names are the same once case and `_`/`-` are ignored.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

fn fold(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        _ => b.to_ascii_lowercase(),
    }
}

fn has_reserved_prefix(name: &[u8]) -> bool {
    name.len() >= PREFIX.len() && same_name(&name[..PREFIX.len()], PREFIX)
}

/// Removes every header a client could use to pass as fluxgate: anything named `x-fluxgate-*`
/// or like a configured identity header, in any case or `_`/`-` spelling, and every header a
/// `Connection` header nominates (so a client cannot make a hop drop what we inject); with
/// `forwarded`, every [`FORWARDED`] header too (the peer is not a trusted proxy).
pub fn strip_untrusted(h: &mut impl HeaderEdit, names: &HeaderNames, forwarded: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    {
        let map = h.headers();
        let nominated: Vec<&[u8]> = map
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
            .collect();
        for name in map.keys() {
            let n = name.as_str().as_bytes();
            // SECURITY: identity headers are only ever set by fluxgate. Underscore spellings
            // are stripped too because CGI-style servers read `X_Fluxgate_User_Id` as
            // `X-Fluxgate-User-Id`.
            let spoofed = has_reserved_prefix(n)
                || names
                    .all()
                    .iter()
                    .any(|c| same_name(n, c.as_str().as_bytes()))
                // SECURITY: a client's own X-Forwarded-Proto/-Host/-Port, X-Real-IP or
                // Forwarded would lie to an upstream that builds URLs or logs addresses from
                // them; only a trusted proxy's are kept.
                || (forwarded && FORWARDED.iter().any(|f| same_name(n, f.as_str().as_bytes())));
            // SECURITY: a Connection-nominated header would be dropped by the next hop; if it
            // named an identity header, that hop would forward the request without it.
            // `Upgrade` is the one nomination kept: Pingora has already reduced any upgrade to
            // exactly `Connection: Upgrade` + `Upgrade: websocket`, and the handshake needs both.
            let hop = nominated.iter().any(|t| {
                same_name(n, t) && name != http::header::CONNECTION && name != http::header::UPGRADE
            });
            if (spoofed || hop) && !doomed.contains(name) {
                doomed.push(name.clone());
            }
        }
    }
    for name in &doomed {
        h.remove(name);
    }
}

/// `Connection` options that are about the connection itself rather than naming a header.
const CONNECTION_OPTIONS: [&str; 3] = ["close", "keep-alive", "upgrade"];

/// Settles the client's `Connection` nominations at this hop, before Pingora builds the
/// upstream request: every nominated header is removed here (they were meant for fluxgate, the
/// next hop), except `Host`, which the request needs and fluxgate keeps; and only the
/// connection options (`close`, `keep-alive`, `upgrade`) stay in `Connection`.
pub fn settle_connection(h: &mut impl HeaderEdit) {
    let (doomed, kept) = {
        let map = h.headers();
        if !map.contains_key(http::header::CONNECTION) {
            return;
        }
        let mut doomed: Vec<HeaderName> = Vec::new();
        let mut kept: Vec<&str> = Vec::new();
        let tokens = map
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        for t in tokens {
            if let Some(&o) = CONNECTION_OPTIONS
                .iter()
                .find(|o| t.eq_ignore_ascii_case(o.as_bytes()))
            {
                if !kept.contains(&o) {
                    kept.push(o);
                }
                continue;
            }
            // SECURITY: a client naming Host or a forwarding header in `Connection` made
            // Pingora refuse the whole request (a 400 on any route); the contract is that
            // nominated headers are removed and fluxgate's own values are set (identity::apply
            // runs after this). Host is never removed: the Connection token naming it is
            // dropped instead.
            for name in map.keys() {
                if same_name(name.as_str().as_bytes(), t)
                    && *name != http::header::HOST
                    && !doomed.contains(name)
                {
                    doomed.push(name.clone());
                }
            }
        }
        (doomed, kept.join(", "))
    };
    for name in &doomed {
        h.remove(name);
    }
    h.remove(&http::header::CONNECTION);
    if let Ok(v) = HeaderValue::from_str(&kept)
        && !kept.is_empty()
    {
        h.insert(http::header::CONNECTION, v);
    }
}

/// What an admitted request gets injected.
#[derive(Debug, Default)]
pub struct Injection<'a> {
    pub auth_kind: &'static str,
    pub user_id: Option<&'a HeaderValue>,
    pub session_id: Option<&'a HeaderValue>,
    pub scopes: Option<&'a HeaderValue>,
    /// The OAuth2 client of the token, when known.
    pub client_id: Option<&'a HeaderValue>,
    pub service: Option<&'a HeaderValue>,
    pub client_ip: Option<IpAddr>,
    /// Unix seconds until which a valid sudo proof holds.
    pub sudo_until: Option<i64>,
    /// From GeoIP, when known.
    pub country: Option<&'a str>,
    pub asn: Option<u32>,
}

/// `X-Forwarded-For`, which fluxgate overwrites with the resolved client IP.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The scheme the client used, `http` or `https`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The `Host` the client asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The resolved client IP, for upstreams that read this rather than `X-Forwarded-For`.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The forwarding headers an untrusted client could use to lie about its address, the scheme,
/// the host or the port: all removed (in any case or `_`/`-` spelling) unless the peer is a
/// trusted proxy, before fluxgate sets its own (contract §4).
pub const FORWARDED: [HeaderName; 6] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    HeaderName::from_static("x-forwarded-port"),
    X_REAL_IP,
    http::header::FORWARDED,
];

/// The identity headers for `id` (and `X-Forwarded-For`), appended to `out` as (name, value).
pub fn identity_headers(
    names: &HeaderNames,
    id: &Injection<'_>,
    out: &mut Vec<(HeaderName, HeaderValue)>,
) {
    out.push((
        names[H::AuthKind].clone(),
        HeaderValue::from_static(id.auth_kind),
    ));
    for (h, value) in [
        (H::UserId, id.user_id),
        (H::SessionId, id.session_id),
        (H::Scopes, id.scopes),
        (H::ClientId, id.client_id),
        (H::Service, id.service),
    ] {
        if let Some(v) = value {
            out.push((names[h].clone(), v.clone()));
        }
    }
    if let Some(c) = id.country.and_then(|c| HeaderValue::from_str(c).ok()) {
        out.push((names[H::Country].clone(), c));
    }
    if let Some(a) = id.asn {
        out.push((names[H::Asn].clone(), HeaderValue::from(a)));
    }
    if let Some(until) = id.sudo_until {
        out.push((names[H::SudoUntil].clone(), HeaderValue::from(until)));
    }
    if let Some(ip) = id.client_ip {
        // The formatted address becomes the value's buffer (no second copy).
        let v = HeaderValue::from_maybe_shared(bytes::Bytes::from(ip_text(ip)))
            .expect("an IP address is a valid header");
        out.push((names[H::ClientIp].clone(), v.clone()));
        // Fluxer's API trusts the left-most X-Forwarded-For entry, so it must be ours alone.
        out.push((X_FORWARDED_FOR, v.clone()));
        out.push((X_REAL_IP, v));
    }
}

/// The address as text. IPv4, every request's common case, is written with `itoa`: std's
/// `Display` goes through the formatting machinery (about 1,300 instructions per address,
/// callgrind); IPv6's compressed form is left to std.
fn ip_text(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = Vec::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out
        }
        IpAddr::V6(_) => ip.to_string().into_bytes(),
    }
}

/// `X-Request-Id`, as a constant so no request parses the name.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id to forward: the client's if it is sane (1–128 characters of
/// `[A-Za-z0-9._:-]`), otherwise a fresh random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    request_id_among(headers.get_all(&REQUEST_ID).iter())
}

/// As [`request_id`], from the `X-Request-Id` lines found without a header map (the
/// forward-auth server reads fields in wire order).
pub fn request_id_among<'a>(mut lines: impl Iterator<Item = &'a HeaderValue>) -> HeaderValue {
    if let (Some(v), None) = (lines.next(), lines.next()) {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
        {
            return v.clone();
        }
    }
    // `hex` into a stack buffer rather than `format!("{:032x}")` or a `String`: the same text
    // at a tenth of the instructions (callgrind: ~1.2k to ~0.2k per request).
    let mut text = [0u8; 32];
    hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut text)
        .expect("16 bytes are 32 hex digits");
    HeaderValue::from_bytes(&text).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn names() -> HeaderNames {
        HeaderNames::from_fn(|h| match h {
            H::Assertion => HeaderName::from_static("x-user-assertion"),
            h => HeaderName::from_bytes(h.default_name().as_bytes()).unwrap(),
        })
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn spoofed_identity_headers_in_every_spelling_are_stripped() {
        let mut m = map(&[
            ("X-Fluxgate-User-Id", "1"),
            ("x_fluxgate_user_id", "2"),
            ("X_FLUXGATE-Session_Id", "3"),
            ("x-fluxgate-anything-new", "4"),
            ("x-user-assertion", "5"),
            ("X_User_Assertion", "6"),
            ("x-fluxgate", "keep: not the prefix"),
            ("accept", "keep"),
        ]);
        strip_untrusted(&mut m, &names(), true);
        let mut left: Vec<_> = m.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "x-fluxgate"]);
    }

    #[test]
    fn connection_nominated_headers_are_stripped() {
        let mut m = map(&[
            ("connection", "keep-alive, X-Custom-Hop , x_other"),
            ("x-custom-hop", "1"),
            ("x-other", "2"),
            ("accept", "keep"),
        ]);
        strip_untrusted(&mut m, &names(), true);
        assert!(m.get("x-custom-hop").is_none());
        assert!(m.get("x-other").is_none());
        assert!(m.get("accept").is_some());
        assert!(m.get("connection").is_some());
    }

    #[test]
    fn connection_naming_forwarding_headers_or_host_is_settled_not_refused() {
        let mut m = map(&[
            ("connection", "X-Forwarded-For, keep-alive"),
            (
                "connection",
                "x_forwarded_proto ,Host, \"x-forwarded-host\", :authority, Upgrade",
            ),
            ("host", "api.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("upgrade", "websocket"),
            ("accept", "keep"),
        ]);
        settle_connection(&mut m);
        assert_eq!(m.get("host").unwrap(), "api.example", "Host is kept");
        assert!(m.get("x-forwarded-for").is_none());
        assert!(m.get("x-forwarded-proto").is_none());
        assert_eq!(m.get("upgrade").unwrap(), "websocket");
        assert!(m.get("accept").is_some());
        let c: Vec<_> = m.get_all("connection").iter().collect();
        assert_eq!(c, ["keep-alive, upgrade"], "only connection options stay");
        let mut none = map(&[("connection", "x-custom"), ("x-custom", "1")]);
        settle_connection(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        let m = map(&[("x-request-id", "abc-123:x.y")]);
        assert_eq!(request_id(&m), "abc-123:x.y");
        for bad in ["has space", "<script>", &"a".repeat(129)] {
            let m = map(&[("x-request-id", bad)]);
            let id = request_id(&m);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        let m = map(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(request_id(&m).len(), 32);
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.0.255",
            "203.0.113.7",
            "255.255.255.255",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string().into_bytes(), "{ip}");
        }
    }

    #[test]
    fn generated_request_ids_are_32_lowercase_hex_digits() {
        let id = request_id(&HeaderMap::new());
        let id = id.to_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}

#[cfg(test)]
#[path = "headers_props.rs"]
mod props;
