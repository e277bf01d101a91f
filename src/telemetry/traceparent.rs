//! W3C Trace Context `traceparent` (<https://www.w3.org/TR/trace-context/>), read strictly and
//! written in version 00. Hand-written: the SDK's propagator accepts future versions and
//! upper-case-insensitive forms we do not want from the edge, and this is 30 lines.

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl Parent {
    /// The remote parent's span context, for the request span's parent.
    pub fn span_context(&self) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            flags,
            true,
            TraceState::NONE,
        )
    }
}

/// The request's `traceparent`, when there is exactly one and it is valid: version `00`,
/// exactly 55 bytes, lowercase hex, ids not all zero. Anything else is ignored (the request
/// starts a new trace); it is never a reason to refuse the request.
pub fn read(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return None;
    };
    parse(v.as_bytes())
}

/// One `traceparent` value, strictly.
pub fn parse(v: &[u8]) -> Option<Parent> {
    if v.len() != 55 || &v[..3] != b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut flags = [0u8; 1];
    lower_hex(&v[3..35], &mut trace_id)?;
    lower_hex(&v[36..52], &mut span_id)?;
    lower_hex(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn lower_hex(src: &[u8], out: &mut [u8]) -> Option<()> {
    // `hex` also accepts upper case, which the specification forbids.
    if !src.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode_to_slice(src, out).ok()
}

/// The `traceparent` naming `span` as the parent, in version 00.
pub fn format(span: &SpanContext) -> HeaderValue {
    // On the stack: `format!` with two hex strings cost more than the span itself.
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex::encode_to_slice(span.trace_id().to_bytes(), &mut b[3..35])
        .expect("16 bytes are 32 hex digits");
    hex::encode_to_slice(span.span_id().to_bytes(), &mut b[36..52])
        .expect("8 bytes are 16 hex digits");
    if span.is_sampled() {
        b[54] = b'1';
    }
    HeaderValue::from_bytes(&b).expect("a traceparent is ASCII hex and dashes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(hex::encode(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p.span_id), "00f067aa0ba902b7");
        assert!(p.sampled);
        let unsampled = GOOD.replace("-01", "-00");
        assert!(!parse(unsampled.as_bytes()).unwrap().sampled);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        let bad = [
            "",
            // another version, or version 00 with trailing fields
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            // upper case
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // wrong separators, short, non-hex
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ];
        for b in bad {
            assert_eq!(parse(b.as_bytes()), None, "{b}");
        }
    }

    #[test]
    fn two_traceparent_headers_are_ignored() {
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(GOOD));
        assert!(read(&h).is_some());
        h.append(TRACEPARENT, HeaderValue::from_static(GOOD));
        assert_eq!(read(&h), None);
    }

    #[test]
    fn format_round_trips() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(format(&p.span_context()), GOOD);
        let unsampled = GOOD.replace("-01", "-00");
        let p = parse(unsampled.as_bytes()).unwrap();
        assert_eq!(format(&p.span_context()), unsampled.as_str());
    }
}
