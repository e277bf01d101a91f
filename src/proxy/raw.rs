//! What the client actually sent, read from the raw request head where Pingora's parsed view
//! differs from it: the request target (Pingora drops a `#fragment` from the URI it keeps) and a
//! `Content-Length` next to chunked framing (Pingora drops the length).

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

/// The request target as the client sent it, when it differs from Pingora's view of it (then
/// it holds a `#`, which the path checks refuse); None when they agree.
///
/// A raw space or control character cannot be seen here: Pingora percent-escapes the whole
/// request line before anything else runs, so those arrive as `%20`, `%09`… and the path checks
/// refuse such escapes by default (`Quirks::ENCODED_CONTROL`).
pub(super) fn sent_target(session: &Session) -> Option<Bytes> {
    let ServerSession::H1(h1) = session.as_downstream() else {
        return None;
    };
    let head = h1.get_headers_raw_bytes();
    let range = request_line_target(&head)?;
    // SECURITY: the matched path must be the forwarded one; a target Pingora shortened
    // (`/public#/../admin` → `/public`) is checked as the client sent it, and refused.
    (head[range.clone()] != *session.req_header().raw_path()).then(|| head.slice(range))
}

/// Where the target of `METHOD SP target SP HTTP/x.y` lies in a raw head.
fn request_line_target(head: &[u8]) -> Option<std::ops::Range<usize>> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let end = line.iter().rposition(|&b| b == b' ')?;
    (start < end).then_some(start..end)
}

/// Whether the raw head carried a `Content-Length` although `Transfer-Encoding` is present
/// (pingora drops the length before the hooks see the headers).
pub(super) fn length_with_chunked(session: &Session) -> bool {
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    let ServerSession::H1(h1) = session.as_downstream() else {
        return false;
    };
    h1.get_headers_raw_bytes()
        .split(|&b| b == b'\n')
        .any(|line| line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

#[cfg(test)]
mod tests {
    use super::request_line_target;

    fn target(head: &[u8]) -> Option<&[u8]> {
        request_line_target(head).map(|r| &head[r])
    }

    #[test]
    fn the_request_line_target_is_read_as_sent() {
        let head = b"GET /public#/../admin HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(target(head), Some(&b"/public#/../admin"[..]));
        assert_eq!(target(b"GET /a HTTP/1.1\nhost: x\n\n"), Some(&b"/a"[..]));
        assert_eq!(target(b"GET\r\n"), None);
    }
}
