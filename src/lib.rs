//! fluxgate: an authentication sidecar on Pingora. See `README.md` and `docs/` for the product;
//! `pipeline.rs` for the request path.
//!
//! The public surface is what the binary (`cli`), the benches and the integration tests use:
//! the rooms of the decision (pipeline and what it consults) and the leaf types. The faces
//! (proxy, explain, admin), the wiring (app) and the plumbing (logging, denial writing) are
//! private to the crate.

pub mod cli;
pub mod clock;
pub mod config;
pub mod credential;
pub mod duration;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod redis_client;
pub mod secret;
pub mod session;

mod admin;
mod app;
mod demo;
pub mod denial;
mod explain;
mod forward_auth;
#[cfg(feature = "test-util")]
pub mod fuzzing;
mod logging;
mod probe;
mod proxy;
pub mod telemetry;
