//! The chaos soak (issue 18 item 3): load on fluxgate over the Redis store while, at random
//! intervals from a seeded RNG, Redis is killed and restarted, the config is reloaded
//! (alternating two valid configs with an invalid one), the upstream is killed and restarted,
//! and a token is revoked through the admin API of a second instance. A canary sends the
//! revoked tokens and an invalid one all along: any 2xx is an admission.
//!
//! Shared (through `#[path]`) by the bench (`cargo bench --bench chaos`, `scripts/chaos`) and
//! the CI test (`tests/it/chaos.rs`); the parent module provides `procs`, `load` and
//! `redis_server` (tests/common/redis.rs). One fault at a time: each is over (the dependency
//! back and a first success through it, or the reload or revocation seen) before the next.

use super::load::{self, Stats, Tokens};
use super::procs::{self, CANARY_PREFIX, Instance, Upstream};
use super::redis_server::RedisServer;
use fluxgate::clock::monotonic_now;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A 5xx (or broken connection) up to this long after a fault's first success still belongs to
/// it: the client connections that were open through the outage fail once each.
pub const SETTLE_MS: u64 = 1000;

/// The route the second valid config adds (auth = "none"): 200 when it is in force, 401 not.
const RELOAD_PROBE: &str = "/chaos-public";
const VALID_2: &str = "[[route]]\npath = \"/chaos-public\"\nauth = \"none\"\n";
const INVALID: &str = "[[route]]\npath = \"/chaos-public\"\nauth = \"sometimes\"\n";

pub struct Opts {
    pub secs: u64,
    pub seed: u64,
    /// Without faults: the plain soak the chaos one is compared with.
    pub faults: bool,
    pub conns: usize,
    pub sessions: usize,
    /// Quiet time between faults, and how long a killed dependency stays down (seconds,
    /// uniform in the range).
    pub gap: (f64, f64),
    pub down: (f64, f64),
    /// Load before the first fault, after which RSS and fds are read as the start.
    pub warmup: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Redis,
    Upstream,
    Reload,
    Revoke,
}

pub struct Fault {
    pub kind: Kind,
    pub at_ms: u64,
    /// Killed dependencies: how long it was down, and from its return to the first load
    /// success (None: none came within the bound).
    pub down_ms: u64,
    pub recovery_ms: Option<u64>,
    /// Reloads: until the reload counter moved; revocations: until the first instance refused
    /// the token revoked on the second.
    pub took_ms: Option<u64>,
    /// What happened, for the log, and whether it is what had to happen.
    pub note: String,
    pub ok: bool,
    /// Load 5xx and broken connections inside this fault's window, and the last one's time
    /// after the dependency came back.
    pub failures: u64,
    pub tail_ms: Option<u64>,
    /// Revocations: 503s from the (idle) second instance before it could create the session.
    pub idle_503s: u64,
    window: Option<(u64, u64)>,
}

pub struct Report {
    pub seed: u64,
    pub faults_on: bool,
    pub secs: f64,
    pub requests: u64,
    pub class: [u64; 5],
    pub conn_errors: u64,
    pub canary_requests: u64,
    pub canary_class: [u64; 5],
    pub canary_admitted: u64,
    /// Canary requests that reached the upstream (counted there).
    pub canary_upstream_hits: u64,
    pub failures_outside: u64,
    pub faults: Vec<Fault>,
    /// (RSS bytes, open fds) of the loaded instance and of the second, at start and end.
    /// RSS and open fds of the loaded instance and of the second one.
    pub a: Usage,
    pub b: Usage,
    pub alive: bool,
    /// The end of the loaded instance's log (warnings and errors), to explain a failure.
    pub log_tail: String,
}

fn wait(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = monotonic_now();
    while t.elapsed() < within {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// (RSS bytes, open fds) of a process: before the load, after the warm-up (before the first
/// fault), at the end, and the largest seen (sampled after each fault, or every 5 s).
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub idle: (u64, usize),
    pub warm: (u64, usize),
    pub end: (u64, usize),
    pub max: (u64, usize),
}

impl Usage {
    fn sample(&mut self, pid: u32) -> (u64, usize) {
        let u = (procs::rss(pid), procs::fds(pid));
        self.max = (self.max.0.max(u.0), self.max.1.max(u.1));
        u
    }
}

struct World {
    redis: RedisServer,
    upstream: Upstream,
    a: Instance,
    b: Instance,
    stats: Arc<Stats>,
    canary: Tokens,
    reloads: usize,
    /// Whether the probe route is in force on A now.
    probe_open: bool,
}

pub fn run(o: &Opts) -> Report {
    let mut rng = fastrand::Rng::with_seed(o.seed);
    // Redis with an fsync'd append-only file: a kill -9 loses nothing, as in production, so the
    // load's sessions (and the revocations) outlive each restart.
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let upstream = Upstream::start();
    let a = Instance::start(upstream.addr, &redis.url(), "");
    let b = Instance::start(upstream.addr, &redis.url(), "");
    let subscribed = wait(Duration::from_secs(10), || {
        [&a, &b]
            .iter()
            .all(|i| i.metric("fluxgate_invalidation_subscribed") == 1.0)
    });
    assert!(
        subscribed.is_some(),
        "the invalidation subscriptions never came up"
    );
    let tokens: Vec<String> = (0..o.sessions)
        .map(|i| a.create_session(&format!("load{i}")).0)
        .collect();
    let invalid: String = format!(
        "flx_{}",
        (0..36).map(|_| rng.alphanumeric()).collect::<String>()
    );
    let mut w = World {
        redis,
        upstream,
        a,
        b,
        stats: Arc::new(Stats::new()),
        canary: Tokens::new(vec![invalid]),
        reloads: 0,
        probe_open: false,
    };
    let (mut ua, mut ub) = (Usage::default(), Usage::default());
    ua.idle = ua.sample(w.a.pid());
    ub.idle = ub.sample(w.b.pid());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let start = monotonic_now();
    let end = start + Duration::from_secs(o.secs);
    let load_tokens = Tokens::new(tokens);
    let mut clients: Vec<_> = (0..o.conns)
        .map(|i| {
            rt.spawn(load::client(
                w.a.proxy,
                "/load",
                load_tokens.clone(),
                i,
                false,
                w.stats.clone(),
                end,
            ))
        })
        .collect();
    clients.push(rt.spawn(load::client(
        w.a.proxy,
        CANARY_PREFIX,
        w.canary.clone(),
        0,
        true,
        w.stats.clone(),
        end,
    )));

    std::thread::sleep(Duration::from_secs(o.warmup));
    ua.warm = ua.sample(w.a.pid());
    ub.warm = ub.sample(w.b.pid());
    let mut faults = Vec::new();
    // Each round runs every kind once, in a random order: a short run still sees all four.
    let mut round: Vec<Kind> = Vec::new();
    let margin = Duration::from_secs_f64(o.down.1 + 5.0);
    loop {
        let gap = Duration::from_secs_f64(o.gap.0 + rng.f64() * (o.gap.1 - o.gap.0));
        if !o.faults {
            if monotonic_now() >= end {
                break;
            }
            std::thread::sleep(
                Duration::from_secs(5).min(end.saturating_duration_since(monotonic_now())),
            );
            ua.sample(w.a.pid());
            ub.sample(w.b.pid());
            continue;
        }
        if monotonic_now() + gap + margin > end {
            break;
        }
        std::thread::sleep(gap);
        if round.is_empty() {
            round = vec![Kind::Redis, Kind::Upstream, Kind::Reload, Kind::Revoke];
            rng.shuffle(&mut round);
        }
        let kind = round.pop().expect("refilled above");
        let down = Duration::from_secs_f64(o.down.0 + rng.f64() * (o.down.1 - o.down.0));
        let f = fault(&mut w, kind, down);
        eprintln!("t={:.1}s {:?}: {}", f.at_ms as f64 / 1000.0, f.kind, f.note);
        faults.push(f);
        ua.sample(w.a.pid());
        ub.sample(w.b.pid());
    }
    rt.block_on(async {
        for c in clients.drain(..) {
            let _ = tokio::time::timeout(
                end.saturating_duration_since(monotonic_now()) + Duration::from_secs(10),
                c,
            )
            .await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    ua.end = ua.sample(w.a.pid());
    ub.end = ub.sample(w.b.pid());
    let alive = w.a.alive() && w.b.alive();
    report(o, &w, faults, secs, [ua, ub], alive)
}

fn report(
    o: &Opts,
    w: &World,
    mut faults: Vec<Fault>,
    secs: f64,
    usage: [Usage; 2],
    alive: bool,
) -> Report {
    let s = &w.stats;
    let get = |c: &[std::sync::atomic::AtomicU64; 5]| {
        [0, 1, 2, 3, 4].map(|i| c[i].load(Ordering::Relaxed))
    };
    let failures = s.failures.lock().unwrap().clone();
    let mut outside = 0;
    for t in failures {
        match faults
            .iter_mut()
            .find(|f| f.window.is_some_and(|(from, to)| (from..=to).contains(&t)))
        {
            Some(f) => {
                f.failures += 1;
                let back = f.at_ms + f.down_ms;
                if t > back {
                    f.tail_ms = Some(f.tail_ms.unwrap_or(0).max(t - back));
                }
            }
            None => outside += 1,
        }
    }
    let canary_class = get(&s.canary_class);
    Report {
        seed: o.seed,
        faults_on: o.faults,
        secs,
        requests: s.requests(),
        class: get(&s.class),
        conn_errors: s.conn_errors.load(Ordering::Relaxed),
        canary_requests: canary_class.iter().sum::<u64>()
            + s.canary_conn_errors.load(Ordering::Relaxed),
        canary_class,
        canary_admitted: s.canary_admitted.load(Ordering::Relaxed),
        canary_upstream_hits: w.upstream.canary_hits.load(Ordering::Relaxed),
        failures_outside: outside,
        faults,
        a: usage[0],
        b: usage[1],
        alive,
        log_tail: {
            let log = std::fs::read_to_string(&w.a.stderr_log).unwrap_or_default();
            let cut = log.len().saturating_sub(3000);
            let cut = (cut..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            log[cut..].to_string()
        },
    }
}

fn fault(w: &mut World, kind: Kind, down: Duration) -> Fault {
    let at_ms = w.stats.now_ms();
    let mut f = Fault {
        kind,
        at_ms,
        down_ms: 0,
        recovery_ms: None,
        took_ms: None,
        note: String::new(),
        ok: false,
        failures: 0,
        tail_ms: None,
        idle_503s: 0,
        window: None,
    };
    match kind {
        Kind::Redis | Kind::Upstream => {
            if kind == Kind::Redis {
                w.redis.kill9();
            } else {
                w.upstream.kill();
            }
            std::thread::sleep(down);
            if kind == Kind::Redis {
                w.redis.restart();
            } else {
                w.upstream.restart();
            }
            let back = w.stats.mark_back();
            f.down_ms = back - at_ms;
            let mut recovered = None;
            wait(Duration::from_secs(30), || {
                recovered = w.stats.take_recovered();
                recovered.is_some()
            });
            f.recovery_ms = recovered.map(|r| r - back);
            f.window = Some((at_ms, recovered.unwrap_or(back) + SETTLE_MS));
            f.ok = recovered.is_some();
            f.note = format!(
                "down {} ms, first success {}",
                f.down_ms,
                f.recovery_ms
                    .map_or("never (30 s)".into(), |r| format!("{r} ms after")),
            );
        }
        Kind::Reload => reload(w, &mut f),
        Kind::Revoke => revoke(w, &mut f),
    }
    f
}

/// Writes the next config of the cycle (valid 2, invalid, valid 1, invalid, …) and sends
/// SIGHUP; checks that a valid one is applied and an invalid one refused with the config in use
/// kept, through the reload counters and the probe route.
fn reload(w: &mut World, f: &mut Fault) {
    let step = w.reloads % 4;
    w.reloads += 1;
    let (extra, valid) = match step {
        0 => (VALID_2, true),
        2 => ("", true),
        _ => (INVALID, false),
    };
    let dir = w.a.config_path.parent().expect("a config dir").to_owned();
    let text = procs::config(&dir, w.upstream.addr, &w.redis.url(), extra);
    std::fs::write(&w.a.config_path, text).unwrap();
    let series =
        |r: &str| format!("fluxgate_config_reloads_total{{result=\"{r}\",what=\"config\"}}");
    let counts = |a: &Instance| (a.metric(&series("success")), a.metric(&series("failure")));
    let before = counts(&w.a);
    w.a.signal("HUP");
    let mut after = before;
    f.took_ms = wait(Duration::from_secs(10), || {
        after = counts(&w.a);
        after != before
    })
    .map(|d| d.as_millis() as u64);
    if valid && after.0 > before.0 {
        w.probe_open = step == 0;
    }
    let probe = w.a.get(RELOAD_PROBE, None);
    let expect = if w.probe_open { 200 } else { 401 };
    let counted = if valid {
        after.0 == before.0 + 1.0 && after.1 == before.1
    } else {
        after.1 == before.1 + 1.0 && after.0 == before.0
    };
    f.ok = counted && probe == expect;
    f.note = format!(
        "{} config {}: {RELOAD_PROBE} answers {probe} (expected {expect})",
        if valid { "valid" } else { "invalid" },
        match (counted, valid) {
            (true, true) => "applied",
            (true, false) => "refused",
            (false, _) => "NOT COUNTED AS EXPECTED",
        },
    );
}

/// A session created on the second instance, used once on the first (so that it sits in its
/// cache), revoked through the second's admin API; the first must refuse it (invalidation over
/// Redis pub/sub), and from then on the canary sends it too.
fn revoke(w: &mut World, f: &mut Fault) {
    let n = w.canary.0.lock().unwrap().len();
    // The second instance is idle: its first Redis command after a Redis restart may find
    // the connection it kept dead (503), which the note records.
    let ((token, sid), unavailable) = w.b.create_session_retrying(&format!("revoked{n}"));
    let cached = wait(Duration::from_secs(5), || {
        w.a.get("/warm", Some(&token)) == 200
    });
    let (status, _) = w.b.admin("DELETE", &format!("/v1/sessions/{sid}"), "");
    f.took_ms = wait(Duration::from_secs(5), || {
        w.a.get("/warm", Some(&token)) == 401
    })
    .map(|d| d.as_millis() as u64);
    f.ok = cached.is_some() && status == 200 && f.took_ms.is_some();
    f.note = format!(
        "revoked on the second instance ({status}), refused by the first after {}{}",
        f.took_ms
            .map_or("never (5 s)".into(), |t| format!("{t} ms")),
        if unavailable > 0 {
            format!(" (creating it on the second instance answered 503 {unavailable} times first)")
        } else {
            String::new()
        },
    );
    f.idle_503s = unavailable;
    w.canary.push(token);
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Fault> {
        self.faults.iter().filter(move |f| f.kind == kind)
    }
}
