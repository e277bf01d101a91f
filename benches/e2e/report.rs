//! The results table, the Lua script for per-request tokens, and small statistics.

use super::wrk::Sample;
use std::fmt::Write as _;
use std::time::Duration;

/// The median of the numbers that are not NaN: NaN when all are, 0 when there are none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Least-squares slope of (x, y), with the first and last y.
pub fn slope(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (0.0, 0.0, 0.0);
    }
    let (sx, sy): (f64, f64) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    (
        num / den.max(f64::EPSILON),
        points[0].1,
        points[points.len() - 1].1,
    )
}

/// wrk script cycling through `n` seeded tokens (`flx_` + a zero-padded index).
pub fn rotate_script(n: usize) -> String {
    format!(
        r#"local i = math.random(0, {n})
request = function()
  i = (i + 1) % {n}
  return wrk.format("GET", "/x", {{ ["Authorization"] = string.format("flx_%036d", i) }})
end
"#
    )
}

pub fn table(
    rows: &[(&str, &str)],
    samples: &[Vec<Sample>],
    rounds: usize,
    secs: f64,
    conns: usize,
    notes: &[String],
    took: Duration,
) -> String {
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let find = |k: &str| rows.iter().position(|(key, _)| *key == k);
    let rps = |k: &str| find(k).map(|i| med(i, |s| s.rps));
    let p99 = |k: &str| find(k).map(|i| med(i, |s| s.p99_ms));
    let p50 = |k: &str| find(k).map(|i| med(i, |s| s.p50_ms));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Machine: {} CPUs, {}; {rounds} interleaved rounds of {secs} s per row, wrk -t1 -c{conns} (medians). Proxies pinned to CPU 0; wrk, upstream and Redis to CPU 1. Took {:.0} s.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_else(|| "unknown CPU".into()),
        took.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "| row | setup | req/s | p50 ms | p99 ms | ÷ (b) | ÷ (f) | errors | CPU µs/req |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (key, title)) in rows.iter().enumerate() {
        let r = med(i, |s| s.rps);
        let ratio = |base: Option<f64>| {
            base.map_or("–".to_string(), |b| format!("{:.2}", r / b.max(1.0)))
        };
        let errors: u64 = samples[i].iter().map(|s| s.errors).sum();
        let cpu = med(i, |s| s.cpu_us);
        let cpu = if cpu.is_nan() {
            "–".to_string()
        } else {
            format!("{cpu:.1}")
        };
        let _ = writeln!(
            t,
            "| ({key}) | {title} | {r:.0} | {:.3} | {:.3} | {} | {} | {errors} | {cpu} |",
            med(i, |s| s.p50_ms),
            med(i, |s| s.p99_ms),
            ratio(rps("b")),
            ratio(rps("f")),
        );
    }
    let _ = writeln!(t);
    let ratio = |a: &str, b: &str| match (rps(a), rps(b)) {
        (Some(x), Some(y)) => format!("{:.2}", x / y.max(1.0)),
        _ => "n/a".into(),
    };
    let _ = writeln!(
        t,
        "Targets: (c)/(b) = {} (≥ 0.90); p99(c) − p99(b) = {} ms (≤ 0.3); (c)/(f) = {} (≥ 1.2); (d)/(c) = {} (≥ 0.95). Access log: (g)/(c) = {}. Backend misses: (h)/(c) = {}, p50(h) − p50(c) = {} ms. Forward auth: (i)/(f) = {} (≥ 0.90). Two replicas, round robin: (j)/(c) = {}.",
        ratio("c", "b"),
        match (p99("c"), p99("b")) {
            (Some(c), Some(b)) => format!("{:.3}", c - b),
            _ => "n/a".into(),
        },
        ratio("c", "f"),
        ratio("d", "c"),
        ratio("g", "c"),
        ratio("h", "c"),
        match (p50("h"), p50("c")) {
            (Some(h), Some(c)) => format!("{:.3}", h - c),
            _ => "n/a".into(),
        },
        ratio("i", "f"),
        ratio("j", "c"),
    );
    let own = |k: &str| {
        find(k)
            .map(|i| med(i, |s| s.own_cpu_us))
            .filter(|v| !v.is_nan())
            .map_or("n/a".to_string(), |v| format!("{v:.1}"))
    };
    let _ = writeln!(
        t,
        "\nCPU µs/req: user + system time of the row's processes on the proxy CPU (not wrk, the upstream or Redis) per request. The decider's own share: (f) the stub nginx {} µs, (i) fluxgate's forward-auth endpoint {} µs per decision; the rest of those rows is the front nginx.",
        own("f"),
        own("i"),
    );
    // Issue 17's targets against the floor, in CPU per request (steadier than req/s here).
    let cpu = |k: &str| {
        find(k)
            .map(|i| med(i, |s| s.cpu_us))
            .filter(|v| !v.is_nan())
    };
    let show =
        |v: Option<f64>, digits: usize| v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"));
    let _ = writeln!(
        t,
        "\nAgainst the floor, CPU µs/req: (b)/(p) = {} (≤ 1.10); (c) − (b) = {} µs (≤ 2); (g) − (c) = {} µs (≤ 1.5).",
        show(cpu("b").zip(cpu("p")).map(|(b, p)| b / p), 2),
        show(cpu("c").zip(cpu("b")).map(|(c, b)| c - b), 1),
        show(cpu("g").zip(cpu("c")).map(|(g, c)| g - c), 1),
    );
    let _ = writeln!(
        t,
        "\nTracing on at 1 %: (k)/(c) = {} (≥ 0.95); metrics and tracing off against the binary given with --ab: (c)/(x) = {} (≥ 0.97); the access log against it: (g)/(y) = {}, CPU (g) − (y) = {} µs.",
        ratio("k", "c"),
        ratio("c", "x"),
        ratio("g", "y"),
        show(cpu("g").zip(cpu("y")).map(|(g, y)| g - y), 1),
    );
    let _ = writeln!(
        t,
        "\nTLS (req/s): keep-alive (t)/(u) = {} (≥ 1.0); new connection per request (v)/(w) = {}.",
        ratio("t", "u"),
        ratio("v", "w"),
    );
    // Paired by round: the two rows of a pair ran in the same round, minutes apart at most, so
    // each round's ratio is free of the drift between rounds; the range shows the spread.
    let paired = |a: &str, b: &str| match (find(a), find(b)) {
        (Some(i), Some(j)) => {
            let r: Vec<f64> = samples[i]
                .iter()
                .zip(&samples[j])
                .map(|(x, y)| x.rps / y.rps.max(1.0))
                .collect();
            let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{:.2} ({lo:.2}–{hi:.2})", median(r))
        }
        _ => "n/a".into(),
    };
    let _ = writeln!(
        t,
        "\nPaired by round (the median of each round's req/s ratio, and their range): (i)/(f) = {}; (g)/(c) = {}; (k)/(c) = {}; (c)/(b) = {}; (c)/(x) = {}; (g)/(y) = {}.",
        paired("i", "f"),
        paired("g", "c"),
        paired("k", "c"),
        paired("c", "b"),
        paired("c", "x"),
        paired("g", "y"),
    );
    for n in notes {
        let _ = writeln!(t, "\nNote: {n}.");
    }
    t
}
