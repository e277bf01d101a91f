//! Test constructors (feature `test-util`): a pipeline with default rules around a route
//! table, for unit tests, integration tests and benches.

use super::{Pipeline, Rules, Runtime};
use crate::credential::Kind;
use crate::identity::{CookiePolicy, HeaderNames};
use crate::net::client_ip::ClientIpResolver;
use crate::net::hygiene::HygieneRules;
use crate::policy::csrf::OriginPolicy;
use crate::policy::network::NetworkRules;
use crate::policy::ratelimit::Limiter;
use crate::policy::{InternalSecrets, KindSet, RouteTable};
use std::sync::Arc;

impl Pipeline {
    /// A pipeline around `routes` with every other rule at its default (no limits, no sudo,
    /// default identity names and cookies), for tests and benches; adjust `rules` as needed.
    pub fn for_test(routes: RouteTable, rt: Runtime) -> Pipeline {
        let rules = Rules {
            hygiene: HygieneRules {
                max_header_bytes: 32 * 1024,
                max_headers: 100,
                protected: vec![],
            },
            routes,
            client_ip: ClientIpResolver::new(
                Default::default(),
                http::HeaderName::from_static("x-forwarded-for"),
            ),
            secrets: InternalSecrets { secrets: vec![] },
            accept: KindSet::of(&[Kind::Session, Kind::Oauth2]),
            cookie_name: "fluxer_session".into(),
            store_retry_after_secs: 1,
            serve_stale: false,
            forward_credential: false,
            limits: Arc::new(Limiter::none(rt.clock.clone())),
            sudo: None,
            login: Default::default(),
            cors: Default::default(),
            origins: OriginPolicy::default(),
            geo_headers: false,
            network: NetworkRules::default(),
            network_rules: vec![],
            names: HeaderNames::defaults(),
            cookies: CookiePolicy {
                secure: true,
                domain: None,
                session_name: "fluxer_session".into(),
                session_same_site: crate::identity::SameSite::Lax,
                sudo_name: "fluxer_sudo_mode".into(),
                sudo_same_site: crate::identity::SameSite::Strict,
            },
            assertion: None,
        };
        Pipeline::new(rules, rt)
    }
}
