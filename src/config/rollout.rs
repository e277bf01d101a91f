//! `[rollout]`: whether denials are enforced or only reported (`mode = "enforce" | "report"`),
//! the default for every route; a route's own `rollout` key overrides it. Reloadable: it is a
//! rule of the request path, resolved into each route's policy.

use super::locate::KeyPath;
use super::validate::{Errors, choice, p};
use crate::policy::Role;
use crate::policy::rollout::{Rollout, reportable_route};
use crate::policy::routes::AuthMode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RolloutFile {
    pub mode: String,
}

impl Default for RolloutFile {
    fn default() -> Self {
        RolloutFile {
            mode: "enforce".into(),
        }
    }
}

pub(super) const MODES: &[(&str, Rollout)] =
    &[("enforce", Rollout::Enforce), ("report", Rollout::Report)];

pub(super) fn validate_rollout(r: &RolloutFile, e: &mut Errors) -> Rollout {
    choice(&r.mode, "rollout mode", MODES, p("rollout.mode"), e).unwrap_or_default()
}

/// One line per route in report mode, for `check-config` and the start-up log: report mode
/// forwards requests fluxgate would refuse, so it must never be on by accident.
pub fn warnings(routes: &crate::policy::RouteTable) -> Vec<String> {
    routes
        .routes()
        .iter()
        .chain(std::iter::once(routes.default_route()))
        .filter(|r| r.policy.rollout == Rollout::Report)
        .map(|r| {
            format!(
                "route {:?} is in report mode: requests it would deny are forwarded without \
                 identity, only counted (fluxgate_would_deny_total) and logged",
                r.name
            )
        })
        .collect()
}

/// `rollout`: the route's own mode, or `[rollout] mode`. Internal-secret routes and the
/// endpoints fluxgate answers itself are always enforced; asking for report mode on one by name
/// is an error, the global mode simply passes them by.
pub(super) fn route_rollout(
    own: Option<&str>,
    default: Rollout,
    (auth, role): (AuthMode, Option<Role>),
    path: &KeyPath,
    e: &mut Errors,
) -> Rollout {
    let own = own.and_then(|s| choice(s, "rollout mode", MODES, path.key("rollout"), e));
    let mode = own.unwrap_or(default);
    if mode == Rollout::Report && !reportable_route(auth, role) {
        if own.is_some() {
            e.at(
                path.key("rollout"),
                "internal routes and the IP authorization endpoints are always enforced",
            );
        }
        return Rollout::Enforce;
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    /// Every problem as `path: message`.
    fn errors(src: &str) -> Vec<String> {
        match parse(src, "t") {
            Ok(_) => panic!("expected errors for:\n{src}"),
            Err(e) => e
                .problems
                .iter()
                .map(|(e, _)| format!("{}: {}", e.path, e.message))
                .collect(),
        }
    }

    const SECRET: &str =
        "[[internal_secrets]]\nname = \"gw\"\nsecret = { value = \"0123456789abcdef\" }\n";

    fn modes(src: &str) -> Vec<(String, Rollout)> {
        let c = parse(src, "t").unwrap();
        let t = &c.live.routes;
        t.routes()
            .iter()
            .chain(std::iter::once(t.default_route()))
            .map(|r| (r.name.clone(), r.policy.rollout))
            .collect()
    }

    #[test]
    fn enforce_is_the_default_and_a_route_can_opt_into_report() {
        let m = modes(
            "[[route]]\nname = \"a\"\npath = \"/a\"\n\n[[route]]\nname = \"b\"\npath = \"/b\"\nrollout = \"report\"\n",
        );
        assert_eq!(
            m,
            [
                ("a".into(), Rollout::Enforce),
                ("b".into(), Rollout::Report),
                ("default".into(), Rollout::Enforce)
            ]
        );
    }

    #[test]
    fn global_report_mode_with_a_route_kept_enforced() {
        let m = modes(
            "[rollout]\nmode = \"report\"\n\n[[route]]\nname = \"a\"\npath = \"/a\"\nrollout = \"enforce\"\n\n[[route]]\nname = \"b\"\npath = \"/b\"\n",
        );
        assert_eq!(
            m,
            [
                ("a".into(), Rollout::Enforce),
                ("b".into(), Rollout::Report),
                ("default".into(), Rollout::Report)
            ]
        );
    }

    #[test]
    fn global_report_mode_leaves_internal_routes_and_ip_authorization_endpoints_enforced() {
        let src = format!(
            "{SECRET}[rollout]\nmode = \"report\"\n\n[[route]]\nname = \"rpc\"\npath = \"/_rpc\"\nauth = \"internal\"\n\n[[route]]\nname = \"ok\"\npath = \"/auth/authorize-ip\"\nauth = \"none\"\nrole = \"authorize_ip\"\n"
        );
        let m = modes(&src);
        assert_eq!(m[0], ("rpc".into(), Rollout::Enforce));
        assert_eq!(m[1], ("ok".into(), Rollout::Enforce));
        assert_eq!(m[2], ("default".into(), Rollout::Report));
    }

    #[test]
    fn report_mode_asked_of_an_internal_route_by_name_is_refused() {
        let e = errors(&format!(
            "{SECRET}[[route]]\npath = \"/_rpc\"\nauth = \"internal\"\nrollout = \"report\"\n"
        ));
        assert_eq!(
            e,
            [
                "route[0].rollout: internal routes and the IP authorization endpoints are always enforced"
            ]
        );
    }

    #[test]
    fn an_unknown_mode_is_refused_with_its_key_path() {
        let e = errors(
            "[rollout]\nmode = \"shadow\"\n\n[[route]]\npath = \"/a\"\nrollout = \"dry-run\"\n",
        );
        assert_eq!(
            e,
            [
                r#"rollout.mode: unknown rollout mode "shadow"; use "enforce" or "report""#,
                r#"route[0].rollout: unknown rollout mode "dry-run"; use "enforce" or "report""#
            ]
        );
    }

    #[test]
    fn every_route_in_report_mode_gets_a_warning() {
        let c = parse(
            "[rollout]\nmode = \"report\"\n\n[[route]]\nname = \"a\"\npath = \"/a\"\n\n[[route]]\nname = \"b\"\npath = \"/b\"\nrollout = \"enforce\"\n",
            "t",
        )
        .unwrap();
        let w = warnings(&c.live.routes);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("route \"a\" is in report mode"), "{w:?}");
        assert!(
            w[1].starts_with("route \"default\" is in report mode"),
            "{w:?}"
        );
    }
}
