//! Config parsing and validation: every default is valid, every problem is reported with its
//! path and position.

use super::*;

/// The problems found in `src`, as `path @line:column: message`; panics if it is valid.
pub(super) fn errors(src: &str) -> Vec<String> {
    match parse(src, "test.toml") {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(e) => e
            .problems
            .iter()
            .map(|(e, pos)| match pos {
                Some((l, c)) => format!("{} @{l}:{c}: {}", e.path, e.message),
                None => format!("{}: {}", e.path, e.message),
            })
            .collect(),
    }
}

#[test]
fn empty_file_is_the_valid_default_config() {
    let c = parse("", "empty").unwrap();
    assert_eq!(
        c.boot.server.listen,
        vec!["127.0.0.1:8080".parse().unwrap()]
    );
    assert_eq!(c.live.sessions.cookie_name, "fluxer_session");
    assert_eq!(c.boot.sessions.cache.ttl_ms, 30_000);
    assert!(c.live.accept.contains(crate::credential::Kind::Session));
    assert!(!c.live.accept.contains(crate::credential::Kind::Bot));
    assert!(c.boot.admin.secret.is_none());
}

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let e = errors(
        "[server]\nlisten = [\"127.0.0.1:1\"]\nthreds = 2\n\n[sessions]\ncache_tll = \"1s\"\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0], "server.threds @3:1: unknown key");
    assert_eq!(e[1], "sessions.cache_tll @6:1: unknown key");
}

#[test]
fn type_errors_name_the_key_and_line() {
    let e = errors("[server]\nthreads = \"two\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("server.threads @2:11:"), "{e:?}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = errors("[server\nthreads = 1\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("@1:"), "{e:?}");
}

#[test]
fn bad_duration_is_reported_at_its_value() {
    let e = errors("[sessions]\ncache_ttl = \"10 minutes\"\n");
    assert!(e[0].starts_with("sessions.cache_ttl @2:13:"), "{e:?}");
    assert!(e[0].contains("invalid duration"), "{e:?}");
}

#[test]
fn all_semantic_problems_are_reported_together() {
    let src = r#"
[server]
listen = ["nope"]

[sessions]
cache_ttl = "2h"
negative_ttl = "3h"

[[route]]
path = "no-slash"
auth = "sometimes"

[[route]]
methods = ["get"]
path = "/x"
kinds = ["session", "pigeon"]
"#;
    let e = errors(src);
    let joined = e.join("\n");
    for frag in [
        "server.listen[0] @3:11: \"nope\" is not an address",
        "sessions.cache_ttl @6:13: must be at most 1h",
        "sessions.negative_ttl @7:16: must not be longer",
        "route[0].path @10:8: path pattern \"no-slash\" must start with '/'",
        "route[0].auth @11:8: unknown auth mode \"sometimes\"",
        "route[1].methods[0] @14:12: \"get\" is not an HTTP method in upper case",
        "route[1].kinds[1] @16:21: unknown credential kind \"pigeon\"",
    ] {
        assert!(joined.contains(frag), "missing {frag:?} in:\n{joined}");
    }
}

#[test]
fn normalized_config_redacts_inline_secrets_and_canonicalizes_durations() {
    let src = r#"
[sessions]
cache_ttl = "60s"

[admin]
secret = { value = "admin-secret-0123456789" }

[[internal_secrets]]
name = "gw"
secret = { value = "gw-secret-0123456789" }
"#;
    let c = parse(src, "t").unwrap();
    let out = c.normalized();
    assert!(!out.contains("admin-secret-0123456789"), "{out}");
    assert!(!out.contains("gw-secret-0123456789"), "{out}");
    assert!(out.contains("<redacted>"), "{out}");
    assert!(out.contains("cache_ttl = \"1m\""), "{out}");
    // The normalized output is itself a valid config... except for the redacted secrets,
    // which are too short to be real ones. Parse it back without them.
    let reparsed = parse(&out.replace("<redacted>", "some-long-secret-value-x"), "t2");
    assert!(reparsed.is_ok());
}

#[test]
fn every_closed_choice_lists_its_allowed_values() {
    let src = r#"
[sessions]
store = "postgres"
on_store_error = "shrug"

[cookies]
session_same_site = "Lax"

[credentials]
accept = ["session", "pigeon"]

[network]
unknown = "maybe"

[ip_authorization]
granularity = "city"

[rate_limits]
backend = "memcached"
on_error = "allow"
lockout_on_error = "allow"

[[rate_limits.bucket]]
name = "b"
limit = 1
window = "1s"
scope = "global"

[logging]
format = "xml"

[[route]]
path = "/x"
auth = "sometimes"
role = "signup"
"#;
    let want = [
        r#"credentials.accept[1] @10:22: unknown credential kind "pigeon"; use "session", "oauth2" or "bot""#,
        r#"sessions.store @3:9: unknown store "postgres"; use "embedded", "redis" or "backend""#,
        r#"sessions.on_store_error @4:18: unknown policy "shrug"; use "deny" or "serve_stale""#,
        r#"rate_limits.backend @19:11: unknown backend "memcached"; use "local" or "redis""#,
        r#"rate_limits.bucket[0].scope @27:9: unknown scope "global"; use "user" or "shared""#,
        r#"rate_limits.on_error @20:12: unknown fallback "allow"; use "local" or "deny""#,
        r#"rate_limits.lockout_on_error @21:20: unknown fallback "allow"; use "local" or "deny""#,
        r#"network.unknown @13:11: unknown policy "maybe"; use "deny" or "allow""#,
        r#"ip_authorization.granularity @16:15: unknown granularity "city"; use "ip", "network", "asn" or "country""#,
        r#"cookies.session_same_site @7:21: unknown SameSite "Lax"; use "strict", "lax" or "none""#,
        r#"route[0].auth @34:8: unknown auth mode "sometimes"; use "none", "required" or "internal""#,
        r#"route[0].role @35:8: unknown role "signup"; use "logout", "logout_all", "authorize_ip", "ip_authorization_poll", "ip_authorization_resend" or "login""#,
        r#"logging.format @30:10: unknown format "xml"; use "json", "logfmt" or "pretty""#,
    ];
    assert_eq!(errors(src), want);
}

#[test]
fn sharing_backend_answers_defaults_to_the_redis_store_and_needs_a_backend() {
    let with = |s: &str| {
        let src = format!("[upstream]\naddresses = [\"127.0.0.1:3000\"]\n{s}");
        parse(&src, "t")
            .unwrap_or_else(|e| panic!("{s}: {e:?}"))
            .boot
    };
    let redis = with("[sessions]\nstore = \"redis\"\n[sessions.backend]\nfallback = true\n");
    assert!(redis.sessions.share, "on by default with the Redis store");
    let off =
        with("[sessions]\nstore = \"redis\"\n[sessions.backend]\nfallback = true\nshare = false\n");
    assert!(!off.sessions.share);
    let backend = with("[sessions]\nstore = \"backend\"\n");
    assert!(!backend.sessions.share && backend.redis.is_none());
    let opted = with("[sessions]\nstore = \"backend\"\n[sessions.backend]\nshare = true\n");
    assert!(opted.sessions.share);
    assert!(opted.redis.is_some(), "share = true uses [redis]");
    // Nothing to share without a backend: an error with its key path, not a silent no-op.
    let e = errors("[sessions]\nstore = \"redis\"\n[sessions.backend]\nshare = true\n");
    assert!(e[0].starts_with("sessions.backend.share"), "{e:?}");
    assert!(
        e[0].contains("only applies when the backend is asked"),
        "{e:?}"
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies_and_is_read_per_listener() {
    let e = errors("[server]\nproxy_protocol = true\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("server.proxy_protocol @2:")
            && e[0].contains("needs client_ip.trusted_proxies"),
        "{e:?}"
    );
    let c = parse(
        "[server]\nproxy_protocol = true\nproxy_protocol_timeout = \"2s\"\n\
         [client_ip]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        "t",
    )
    .unwrap();
    assert!(c.boot.server.proxy_protocol);
    assert_eq!(
        c.boot.server.limits.proxy_protocol_timeout,
        std::time::Duration::from_secs(2)
    );
    let c = parse("", "t").unwrap();
    assert!(!c.boot.server.proxy_protocol);
    assert_eq!(
        c.boot.server.limits.proxy_protocol_timeout,
        std::time::Duration::from_secs(5)
    );
}
