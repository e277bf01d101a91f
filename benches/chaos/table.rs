//! The chaos soak's report: one Markdown table with the plain soak (when one ran) beside the
//! chaos soak, then one row per kind of fault. This is what docs/reliability.md shows.

use super::driver::{Fault, Kind, Report, Usage};

fn classes(c: &[u64; 5], broken: u64) -> String {
    format!("{} / {} / {} / {} / {}", c[1], c[2], c[3], c[4], broken)
}

fn mb(b: u64) -> String {
    format!("{:.1}", b as f64 / 1_048_576.0)
}

fn rss(u: &Usage) -> String {
    format!(
        "{} → {} → {} ({})",
        mb(u.idle.0),
        mb(u.warm.0),
        mb(u.end.0),
        mb(u.max.0)
    )
}

fn fds(u: &Usage) -> String {
    format!("{} → {} → {} ({})", u.idle.1, u.warm.1, u.end.1, u.max.1)
}

/// min / median / max of some milliseconds, or "–".
fn spread(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.sort_unstable();
    format!("{} / {} / {}", v[0], v[v.len() / 2], v[v.len() - 1])
}

/// The summary table; `plain` is the soak without faults, when one ran.
pub fn table(plain: Option<&Report>, chaos: &Report) -> String {
    let runs: Vec<&Report> = plain.into_iter().chain([chaos]).collect();
    let mut out = String::from("| |");
    for r in &runs {
        out.push_str(if r.faults_on {
            " chaos soak |"
        } else {
            " plain soak (no faults) |"
        });
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(runs.len()));
    out.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&Report) -> String| {
        out.push_str(&format!("| {name} |"));
        for r in &runs {
            out.push_str(&format!(" {} |", f(r)));
        }
        out.push('\n');
    };
    row("seed", &|r| r.seed.to_string());
    row("duration (s)", &|r| format!("{:.0}", r.secs));
    row("load requests", &|r| r.requests.to_string());
    row("throughput (req/s)", &|r| format!("{:.0}", r.throughput()));
    row("2xx per second", &|r| {
        format!("{:.0}", r.class[1] as f64 / r.secs)
    });
    row("2xx / 3xx / 4xx / 5xx / broken connections", &|r| {
        classes(&r.class, r.conn_errors)
    });
    row("5xx and broken connections outside a fault", &|r| {
        r.failures_outside.to_string()
    });
    row("canary requests (revoked + invalid tokens)", &|r| {
        r.canary_requests.to_string()
    });
    row("canary 2xx / 3xx / 4xx / 5xx", &|r| {
        let c = &r.canary_class;
        format!("{} / {} / {} / {}", c[1], c[2], c[3], c[4])
    });
    row("**canary admissions** (must be 0)", &|r| {
        format!("**{}**", r.canary_admitted)
    });
    row("canary requests that reached the upstream", &|r| {
        r.canary_upstream_hits.to_string()
    });
    row(
        "faults: Redis kills / upstream kills / reloads / revocations",
        &|r| {
            [Kind::Redis, Kind::Upstream, Kind::Reload, Kind::Revoke]
                .map(|k| r.of(k).count().to_string())
                .join(" / ")
        },
    );
    row("faults that did not end as expected", &|r| {
        r.faults.iter().filter(|f| !f.ok).count().to_string()
    });
    row(
        "503s from the idle second instance before it could create a session",
        &|r| {
            r.faults
                .iter()
                .map(|f| f.idle_503s)
                .sum::<u64>()
                .to_string()
        },
    );
    row(
        "loaded instance RSS (MB): idle → after warm-up → end (max)",
        &|r| rss(&r.a),
    );
    row(
        "loaded instance open fds: idle → after warm-up → end (max)",
        &|r| fds(&r.a),
    );
    row(
        "second instance RSS (MB): idle → after warm-up → end (max)",
        &|r| rss(&r.b),
    );
    row(
        "second instance open fds: idle → after warm-up → end (max)",
        &|r| fds(&r.b),
    );
    row("both instances alive at the end", &|r| {
        if r.alive { "yes" } else { "**no**" }.into()
    });
    out
}

/// Per kind of fault: how often, how long the dependency was down, the time from its return to
/// the first success (recovery), the failures in its window and their tail.
pub fn faults(r: &Report) -> String {
    let mut out = String::from(
        "| fault | count | down (ms) min / median / max | recovery or effect (ms) min / median / max | 5xx + broken in its windows | last failure after the return (ms, max) | as expected |\n|---|---|---|---|---|---|---|\n",
    );
    for (kind, name) in [
        (Kind::Redis, "Redis kill -9, restart"),
        (Kind::Upstream, "upstream killed, restarted"),
        (Kind::Reload, "config reload (SIGHUP)"),
        (Kind::Revoke, "revocation on the second instance"),
    ] {
        let fs: Vec<&Fault> = r.of(kind).collect();
        let dependency = matches!(kind, Kind::Redis | Kind::Upstream);
        let effect: Vec<u64> = fs
            .iter()
            .filter_map(|f| if dependency { f.recovery_ms } else { f.took_ms })
            .collect();
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} / {} |\n",
            fs.len(),
            if dependency {
                spread(fs.iter().map(|f| f.down_ms).collect())
            } else {
                "–".into()
            },
            spread(effect),
            fs.iter().map(|f| f.failures).sum::<u64>(),
            fs.iter()
                .filter_map(|f| f.tail_ms)
                .max()
                .map_or("–".into(), |t| t.to_string()),
            fs.iter().filter(|f| f.ok).count(),
            fs.len(),
        ));
    }
    out
}
