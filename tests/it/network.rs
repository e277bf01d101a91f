//! Client IP, network rules and GeoIP through the real binary, with the MaxMind test databases
//! (81.2.69.142 is GB, 89.160.20.112 SE, 216.160.83.56 US; 1.0.0.1 is AS15169).

use crate::common::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn db(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/geoip")
        .join(name)
}

fn geoip() -> String {
    format!(
        "[geoip]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n",
        db("GeoLite2-Country-Test.mmdb").display(),
        db("GeoLite2-ASN-Test.mmdb").display()
    )
}

/// Every test's fluxgate trusts 127.0.0.1 as a proxy, so X-Forwarded-For picks the client.
fn start(up: &Upstream, extra: &str) -> Fluxgate {
    Fluxgate::start(
        up.addr,
        &format!(
            "[client_ip]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n{}\n{extra}\n[routing.default]\nauth = \"none\"\n",
            geoip()
        ),
    )
}

fn from(ip: &str) -> Req {
    Req::get("/x").header("x-forwarded-for", ip)
}

#[test]
fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "{}\n[network]\ndeny_countries = [\"GB\"]\n[routing.default]\nauth = \"none\"\n",
            geoip()
        ),
    );
    assert_eq!(
        fg.send(&from("81.2.69.142")).status,
        200,
        "127.0.0.1 is not trusted here, so it is the client"
    );
    assert_eq!(
        up.last().get("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

#[test]
fn trusted_hops_are_walked_right_to_left_and_the_client_ip_is_forwarded() {
    let up = Upstream::start();
    let fg = start(&up, "");
    assert_eq!(
        fg.send(&from("6.6.6.6, 89.160.20.112, 10.0.0.5")).status,
        200
    );
    let seen = up.last();
    assert_eq!(
        seen.get("x-forwarded-for").as_deref(),
        Some("89.160.20.112")
    );
    assert_eq!(
        seen.get("x-fluxgate-client-ip").as_deref(),
        Some("89.160.20.112")
    );
    assert_eq!(seen.get("x-fluxgate-country").as_deref(), Some("SE"));
}

#[test]
fn geoip_headers_carry_country_and_asn_when_known() {
    let up = Upstream::start();
    let fg = start(&up, "");
    fg.send(&from("1.0.0.1"));
    assert_eq!(up.last().get("x-fluxgate-asn").as_deref(), Some("15169"));
    fg.send(&from("192.0.2.1"));
    let seen = up.last();
    assert_eq!(seen.get("x-fluxgate-asn"), None);
    assert_eq!(seen.get("x-fluxgate-country"), None);
    // Clients cannot forge them.
    fg.send(&from("192.0.2.1").header("X-Fluxgate-Country", "US"));
    assert_eq!(up.last().get("x-fluxgate-country"), None);
}

#[test]
fn deny_and_allow_by_cidr_country_and_asn() {
    let up = Upstream::start();
    let fg = start(
        &up,
        "[network]\ndeny_countries = [\"GB\"]\ndeny_asns = [15169]\ndeny_cidrs = [\"198.51.100.0/24\"]\n",
    );
    fg.send(&from("81.2.69.142")).denial(403, "FORBIDDEN");
    fg.send(&from("1.0.0.1")).denial(403, "FORBIDDEN");
    fg.send(&from("198.51.100.7")).denial(403, "FORBIDDEN");
    assert_eq!(fg.send(&from("89.160.20.112")).status, 200);
    let fg = start(
        &up,
        "[network]\nallow_countries = [\"se\"]\nallow_cidrs = [\"198.51.100.0/24\"]\n",
    );
    assert_eq!(fg.send(&from("89.160.20.112")).status, 200);
    assert_eq!(fg.send(&from("198.51.100.7")).status, 200);
    fg.send(&from("216.160.83.56")).denial(403, "FORBIDDEN");
    fg.send(&from("192.0.2.1")).denial(403, "FORBIDDEN");
    let fg = start(
        &up,
        "[network]\nallow_countries = [\"SE\"]\nunknown = \"allow\"\n",
    );
    assert_eq!(
        fg.send(&from("192.0.2.1")).status,
        200,
        "unknown = allow admits addresses of unknown country"
    );
    fg.send(&from("81.2.69.142")).denial(403, "FORBIDDEN");
}

#[test]
fn a_route_applies_its_named_rule_set() {
    let up = Upstream::start();
    let fg = start(
        &up,
        "[[network_rule]]\nname = \"us-only\"\nallow_countries = [\"US\"]\n\n[[route]]\npath = \"/admin/*\"\nauth = \"none\"\nnetwork = \"us-only\"\n",
    );
    assert_eq!(
        fg.send(&Req::get("/admin/x").header("x-forwarded-for", "216.160.83.56"))
            .status,
        200
    );
    fg.send(&Req::get("/admin/x").header("x-forwarded-for", "89.160.20.112"))
        .denial(403, "FORBIDDEN");
    assert_eq!(
        fg.send(&from("89.160.20.112")).status,
        200,
        "other routes are not affected"
    );
}

#[test]
fn malformed_forwarding_headers_never_crash_and_never_skip_a_policy() {
    let up = Upstream::start();
    // Only Sweden is allowed: anything that fails to resolve to the Swedish address must be
    // refused, never let through.
    let fg = start(&up, "[network]\nallow_countries = [\"SE\"]\n");
    // Long chains, but inside server.max_header_bytes (32 KiB), so the chain walk is what is tested.
    let thousands = vec!["10.0.0.9"; 2000].join(", ");
    let cases = [
        "garbage".to_string(),
        "89.160.20.112, garbage".to_string(),
        thousands.clone(),
        format!("89.160.20.112, {thousands}"),
        "[2001:db8::1]:443".to_string(),
        "fe80::1%eth0".to_string(),
        "89.160.20.112:8080garbage".to_string(),
        ",,,".to_string(),
        "\t".to_string(),
    ];
    for xff in &cases {
        let r = fg.send(&from(xff));
        assert_eq!(r.status, 403, "{:.60}: {}", xff, r.text());
    }
    assert_eq!(
        fg.send(&from("89.160.20.112:443")).status,
        200,
        "a port is understood"
    );
    assert_eq!(
        fg.send(&from("garbage, 89.160.20.112")).status,
        200,
        "the rightmost untrusted entry decides"
    );
    assert_eq!(up.count(), 2);
}

#[test]
fn reloading_the_database_under_load_never_leaves_a_request_unruled() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("country.mmdb");
    std::fs::copy(db("GeoLite2-Country-Test.mmdb"), &live).unwrap();
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "[client_ip]\ntrusted_proxies = [\"127.0.0.1\"]\n[geoip]\ncountry_db = \"{}\"\nreload_check = \"50ms\"\n[network]\ndeny_countries = [\"GB\"]\n[routing.default]\nauth = \"none\"\n",
            live.display()
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let addr = fg.proxy;
    let loads: Vec<_> = [("81.2.69.142", 403), ("89.160.20.112", 200)]
        .into_iter()
        .map(|(ip, want)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let got = Req::get("/x")
                        .header("x-forwarded-for", ip)
                        .send(addr)
                        .status;
                    assert_eq!(got, want, "request {n} from {ip} was not ruled correctly");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..20 {
        // Alternate between two databases that both know GB and SE, replacing the file
        // atomically (write, then rename), and now and then a corrupt one that must be refused.
        let src = if i % 2 == 0 {
            db("GeoLite2-City-Test.mmdb")
        } else {
            db("GeoLite2-Country-Test.mmdb")
        };
        let tmp = dir.path().join("next.mmdb");
        if i % 7 == 3 {
            std::fs::write(&tmp, b"not a database").unwrap();
        } else {
            std::fs::copy(&src, &tmp).unwrap();
        }
        std::fs::rename(&tmp, &live).unwrap();
        fg.signal("HUP");
        std::thread::sleep(std::time::Duration::from_millis(60));
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<usize> = loads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        counts.iter().all(|n| *n > 10),
        "too few requests under load: {counts:?}"
    );
    fg.wait_log("GeoIP databases reloaded");
    fg.wait_log("GeoIP reload failed");
}
