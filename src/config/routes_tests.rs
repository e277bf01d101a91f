//! Route validation: each refused policy names its key and says why; a policy whose references
//! all resolve is accepted.

use crate::config::parse;
use crate::config::tests::errors;

/// Something to refer to: an internal secret, a sudo secret, a bucket keyed by a path
/// parameter, a lockout keyed by a body field and a named network rule.
const DEFS: &str = r#"
[[internal_secrets]]
name = "gw"
secret = { value = "0123456789abcdef" }

[sudo]
secret = { value = "0123456789abcdef" }

[[rate_limits.bucket]]
name = "per_guild"
limit = 10
window = "1s"
key = "param:guild_id"

[[rate_limits.lockout]]
name = "login"
key = "body:email"

[[network_rule]]
name = "office"
allow_cidrs = ["10.0.0.0/8"]
"#;

struct Case {
    d: &'static str,
    /// Whether [`DEFS`] comes before `toml`.
    defs: bool,
    toml: &'static str,
    /// Every problem, as `path: message`; empty when the config is valid.
    want: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        d: "should refuse an unknown auth mode and list the modes",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nauth = \"sometimes\"",
        want: &[
            r#"route[0].auth: unknown auth mode "sometimes"; use "none", "required" or "internal""#,
        ],
    },
    Case {
        d: "should refuse an internal route when no shared secret is configured",
        defs: false,
        toml: "[[route]]\npath = \"/_rpc\"\nauth = \"internal\"",
        want: &[r#"route[0].auth: "internal" needs at least one [[internal_secrets]] entry"#],
    },
    Case {
        d: "should refuse a kind that credentials.accept never lets in",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nkinds = [\"bot\"]",
        want: &[
            r#"route[0].kinds: "bot" is not in credentials.accept, so it could never be used here"#,
        ],
    },
    Case {
        d: "should refuse an empty kinds list on a required route (it would refuse everyone)",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nkinds = []",
        want: &["route[0].kinds: an empty list would refuse every credential"],
    },
    Case {
        d: "should refuse kinds on an internal route, which takes the shared secret",
        defs: true,
        toml: "[[route]]\npath = \"/_rpc\"\nauth = \"internal\"\nkinds = [\"session\"]",
        want: &["route[0].kinds: internal routes take the shared secret; kinds do not apply"],
    },
    Case {
        d: "should refuse scopes that are not OAuth2 scopes, and scopes without oauth2",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nkinds = [\"session\"]\nscopes = [\"a b\"]",
        want: &[
            r#"route[0].scopes[0]: "a b" is not a valid OAuth2 scope"#,
            "route[0].scopes: scopes only apply to oauth2 credentials, which this route does not accept",
        ],
    },
    Case {
        d: "should refuse an unknown role and list the roles",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nrole = \"signup\"",
        want: &[
            r#"route[0].role: unknown role "signup"; use "logout", "logout_all", "authorize_ip", "ip_authorization_poll", "ip_authorization_resend" or "login""#,
        ],
    },
    Case {
        d: "should refuse a logout route without a session to revoke",
        defs: true,
        toml: "[[route]]\npath = \"/auth/logout\"\nauth = \"none\"\nrole = \"logout\"",
        want: &[
            r#"route[0].role: logout routes need auth = "required": there must be a session to revoke"#,
        ],
    },
    Case {
        d: "should refuse an IP authorization endpoint that asks for a credential",
        defs: true,
        toml: "[[route]]\npath = \"/auth/authorize-ip\"\nrole = \"authorize_ip\"",
        want: &[r#"route[0].role: IP authorization endpoints are public: set auth = "none""#],
    },
    Case {
        d: "should refuse a rate limit or lockout that names nothing defined",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nrate_limits = [\"nope\"]\nlockout = \"nope\"",
        want: &[
            r#"route[0].rate_limits[0]: no [[rate_limits.bucket]] is named "nope""#,
            r#"route[0].lockout: no [[rate_limits.lockout]] is named "nope""#,
        ],
    },
    Case {
        d: "should refuse a bucket keyed by a path parameter the route's path does not have",
        defs: true,
        toml: "[[route]]\npath = \"/guilds\"\nrate_limits = [\"per_guild\"]",
        want: &[
            r#"route[0].rate_limits[0]: is keyed by path parameter "guild_id", which this route's path does not have"#,
        ],
    },
    Case {
        d: "should refuse a network rule that is not defined",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nnetwork = \"home\"",
        want: &[r#"route[0].network: no [[network_rule]] is named "home""#],
    },
    Case {
        d: "should refuse IP authorization on a route without a session",
        defs: true,
        toml: "[[route]]\npath = \"/x\"\nauth = \"none\"\nip_authorization = true",
        want: &[
            r#"route[0].ip_authorization: needs auth = "required": it checks a session's location"#,
        ],
    },
    Case {
        d: "should refuse sudo without a session and without the shared sudo secret",
        defs: false,
        toml: "[[route]]\npath = \"/x\"\nauth = \"none\"\nsudo = true",
        want: &[
            r#"route[0].sudo: sudo mode needs auth = "required": it proves a re-authenticated user"#,
            "route[0].sudo: sudo routes need [sudo] secret (the secret shared with the upstream)",
        ],
    },
    Case {
        d: "should check the default policy like a route, and refuse a role on it",
        defs: false,
        toml: "[routing.default]\nauth = \"internal\"\nrole = \"logout\"",
        want: &[
            "routing.default: the default policy takes no name, methods, path, role or strip_prefix",
            r#"routing.default.auth: "internal" needs at least one [[internal_secrets]] entry"#,
            r#"routing.default.role: logout routes need auth = "required": there must be a session to revoke"#,
        ],
    },
    Case {
        d: "should accept a public route",
        defs: false,
        toml: "[[route]]\nmethods = [\"GET\"]\npath = \"/health\"\nauth = \"none\"",
        want: &[],
    },
    Case {
        d: "should accept a route whose every reference resolves",
        defs: true,
        toml: r#"[[route]]
methods = ["POST"]
path = "/guilds/:guild_id/bans"
kinds = ["session", "oauth2"]
scopes = ["guilds"]
rate_limits = ["per_guild"]
lockout = "login"
network = "office"
ip_authorization = true
sudo = true"#,
        want: &[],
    },
    Case {
        d: "should accept a public IP authorization endpoint and an internal route",
        defs: true,
        toml: "[[route]]\npath = \"/auth/authorize-ip\"\nauth = \"none\"\nrole = \"authorize_ip\"\n\n[[route]]\npath = \"/_rpc/*\"\nauth = \"internal\"",
        want: &[],
    },
];

#[test]
fn route_policies_are_refused_or_accepted_as_the_table_says() {
    for c in CASES {
        let src = if c.defs {
            format!("{DEFS}\n{}\n", c.toml)
        } else {
            format!("{}\n", c.toml)
        };
        let got: Vec<String> = match parse(&src, "route.toml") {
            Ok(_) => Vec::new(),
            Err(errs) => errs
                .problems
                .iter()
                .map(|(e, _)| format!("{}: {}", e.path, e.message))
                .collect(),
        };
        assert_eq!(got, c.want, "{}", c.d);
    }
}

#[test]
fn internal_route_without_secrets_is_refused() {
    let e = errors("[[route]]\npath = \"/_rpc\"\nauth = \"internal\"\n");
    assert!(
        e[0].contains("needs at least one [[internal_secrets]]"),
        "{e:?}"
    );
}

#[test]
fn scopes_on_a_route_that_refuses_oauth2_are_refused() {
    let e = errors("[[route]]\npath = \"/x\"\nkinds = [\"session\"]\nscopes = [\"identify\"]\n");
    assert!(e[0].contains("scopes only apply to oauth2"), "{e:?}");
}

#[test]
fn route_names_default_to_methods_and_pattern() {
    let c = parse(
        "[[route]]\nmethods = [\"GET\", \"POST\"]\npath = \"/a/:id\"\nauth = \"none\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.live.routes.routes()[0].name, "GET,POST /a/:id");
}
