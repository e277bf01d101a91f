//! Lets the identity room edit a pingora request header without knowing pingora.

use crate::identity::HeaderEdit;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

pub struct Upstream<'a>(pub &'a mut RequestHeader);

impl HeaderEdit for Upstream<'_> {
    fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    fn remove(&mut self, name: &HeaderName) {
        self.0.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        // insert_header only fails for invalid names or values; both are typed here.
        let _ = self.0.insert_header(name, value);
    }
}
