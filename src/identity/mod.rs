//! Identity headers (contract §4): one list of names, stripping whatever a client sent that
//! could pass for them, and injecting the trustworthy values for an admitted request.

pub mod assertion;
mod cookies;
mod headers;

pub use cookies::{CookiePolicy, SameSite, strip_cookies};
pub use headers::{
    HeaderEdit, HeaderNames, Injection, REQUEST_ID, inject, request_id, strip_untrusted,
};
