//! Identity headers (contract §4): one table of names, stripping whatever a client sent that
//! could pass for them, and the upstream plan that sets the trustworthy values for an admitted
//! request.

pub mod assertion;
mod cookies;
mod headers;
pub mod keys;
mod plan;
mod table;

pub use cookies::{CookiePolicy, SameSite, may_name, strip_cookies};
pub use headers::{
    FORWARDED, HeaderEdit, Injection, REQUEST_ID, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REAL_IP, identity_headers, request_id, request_id_among,
    settle_connection, strip_untrusted,
};
pub use plan::{UpstreamPlan, apply};
pub use table::{COUNT, HeaderNames, IdentityHeader};
