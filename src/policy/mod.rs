//! Route policy: which rules apply to a request, decided from its method and checked path, and
//! the rules themselves (internal secrets now; rate limits, lockouts, sudo, IP authorization and
//! CSRF as they arrive).

pub mod cors;
pub mod csrf;
pub mod forward;
pub mod internal;
pub mod ipauth;
pub mod login;
pub mod logout;
pub mod network;
pub mod ratelimit;
pub mod rollout;
pub mod routes;
pub mod sudo;
pub mod sudo_proof;

pub use internal::{InternalSecret, InternalSecrets};
pub use routes::{AuthMode, KindSet, Pattern, Policy, Role, Route, RouteTable};
