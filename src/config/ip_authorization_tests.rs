//! `ip_authorization.mode` against the routes: upstream mode refuses every piece of the edge
//! flow by name, edge mode refuses an endpoint that shares requests with another route.

use crate::config::parse;

fn problems(src: &str) -> Vec<String> {
    match parse(src, "t") {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .iter()
            .map(|(e, _)| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

const EDGE_ENDPOINTS: &str = r#"
[[route]]
methods = ["POST"]
path = "/_fluxgate/ip-authorization/authorize"
auth = "none"
role = "authorize_ip"

[[route]]
methods = ["GET"]
path = "/_fluxgate/ip-authorization/poll"
auth = "none"
role = "ip_authorization_poll"

[[route]]
methods = ["POST"]
path = "/_fluxgate/ip-authorization/resend"
auth = "none"
role = "ip_authorization_resend"
"#;

#[test]
fn the_default_mode_is_edge_and_runs_todays_flow() {
    let c = parse(
        &format!("[[route]]\npath = \"/users/@me\"\nip_authorization = true\n{EDGE_ENDPOINTS}"),
        "t",
    )
    .unwrap();
    assert!(c.live.routes.routes()[0].policy.ip_authorization);
}

#[test]
fn upstream_mode_refuses_routes_that_would_hold_sessions_at_the_edge() {
    let got = problems(
        "[ip_authorization]\nmode = \"upstream\"\n[routing.default]\nip_authorization = true\n\
         [[route]]\npath = \"/users/@me\"\nip_authorization = true\n",
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("routing.default.ip_authorization: ip_authorization.mode = \"upstream\" leaves the new-location check to the upstream"), "{got:?}");
    assert!(
        got[1].starts_with("route[0].ip_authorization: ip_authorization.mode = \"upstream\""),
        "{got:?}"
    );
}

#[test]
fn upstream_mode_refuses_every_edge_endpoint_role_so_fluxers_own_endpoints_are_proxied() {
    let got = problems(&format!(
        "[ip_authorization]\nmode = \"upstream\"\n{EDGE_ENDPOINTS}"
    ));
    assert_eq!(got.len(), 3, "{got:?}");
    for (i, role) in [
        "authorize_ip",
        "ip_authorization_poll",
        "ip_authorization_resend",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            got[i].starts_with(&format!(
                "route[{i}].role: ip_authorization.mode = \"upstream\""
            )),
            "{got:?}"
        );
        assert!(got[i].contains(&format!("no {role:?} endpoint")), "{got:?}");
    }
}

#[test]
fn upstream_mode_refuses_the_webhook_and_stream_it_would_never_use() {
    let got = problems(
        "[ip_authorization]\nmode = \"upstream\"\nwebhook_url = \"http://h/x\"\n\
         webhook_secret = { value = \"0123456789abcdef\" }\nredis_stream = \"s\"\n",
    );
    let keys: Vec<&str> = got.iter().filter_map(|g| g.split(':').next()).collect();
    assert!(keys.contains(&"ip_authorization.webhook_url"), "{got:?}");
    assert!(keys.contains(&"ip_authorization.webhook_secret"), "{got:?}");
    assert!(keys.contains(&"ip_authorization.redis_stream"), "{got:?}");
}

#[test]
fn upstream_mode_accepts_fluxers_own_endpoints_as_plain_routes() {
    let got = problems(
        "[ip_authorization]\nmode = \"upstream\"\n\
         [[route]]\nmethods = [\"POST\"]\npath = \"/auth/authorize-ip\"\nauth = \"none\"\n\
         [[route]]\npath = \"/auth/ip-authorization/*\"\nauth = \"none\"\n",
    );
    assert_eq!(got, Vec::<String>::new());
}

#[test]
fn an_unknown_mode_lists_both() {
    let got = problems("[ip_authorization]\nmode = \"both\"\n");
    assert_eq!(
        got,
        [r#"ip_authorization.mode: unknown mode "both"; use "edge" or "upstream""#]
    );
}

#[test]
fn edge_endpoint_shadowed_by_an_earlier_wildcard_is_refused() {
    // The attack it stops: the approval token goes to the upstream instead of fluxgate, the
    // location is never authorized, and the user is stuck between two ticket systems.
    let got = problems(
        "[[route]]\npath = \"/auth/*\"\nauth = \"none\"\n\
         [[route]]\nmethods = [\"POST\"]\npath = \"/auth/authorize-ip\"\nauth = \"none\"\nrole = \"authorize_ip\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("route[1].path: the \"authorize_ip\" endpoint \"/auth/authorize-ip\" shares requests with route[0] (any method /auth/*), which comes first and takes them"), "{got:?}");
}

#[test]
fn edge_endpoint_that_hides_a_later_upstream_route_is_refused() {
    let got = problems(
        "[[route]]\nmethods = [\"GET\"]\npath = \"/auth/ip-authorization/poll\"\nauth = \"none\"\nrole = \"ip_authorization_poll\"\n\
         [[route]]\nmethods = [\"GET\", \"POST\"]\npath = \"/auth/:section/poll\"\nauth = \"none\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("route[0].path: the \"ip_authorization_poll\" endpoint"),
        "{got:?}"
    );
    assert!(
        got[0].contains(
            "route[1] (GET,POST /auth/:section/poll), which would send them to the upstream"
        ),
        "{got:?}"
    );
}

#[test]
fn edge_endpoint_matched_through_the_version_prefix_is_refused() {
    let got = problems(
        "[[route]]\nmethods = [\"POST\"]\npath = \"/v1/auth/authorize-ip\"\nauth = \"none\"\n\
         [[route]]\nmethods = [\"POST\"]\npath = \"/auth/authorize-ip\"\nauth = \"none\"\nrole = \"authorize_ip\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("route[1].path:"), "{got:?}");
}

#[test]
fn two_endpoints_sharing_requests_are_reported_once() {
    let got = problems(
        "[[route]]\npath = \"/_fluxgate/ip/*\"\nauth = \"none\"\nrole = \"ip_authorization_poll\"\n\
         [[route]]\nmethods = [\"POST\"]\npath = \"/_fluxgate/ip/resend\"\nauth = \"none\"\nrole = \"ip_authorization_resend\"\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("route[1].path:"), "{got:?}");
}

#[test]
fn endpoints_under_their_own_prefix_beside_fluxers_paths_are_accepted() {
    let got = problems(&format!(
        "[[route]]\npath = \"/auth/*\"\nauth = \"none\"\n{EDGE_ENDPOINTS}\
         [[route]]\nmethods = [\"GET\"]\npath = \"/_fluxgate/ip-authorization/poll\"\nauth = \"none\"\n"
    ));
    // Only the last route, a GET on the poll endpoint's path, collides.
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("route[2].path: the \"ip_authorization_poll\" endpoint"),
        "{got:?}"
    );
    let ok = problems(&format!(
        "[[route]]\npath = \"/auth/*\"\nauth = \"none\"\n{EDGE_ENDPOINTS}"
    ));
    assert_eq!(ok, Vec::<String>::new());
    let methods_differ = problems(&format!(
        "{EDGE_ENDPOINTS}[[route]]\nmethods = [\"DELETE\"]\npath = \"/_fluxgate/*\"\nauth = \"none\"\n"
    ));
    assert_eq!(methods_differ, Vec::<String>::new());
}
