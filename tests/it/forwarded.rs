//! Forwarding headers are fluxgate's (contract §4): an untrusted client's `X-Forwarded-*`,
//! `X-Real-IP` and `Forwarded` never reach the upstream; fluxgate sets the scheme, host and
//! address it saw; a trusted proxy's values are kept.

use crate::common::*;

fn spoofing(req: Req) -> Req {
    req.header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "443")
        .header("x-real-ip", "203.0.113.66")
        .header(
            "forwarded",
            "for=203.0.113.66;proto=https;host=evil.example",
        )
}

#[test]
fn spoofed_forwarding_headers_from_a_client_never_reach_the_upstream() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "[[route]]\npath = \"/public\"\nauth = \"none\"\n");
    let r = spoofing(Req::get("/public")).send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http".to_string()]);
    assert_eq!(
        seen.all("x-forwarded-host"),
        vec![fg.proxy.to_string()],
        "the Host the client asked for"
    );
    assert_eq!(seen.all("x-real-ip"), vec!["127.0.0.1".to_string()]);
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1".to_string()]);
    for gone in ["x-forwarded-port", "forwarded"] {
        assert!(seen.all(gone).is_empty(), "{gone} reached the upstream");
    }
    // An underscore spelling, which CGI-style servers read as the real header, is refused.
    for name in ["x_forwarded_proto", "X_Forwarded_Port", "x_real_ip"] {
        Req::get("/public")
            .header(name, "https")
            .send(fg.proxy)
            .denial(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 1);
}

#[test]
fn a_trusted_proxys_forwarding_headers_are_kept_and_the_address_resolved() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[route]]\npath = \"/public\"\nauth = \"none\"\n",
    );
    let r = Req::get("/public")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "api.fluxer.app")
        .header("forwarded", "for=198.51.100.7;proto=https")
        .send(fg.proxy);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.get("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        seen.get("x-forwarded-host").as_deref(),
        Some("api.fluxer.app")
    );
    assert_eq!(
        seen.get("forwarded").as_deref(),
        Some("for=198.51.100.7;proto=https")
    );
    assert_eq!(seen.all("x-real-ip"), vec!["198.51.100.7".to_string()]);
    assert_eq!(
        seen.all("x-forwarded-for"),
        vec!["198.51.100.7".to_string()]
    );
}

#[test]
fn connection_naming_forwarding_headers_or_host_cannot_break_or_steer_the_request() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, "[[route]]\npath = \"/public\"\nauth = \"none\"\n");
    for nominated in [
        "X-Forwarded-For",
        "x-forwarded-proto",
        "Host",
        "keep-alive, X-Forwarded-Host, X-Forwarded-For, Host",
        "\"x-forwarded-for\", :authority",
    ] {
        up.clear();
        let r = Req::get("/public")
            .header("connection", nominated)
            .header("x-forwarded-for", "203.0.113.66")
            .send(fg.proxy);
        assert_eq!(r.status, 200, "Connection: {nominated}: {}", r.text());
        let seen = up.last();
        assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1".to_string()]);
        assert_eq!(seen.all("x-forwarded-proto"), vec!["http".to_string()]);
        assert_eq!(seen.all("host"), vec![fg.proxy.to_string()], "Host is kept");
        assert!(
            seen.all("connection")
                .iter()
                .all(|c| !c.to_ascii_lowercase().contains("forwarded")),
            "{:?}",
            seen.all("connection")
        );
    }
}
