//! The lockout table's overflow through the real binary (issue 18): with the local table full
//! of live failure logs, a flood of failed logins with fresh e-mail addresses must not lock
//! out accounts that never failed, and every flooding address stays limited.

use crate::common::*;
use serde_json::json;

const FLOOD: &str = r#"
[rate_limits]
global_limit = 0
# The smallest table: 1024 keys, so a few thousand fresh addresses overflow it.
max_local_keys = 1024

[[rate_limits.lockout]]
name = "login"
key = "body:email"
statuses = [401]
max_failures = 3
find_time = "10m"
ban_time = "10m"

[[route]]
methods = ["POST"]
path = "/auth/login"
auth = "none"
lockout = "login"
"#;

fn login(fg: &Fluxgate, email: &str, status: &str) -> Resp {
    fg.send(
        &Req::new("POST", "/auth/login")
            .header("content-type", "application/json")
            .header("x-upstream-status", status)
            .body(
                json!({"email": email, "password": "guess"})
                    .to_string()
                    .as_bytes(),
            ),
    )
}

#[test]
fn a_failed_login_flood_with_fresh_emails_does_not_lock_out_accounts_that_never_failed() {
    let up = Upstream::start();
    let fg = Fluxgate::start(up.addr, FLOOD);
    // 3000 fresh addresses fail once each, within find_time: about 1000 fill the table (every
    // shard), the rest land in the overflow. Before the overflow sketch they shared one
    // failure log there, banned after three, and so did every account outside the table.
    let mut failed = 0;
    for i in 0..3000 {
        let r = login(&fg, &format!("flood{i}@example.com"), "401");
        assert!(r.status == 401 || r.status == 429, "{}", r.status);
        failed += usize::from(r.status == 401);
    }
    assert!(
        failed > 1024,
        "the flood must overflow the table: {failed} failures"
    );
    // Accounts that never failed log in, and their attempts reach the upstream.
    let before = up.count();
    for i in 0..20 {
        let email = format!("innocent{i}@example.com");
        let r = login(&fg, &email, "200");
        assert_eq!(
            r.status, 200,
            "{email} was locked out by someone else's flood"
        );
    }
    assert_eq!(up.count(), before + 20);
    // The flood stays limited key by key: an address that keeps failing is banned after its
    // third failure at the latest, and its next attempt never reaches the upstream.
    let mut own = 1;
    loop {
        let r = login(&fg, "flood7@example.com", "401");
        if r.status == 429 {
            r.denial(429, "RATE_LIMITED");
            break;
        }
        assert_eq!(r.status, 401);
        own += 1;
        assert!(own <= 3, "an address failed more than max_failures times");
    }
    let before = up.count();
    assert_eq!(login(&fg, "flood7@example.com", "200").status, 429);
    assert_eq!(
        up.count(),
        before,
        "a banned attempt must not reach the upstream"
    );
}
