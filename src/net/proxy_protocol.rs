//! The PROXY protocol header (HAProxy's, versions 1 and 2) that an L4 load balancer sends
//! before anything else on a connection: which bytes form it, and which client address it names.
//!
//! Parsing is the `ppp` crate's; this module decides what a header is allowed to mean:
//! - Only a TCP source over IPv4 or IPv6 names a client. `UNKNOWN` (v1), the `LOCAL` command
//!   (v2: the balancer's own health checks), the `UNSPEC` and Unix families, and UDP keep the
//!   balancer's address: the spec says to use the real connection endpoints then.
//! - A header that lies about its family (v1 `TCP4` with IPv6 addresses, v2 IPv6 with an IPv4
//!   sized address block), a truncated or malformed one, or malformed TLVs is refused whole:
//!   the connection is closed, it never falls back to the balancer's address.
//! - A header may arrive over several TCP segments: [`parse`] says when it needs more bytes,
//!   and never needs more than [`MAX_HEADER`].
//!
//! Pure (bytes in, verdict out) so it can be fuzzed; the reading and the deadline live where
//! connections are accepted (`proxy/accept.rs`).

use ppp::{v1, v2};
use std::net::{IpAddr, SocketAddr};

/// The longest header accepted. v1 is at most 107 bytes; v2 is 16 bytes plus an address block
/// and TLVs, which real balancers keep to a few hundred bytes. Bounding it bounds what one
/// connection can make us buffer before it has said anything else.
pub const MAX_HEADER: usize = 4096;

/// What the first bytes of a connection amount to so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A well-formed prefix of a header: read more (within the deadline).
    Incomplete,
    /// A whole header of `len` bytes; the bytes after it belong to the application protocol.
    /// `source` is the client's address when the header names one, `None` when the
    /// connection's own peer (the balancer) stands.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why the first bytes of a connection are not an acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("a malformed PROXY v1 header")]
    V1,
    #[error("a malformed PROXY v2 header")]
    V2,
    #[error("a PROXY v2 header with malformed TLVs")]
    Tlvs,
    #[error("a PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
}

/// The longest v1 header, its `\r\n` included (the spec's bound).
const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;

/// Parses the first bytes received on a connection.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Malformed> {
    if begins(bytes, v2::PROTOCOL_PREFIX) {
        parse_v2(bytes)
    } else if begins(bytes, v1::PROTOCOL_PREFIX.as_bytes()) {
        parse_v1(bytes)
    } else {
        Err(Malformed::NotProxy)
    }
}

/// Whether `bytes` and `sig` agree on their common length (so `bytes` may still become `sig…`).
fn begins(bytes: &[u8], sig: &[u8]) -> bool {
    let n = bytes.len().min(sig.len());
    bytes[..n] == sig[..n]
}

/// v1 is one line: wait for its end, then parse it whole. (ppp's own "incomplete" guess is not
/// relied on: it takes a line cut after a space for a bad one.)
fn parse_v1(bytes: &[u8]) -> Result<Parsed, Malformed> {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return if bytes.len() < V1_MAX {
            Ok(Parsed::Incomplete)
        } else {
            Err(Malformed::V1)
        };
    };
    let line = &bytes[..=end];
    match v1::Header::try_from(line) {
        // The header ppp read must be the whole line, `\r\n` exactly at its end.
        Ok(h) if h.header.len() == line.len() => Ok(Parsed::Header {
            len: line.len(),
            source: v1_source(&h.addresses),
        }),
        _ => Err(Malformed::V1),
    }
}

/// v2 announces its length in its first 16 bytes: wait for that many, then parse them whole.
fn parse_v2(bytes: &[u8]) -> Result<Parsed, Malformed> {
    let Some(len) = bytes.get(V2_FIXED - 2..V2_FIXED) else {
        return Ok(Parsed::Incomplete);
    };
    let total = V2_FIXED + u16::from_be_bytes([len[0], len[1]]) as usize;
    if total > MAX_HEADER {
        return Err(Malformed::TooLong);
    }
    match bytes.get(..total) {
        None => Ok(Parsed::Incomplete),
        Some(h) => match v2::Header::try_from(h) {
            Ok(h) => v2_header(&h),
            Err(_) => Err(Malformed::V2),
        },
    }
}

fn v1_source(a: &v1::Addresses) -> Option<SocketAddr> {
    match a {
        v1::Addresses::Tcp4(a) => Some(inet(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(inet(a.source_address.into(), a.source_port)),
        v1::Addresses::Unknown => None,
    }
}

fn v2_header(h: &v2::Header<'_>) -> Result<Parsed, Malformed> {
    let tcp = matches!(h.protocol, v2::Protocol::Stream);
    let source = match (&h.command, &h.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) if tcp => {
            Some(inet(a.source_address.into(), a.source_port))
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) if tcp => {
            Some(inet(a.source_address.into(), a.source_port))
        }
        _ => None,
    };
    // SECURITY: a header whose source is believed must be well formed to its end. An address
    // block longer than its family needs is read as TLVs, so this is also what refuses an IPv4
    // header carrying an IPv6-sized block. (Headers that name no source are not read further:
    // the spec has the receiver ignore their address block.)
    if source.is_some() && h.tlvs().any(|t| t.is_err()) {
        return Err(Malformed::Tlvs);
    }
    Ok(Parsed::Header {
        len: h.len(),
        source,
    })
}

fn inet(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
