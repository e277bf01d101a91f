//! Every strip and inject rule on a plain `HeaderMap`, the way the upstream would see it.

use super::*;
use crate::identity::{IdentityHeader, Injection, identity_headers};
use http::{HeaderMap, HeaderName, HeaderValue};

fn cookies() -> CookiePolicy {
    CookiePolicy::for_tests()
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

/// The plan for a session user with every optional fact present.
fn user_plan(names: &HeaderNames) -> UpstreamPlan {
    let user = HeaderValue::from_static("42");
    let sid = HeaderValue::from_static("sid-43-chars");
    let scopes = HeaderValue::from_static("identify");
    let client = HeaderValue::from_static("app-1");
    let mut set = Vec::new();
    identity_headers(
        names,
        &Injection {
            auth_kind: "session",
            user_id: Some(&user),
            session_id: Some(&sid),
            scopes: Some(&scopes),
            client_id: Some(&client),
            client_ip: Some("192.0.2.9".parse().unwrap()),
            sudo_until: Some(1_900_000_000),
            country: Some("SE"),
            asn: Some(29518),
            ..Default::default()
        },
        &mut set,
    );
    UpstreamPlan {
        set,
        strip_own_cookies: true,
        drop_expect: false,
        strip_forwarded: true,
        upstream: 0,
        path: None,
    }
}

/// Spellings a client may use to smuggle `name` past a naive strip.
fn spellings(name: &str) -> [String; 3] {
    [
        name.to_string(),
        name.to_ascii_uppercase(),
        name.replace('-', "_"),
    ]
}

#[test]
fn every_spoofed_identity_header_is_replaced_or_removed_for_every_caller() {
    let names = HeaderNames::defaults();
    let anonymous = {
        let mut set = Vec::new();
        identity_headers(
            &names,
            &Injection {
                auth_kind: "anonymous",
                client_ip: Some("192.0.2.9".parse().unwrap()),
                ..Default::default()
            },
            &mut set,
        );
        UpstreamPlan {
            set,
            ..Default::default()
        }
    };
    for plan in [user_plan(&names), anonymous] {
        for &h in IdentityHeader::ALL {
            let mut m = HeaderMap::new();
            for s in spellings(names[h].as_str()) {
                m.append(
                    HeaderName::from_bytes(s.as_bytes()).unwrap(),
                    HeaderValue::from_static("spoofed"),
                );
            }
            apply(&mut m, &names, &cookies(), &plan);
            for (k, v) in &m {
                assert_ne!(v, "spoofed", "{h:?}: {k} survived");
            }
            match plan.get(&names[h]) {
                Some(v) => assert_eq!(m.get_all(&names[h]).iter().collect::<Vec<_>>(), [v]),
                None => assert!(m.get(&names[h]).is_none(), "{h:?} left in place"),
            }
        }
    }
}

#[test]
fn renamed_identity_headers_are_stripped_under_the_new_name_and_the_reserved_prefix() {
    let names = HeaderNames::from_fn(|h| match h {
        IdentityHeader::UserId => HeaderName::from_static("x-user"),
        h => HeaderName::from_bytes(h.default_name().as_bytes()).unwrap(),
    });
    let mut m = map(&[
        ("X_User", "1"),
        ("x-fluxgate-user-id", "2"),
        ("x-fluxgate-made-up", "3"),
    ]);
    apply(&mut m, &names, &cookies(), &user_plan(&names));
    assert_eq!(m["x-user"], "42");
    assert!(m.get("x-fluxgate-user-id").is_none());
    assert!(m.get("x-fluxgate-made-up").is_none());
}

#[test]
fn identity_headers_cover_every_entry_but_the_assertion_and_service() {
    // The assertion is signed by the pipeline over these values; the service name belongs to
    // internal callers (a separate identity): `the_plan_sets_every_identity_header_for_some_caller`
    // in the pipeline tests covers both.
    let names = HeaderNames::defaults();
    let plan = user_plan(&names);
    for &h in IdentityHeader::ALL {
        let expected = !matches!(h, IdentityHeader::Assertion | IdentityHeader::Service);
        assert_eq!(plan.get(&names[h]).is_some(), expected, "{h:?}");
    }
    assert_eq!(plan.get(&names[IdentityHeader::UserId]).unwrap(), "42");
    assert_eq!(
        plan.get(&names[IdentityHeader::SessionId]).unwrap(),
        "sid-43-chars"
    );
    assert_eq!(
        plan.get(&names[IdentityHeader::AuthKind]).unwrap(),
        "session"
    );
    assert_eq!(plan.get(&names[IdentityHeader::Country]).unwrap(), "SE");
    assert_eq!(plan.get(&names[IdentityHeader::Asn]).unwrap(), "29518");
    assert_eq!(
        plan.get(&names[IdentityHeader::SudoUntil]).unwrap(),
        "1900000000"
    );
}

#[test]
fn forwarded_for_is_overwritten_with_the_client_ip_alone() {
    let names = HeaderNames::defaults();
    let mut m = map(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("X-Forwarded-For", "7.7.7.7"),
    ]);
    apply(&mut m, &names, &cookies(), &user_plan(&names));
    assert_eq!(
        m.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
        ["192.0.2.9"]
    );
    assert_eq!(m["x-fluxgate-client-ip"], "192.0.2.9");
}

#[test]
fn a_connection_nominated_identity_header_is_still_set_by_fluxgate() {
    // A client naming our header in `Connection` hopes the next hop drops what we inject.
    let names = HeaderNames::defaults();
    let mut m = map(&[
        ("connection", "x-fluxgate-user-id, x-custom"),
        ("x-custom", "1"),
    ]);
    apply(&mut m, &names, &cookies(), &user_plan(&names));
    assert_eq!(m["x-fluxgate-user-id"], "42");
    assert!(m.get("x-custom").is_none());
}

#[test]
fn own_cookies_are_removed_unless_the_route_passes_them() {
    let names = HeaderNames::defaults();
    let cookie = "theme=dark; fluxer_session=flx_x; fluxer_sudo_mode=jwt; locale=en";
    let mut m = map(&[("cookie", cookie)]);
    apply(&mut m, &names, &cookies(), &user_plan(&names));
    assert_eq!(m["cookie"], "theme=dark; locale=en");

    let mut pass = user_plan(&names);
    pass.strip_own_cookies = false;
    let mut m = map(&[("cookie", cookie)]);
    apply(&mut m, &names, &cookies(), &pass);
    assert_eq!(m["cookie"], cookie);
}

#[test]
fn expect_is_dropped_only_when_fluxgate_read_the_body() {
    let names = HeaderNames::defaults();
    let mut plan = user_plan(&names);
    let mut m = map(&[("expect", "100-continue")]);
    apply(&mut m, &names, &cookies(), &plan);
    assert!(m.get("expect").is_some());
    plan.drop_expect = true;
    apply(&mut m, &names, &cookies(), &plan);
    assert!(m.get("expect").is_none());
}

#[test]
fn spoofed_forwarding_headers_from_an_untrusted_peer_never_reach_the_upstream() {
    let names = HeaderNames::defaults();
    let mut m = map(&[
        ("x-forwarded-proto", "https"),
        ("X_Forwarded_Host", "evil.example"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4;proto=https"),
        ("X_Forwarded_For", "1.2.3.4"),
        ("x-other", "kept"),
    ]);
    apply(&mut m, &names, &cookies(), &user_plan(&names));
    for gone in [
        "x-forwarded-proto",
        "x_forwarded_host",
        "x-forwarded-port",
        "forwarded",
        "x_forwarded_for",
    ] {
        assert!(m.get(gone).is_none(), "{gone} survived");
    }
    // Set by the plan: the resolved address, never the client's claim.
    assert_eq!(m["x-real-ip"], "192.0.2.9");
    assert_eq!(m["x-forwarded-for"], "192.0.2.9");
    assert_eq!(m["x-other"], "kept");
}

#[test]
fn a_trusted_proxys_forwarding_headers_are_kept() {
    let names = HeaderNames::defaults();
    let mut m = map(&[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.fluxer.app"),
        ("forwarded", "for=198.51.100.7;proto=https"),
    ]);
    let plan = UpstreamPlan {
        strip_forwarded: false,
        ..user_plan(&names)
    };
    apply(&mut m, &names, &cookies(), &plan);
    assert_eq!(m["x-forwarded-proto"], "https");
    assert_eq!(m["x-forwarded-host"], "api.fluxer.app");
    assert_eq!(m["forwarded"], "for=198.51.100.7;proto=https");
}
