//! Network facts about a request: where it really comes from (client IP, trusted proxies,
//! PROXY protocol headers, CIDR sets) and whether its target is an unambiguous path.

pub mod cidr;
pub mod client_ip;
pub mod geoip;
pub mod hygiene;
pub mod path;
pub mod proxy_protocol;
pub mod tls;
