//! Reading the original request: every ambiguity is refused.

use super::*;

fn rules(extra: &str) -> ForwardAuthRules {
    let src = format!("[forward_auth]\nlisten = \"127.0.0.1:0\"\n{extra}");
    match crate::config::parse(&src, "test.toml") {
        Ok(c) => c.live.forward_auth,
        Err(e) => panic!("{e}"),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

/// `read` on a header map's fields (the server hands them over in wire order).
fn read(
    rules: &ForwardAuthRules,
    peer: IpAddr,
    asked: &Asked<'_>,
    h: HeaderMap,
) -> Result<Original, Refusal> {
    super::read(rules, peer, asked, fields_of(&h))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const LOOP: &str = "127.0.0.1";

/// What nginx asks with: its own request line says nothing about the original.
const ASKED: Asked<'static> = Asked {
    method: &Method::GET,
    target: "/",
};

fn nginx(uri: &str) -> HeaderMap {
    headers(&[("x-original-method", "GET"), ("x-original-uri", uri)])
}

#[test]
fn an_nginx_description_is_read() {
    let o = read(&rules(""), ip(LOOP), &ASKED, nginx("/a?b=1")).unwrap();
    assert_eq!(o.method, Method::GET);
    assert_eq!(o.target, b"/a?b=1");
    assert!(!o.tls);
    assert!(o.headers.get("x-original-uri").is_none());
}

#[test]
fn a_traefik_description_is_read_with_scheme_and_host() {
    let h = headers(&[
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/x"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example"),
        ("host", "fluxgate:9000"),
    ]);
    let o = read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap();
    assert_eq!(o.method, Method::POST);
    assert!(o.tls);
    assert_eq!(o.headers.get("host").unwrap(), "api.example");
    assert!(o.headers.get("x-forwarded-host").is_none());
}

#[test]
fn forwarded_method_and_uri_from_an_untrusted_peer_are_refused() {
    let r = read(&rules(""), ip("203.0.113.7"), &ASKED, nginx("/a"));
    assert_eq!(r.unwrap_err(), Refusal::UntrustedEdge);
    // Listing edges replaces the loopback default.
    let r = read(
        &rules("trusted_edges = [\"10.0.0.0/8\"]\n"),
        ip(LOOP),
        &ASKED,
        nginx("/a"),
    );
    assert_eq!(r.unwrap_err(), Refusal::UntrustedEdge);
    assert!(
        read(
            &rules("trusted_edges = [\"10.0.0.0/8\"]\n"),
            ip("10.1.2.3"),
            &ASKED,
            nginx("/a")
        )
        .is_ok()
    );
}

#[test]
fn a_missing_original_uri_or_method_is_refused() {
    let r = read(
        &rules(""),
        ip(LOOP),
        &ASKED,
        headers(&[("x-original-method", "GET")]),
    );
    assert_eq!(r.unwrap_err(), Refusal::MissingUri);
    let r = read(
        &rules(""),
        ip(LOOP),
        &ASKED,
        headers(&[("x-original-uri", "/a")]),
    );
    assert_eq!(r.unwrap_err(), Refusal::MissingMethod);
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, nginx("")).unwrap_err(),
        Refusal::MissingUri
    );
}

#[test]
fn a_second_original_uri_under_another_name_is_refused_not_chosen() {
    let mut h = nginx("/admin");
    h.append("x-forwarded-uri", HeaderValue::from_static("/public"));
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap_err(),
        Refusal::DuplicateUri
    );
    let mut h = nginx("/admin");
    h.append("x-original-uri", HeaderValue::from_static("/public"));
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap_err(),
        Refusal::DuplicateUri
    );
    let mut h = nginx("/a");
    h.append("x-forwarded-method", HeaderValue::from_static("DELETE"));
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap_err(),
        Refusal::DuplicateMethod
    );
}

#[test]
fn absolute_over_long_and_raw_space_uris_are_refused() {
    let r = |u: &str| read(&rules(""), ip(LOOP), &ASKED, nginx(u)).unwrap_err();
    assert_eq!(r("http://evil.example/a"), Refusal::AbsoluteUri);
    assert_eq!(r("*"), Refusal::AbsoluteUri);
    assert_eq!(r("//evil.example/a"), Refusal::AbsoluteUri);
    assert_eq!(r(&format!("/{}", "a".repeat(8192))), Refusal::UriTooLong);
    assert_eq!(r("/a b"), Refusal::InvalidUri);
}

#[test]
fn an_unknown_scheme_or_two_hosts_are_refused() {
    let mut h = nginx("/a");
    h.append("x-forwarded-proto", HeaderValue::from_static("gopher"));
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap_err(),
        Refusal::InvalidProto
    );
    let mut h = nginx("/a");
    h.append("x-forwarded-host", HeaderValue::from_static("a"));
    h.append("x-forwarded-host", HeaderValue::from_static("b"));
    assert_eq!(
        read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap_err(),
        Refusal::DuplicateHost
    );
}

#[test]
fn the_client_ip_is_the_edges_forwarded_for_past_trusted_hops_only() {
    let mut h = nginx("/a");
    h.append(
        "x-forwarded-for",
        HeaderValue::from_static("198.51.100.1, 203.0.113.9"),
    );
    let o = read(&rules(""), ip(LOOP), &ASKED, h.clone()).unwrap();
    assert_eq!(o.client_ip, ip("203.0.113.9"));
    // The pipeline sees no forwarding header: the address is handed over resolved.
    assert!(o.headers.get("x-forwarded-for").is_none());
}

#[test]
fn envoy_sends_the_original_request_itself_under_the_prefix() {
    let r = rules("envoy_path_prefix = \"/ext_authz\"");
    let asked = Asked {
        method: &Method::DELETE,
        target: "/ext_authz/guilds/1?x=y",
    };
    let o = read(&r, ip(LOOP), &asked, headers(&[("host", "api.example")])).unwrap();
    assert_eq!(o.method, Method::DELETE);
    assert_eq!(o.target, b"/guilds/1?x=y");
    // Outside the prefix, or a prefix that is only a prefix of a longer segment: refused.
    for target in ["/guilds/1", "/ext_authzguilds", "/ext_authz"] {
        let asked = Asked {
            method: &Method::GET,
            target,
        };
        assert_eq!(
            read(&r, ip(LOOP), &asked, HeaderMap::new()).err(),
            Some(Refusal::MissingUri),
            "{target}"
        );
    }
}

#[test]
fn a_description_header_wins_over_the_envoy_form_and_must_be_complete() {
    let r = rules("envoy_path_prefix = \"/ext_authz\"");
    let asked = Asked {
        method: &Method::GET,
        target: "/ext_authz/public",
    };
    // A client-supplied X-Original-URI through Envoy is a description: without its method it
    // is refused, never mixed with the Envoy form.
    let h = headers(&[("x-original-uri", "/admin")]);
    assert_eq!(
        read(&r, ip(LOOP), &asked, h.clone()).err(),
        Some(Refusal::MissingMethod)
    );
}
