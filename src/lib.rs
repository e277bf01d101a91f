//! fluxgate: an authentication sidecar on Pingora. See `README.md` and `docs/` for the product;
//! `pipeline.rs` for the request path.

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credential;
pub mod demo;
pub mod denial;
pub mod duration;
pub mod explain;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod redis_client;
pub mod secret;
pub mod session;
