//! Route policy: which rules apply to a request, decided from its method and checked path, and
//! the rules themselves (internal secrets now; rate limits, lockouts, sudo, IP authorization and
//! CSRF as they arrive).

pub mod csrf;
pub mod internal;
pub mod logout;
pub mod ratelimit;
pub mod routes;
pub mod sudo;

pub use internal::{InternalSecret, InternalSecrets};
pub use logout::Role;
pub use routes::{AuthMode, KindSet, Pattern, Policy, Route, RouteTable};
