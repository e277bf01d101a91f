//! The chaos soak's driver (benches/chaos/, docs/reliability.md) for about 25 s in CI: load on
//! the Redis store through Redis kills, upstream kills, reloads (valid and invalid) and a
//! revocation on a second instance, each at least once. What must hold whatever the timing: the
//! canary (revoked and invalid tokens) is never admitted, no 5xx outside a fault, every fault
//! ends as it must, both processes are alive at the end.

#[path = "../../benches/chaos/driver.rs"]
mod driver;
#[path = "../../benches/chaos/load.rs"]
mod load;
#[path = "../../benches/chaos/procs.rs"]
mod procs;
#[path = "../../benches/chaos/table.rs"]
mod table;

use crate::common::redis as redis_server;
use crate::require_redis;

#[test]
fn revoked_and_invalid_tokens_are_never_admitted_through_redis_upstream_and_reload_faults() {
    require_redis!();
    let seed = fastrand::u64(..);
    eprintln!("chaos seed {seed}");
    let r = driver::run(&driver::Opts {
        secs: 25,
        seed,
        faults: true,
        conns: 8,
        sessions: 20,
        gap: (0.5, 2.0),
        down: (0.5, 1.5),
        warmup: 1,
    });
    eprintln!("{}\n{}", table::table(None, &r), table::faults(&r));
    eprintln!("end of the loaded instance's log:\n{}", r.log_tail);
    for f in &r.faults {
        assert!(
            f.ok,
            "seed {seed}: a {:?} fault went wrong: {}",
            f.kind, f.note
        );
    }
    for k in [
        driver::Kind::Redis,
        driver::Kind::Upstream,
        driver::Kind::Reload,
        driver::Kind::Revoke,
    ] {
        assert!(r.of(k).count() > 0, "seed {seed}: no {k:?} fault ran");
    }
    assert_eq!(r.canary_admitted, 0, "seed {seed}: canary admitted");
    assert_eq!(
        r.canary_upstream_hits, 0,
        "seed {seed}: canary reached the upstream"
    );
    assert!(
        r.canary_class[3] > 0,
        "seed {seed}: the canary was never refused"
    );
    assert_eq!(r.failures_outside, 0, "seed {seed}: 5xx outside a fault");
    assert!(r.class[1] > 0, "seed {seed}: no load request succeeded");
    assert_eq!(r.class[3], 0, "seed {seed}: a valid session was refused");
    assert!(r.alive, "seed {seed}: a fluxgate process died");
}
