//! Allocations per request on the hot path, counted, against a budget: the whole decision for
//! a cached cookie session (`Pipeline::evaluate`) and the identity headers it plans
//! (`identity::apply`), as `benches/hot_path.rs` measures them for time. A count, not a time:
//! the same on any machine. The budget is what it costs today; a change that allocates more
//! per request fails here and must either allocate less or raise the budget, saying why.
//!
//! Its own test binary: counting needs a global allocator, which must not slow the main suite.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed unwrap fails the test, with its location"
)]

#[path = "../benches/common/hot.rs"]
mod hot;

use futures_util::FutureExt;
use http::HeaderValue;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts this thread's allocations while `COUNTING` is set (other threads, e.g. the store's,
/// are not the request's).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

#[allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only forwards to System"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: during thread teardown the locals may be gone; nothing is counted then.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: forwarded unchanged to the system allocator, whose contract the caller meets.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; `ptr` came from `alloc`, which is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by `f` on this thread.
fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, COUNT.with(Cell::get))
}

/// The budget, per request: what it cost when this test was written (stop 25). Where each
/// allocation comes from is in docs/performance.md ("Allocations per request"): the session's
/// id and user id as header values, the route's matched path, the plan's header list, and the
/// first clone of each header value (which turns its buffer into a shared one).
const DECISION_BUDGET: u64 = 8;
/// The cookie header rebuilt without fluxgate's own cookies, and the header map growing to
/// take the identity headers.
const IDENTITY_BUDGET: u64 = 11;

#[test]
fn a_cached_session_decision_stays_within_its_allocation_budget() {
    let s = hot::setup();
    let headers = hot::request_headers();
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let peer = "10.0.0.1".parse().unwrap();
    let decide = || {
        s.pipeline
            .evaluate(&hot::facts(&headers, peer, &rid))
            .now_or_never()
            .unwrap()
    };
    // Once outside the count: first-use initialisations (thread locals, lazy tables) are not
    // per request.
    assert!(decide().outcome.is_ok());
    let (verdict, decision) = count(decide);
    let admitted = verdict.outcome.expect("the session is admitted");
    let rules = &s.pipeline.rules;
    let mut upstream_headers = headers.clone();
    let ((), identity) = count(|| {
        fluxgate::identity::apply(
            &mut upstream_headers,
            &rules.names,
            &rules.cookies,
            &admitted.plan,
        )
    });
    eprintln!("allocations per request: decision {decision}, identity headers {identity}");
    assert!(
        decision <= DECISION_BUDGET,
        "the decision allocates {decision} times, over its budget of {DECISION_BUDGET}"
    );
    assert!(
        identity <= IDENTITY_BUDGET,
        "the identity headers allocate {identity} times, over their budget of {IDENTITY_BUDGET}"
    );
}
