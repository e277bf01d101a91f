//! Property tests (issue 18): header stripping. Whatever a client sends (identity headers in
//! any case and `_`/`-` spelling, `x-fluxgate-*`, forwarding headers, `Connection`
//! nominations in any spelling and spacing), no identity header survives, no nominated header
//! survives (but `Connection` and `Upgrade` themselves), forwarding headers survive only from a
//! trusted proxy, and nothing else is removed.

use super::{FORWARDED, strip_untrusted};
use crate::identity::HeaderNames;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

fn fold(s: &str) -> String {
    s.to_ascii_lowercase().replace('_', "-")
}

/// A header name from the interesting families, re-spelled with `_` for some `-` and random
/// case.
fn name() -> impl Strategy<Value = String> {
    let ids: Vec<String> = HeaderNames::defaults()
        .all()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let fwd: Vec<String> = FORWARDED.iter().map(|n| n.to_string()).collect();
    let base = prop_oneof![
        3 => prop::sample::select(ids),
        1 => "x-fluxgate-[a-z]{1,6}".boxed(),
        1 => prop::sample::select(fwd),
        1 => prop::sample::select(vec!["accept".to_string(), "x-custom".into(), "upgrade".into(),
            "x-fluxgate".into(), "x-fluxgateuser".into(), "user-agent".into()]),
    ];
    (base, any::<u64>()).prop_map(|(n, bits)| {
        n.chars()
            .enumerate()
            .map(|(i, c)| {
                match (
                    c,
                    bits >> (i % 64) & 1 == 1,
                    bits >> ((i + 7) % 64) & 1 == 1,
                ) {
                    ('-', true, _) => '_',
                    (c, _, true) => c.to_ascii_uppercase(),
                    (c, _, _) => c,
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn no_client_identity_header_survives_stripping(
        headers in prop::collection::vec(name(), 0..10),
        nominated in prop::collection::vec((name(), " {0,2}"), 0..4),
        forwarded in any::<bool>(),
    ) {
        let names = HeaderNames::defaults();
        let mut map = HeaderMap::new();
        for h in &headers {
            map.append(HeaderName::from_bytes(h.as_bytes()).unwrap(), HeaderValue::from_static("1"));
        }
        let conn = nominated.iter().map(|(n, sp)| format!("{sp}{n}{sp}")).collect::<Vec<_>>().join(",");
        if !nominated.is_empty() {
            map.append(http::header::CONNECTION, HeaderValue::from_str(&conn).unwrap());
        }
        let before: Vec<String> = map.keys().map(|k| k.to_string()).collect();
        strip_untrusted(&mut map, &names, forwarded);

        let identity = |n: &str| {
            fold(n).starts_with("x-fluxgate-") || names.all().iter().any(|c| fold(n) == c.as_str())
        };
        let forwarding = |n: &str| FORWARDED.iter().any(|f| fold(n) == f.as_str());
        let hop = |n: &str| {
            n != "connection" && n != "upgrade"
                && nominated.iter().any(|(m, _)| fold(m) == fold(n))
        };
        for n in &before {
            let doomed = identity(n) || (forwarded && forwarding(n)) || hop(n);
            prop_assert_eq!(map.contains_key(n.as_str()), !doomed, "{} (Connection: {})", n, conn);
        }
    }
}
