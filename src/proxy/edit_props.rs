//! Property test (issue 17): the plain header edit (`edit::plain`, one `HeaderMap`, no case
//! map) and the straightforward one (pingora's `insert_header`/`remove_header`, through
//! `Upstream`) give the upstream the same request: the same values under every name, in the
//! same order, the same target and method, whatever the client sent and whatever the plan
//! sets, strips or drops.

use super::*;
use crate::identity::{self, CookiePolicy, HeaderNames, UpstreamPlan};
use proptest::prelude::*;

fn cookies() -> CookiePolicy {
    CookiePolicy::for_tests()
}

/// Header names a client sends or a plan sets, in any case: identity and forwarding names,
/// cookies, hop-by-hop nominations and ordinary ones.
fn name() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        "x-fluxgate-user-id",
        "x-fluxgate-session-id",
        "x-fluxgate-scopes",
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "forwarded",
        "x-request-id",
        "cookie",
        "connection",
        "expect",
        "accept",
        "user-agent",
        "x-custom",
        "x-custom-2",
        "content-type",
    ]);
    (base, any::<u32>()).prop_map(|(n, bits)| {
        n.chars()
            .enumerate()
            .map(|(i, c)| {
                if bits >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9=;, ._-]{0,24}".boxed(),
        Just("fluxer_session=abc; theme=dark; fluxer_sudo_mode=x".to_string()).boxed(),
        Just("x-custom, keep-alive".to_string()).boxed(),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "/[a-z0-9/@._-]{0,20}(\\?[a-z0-9=&]{0,10})?".prop_map(String::into_bytes),
        Just(b"/files/\xff?q=1".to_vec()),
        Just(b"http://api.example/v1/x".to_vec()),
    ]
}

fn seen(r: &RequestHeader) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut out: Vec<(String, Vec<Vec<u8>>)> = r
        .headers
        .keys()
        .map(|k| {
            let values = r.headers.get_all(k).iter().map(|v| v.as_bytes().to_vec());
            (k.as_str().to_owned(), values.collect())
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_plain_header_edit_forwards_what_insert_header_forwards(
        sent in prop::collection::vec((name(), value()), 0..12),
        set in prop::collection::vec((name(), value()), 0..8),
        target in target(),
        strip_own_cookies in any::<bool>(),
        drop_expect in any::<bool>(),
        strip_forwarded in any::<bool>(),
    ) {
        let mut client = RequestHeader::build("POST", &target, None).unwrap();
        for (n, v) in &sent {
            client.append_header(n.clone(), v.as_str()).unwrap();
        }
        let plan = UpstreamPlan {
            set: set
                .iter()
                .map(|(n, v)| {
                    (
                        http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        http::HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
            strip_own_cookies,
            drop_expect,
            strip_forwarded,
            ..UpstreamPlan::default()
        };
        let (names, cookies) = (HeaderNames::defaults(), cookies());

        let mut straightforward = client.clone();
        identity::apply(&mut Upstream(&mut straightforward), &names, &cookies, &plan);
        let mut optimised = client.clone();
        plain(&mut optimised, plan.set.len(), |h| identity::apply(h, &names, &cookies, &plan))
            .unwrap();

        prop_assert_eq!(seen(&optimised), seen(&straightforward));
        prop_assert_eq!(optimised.raw_path(), straightforward.raw_path());
        prop_assert_eq!(&optimised.method, &straightforward.method);
        prop_assert_eq!(&optimised.uri, &straightforward.uri);
        prop_assert_eq!(optimised.version, straightforward.version);
    }
}
