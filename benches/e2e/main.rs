//! The end-to-end load harness: fluxgate side by side with a bare upstream and nginx
//! forward-auth, in one run, rounds interleaved (A B C, A C B, C A B, …) so drift, a row's place
//! in the round and its neighbours cancel out.
//!
//! `cargo bench --bench e2e` runs the full comparison and writes bench-results/e2e.md.
//! Options after `--`: `--rounds N` (3), `--secs S` (8), `--conns C` (64), `--rows abc` (only
//! those rows), `--soak SECS` (a separate RSS-over-time run of row c), `--ab PATH` (adds row
//! (x): row (c) served by another fluxgate binary, e.g. a build of an earlier commit, so a
//! change is measured before/after in one interleaved run; and row (y): row (g) likewise), `--open SECS` (then open-loop runs
//! of rows b c f i p at 50 % and 80 % of (f)'s maximum, `open_loop.rs`), `--upstream-kind
//! nginx|hyper`. Under `cargo test` (no `--bench`), it runs a short smoke of a few
//! rows to prove the harness works, and asserts nothing about speed.
//!
//! Rows:
//! (a) direct to the upstream;
//! (b) fluxgate, every route auth = "none" (the cost of proxying through fluxgate);
//! (c) fluxgate, a cached cookie session + a rate-limit bucket + identity headers (embedded);
//! (d) as (c) on the Redis store (cache hits);
//! (e) cache misses: every request a different valid session, in Redis;
//! (f) nginx auth_request → a second nginx answering 200 (best case of forward auth);
//! (g) as (c) with the access log on (JSON, to a file);
//! (h) backend misses: every request a new token, `store = "backend"`, so each one is a call to
//!     the upstream's `/users/@me` (loopback, the same process as the upstream); compare (c);
//! (i) the nginx of (f) asking fluxgate's forward-auth endpoint (a cached cookie session + a
//!     bucket) instead of the stub; compare (f).
//! (j) as (c) with two upstream replicas behind round robin (pingora-load-balancing); compare
//!     (c), which has one address and no balancer;
//! Every row forwards to one upstream: `--upstream-kind nginx` (the default when nginx is
//! installed: one nginx worker answering `200 ok`, as a real server would) or `hyper` (this
//! binary's own one-thread hyper server, which answers faster and so flatters every proxy).
//!
//! (k) as (c) with tracing on at a 1 % sample ratio (OTLP/HTTP to the hyper upstream);
//! (t) TLS (ECDSA P-256, TLS 1.3): fluxgate terminating TLS with the cached session of (c),
//!     keep-alive; (u) nginx terminating TLS with auth_request to the stub, keep-alive;
//!     (v), (w): the same with a new connection (a full handshake) per request.
//! (p) a bare Pingora proxy (`bare.rs`: same Pingora, allocator and runtime settings, no
//!     auth): the floor fluxgate's (b) is compared with.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the bench run, with its location"
)]

mod bare;
mod open_loop;
mod procs;
#[path = "../../tests/common/redis.rs"]
mod redis_server;
mod report;
mod wrk;

use fluxgate::clock::monotonic_now;
use procs::*;
use std::path::PathBuf;
use std::time::Duration;

// The allocator fluxgate ships with, so that row (p)'s bare Pingora runs on it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU for the proxies under test; the load generator, upstream and Redis get the other one.
const PROXY_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

struct Opts {
    full: bool,
    rounds: usize,
    secs: f64,
    conns: usize,
    soak: Option<u64>,
    /// Only these rows (e.g. "abc").
    only: Option<String>,
    /// Another fluxgate binary for row (x).
    ab: Option<PathBuf>,
    /// After the closed-loop rounds: open-loop runs of rows b c f i p at 50 % and 80 % of row
    /// (f)'s maximum rate, `--open SECS` each.
    open: Option<f64>,
    /// The upstream every row forwards to: nginx answering 200 (as a real server would; the
    /// default when nginx is installed) or this binary's own hyper server (`hyper`).
    nginx_upstream: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let full = args.iter().any(|a| a == "--bench");
    Opts {
        full,
        rounds: get("--rounds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { 3 } else { 1 }),
        secs: get("--secs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { 8.0 } else { 1.0 }),
        conns: get("--conns")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { 64 } else { 8 }),
        soak: get("--soak").and_then(|v| v.parse().ok()),
        only: get("--rows"),
        ab: get("--ab").map(PathBuf::from),
        open: get("--open").and_then(|v| v.parse().ok()),
        nginx_upstream: match get("--upstream-kind").as_deref() {
            Some("hyper") => false,
            Some("nginx") => true,
            Some(other) => panic!("--upstream-kind {other}: use nginx or hyper"),
            None => full && have("nginx"),
        },
    }
}

/// A row: a name, and what wrk sends.
struct Row {
    key: &'static str,
    title: &'static str,
    load: wrk::Load<'static>,
    /// The processes on the proxy CPU that serve the row, whose CPU time per request is
    /// reported; with two, the first's share is also reported on its own (the decider of the
    /// forward-auth rows (f) and (i)).
    cpu: Vec<u32>,
}

/// The row of `key`: `fg` loaded with a cached cookie session of `user` (the shape of row (c)).
fn cookie_row(key: &'static str, title: &'static str, fg: &procs::Fluxgate, user: &str) -> Row {
    Row {
        key,
        title,
        load: wrk::Load {
            url: format!("http://{}/x", fg.proxy),
            headers: vec![format!("Cookie: fluxer_session={}", fg.session(user))],
            script: None,
        },
        cpu: vec![fg.proc.pid()],
    }
}

const LIMIT: &str = r#"
[rate_limits]
global_limit = 0
[[rate_limits.bucket]]
name = "bench"
limit = 10000
window = "100ms"
key = "user"
[routing.default]
auth = "required"
rate_limits = ["bench"]
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--upstream") {
        serve_upstream(args[i + 1].parse().unwrap());
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--open-loop") {
        open_loop::serve(&args[i + 1..]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--bare-pingora") {
        bare::serve(args[i + 1].parse().unwrap(), args[i + 2].parse().unwrap());
        return;
    }
    let o = opts();
    if !have("wrk") {
        eprintln!("SKIPPED e2e: wrk is not installed (apt-get install wrk)");
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fluxgate"));
    // The hyper upstream always runs: row (h)'s `/users/@me` is its.
    let (_hyper_up, hyper_upstream) = upstream(CLIENT_CPU);
    let start_upstream = || {
        if o.nginx_upstream {
            let (p, dir, addr) = nginx_upstream(CLIENT_CPU);
            (Some((p, dir)), addr)
        } else {
            (None, hyper_upstream)
        }
    };
    let (_nginx_up, upstream) = start_upstream();
    let upstream_cfg = format!("[upstream]\naddresses = [\"{upstream}\"]\n");
    let mut notes: Vec<String> = vec![if o.nginx_upstream {
        "upstream: nginx, one worker, answering 200 (`--upstream-kind hyper` for the in-process one)".into()
    } else {
        "upstream: this binary's one-thread hyper server (`--upstream-kind nginx` for nginx)".into()
    }];

    // (b) and (c): always.
    let none = fluxgate(
        &bin,
        PROXY_CPU,
        "b",
        &format!("{upstream_cfg}[routing.default]\nauth = \"none\"\n"),
    );
    let embedded = fluxgate(&bin, PROXY_CPU, "c", &format!("{upstream_cfg}{LIMIT}"));
    let cookie = format!("Cookie: fluxer_session={}", embedded.session("100"));
    let mut rows = vec![
        Row {
            key: "a",
            title: "direct to the upstream",
            load: wrk::Load {
                url: format!("http://{upstream}/x"),
                headers: vec![],
                script: None,
            },
            cpu: vec![],
        },
        Row {
            key: "b",
            title: "fluxgate, auth = none",
            load: wrk::Load {
                url: format!("http://{}/x", none.proxy),
                headers: vec![],
                script: None,
            },
            cpu: vec![none.proc.pid()],
        },
        Row {
            key: "c",
            title: "fluxgate, cached cookie session + bucket + identity",
            load: wrk::Load {
                url: format!("http://{}/x", embedded.proxy),
                headers: vec![cookie.clone()],
                script: None,
            },
            cpu: vec![embedded.proc.pid()],
        },
    ];

    // (p): the floor, a bare Pingora proxy with fluxgate's allocator and runtime settings.
    let mut _keep_bare = None;
    if o.full || o.only.as_deref().is_some_and(|r| r.contains('p')) {
        let (proc, addr) = bare_pingora(PROXY_CPU, upstream);
        rows.insert(
            1,
            Row {
                key: "p",
                title: "bare Pingora 0.9.1 (no auth; mimalloc, 1 thread, no work stealing)",
                load: wrk::Load {
                    url: format!("http://{addr}/x"),
                    headers: vec![],
                    script: None,
                },
                cpu: vec![proc.pid()],
            },
        );
        _keep_bare = Some(proc);
    }

    // (x): as (c), served by the binary given with --ab.
    let mut _keep_ab = None;
    if let Some(other) = &o.ab {
        let base = fluxgate(other, PROXY_CPU, "x", &format!("{upstream_cfg}{LIMIT}"));
        rows.push(cookie_row("x", "as (c), the --ab binary", &base, "400"));
        _keep_ab = Some(base);
    }
    // (y): as (g), served by the binary given with --ab (the access log before/after).
    let mut _keep_ab_logged = None;
    if let Some(other) = o.ab.as_ref().filter(|_| o.full) {
        let logged = fluxgate_with_log(
            other,
            PROXY_CPU,
            "y",
            &format!("{upstream_cfg}{LIMIT}"),
            true,
        );
        rows.push(cookie_row("y", "as (g), the --ab binary", &logged, "310"));
        _keep_ab_logged = Some(logged);
    }

    // (g): as (c) with the access log on (the default in production), written to a file.
    let mut _keep_logged = None;
    if o.full {
        let logged = fluxgate_with_log(
            &bin,
            PROXY_CPU,
            "g",
            &format!("{upstream_cfg}{LIMIT}"),
            true,
        );
        rows.push(cookie_row(
            "g",
            "as (c), access log on (JSON to a file)",
            &logged,
            "300",
        ));
        _keep_logged = Some(logged);
    }

    // (k): as (c) with tracing on at a 1 % sample ratio, exporting to the hyper upstream
    // (which answers 200 to the OTLP posts as a collector would).
    let mut _keep_traced = None;
    if o.full || o.only.as_deref().is_some_and(|r| r.contains('k')) {
        let traced = fluxgate(
            &bin,
            PROXY_CPU,
            "k",
            &format!(
                "{upstream_cfg}{LIMIT}[tracing]\notlp_endpoint = \"http://{hyper_upstream}/v1/traces\"\nsample_ratio = 0.01\n"
            ),
        );
        rows.push(cookie_row(
            "k",
            "as (c), tracing on, 1 % sampled (OTLP/HTTP)",
            &traced,
            "700",
        ));
        _keep_traced = Some(traced);
    }

    // (j): as (c), two replicas of the upstream behind round robin (in the smoke too when
    // asked for with --rows).
    let mut _keep_replicas = None;
    if o.full || o.only.as_deref().is_some_and(|r| r.contains('j')) {
        let (second, second_addr) = if o.nginx_upstream {
            start_upstream()
        } else {
            let (p, a) = procs::upstream(CLIENT_CPU);
            (Some((p, tempfile::tempdir().unwrap())), a)
        };
        let two = format!(
            "[upstream]\naddresses = [\"{upstream}\", \"{second_addr}\"]\nbalance = \"round_robin\"\n"
        );
        let lb = fluxgate(&bin, PROXY_CPU, "j", &format!("{two}{LIMIT}"));
        rows.push(cookie_row(
            "j",
            "as (c), two upstream replicas, round robin",
            &lb,
            "500",
        ));
        _keep_replicas = Some((lb, second));
    }

    // (h): misses against the backend resolver. A million rotating tokens at a 1 s cache TTL:
    // no token comes back within its TTL, so every request asks the backend.
    let mut _keep_backend = None;
    let backend_dir = tempfile::tempdir().unwrap();
    if o.full {
        let misses = fluxgate(
            &bin,
            PROXY_CPU,
            "h",
            &format!(
                "{upstream_cfg}[sessions]\nstore = \"backend\"\ncache_ttl = \"1s\"\nnegative_ttl = \"1s\"\n[sessions.backend]\nvalidate_url = \"http://{hyper_upstream}/users/@me\"\n{LIMIT}"
            ),
        );
        let lua = backend_dir.path().join("rotate.lua");
        std::fs::write(&lua, report::rotate_script(1_000_000)).unwrap();
        let lua: &'static std::path::Path = Box::leak(lua.into_boxed_path());
        rows.push(Row {
            key: "h",
            title: "backend misses: a new token each request → loopback /users/@me",
            load: wrk::Load {
                url: format!("http://{}/x", misses.proxy),
                headers: vec![],
                script: Some(lua),
            },
            cpu: vec![misses.proc.pid()],
        });
        _keep_backend = Some(misses);
    }

    // (d), (e): Redis.
    let mut _keep_redis = Vec::new();
    let script_dir = tempfile::tempdir().unwrap();
    if o.full && have("redis-server") {
        let r = redis_server::RedisServer::start_under(&pin_prefix(CLIENT_CPU), &[]);
        let port = r.port;
        let redis_cfg = format!(
            "[sessions]\nstore = \"redis\"\n[redis]\nurls = [\"redis://127.0.0.1:{port}\"]\n"
        );
        let on_redis = fluxgate(
            &bin,
            PROXY_CPU,
            "d",
            &format!("{upstream_cfg}{redis_cfg}{LIMIT}"),
        );
        let redis_cookie = format!("Cookie: fluxer_session={}", on_redis.session("200"));
        let misses = fluxgate(
            &bin,
            PROXY_CPU,
            "e",
            &format!(
                "{upstream_cfg}{}{LIMIT}",
                redis_cfg.replace(
                    "store = \"redis\"",
                    "store = \"redis\"\ncache_ttl = \"1s\"\nnegative_ttl = \"1s\""
                )
            ),
        );
        let tokens = seed_sessions(port, 300_000);
        let lua = script_dir.path().join("rotate.lua");
        std::fs::write(&lua, report::rotate_script(tokens.len())).unwrap();
        let lua: &'static std::path::Path = Box::leak(lua.into_boxed_path());
        rows.push(Row {
            key: "d",
            title: "as (c), Redis store (cache hits)",
            load: wrk::Load {
                url: format!("http://{}/x", on_redis.proxy),
                headers: vec![redis_cookie],
                script: None,
            },
            cpu: vec![on_redis.proc.pid()],
        });
        rows.push(Row {
            key: "e",
            title: "cache misses: a different Redis session each request",
            load: wrk::Load {
                url: format!("http://{}/x", misses.proxy),
                headers: vec![],
                script: Some(lua),
            },
            cpu: vec![misses.proc.pid()],
        });
        // Dropped in order: the proxies stop before their Redis.
        _keep_redis.push((on_redis, misses, r));
    } else if o.full {
        notes.push("rows d and e skipped: redis-server is not installed".into());
    }

    // (f): nginx forward auth.
    let mut _keep_nginx = None;
    if o.full && have("nginx") {
        let n = nginx(PROXY_CPU, upstream, None);
        rows.push(Row {
            key: "f",
            title: "nginx auth_request → nginx 200",
            load: wrk::Load {
                url: format!("http://{}/x", n.addr),
                headers: vec![cookie.clone()],
                script: None,
            },
            cpu: n.pids(),
        });
        _keep_nginx = Some(n);
    } else if o.full {
        notes.push("row f skipped: nginx is not installed".into());
    }

    // (i): the same nginx, asking fluxgate's forward-auth endpoint (cached cookie session +
    // bucket) instead of the stub: a real authentication against the best case.
    let mut _keep_fa = None;
    if o.full && have("nginx") {
        let fa = fluxgate(
            &bin,
            PROXY_CPU,
            "i",
            &format!("{upstream_cfg}[forward_auth]\nlisten = \"127.0.0.1:0\"\n{LIMIT}"),
        );
        let fa_cookie = format!("Cookie: fluxer_session={}", fa.session("500"));
        let decider = fa.forward_auth.expect("the forward-auth listener");
        let n = nginx(PROXY_CPU, upstream, Some(decider));
        rows.push(Row {
            key: "i",
            title: "nginx auth_request → fluxgate forward auth (cached session + bucket)",
            load: wrk::Load {
                url: format!("http://{}/x", n.addr),
                headers: vec![fa_cookie],
                script: None,
            },
            cpu: [fa.proc.pid()].into_iter().chain(n.pids()).collect(),
        });
        _keep_fa = Some((n, fa));
    }

    // (t)-(w): TLS (ECDSA P-256, TLS 1.3, one certificate for both): fluxgate terminating
    // TLS with authentication against nginx terminating TLS with auth_request to the stub,
    // keep-alive (t, u), then a new connection, so a full handshake, per request (v, w).
    let mut _keep_tls = None;
    let tls_rows = o.full
        || o.only
            .as_deref()
            .is_some_and(|r| r.contains(['t', 'u', 'v', 'w']));
    if tls_rows && have("nginx") {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = p256_cert(dir.path());
        let fg = fluxgate(
            &bin,
            PROXY_CPU,
            "t",
            &format!(
                "[[server.tls]]\nlisten = \"127.0.0.1:0\"\nhttp2 = false\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{upstream_cfg}{LIMIT}",
                cert.display(),
                key.display()
            ),
        );
        let tls_cookie = format!("Cookie: fluxer_session={}", fg.session("600"));
        let fg_tls = fg.tls.expect("the TLS listener");
        let n = nginx_tls(PROXY_CPU, upstream, None, Some((&cert, &key)));
        let close = "Connection: close".to_string();
        let tls_row = |key, title, url: String, headers: Vec<String>, cpu: Vec<u32>| Row {
            key,
            title,
            load: wrk::Load {
                url,
                headers,
                script: None,
            },
            cpu,
        };
        rows.push(tls_row(
            "t",
            "TLS: fluxgate, cached cookie session + bucket, keep-alive",
            format!("https://{fg_tls}/x"),
            vec![tls_cookie.clone()],
            vec![fg.proc.pid()],
        ));
        rows.push(tls_row(
            "u",
            "TLS: nginx auth_request → nginx 200, keep-alive",
            format!("https://{}/x", n.addr),
            vec![cookie.clone()],
            n.pids(),
        ));
        rows.push(tls_row(
            "v",
            "TLS handshakes: (t) with a new connection per request",
            format!("https://{fg_tls}/x"),
            vec![tls_cookie, close.clone()],
            vec![fg.proc.pid()],
        ));
        rows.push(tls_row(
            "w",
            "TLS handshakes: (u) with a new connection per request",
            format!("https://{}/x", n.addr),
            vec![cookie.clone(), close],
            n.pids(),
        ));
        _keep_tls = Some((fg, n, dir));
    } else if tls_rows {
        notes.push("rows t-w skipped: nginx is not installed".into());
    }

    if let Some(secs) = o.soak {
        let c = rows.iter().find(|r| r.key == "c").unwrap();
        soak(&embedded, &c.load, o.conns, secs);
        return;
    }

    let dur = Duration::from_secs_f64(o.secs);
    if let Some(only) = &o.only {
        rows.retain(|r| only.contains(r.key));
    }
    if !o.full {
        // The smoke (under `cargo test`): two rows (or those asked for with --rows), one second
        // each, to prove the harness runs.
        if o.only.is_none() {
            rows.retain(|r| matches!(r.key, "a" | "c"));
        }
    } else {
        // Warm every row up once (connections, caches), then interleave the measured rounds.
        for r in &rows {
            wrk::run(CLIENT_CPU, &r.load, o.conns, Duration::from_secs(1));
        }
    }
    let started = monotonic_now();
    let mut samples: Vec<Vec<wrk::Sample>> = vec![Vec::new(); rows.len()];
    for round in 0..o.rounds {
        // Each round starts one row later, and every other round runs backwards (A B C,
        // A C B, C A B, C B A, …): no row always runs first, nor always right after the same
        // neighbour.
        let mut order: Vec<usize> = (0..rows.len()).map(|j| (j + round) % rows.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let r = &rows[i];
            let before: Vec<f64> = r.cpu.iter().map(|p| cpu_secs(*p)).collect();
            let mut s = wrk::run(CLIENT_CPU, &r.load, o.conns, dur);
            let used: Vec<f64> = r
                .cpu
                .iter()
                .zip(&before)
                .map(|(p, b)| cpu_secs(*p) - b)
                .collect();
            let per_req = |secs: f64| secs * 1e6 / (s.requests.max(1) as f64);
            if !used.is_empty() {
                s.cpu_us = per_req(used.iter().sum());
            }
            if used.len() > 1 {
                s.own_cpu_us = per_req(used[0]);
            }
            eprintln!(
                "round {} row {}: {:.0} req/s p50 {:.3} ms p99 {:.3} ms errors {} CPU {:.1} µs/req",
                round + 1,
                r.key,
                s.rps,
                s.p50_ms,
                s.p99_ms,
                s.errors,
                s.cpu_us
            );
            samples[i].push(s);
            // The access-log rows leave megabytes of dirty page cache: written back now, between
            // rows, not by the kernel during the next row's measurement.
            let _ = std::process::Command::new("sync").status();
        }
    }
    let table = report::table(
        &rows.iter().map(|r| (r.key, r.title)).collect::<Vec<_>>(),
        &samples,
        o.rounds,
        o.secs,
        o.conns,
        &notes,
        started.elapsed(),
    );
    let open = o.open.map(|secs| open_rounds(&rows, &samples, secs));
    let table = match open {
        Some(extra) => format!("{table}\n{extra}"),
        None => table,
    };
    println!("{table}");
    if o.full {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("e2e.md"), &table).unwrap();
        eprintln!("written to bench-results/e2e.md");
    }
}

/// Loads row (c) for `secs`, sampling fluxgate's RSS every 5 s, and reports the slope.
fn soak(fg: &Fluxgate, load: &wrk::Load<'_>, conns: usize, secs: u64) {
    let mut points: Vec<(f64, f64)> = Vec::new();
    let start = monotonic_now();
    while start.elapsed().as_secs() < secs {
        let s = wrk::run(CLIENT_CPU, load, conns, Duration::from_secs(5));
        let mb = fg.proc.rss() as f64 / 1_048_576.0;
        let t = start.elapsed().as_secs_f64();
        println!("t={t:.0}s rss={mb:.1} MB rps={:.0}", s.rps);
        points.push((t, mb));
    }
    let (slope, first, last) = report::slope(&points);
    println!(
        "RSS over {secs} s at load: {first:.1} MB → {last:.1} MB, slope {:.3} MB/min",
        slope * 60.0
    );
}

/// Open-loop runs (wrk2-style latency from each request's scheduled time) of rows b c f i p,
/// interleaved, at 50 % and 80 % of row (f)'s measured maximum; a Markdown table.
fn open_rounds(rows: &[Row], samples: &[Vec<wrk::Sample>], secs: f64) -> String {
    let fi = rows.iter().position(|r| r.key == "f");
    let Some(fi) = fi else {
        return "Open loop: skipped (needs row f for its rates).\n".into();
    };
    let mut f_rps: Vec<f64> = samples[fi].iter().map(|s| s.rps).collect();
    f_rps.sort_by(f64::total_cmp);
    let max = f_rps[f_rps.len() / 2];
    let mut t = format!(
        "Open loop ({secs} s per row and rate, 64 connections, latency from each request's scheduled time), at 50 % and 80 % of (f)'s {max:.0} req/s:\n\n| row | rate req/s | sent | errors | p50 ms | p99 ms | p99.9 ms |\n|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for share in [0.5, 0.8] {
        for r in rows.iter().filter(|r| "bcfip".contains(r.key)) {
            let header = r.load.headers.first().map(String::as_str);
            let s = open_loop::measure(CLIENT_CPU, &r.load.url, header, max * share, secs);
            eprintln!(
                "open loop {:.0}% row {}: p50 {:.3} p99 {:.3} p99.9 {:.3} ms, errors {}",
                share * 100.0,
                r.key,
                s.p50_ms,
                s.p99_ms,
                s.p999_ms,
                s.errors
            );
            t += &format!(
                "| ({}) | {:.0} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
                r.key, s.rate, s.sent, s.errors, s.p50_ms, s.p99_ms, s.p999_ms
            );
        }
    }
    t
}
