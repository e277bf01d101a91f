//! Running `wrk` and reading its numbers.

use super::procs::pinned;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx responses and socket errors.
    pub errors: u64,
    /// Requests completed.
    pub requests: u64,
    /// CPU time (user + system) of the row's processes on the proxy CPU, per request (NaN when
    /// the row names none).
    pub cpu_us: f64,
    /// The same for the first of them alone (the decider of rows (f) and (i)), or NaN.
    pub own_cpu_us: f64,
}

/// What to send.
pub struct Load<'a> {
    pub url: String,
    pub headers: Vec<String>,
    /// A Lua script (for per-request tokens).
    pub script: Option<&'a Path>,
}

fn ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        return v.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    if let Some(v) = s.strip_suffix("ms") {
        return v.parse().ok();
    }
    if let Some(v) = s.strip_suffix('s') {
        return v.parse::<f64>().ok().map(|v| v * 1000.0);
    }
    None
}

impl Default for Sample {
    fn default() -> Sample {
        Sample {
            rps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            errors: 0,
            requests: 0,
            cpu_us: f64::NAN,
            own_cpu_us: f64::NAN,
        }
    }
}

pub fn parse(out: &str) -> Sample {
    let mut s = Sample::default();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            s.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            s.p50_ms = ms(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("99%") {
            s.p99_ms = ms(v).unwrap_or(0.0);
        } else if let Some((n, _)) = l.split_once(" requests in ") {
            s.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            s.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            s.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    s
}

/// Runs wrk (one thread, `conns` keep-alive connections) pinned to `cpu`.
pub fn run(cpu: usize, load: &Load<'_>, conns: usize, dur: Duration) -> Sample {
    let mut c: Command = pinned(cpu, Path::new("wrk"));
    c.args([
        "-t1",
        "-c",
        &conns.to_string(),
        "--latency",
        "--timeout",
        "5s",
    ]);
    // wrk takes whole seconds.
    c.arg("-d")
        .arg(format!("{}s", dur.as_secs_f64().ceil().max(1.0) as u64));
    for h in &load.headers {
        c.arg("-H").arg(h);
    }
    if let Some(s) = load.script {
        c.arg("-s").arg(s);
    }
    c.arg(&load.url);
    let out = c.output().expect("run wrk");
    if !out.status.success() {
        eprintln!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_output() {
        let out = "Running 1s test\n  Latency Distribution\n     50%  412.00us\n     75%  1.20ms\n     99%    2.13ms\n  1000 requests in 1.00s\n  Non-2xx or 3xx responses: 3\nRequests/sec:  12345.67\n";
        let s = super::parse(out);
        assert_eq!(s.rps, 12345.67);
        assert!((s.p50_ms - 0.412).abs() < 1e-9);
        assert_eq!(s.p99_ms, 2.13);
        assert_eq!(s.errors, 3);
        assert_eq!(s.requests, 1000);
    }
}
