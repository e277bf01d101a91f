//! Identity headers (contract §4): one table of names, stripping whatever a client sent that
//! could pass for them, and the upstream plan that sets the trustworthy values for an admitted
//! request.

pub mod assertion;
mod cookies;
mod headers;
mod plan;
mod table;

pub use cookies::{CookiePolicy, SameSite, strip_cookies};
pub use headers::{
    HeaderEdit, Injection, REQUEST_ID, X_FORWARDED_FOR, identity_headers, request_id,
    strip_untrusted,
};
pub use plan::{UpstreamPlan, apply};
pub use table::{COUNT, HeaderNames, IdentityHeader};
