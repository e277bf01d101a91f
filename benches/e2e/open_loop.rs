//! Open-loop load: requests sent on a fixed schedule whatever the answers do. A request held
//! back because its connection still waited for the previous answer is timed from when it was
//! due, so a stalled server is charged for the requests that queued behind the stall (wrk2's
//! correction for coordinated omission).
//!
//! Written here rather than installing oha or wrk2: neither is a Debian package, and building
//! oha from crates.io takes longer than this file. It runs as this binary's
//! `--open-loop URL RATE SECS CONNS [HEADER]` mode, pinned to the client CPU, and prints one
//! JSON line.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one open-loop run saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenSample {
    pub rate: f64,
    pub sent: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// Runs the mode (in the child process) and prints its result.
pub fn serve(args: &[String]) {
    let url = &args[0];
    let rate: f64 = args[1].parse().unwrap();
    let secs: f64 = args[2].parse().unwrap();
    let conns: usize = args[3].parse().unwrap();
    let header = args.get(4).cloned();
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{}\r\n",
        header.map(|h| format!("{h}\r\n")).unwrap_or_default()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (latencies, errors) = rt.block_on(run(host.to_string(), request, rate, secs, conns));
    let mut l = latencies;
    l.sort_unstable();
    let q = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    println!(
        "{{\"sent\":{},\"errors\":{errors},\"p50_ms\":{},\"p99_ms\":{},\"p999_ms\":{}}}",
        l.len() as u64 + errors,
        q(0.50),
        q(0.99),
        q(0.999)
    );
}

async fn run(host: String, request: String, rate: f64, secs: f64, conns: usize) -> (Vec<u64>, u64) {
    let total = (rate * secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let request: &'static [u8] = Box::leak(request.into_bytes().into_boxed_slice());
    let mut tasks = Vec::new();
    for c in 0..conns as u64 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut stream = None;
            let mut buf = vec![0u8; 16 * 1024];
            // This connection's share of the schedule: requests c, c + conns, c + 2 conns, …
            let mut k = c;
            let mut free_at = start;
            while k < total {
                let due = start + interval.mul_f64(k as f64);
                tokio::time::sleep_until(due).await;
                // Held back by the server's previous answer: charged from when it was due.
                // Otherwise from now: the timer's own lateness (tokio's wheel ticks per
                // millisecond) is the generator's, not the server's.
                let from = if free_at > due {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                if stream.is_none() {
                    stream = tokio::net::TcpStream::connect(&host).await.ok();
                    if let Some(s) = &stream {
                        let _ = s.set_nodelay(true);
                    }
                }
                let ok = match stream.as_mut() {
                    Some(s) => exchange(s, request, &mut buf).await,
                    None => false,
                };
                free_at = tokio::time::Instant::now();
                if ok {
                    lat.push(free_at.duration_since(from).as_micros() as u64);
                } else {
                    errors += 1;
                    stream = None;
                }
                k += conns as u64;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    (all, errors)
}

/// Sends one request and reads one 2xx answer with a `Content-Length` body.
async fn exchange(s: &mut tokio::net::TcpStream, request: &[u8], buf: &mut [u8]) -> bool {
    if s.write_all(request).await.is_err() {
        return false;
    }
    let mut have = 0;
    loop {
        let Ok(n) = s.read(&mut buf[have..]).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            if have == buf.len() {
                return false;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while have < end + 4 + len {
            match s.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => have += n,
            }
        }
        return head.starts_with("http/1.1 2");
    }
}

/// Runs `--open-loop` as a child pinned to `cpu`; reads its JSON line.
pub fn measure(cpu: usize, url: &str, header: Option<&str>, rate: f64, secs: f64) -> OpenSample {
    let exe = std::env::current_exe().unwrap();
    let mut c = super::procs::pinned(cpu, &exe);
    c.args([
        "--open-loop",
        url,
        &format!("{rate:.0}"),
        &secs.to_string(),
        "64",
    ]);
    if let Some(h) = header {
        c.arg(h);
    }
    let out = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("open loop: {}", String::from_utf8_lossy(&out.stderr)));
    OpenSample {
        rate,
        sent: v["sent"].as_u64().unwrap_or(0),
        errors: v["errors"].as_u64().unwrap_or(0),
        p50_ms: v["p50_ms"].as_f64().unwrap_or(f64::NAN),
        p99_ms: v["p99_ms"].as_f64().unwrap_or(f64::NAN),
        p999_ms: v["p999_ms"].as_f64().unwrap_or(f64::NAN),
    }
}
