//! CORS at the edge (contract §3b) through the real binary: preflights from allowed origins
//! are answered and never 401, every answer to an allowed origin (denials included) carries
//! the CORS headers, a foreign origin gets none, and in upstream mode preflights reach the API.

use crate::common::*;

const WEB: &str = "https://web.fluxer.app";
const EVIL: &str = "https://evil.example";

fn config(extra: &str) -> String {
    format!("[csrf]\nallowed_origins = [\"{WEB}\"]\n{extra}")
}

/// The exact preflight a browser sends before `fetch(url, {method: "PATCH", headers:
/// {Authorization, "Content-Type": "application/json"}, credentials: "include"})`.
fn preflight(origin: &str) -> Req {
    Req::new("OPTIONS", "/users/@me")
        .header("origin", origin)
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .header("sec-fetch-mode", "cors")
}

fn has_no_cors(r: &Resp) {
    for (k, _) in &r.headers {
        assert!(
            !k.to_ascii_lowercase().starts_with("access-control-"),
            "CORS header {k} leaked: {:?}",
            r.headers
        );
    }
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered_at_the_edge_never_401() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let r = preflight(WEB).send(fg.proxy);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(WEB));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let methods = r.header("access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("PATCH"), "{methods}");
    let headers = r.header("access-control-allow-headers").unwrap_or("");
    for h in ["authorization", "content-type", "x-fluxer-sudo-mode-jwt"] {
        assert!(headers.contains(h), "{h} not allowed: {headers}");
    }
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").is_some_and(|v| v.contains("origin")));
    assert_eq!(
        up.count(),
        0,
        "a preflight answered at the edge goes nowhere"
    );
}

#[test]
fn a_preflight_from_a_foreign_origin_is_an_ordinary_request_and_learns_nothing() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let r = preflight(EVIL).send(fg.proxy);
    // Exactly what the same OPTIONS without CORS headers gets: 401 on a protected route.
    let plain = Req::new("OPTIONS", "/users/@me").send(fg.proxy);
    assert_eq!(r.status, plain.status);
    assert_eq!(r.status, 401);
    has_no_cors(&r);
}

#[test]
fn denials_to_an_allowed_origin_are_readable_by_the_page() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let r = Req::get("/users/@me").header("origin", WEB).send(fg.proxy);
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(r.header("access-control-allow-origin"), Some(WEB));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let exposed = r.header("access-control-expose-headers").unwrap_or("");
    for h in ["x-ratelimit-limit", "retry-after", "x-request-id"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // A foreign origin gets the same denial without them.
    let r = Req::get("/users/@me").header("origin", EVIL).send(fg.proxy);
    r.denial(401, "UNAUTHORIZED");
    has_no_cors(&r);
}

#[test]
fn successes_carry_fluxgates_cors_and_never_the_upstreams_in_edge_mode() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config(""));
    let (tok, _) = fg.create_session(serde_json::json!({"user_id": "42"}));
    // An upstream that opens itself to every origin cannot open the API to a foreign page.
    let reply = "access-control-allow-origin: *";
    let r = Req::get("/users/@me")
        .header("authorization", &tok)
        .header("origin", EVIL)
        .header("x-upstream-reply", reply)
        .send(fg.proxy);
    assert_eq!(r.status, 200);
    has_no_cors(&r);
    let r = Req::get("/users/@me")
        .header("authorization", &tok)
        .header("origin", WEB)
        .header("x-upstream-reply", reply)
        .header("x-upstream-reply", "vary: accept-encoding")
        .send(fg.proxy);
    assert_eq!(r.status, 200);
    let acao: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(acao, vec![WEB]);
    let vary: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("accept-encoding")),
        "{vary:?}"
    );
    assert!(vary.iter().any(|v| v.contains("origin")), "{vary:?}");
}

#[test]
fn in_upstream_mode_preflights_reach_the_api_without_identity_and_denials_keep_cors() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config("[cors]\nmode = \"upstream\"\n"));
    let r = preflight(WEB)
        .header("x-fluxgate-user-id", "1")
        .header(
            "cookie",
            "fluxer_session=flx_abcdefghijklmnopqrstuvwxyz0123456789",
        )
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    let seen = up.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(
        seen.get("x-fluxgate-auth-kind").as_deref(),
        Some("anonymous")
    );
    assert_eq!(seen.get("x-fluxgate-user-id"), None);
    assert!(
        seen.get("cookie")
            .is_none_or(|c| !c.contains("fluxer_session"))
    );
    // The upstream's answer is its own; fluxgate's denials still carry CORS.
    let r = Req::get("/users/@me").header("origin", WEB).send(fg.proxy);
    r.denial(401, "UNAUTHORIZED");
    assert_eq!(r.header("access-control-allow-origin"), Some(WEB));
}

#[test]
fn cors_off_leaves_preflights_to_the_ordinary_rules() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &config("[cors]\nmode = \"off\"\n"));
    let r = preflight(WEB).send(fg.proxy);
    assert_eq!(r.status, 401);
    has_no_cors(&r);
}
