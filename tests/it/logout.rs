//! Logout routes (contract §9) on both stores: revoke after the upstream accepts, clear the
//! cookies, and only ever the caller's own sessions.

use crate::common::redis::{RedisServer, redis_sessions};
use crate::common::*;
use serde_json::json;

const ROUTES: &str = r#"
[csrf]
allowed_origins = ["https://web.fluxer.app"]

[[route]]
methods = ["POST"]
path = "/auth/logout"
role = "logout"

[[route]]
methods = ["POST"]
path = "/auth/sessions/logout"
role = "logout_all"
"#;

/// fluxgate on the embedded store, or on a fresh Redis (kept alive by the returned handle).
fn start(up: &Upstream, redis: bool) -> Option<(Fluxgate, Option<RedisServer>)> {
    if !redis {
        return Some((Fluxgate::start(up.addr, ROUTES), None));
    }
    if !crate::common::redis::available() {
        return None;
    }
    let r = RedisServer::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!("{}{ROUTES}", redis_sessions(&r.url(), "")),
    );
    Some((fg, Some(r)))
}

fn clears_both_cookies(r: &Resp) -> bool {
    let set: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    ["fluxer_session=;", "fluxer_sudo_mode=;"]
        .iter()
        .all(|name| {
            set.iter().any(|c| {
                c.starts_with(name)
                    && c.contains("Max-Age=0")
                    && c.contains("HttpOnly")
                    && c.contains("Path=/")
            })
        })
}

macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn embedded() {
                ($body)(false)
            }
            #[test]
            fn redis() {
                ($body)(true)
            }
        }
    };
}

both_stores!(
    logout_revokes_after_a_2xx_and_clears_both_cookies,
    |redis: bool| {
        let up = Upstream::start();
        let Some((fg, _r)) = start(&up, redis) else {
            return;
        };
        let (tok, _) = fg.create_session(json!({"user_id": "42"}));
        let cookie = format!("fluxer_session={tok}");
        let r = fg.send(
            &Req::new("POST", "/auth/logout")
                .header("cookie", &cookie)
                .header("origin", "https://web.fluxer.app"),
        );
        assert_eq!(r.status, 200);
        assert!(clears_both_cookies(&r), "{:?}", r.headers);
        fg.send(&Req::get("/x").header("cookie", &cookie))
            .denial(401, "UNAUTHORIZED");
    }
);

both_stores!(
    logout_refused_by_the_upstream_revokes_nothing,
    |redis: bool| {
        let up = Upstream::start();
        let Some((fg, _r)) = start(&up, redis) else {
            return;
        };
        let (tok, _) = fg.create_session(json!({"user_id": "42"}));
        let r = fg.send(
            &Req::new("POST", "/v1/auth/logout")
                .header("authorization", &tok)
                .header("x-upstream-status", "403"),
        );
        assert_eq!(r.status, 403);
        assert!(!clears_both_cookies(&r));
        assert_eq!(
            fg.send(&Req::get("/x").header("authorization", &tok))
                .status,
            200
        );
    }
);

both_stores!(
    listed_logout_revokes_only_the_callers_own_sessions,
    |redis: bool| {
        let up = Upstream::start();
        let Some((fg, _r)) = start(&up, redis) else {
            return;
        };
        let (me, _) = fg.create_session(json!({"user_id": "42"}));
        let (mine, my_sid) = fg.create_session(json!({"user_id": "42"}));
        let (theirs, their_sid) = fg.create_session(json!({"user_id": "43"}));
        let body = json!({"session_id_hashes": [my_sid, their_sid]}).to_string();
        let r = fg.send(
            &Req::new("POST", "/auth/sessions/logout")
                .header("authorization", &me)
                .body(body.as_bytes()),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            up.last().body,
            body.as_bytes(),
            "the body reaches the upstream untouched"
        );
        assert!(
            !clears_both_cookies(&r),
            "the caller's own session was not in the list"
        );
        fg.send(&Req::get("/x").header("authorization", &mine))
            .denial(401, "UNAUTHORIZED");
        assert_eq!(
            fg.send(&Req::get("/x").header("authorization", &theirs))
                .status,
            200,
            "another user's session must survive"
        );
        assert_eq!(
            fg.send(&Req::get("/x").header("authorization", &me)).status,
            200
        );
    }
);

both_stores!(
    listed_logout_including_the_caller_clears_cookies,
    |redis: bool| {
        let up = Upstream::start();
        let Some((fg, _r)) = start(&up, redis) else {
            return;
        };
        let (me, my_sid) = fg.create_session(json!({"user_id": "42"}));
        let body = json!({"session_id_hashes": [my_sid]}).to_string();
        let r = fg.send(
            &Req::new("POST", "/auth/sessions/logout")
                .header("authorization", &me)
                .body(body.as_bytes()),
        );
        assert!(clears_both_cookies(&r));
        fg.send(&Req::get("/x").header("authorization", &me))
            .denial(401, "UNAUTHORIZED");
    }
);

both_stores!(
    oversized_or_malformed_logout_bodies_are_forwarded_untouched_and_revoke_nothing,
    |redis: bool| {
        let up = Upstream::start();
        let Some((fg, _r)) = start(&up, redis) else {
            return;
        };
        let (me, _) = fg.create_session(json!({"user_id": "42"}));
        let (other, other_sid) = fg.create_session(json!({"user_id": "42"}));
        let padding = "x".repeat(17 * 1024);
        let big = json!({"session_id_hashes": [other_sid], "padding": padding}).to_string();
        for body in [
            big.as_str(),
            "{not json",
            r#"{"session_id_hashes": ["short"]}"#,
        ] {
            let r = fg.send(
                &Req::new("POST", "/auth/sessions/logout")
                    .header("authorization", &me)
                    .body(body.as_bytes()),
            );
            assert_eq!(r.status, 200);
            assert_eq!(up.last().body, body.as_bytes());
            assert_eq!(
                fg.send(&Req::get("/x").header("authorization", &other))
                    .status,
                200
            );
        }
        // The skipped revocation is logged.
        fg.wait_log("nothing revoked");
    }
);

#[test]
fn a_logout_the_store_could_not_revoke_is_503_and_keeps_the_cookie() {
    // Before: fluxgate answered the upstream's 2xx and cleared the cookies, so the user
    // believed they were logged out while the token stayed valid.
    if !crate::common::redis::available() {
        return;
    }
    let up = Upstream::start();
    let Some((fg, Some(mut redis))) = start(&up, true) else {
        panic!("redis is available, so start gives one");
    };
    let (tok, _) = fg.create_session(json!({"user_id": "42"}));
    let cookie = format!("fluxer_session={tok}");
    // Cached, so the request itself is admitted while the store is down.
    assert_eq!(
        fg.send(&Req::get("/x").header("cookie", &cookie)).status,
        200
    );
    redis.kill9();
    let r = fg.send(
        &Req::new("POST", "/auth/logout")
            .header("cookie", &cookie)
            .header("origin", "https://web.fluxer.app"),
    );
    r.denial(503, "SERVICE_UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    assert!(!clears_both_cookies(&r), "{:?}", r.headers);
    assert_eq!(up.count(), 2, "the upstream was asked (and answered 2xx)");
    assert_eq!(fg.metric("fluxgate_logout_errors_total"), 1.0);
}
