//! Spellings a lenient upstream reads as another path or method (case, `;params`, double
//! encoding, overlong UTF-8, what Pingora escapes or cuts from the request line): refused at the
//! edge unless the route allows them, so no route policy can be walked around. Through the real
//! binary, asserting on what the upstream received.

use crate::common::*;

/// A public wildcard in front of an internal handler, the shape every bypass here aims at.
const ROUTES: &str = r#"
[[internal_secrets]]
name = "billing"
secret = { value = "internal-secret-0123456789abcdef" }

[[route]]
path = "/public/*"
auth = "none"

[[route]]
path = "/legacy/*"
auth = "none"
allow_in_path = ["semicolons", "double_encoding"]

[[route]]
path = "/_internal/*"
auth = "internal"
"#;

fn start(extra: &str) -> (Upstream, Fluxgate) {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, &format!("{ROUTES}{extra}"));
    (up, fg)
}

#[test]
fn lowercase_and_non_standard_methods_are_refused_before_routing() {
    // An upstream that upper-cases methods would run `GET /_internal/x` for `get`.
    let (up, fg) = start("");
    for m in ["get", "Get", "PROPFIND", "FOO"] {
        fg.send(&Req::new(m, "/public/x"))
            .denial(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
    assert_eq!(fg.send(&Req::get("/public/x")).status, 200);
}

#[test]
fn semicolon_params_cannot_reach_an_internal_handler_anonymously() {
    // Servers that strip `;params` act on `/_internal/x` or `/public/../_internal/x`.
    let (up, fg) = start("");
    for target in [
        "/_internal;x/flags",
        "/_internal%3bx/flags",
        "/public/..;/_internal/flags",
        "/public/..%3b/_internal/flags",
        "/public/x;y",
    ] {
        fg.send(&Req::get(target)).denial(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
    // Allowed on a route that opts in, when stripping them keeps the route.
    assert_eq!(fg.send(&Req::get("/legacy/a;v=1")).status, 200);
    assert_eq!(up.last().target, "/legacy/a;v=1");
}

#[test]
fn double_encoded_overlong_and_escaped_whitespace_paths_are_refused() {
    // A server that decodes twice, "repairs" overlong UTF-8 or trims decoded whitespace reads
    // each of these as `/public/../_internal/flags`.
    let (up, fg) = start("");
    for target in [
        "/public/%252e%252e/_internal/flags",
        "/public/%c0%ae%c0%ae/_internal/flags",
        "/public/..%20/_internal/flags",
        "/public/..%09/_internal/flags",
    ] {
        fg.send(&Req::get(target)).denial(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
    // The route that allows double encoding gets it, byte for byte.
    assert_eq!(fg.send(&Req::get("/legacy/%252e")).status, 200);
    assert_eq!(up.last().target, "/legacy/%252e");
}

#[test]
fn raw_spaces_controls_and_fragments_in_the_request_line_are_400_not_rewritten() {
    // Pingora percent-escapes a raw space or control character and drops a `#fragment`; what
    // it rewrote must not be forwarded as if the client had sent it.
    let (up, fg) = start("");
    for target in [
        &b"/public/.. /_internal/flags"[..],
        b"/public/..\x01/_internal/flags",
        b"/public/..\t/_internal/flags",
        b"/public/..\x0b/_internal/flags",
        b"/public/..\x7f/_internal/flags",
        b"/public/x#/../../_internal/flags",
    ] {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let r = send_raw(fg.proxy, &raw);
        assert_eq!(
            r.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(target),
            r.text()
        );
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

#[test]
fn case_insensitive_paths_give_every_spelling_the_routes_policy() {
    // Exact matching (the default) with an upstream that ignores case: `/_INTERNAL/x` is the
    // default policy's (a session), so without a credential it is 401, never forwarded.
    let (up, fg) = start("");
    fg.send(&Req::get("/_INTERNAL/flags"))
        .denial(401, "UNAUTHORIZED");
    assert_eq!(up.count(), 0);
    // With case_insensitive_paths every spelling is the internal route, and needs the secret.
    let (up, fg) = start("\n[routing]\ncase_insensitive_paths = true\n");
    for target in ["/_INTERNAL/flags", "/V1/_Internal/flags"] {
        fg.send(&Req::get(target).header("x-fluxer-rpc-auth", "wrong"))
            .denial(401, "UNAUTHORIZED");
        let r = fg.send(
            &Req::get(target).header("x-fluxer-rpc-auth", "internal-secret-0123456789abcdef"),
        );
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(
            up.last().get("x-fluxgate-service").as_deref(),
            Some("billing")
        );
    }
}
