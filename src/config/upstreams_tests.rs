//! Upstream validation: the two spellings, names and references, addresses and weights,
//! health checks, and the routes' `strip_prefix` / `set_host`.

use crate::config::parse;
use crate::config::tests::errors;
use crate::proxy::{Balance, HashKey};

const TWO: &str = r#"
[[upstream]]
name = "api"
addresses = ["127.0.0.1:3001", "127.0.0.1:3002"]
weights = [1, 3]
balance = "consistent_hash"
hash_key = "user_id"

[upstream.health_check]
path = "/_health"
interval = "2s"
timeout = "500ms"
rise = 3
fall = 1

[[upstream]]
name = "web"
addresses = ["127.0.0.1:3003"]

[routing.default]
upstream = "web"
auth = "none"

[[route]]
path = "/api/*"
upstream = "api"
strip_prefix = "/api"
set_host = "api.internal:8080"
"#;

/// Problems as `path: message`, without positions.
fn problems(src: &str) -> Vec<String> {
    errors(src)
        .into_iter()
        .map(|e| match e.split_once(" @") {
            Some((path, rest)) => {
                let msg = rest.split_once(": ").map_or(rest, |(_, m)| m);
                format!("{path}: {msg}")
            }
            None => e,
        })
        .collect()
}

#[test]
fn the_single_table_is_the_default_upstream() {
    let c = parse("[upstream]\naddresses = [\"127.0.0.1:4000\"]", "t").unwrap();
    assert_eq!(c.live.upstreams.len(), 1);
    assert_eq!(c.live.upstreams[0].name, "default");
    assert_eq!(c.live.routes.default_route().policy.forward.upstream, 0);
    assert!(c.warnings().iter().all(|w| !w.contains("upstream")));
}

#[test]
fn named_upstreams_resolve_to_indexes_with_their_settings() {
    let c = parse(TWO, "t").unwrap();
    let [api, web] = &c.live.upstreams[..] else {
        panic!("two upstreams")
    };
    assert_eq!((api.name.as_str(), web.name.as_str()), ("api", "web"));
    assert_eq!(api.weights, vec![1, 3]);
    assert_eq!(api.balance, Balance::Hash(HashKey::UserId));
    let hc = api.health_check.as_ref().expect("health check");
    assert_eq!((hc.path.as_str(), hc.rise, hc.fall), ("/_health", 3, 1));
    assert_eq!(hc.interval, std::time::Duration::from_secs(2));
    assert_eq!(web.weights, vec![1]);
    assert!(web.health_check.is_none());
    let routes = &c.live.routes;
    assert_eq!(routes.default_route().policy.forward.upstream, 1);
    let f = &routes.routes()[0].policy.forward;
    assert_eq!((f.upstream, f.strip_segments), (0, 1));
    assert_eq!(f.set_host.as_ref().unwrap(), "api.internal:8080");
}

#[test]
fn an_unknown_upstream_name_is_an_error_at_its_key() {
    let src = TWO.replace("upstream = \"api\"", "upstream = \"apii\"");
    let all = errors(&src);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("route[0].upstream @")
            && all[0].contains("no upstream is named \"apii\" (defined: api, web)"),
        "{all:?}"
    );
}

#[test]
fn an_unused_upstream_is_a_warning_not_an_error() {
    let src = format!("{TWO}\n[[upstream]]\nname = \"spare\"\naddresses = [\"127.0.0.1:3009\"]\n");
    let c = parse(&src, "t").unwrap();
    let w = c.warnings();
    assert!(
        w.iter()
            .any(|w| w.contains("upstream \"spare\" is defined but no route")),
        "{w:?}"
    );
    assert!(
        !w.iter()
            .any(|w| w.contains("\"api\"") || w.contains("\"web\""))
    );
}

#[test]
fn bad_upstream_settings_are_each_reported_with_their_key() {
    let src = r#"
[[upstream]]
name = "api"
addresses = []
balance = "random"
retries = 9
eject_after = 0

[upstream.health_check]
path = "health"
interval = "1s"
timeout = "2s"
expected_status = 42
rise = 0

[[upstream]]
name = "api"
addresses = ["127.0.0.1:1", "127.0.0.1:1"]
weights = [1]

[[upstream]]
addresses = ["127.0.0.1:2"]

[routing.default]
upstream = "api"
"#;
    let got = problems(src);
    for want in [
        "upstream[0].addresses: needs at least one address",
        "upstream[0].balance: unknown balance \"random\"; use \"round_robin\" or \"consistent_hash\"",
        "upstream[0].retries: must be at most 3",
        "upstream[0].eject_after: must be at least 1",
        "upstream[0].health_check.path: \"health\" must be a path starting with '/'",
        "upstream[0].health_check.timeout: must not be longer than `interval`",
        "upstream[0].health_check.expected_status: must be an HTTP status",
        "upstream[0].health_check.rise: must be between 1 and 100",
        "upstream[1].name: another [[upstream]] is named \"api\"",
        "upstream[1].addresses[1]: \"127.0.0.1:1\" is listed twice",
        "upstream[1].weights: has 1 entries for 2 addresses",
        "upstream[2]: needs a `name`",
    ] {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in:\n{}",
            got.join("\n")
        );
    }
}

#[test]
fn several_upstreams_need_the_default_named() {
    let src = TWO.replace("upstream = \"web\"\n", "");
    let got = problems(&src);
    assert!(
        got.iter()
            .any(|g| g.starts_with("routing.default: with several [[upstream]]")),
        "{got:?}"
    );
}

#[test]
fn an_unknown_key_inside_an_upstream_is_reported_in_both_spellings() {
    let got = problems("[upstream]\naddreses = [\"127.0.0.1:1\"]");
    assert_eq!(got, vec!["upstream.addreses: unknown key"]);
    let got = problems(
        "[[upstream]]\nname = \"a\"\nadresses = []\n[upstream.health_check]\npaht = \"/\"",
    );
    assert!(
        got.contains(&"upstream[0].adresses: unknown key".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"upstream[0].health_check.paht: unknown key".to_string()),
        "{got:?}"
    );
}

#[test]
fn strip_prefix_must_start_with_a_slash_and_be_the_routes_leading_literals() {
    for (prefix, path, want) in [
        ("api", "/api/*", "\"api\" must start with '/'"),
        ("/api/", "/api/*", "must be leading literal segments"),
        ("/ap", "/api/*", "must be leading literal segments"),
        ("/api/:id", "/api/:id/x", "must be leading literal segments"),
        ("/media", "/api/*", "must be leading literal segments"),
        ("/", "/api/*", "must be leading literal segments"),
    ] {
        let src =
            format!("[[route]]\npath = \"{path}\"\nauth = \"none\"\nstrip_prefix = \"{prefix}\"");
        let got = problems(&src);
        assert!(
            got.len() == 1
                && got[0].starts_with("route[0].strip_prefix: ")
                && got[0].contains(want),
            "{prefix} on {path}: {got:?}"
        );
    }
    let ok = "[[route]]\npath = \"/api/v2/*\"\nauth = \"none\"\nstrip_prefix = \"/api/v2\"";
    let c = parse(ok, "t").unwrap();
    assert_eq!(c.live.routes.routes()[0].policy.forward.strip_segments, 2);
}

#[test]
fn the_default_route_takes_no_strip_prefix_and_set_host_must_be_a_host() {
    let got = problems("[routing.default]\nstrip_prefix = \"/x\"");
    assert!(
        got[0].starts_with("routing.default: the default policy takes no"),
        "{got:?}"
    );
    let got = problems("[[route]]\npath = \"/x\"\nauth = \"none\"\nset_host = \"user@evil\"");
    assert_eq!(
        got,
        vec!["route[0].set_host: \"user@evil\" is not a host[:port]"]
    );
}
