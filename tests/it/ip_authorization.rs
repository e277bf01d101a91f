//! IP authorization for new locations, end to end on both stores: 403 with a ticket, a signed
//! webhook, approval, single use, expiry, resend, granularities, exemptions.

use crate::common::redis::{RedisServer, redis_sessions};
use crate::common::webhook::{Delivery, Receiver};
use crate::common::*;
use crate::require_redis;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";
const GB: &str = "81.2.69.142";
const GB_SAME_24: &str = "81.2.69.7";
const SE: &str = "89.160.20.112";
const US: &str = "216.160.83.56";

fn db(name: &str) -> String {
    format!("{}/tests/data/geoip/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn config(hook: &Receiver, extra: &str) -> String {
    format!(
        r#"
[client_ip]
trusted_proxies = ["127.0.0.1"]

[geoip]
country_db = "{country}"
asn_db = "{asn}"

[ip_authorization]
webhook_url = "http://{hook}/notify"
webhook_secret = {{ value = "{WEBHOOK_SECRET}" }}
{extra}

[[route]]
path = "/protected/*"
ip_authorization = true

[[route]]
methods = ["POST"]
path = "/auth/authorize-ip"
auth = "none"
role = "authorize_ip"

[[route]]
methods = ["GET"]
path = "/auth/ip-authorization/poll"
auth = "none"
role = "ip_authorization_poll"

[[route]]
methods = ["POST"]
path = "/auth/ip-authorization/resend"
auth = "none"
role = "ip_authorization_resend"
"#,
        country = db("GeoLite2-Country-Test.mmdb"),
        asn = db("GeoLite2-ASN-Test.mmdb"),
        hook = hook.addr
    )
}

/// fluxgate on the embedded store or on a fresh Redis.
fn start(
    up: &Upstream,
    hook: &Receiver,
    extra: &str,
    redis: bool,
) -> Option<(Fluxgate, Option<RedisServer>)> {
    if !redis {
        return Some((Fluxgate::start(up.addr, &config(hook, extra)), None));
    }
    if !crate::common::redis::available() {
        return None;
    }
    let r = RedisServer::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!("{}{}", redis_sessions(&r.url(), ""), config(hook, extra)),
    );
    Some((fg, Some(r)))
}

fn verify(d: &Delivery) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.", d.timestamp).as_bytes());
    mac.update(&d.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(d.signature, want, "the webhook signature must verify");
}

fn get(fg: &Fluxgate, tok: &str, ip: &str) -> Resp {
    fg.send(
        &Req::get("/protected/thing")
            .header("authorization", tok)
            .header("x-forwarded-for", ip)
            .header("user-agent", "test-agent/1.0"),
    )
}

fn authorize(fg: &Fluxgate, token: &str) -> Resp {
    fg.send(
        &Req::new("POST", "/auth/authorize-ip")
            .header("content-type", "application/json")
            .body(json!({"token": token}).to_string().as_bytes()),
    )
}

fn poll(fg: &Fluxgate, ticket: &str) -> bool {
    let r = fg.send(&Req::get(&format!(
        "/auth/ip-authorization/poll?ticket={ticket}"
    )));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["completed"].as_bool().unwrap()
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
    the_whole_approval_flow_and_the_token_works_once,
    |redis: bool| {
        let up = Upstream::start();
        let hook = Receiver::start(0);
        let Some((fg, _r)) = start(&up, &hook, "", redis) else {
            return;
        };
        let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
        // The creating location (a /24) is authorized.
        assert_eq!(get(&fg, &tok, GB).status, 200);
        assert_eq!(get(&fg, &tok, GB_SAME_24).status, 200);
        // A new location is held, with a ticket.
        let r = get(&fg, &tok, SE);
        let body = r.denial(403, "IP_AUTHORIZATION_REQUIRED");
        assert_eq!(body["ip_authorization_required"], true);
        let ticket = body["ticket"].as_str().unwrap().to_string();
        assert!(body["resend_available_in"].as_i64().unwrap() > 0);
        assert_eq!(up.count(), 2);
        // The backend hears about it, signed.
        let d = hook.wait_for(1);
        verify(&d);
        let n = d.json();
        assert_eq!(n["user_id"], "42");
        assert_eq!(n["ticket"], ticket.as_str());
        assert_eq!(n["ip"], SE);
        assert_eq!(n["country"], "SE");
        assert_eq!(n["user_agent"], "test-agent/1.0");
        let token = n["token"].as_str().unwrap().to_string();
        assert!(token.len() >= 43);
        // Asking again reuses the ticket and does not notify again.
        let again = get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
        assert_eq!(again["ticket"], ticket.as_str());
        assert!(!poll(&fg, &ticket));
        // Approve: 204, the poll says so, and the next request passes.
        assert_eq!(authorize(&fg, &token).status, 204);
        assert!(poll(&fg, &ticket));
        assert_eq!(get(&fg, &tok, SE).status, 200);
        // The token cannot be reused.
        authorize(&fg, &token).denial(400, "BAD_REQUEST");
        authorize(&fg, "not-a-token").denial(400, "BAD_REQUEST");
        fg.send(&Req::new("POST", "/auth/authorize-ip").body(b"{not json"))
            .denial(400, "BAD_REQUEST");
        // The admin API lists the locations.
        let l = fg.admin("GET", "/v1/users/42/locations", None).json();
        assert_eq!(
            l["locations"],
            json!(["net:81.2.69.0/24", "net:89.160.20.0/24"])
        );
        assert_eq!(hook.deliveries().len(), 1);
    }
);

both_stores!(an_expired_ticket_cannot_be_approved, |redis: bool| {
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let Some((fg, _r)) = start(&up, &hook, "ticket_ttl = \"1s\"", redis) else {
        return;
    };
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    let token = hook.wait_for(1).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    authorize(&fg, &token).denial(400, "BAD_REQUEST");
    get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
});

both_stores!(resend_works_once_and_not_too_early, |redis: bool| {
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let Some((fg, _r)) = start(&up, &hook, "resend_after = \"4s\"", redis) else {
        return;
    };
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    let ticket = get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let resend = || {
        fg.send(
            &Req::new("POST", "/auth/ip-authorization/resend")
                .body(json!({"ticket": ticket}).to_string().as_bytes()),
        )
    };
    // The window is long enough that a loaded machine still asks early.
    let early = resend();
    early.denial(429, "RATE_LIMITED");
    std::thread::sleep(std::time::Duration::from_millis(4100));
    assert_eq!(resend().status, 204);
    let second = hook.wait_for(2).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    resend().denial(400, "BAD_REQUEST");
    // The token from the resend approves.
    assert_eq!(authorize(&fg, &second).status, 204);
    assert_eq!(get(&fg, &tok, SE).status, 200);
});

#[test]
fn each_granularity_groups_locations_as_documented() {
    let up = Upstream::start();
    let hook = Receiver::start(0);
    for (granularity, ok_ip, held_ip) in [
        ("ip", GB, GB_SAME_24),
        ("network", GB_SAME_24, SE),
        ("country", SE, US),
        ("asn", "1.0.0.1", SE),
    ] {
        let (fg, _) = start(
            &up,
            &hook,
            &format!("granularity = \"{granularity}\""),
            false,
        )
        .unwrap();
        let origin = match granularity {
            "asn" => "1.0.0.2",           // AS15169, like 1.0.0.1
            "country" => "89.160.20.128", // SE, like 89.160.20.112
            _ => GB,
        };
        let (tok, _) = fg.create_session(json!({"user_id": "7", "client_ip": origin}));
        assert_eq!(
            get(&fg, &tok, ok_ip).status,
            200,
            "{granularity}: {ok_ip} is the same location as {origin}"
        );
        get(&fg, &tok, held_ip).denial(403, "IP_AUTHORIZATION_REQUIRED");
    }
}

#[test]
fn trusted_networks_and_other_routes_are_exempt() {
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let (fg, _) = start(&up, &hook, "trusted_networks = [\"89.160.20.0/24\"]", false).unwrap();
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    assert_eq!(get(&fg, &tok, SE).status, 200, "trusted network");
    assert_eq!(
        fg.send(
            &Req::get("/elsewhere")
                .header("authorization", &tok)
                .header("x-forwarded-for", US)
        )
        .status,
        200
    );
    assert!(hook.deliveries().is_empty());
}

#[test]
fn the_webhook_is_retried_with_backoff() {
    let up = Upstream::start();
    let hook = Receiver::start(2);
    let (fg, _) = start(&up, &hook, "", false).unwrap();
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    verify(&hook.wait_for(1));
    // The metric is counted once the receiver has answered: poll for it.
    let deadline = fluxgate::clock::monotonic_now() + std::time::Duration::from_secs(5);
    while fg.metric("fluxgate_ip_authorization_notifications_total{result=\"webhook_sent\"}") < 1.0
    {
        assert!(
            fluxgate::clock::monotonic_now() < deadline,
            "webhook_sent never counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(hook.deliveries().len(), 1);
}

#[test]
fn a_webhook_that_keeps_failing_for_one_user_does_not_hold_up_the_others() {
    // User 666's notification fails and retries with backoff for about 50 s (10 retries);
    // user 777's, queued right after it, is delivered at once.
    let up = Upstream::start();
    let hook = Receiver::start_refusing("666");
    let (fg, _) = start(&up, &hook, "webhook_retries = 10", false).unwrap();
    let (stuck, _) = fg.create_session(json!({"user_id": "666", "client_ip": GB}));
    let (other, _) = fg.create_session(json!({"user_id": "777", "client_ip": GB}));
    get(&fg, &stuck, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    get(&fg, &other, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    let d = hook.wait_for(1);
    verify(&d);
    assert_eq!(d.json()["user_id"], "777");
    assert_eq!(hook.deliveries().len(), 1);
}

#[test]
fn notifications_go_to_a_redis_stream_too() {
    require_redis!();
    let r = RedisServer::start();
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "{}{}",
            redis_sessions(&r.url(), ""),
            config(&hook, "redis_stream = \"fluxgate:ip-authorization\"")
        ),
    );
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    get(&fg, &tok, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    hook.wait_for(1);
    let mut entries = String::new();
    for _ in 0..100 {
        entries = r.cli(&["XRANGE", "fluxgate:ip-authorization", "-", "+"]);
        if entries.contains("token") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        entries.contains(SE) && entries.contains("user_id") && entries.contains("42"),
        "{entries}"
    );
}

#[test]
fn a_backend_written_record_with_client_ip_authorizes_that_location() {
    require_redis!();
    let r = RedisServer::start();
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let fg = Fluxgate::start(
        up.addr,
        &format!("{}{}", redis_sessions(&r.url(), ""), config(&hook, "")),
    );
    let token = "flx_backendWithClientIp00000000000000000";
    let sid = fluxgate::credential::Sid::of(token).encode();
    let rec = format!(
        r#"{{"v":1,"user_id":"77","kind":"session","created_at":1,"expires_at":null,"scopes":[],"client_ip":"{GB}"}}"#
    );
    r.cli(&["SET", &format!("fluxgate:session:{sid}"), &rec]);
    assert_eq!(get(&fg, token, GB_SAME_24).status, 200);
    get(&fg, token, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
}

#[test]
fn authorized_location_checks_for_cached_sessions_cost_no_store_read() {
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let (fg, _) = start(&up, &hook, "", false).unwrap();
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    fg.admin("POST", "/v1/users/42/locations", Some(json!({"ip": SE})));
    assert_eq!(get(&fg, &tok, SE).status, 200);
    let before = fg.metric("fluxgate_store_reads_total");
    for _ in 0..20 {
        assert_eq!(get(&fg, &tok, SE).status, 200);
    }
    assert_eq!(fg.metric("fluxgate_store_reads_total"), before);
}

#[test]
fn one_session_cannot_open_a_ticket_per_address_of_its_64() {
    // granularity = "ip": every address is a new location. Without a quota each opened a
    // ticket and queued an approval mail.
    let up = Upstream::start();
    let hook = Receiver::start(0);
    let (fg, _) = start(&up, &hook, "granularity = \"ip\"", false).unwrap();
    let (tok, _) = fg.create_session(json!({"user_id": "42", "client_ip": GB}));
    let mut held = 0;
    for i in 1..=40 {
        let r = get(&fg, &tok, &format!("2001:db8:1:2::{i:x}"));
        match r.status {
            403 => held += 1,
            429 => {
                assert!(r.header("retry-after").is_some());
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert_eq!(held, 5, "five new tickets per user and ticket lifetime");
    // Another user from elsewhere still gets a ticket and a mail.
    let (other, _) = fg.create_session(json!({"user_id": "43", "client_ip": GB}));
    get(&fg, &other, SE).denial(403, "IP_AUTHORIZATION_REQUIRED");
    hook.wait_for(6);
    assert_eq!(
        hook.deliveries().len(),
        6,
        "5 for the flood, 1 for the other user"
    );
}
