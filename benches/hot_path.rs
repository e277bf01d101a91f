//! Criterion benches for each hot stage of the request path, and the whole pipeline for a
//! cached session. Run: `cargo bench --bench hot_path`.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fluxgate::clock;
use fluxgate::credential::{self, Sid};
use fluxgate::identity::{self, Injection};
use futures_util::FutureExt;
use http::{HeaderValue, Method};
use std::hint::black_box;

#[path = "common/hot.rs"]
mod hot;
use hot::*;

fn benches(c: &mut Criterion) {
    let s = setup();
    let headers = request_headers();
    let mut auth_headers = headers.clone();
    auth_headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
    );

    c.bench_function("credential/parse_and_hash", |b| {
        b.iter(
            || match credential::extract(black_box(&auth_headers), "fluxer_session") {
                credential::Extracted::Header { token, .. } => black_box(Sid::of(token)),
                _ => unreachable!(),
            },
        )
    });

    let sid = Sid::of(TOKEN);
    c.bench_function("session/cache_hit", |b| {
        b.iter(|| {
            s.pipeline
                .rt
                .sessions
                .resolve(black_box(&sid))
                .now_or_never()
                .expect("a cache hit completes without waiting")
                .unwrap()
        })
    });

    c.bench_function("credential_hash_and_cache_hit", |b| {
        b.iter(|| {
            let credential::Extracted::Cookies(c) =
                credential::extract(black_box(&headers), "fluxer_session")
            else {
                unreachable!()
            };
            let sid = Sid::of(c.as_slice()[0]);
            s.pipeline
                .rt
                .sessions
                .resolve(&sid)
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });

    let get = Method::GET;
    c.bench_function("routes/match_12_routes", |b| {
        b.iter(|| {
            black_box(s.pipeline.rules.routes.find(
                &get,
                black_box("/v1/channels/123456789/messages"),
                false,
            ))
            .index
        })
    });

    // Per-route forwarding: a route that strips `/api` rewrites the target (one allocation);
    // routes that do not are the `pipeline/…` rows, where the check is one comparison.
    let strip = fluxgate::policy::forward::Forward {
        strip_segments: 1,
        ..Default::default()
    };
    c.bench_function("routes/strip_prefix", |b| {
        b.iter(|| {
            strip.rewrite(
                black_box("/api/v1/channels/123456789/messages?limit=50"),
                false,
            )
        })
    });

    let peer = "10.0.0.1".parse().unwrap();
    c.bench_function("client_ip/trusted_chain", |b| {
        b.iter(|| {
            s.pipeline
                .rules
                .client_ip
                .resolve(black_box(peer), black_box(&headers))
        })
    });

    let dbdir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geoip");
    let geo = fluxgate::net::geoip::GeoIp::open(
        Some(&dbdir.join("GeoLite2-Country-Test.mmdb")),
        Some(&dbdir.join("GeoLite2-ASN-Test.mmdb")),
    )
    .unwrap();
    let rules = fluxgate::policy::network::NetworkRules {
        deny_cidrs: fluxgate::net::cidr::CidrSet::parse(&["192.0.2.0/24", "203.0.113.0/24"])
            .unwrap(),
        deny_countries: vec![*b"KP"],
        ..Default::default()
    };
    let mut se = headers.clone();
    se.insert(
        "x-forwarded-for",
        HeaderValue::from_static("89.160.20.112, 10.0.0.2"),
    );
    c.bench_function("net/client_ip_cidr_and_country_lookup", |b| {
        b.iter(|| {
            let ip = s
                .pipeline
                .rules
                .client_ip
                .resolve(black_box(peer), black_box(&se));
            let g = geo.lookup(ip);
            assert!(rules.permits(ip, &g));
            g
        })
    });

    let user = HeaderValue::from_static("123456789012345678");
    let sidv = HeaderValue::from_str(&sid.encode()).unwrap();
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let facts = |headers| hot::facts(headers, peer, &rid);
    let admitted = s
        .pipeline
        .evaluate(&facts(&headers))
        .now_or_never()
        .unwrap()
        .outcome
        .expect("the bench session is admitted");
    let rules = &s.pipeline.rules;
    c.bench_function("identity/apply_plan", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut m| {
                identity::apply(
                    &mut m,
                    &rules.names,
                    &rules.cookies,
                    black_box(&admitted.plan),
                );
                m
            },
            BatchSize::SmallInput,
        )
    });

    // Only when `identity.assertion_secret` is set.
    let asserter = fluxgate::identity::assertion::Asserter::new(
        &fluxgate::secret::Secret::new("assertion-secret-0123456789abcdef".into()),
        60,
    );
    c.bench_function("identity/sign_assertion", |b| {
        let inj = Injection {
            auth_kind: "session",
            user_id: Some(&user),
            session_id: Some(&sidv),
            client_ip: Some(peer),
            ..Default::default()
        };
        b.iter(|| {
            asserter.sign(
                black_box(&inj),
                fluxgate::identity::assertion::Target {
                    method: "GET",
                    path: "/users/@me",
                    host: Some("api.fluxer.app"),
                },
                Some("rid"),
                1_900_000_000,
            )
        })
    });

    let sudo = fluxgate::policy::sudo::Sudo::new(fluxgate::policy::sudo::SudoSettings {
        secret: b"sudo-shared-secret-0123456789".to_vec(),
        lifetime_secs: 900,
        leeway_secs: 1,
        bind_to_session: true,
        forward_upstream_token: false,
        cookie_name: "fluxer_sudo_mode".into(),
        upstream_lifetime_secs: 300,
        proof_lockout: None,
        capture_window: Default::default(),
    })
    .unwrap();
    let now = clock::system().now_secs();
    let (proof, _) = sudo.grant("123456789012345678", &sid, now);
    c.bench_function("sudo/verify", |b| {
        b.iter(|| {
            sudo.verify(black_box(&proof), "123456789012345678", Some(&sid), now)
                .unwrap()
        })
    });

    c.bench_function("pipeline/cached_cookie_session", |b| {
        b.iter(|| {
            let v = s
                .pipeline
                .evaluate(&facts(black_box(&headers)))
                .now_or_never()
                .unwrap();
            assert!(v.outcome.is_ok());
            v
        })
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
