//! The integration tests, as one test binary: each module here was its own `tests/*.rs` binary,
//! and each of those linked the whole crate and Pingora again. Run one area with
//! `cargo test --test it proxy_auth::`.
//!
//! Nothing here may depend on running in a process of its own: tests share this process, so
//! they configure the fluxgate processes they start, never this one (no `std::env::set_var`,
//! no process-global state).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test, with its location"
)]

#[path = "../common/mod.rs"]
mod common;

mod assertion_jwks;
mod backend_fake;
mod backend_sessions;
mod backend_shared;
mod browser;
mod chaos;
mod config_check;
mod cors;
mod demo_and_cli;
mod deploy;
mod deploy_run;
mod docs;
mod edge;
mod explain;
mod forward_auth;
mod forwarded;
mod h2_websocket;
mod handshake;
mod ip_authorization;
mod ip_authorization_upstream;
mod lenient_paths;
mod limiter_agreement;
mod lockout_flood;
mod login_capture;
mod logout;
mod logs;
mod metrics_scrape;
mod network;
mod operations;
mod own_answers;
mod proxy_auth;
mod proxy_protocol;
mod rate_limits;
mod readme;
mod redis_cluster;
mod redis_store;
mod rollout;
mod store_suite;
mod sudo;
mod sudo_capture;
mod sudo_inband;
mod tls_hardening;
mod tracing_otlp;
mod transport;
mod upstream_balancing;
mod upstreams;
mod websocket_revocation;
