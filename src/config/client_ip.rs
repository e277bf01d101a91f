//! `[client_ip]`: which peers are trusted to say who the client is, and in which header.

use super::validate::{Errors, cidrs, header_name, p};
use crate::net::client_ip::ClientIpResolver;
use http::HeaderName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ClientIpFile {
    pub trusted_proxies: Vec<String>,
    pub header: String,
}

impl Default for ClientIpFile {
    fn default() -> Self {
        ClientIpFile {
            trusted_proxies: Vec::new(),
            header: "X-Forwarded-For".into(),
        }
    }
}

pub(super) fn validate_client_ip(c: &ClientIpFile, e: &mut Errors) -> ClientIpResolver {
    let trusted = cidrs(&c.trusted_proxies, p("client_ip.trusted_proxies"), e);
    let header = header_name(&c.header, p("client_ip.header"), e)
        .unwrap_or(HeaderName::from_static("x-forwarded-for"));
    ClientIpResolver::new(trusted, header)
}
