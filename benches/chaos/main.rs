//! The chaos soak (docs/reliability.md): `cargo bench --bench chaos -- [SECS]` (or
//! `scripts/chaos [SECS]`, default 600) runs a plain soak of SECS seconds (load only), then the
//! chaos soak of SECS seconds (the same load, with faults), each on fresh processes, and prints
//! both side by side. Options: `--seed N` (else a random one; printed either way),
//! `--no-plain` (the chaos soak alone), `--conns C` (32).
//!
//! Under `cargo test` (no `--bench`) it does nothing: the CI run of the same driver is
//! `tests/it/chaos.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "bench set-up: a failed unwrap stops the run, with its location"
)]

mod driver;
mod load;
mod procs;
#[path = "../../tests/common/redis.rs"]
mod redis_server;
mod table;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "chaos: run with `cargo bench --bench chaos` or scripts/chaos; the CI test is tests/it/chaos.rs"
        );
        return;
    }
    if !redis_server::available() {
        return;
    }
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let secs = args
        .iter()
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(600);
    let seed = get("--seed").unwrap_or_else(|| fastrand::u64(..));
    let opts = |faults: bool| driver::Opts {
        secs,
        seed,
        faults,
        conns: get("--conns").unwrap_or(32) as usize,
        sessions: 500,
        gap: (4.0, 16.0),
        down: (1.0, 5.0),
        warmup: 3,
    };
    eprintln!("chaos soak: {secs} s, seed {seed} (rerun the same faults with --seed {seed})");
    let plain = (!args.iter().any(|a| a == "--no-plain")).then(|| {
        eprintln!("plain soak: {secs} s of load, no faults");
        driver::run(&opts(false))
    });
    eprintln!("chaos soak: {secs} s of load with faults");
    let chaos = driver::run(&opts(true));
    println!("{}", table::table(plain.as_ref(), &chaos));
    println!("{}", table::faults(&chaos));
    let bad = chaos.canary_admitted > 0
        || chaos.canary_upstream_hits > 0
        || chaos.failures_outside > 0
        || chaos.faults.iter().any(|f| !f.ok)
        || !chaos.alive;
    if bad {
        eprintln!(
            "chaos soak FAILED: see the table; the end of the loaded instance's log:\n{}",
            chaos.log_tail
        );
        std::process::exit(1);
    }
}
