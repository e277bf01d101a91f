//! [`HeadScan`]: counts one HTTP/1 request head's bytes and line breaks as pingora reads them,
//! so the edge can answer a head past its bounds before pingora buffers it (`answer.rs` says
//! why bytes and not a second parser).
//!
//! The scan jumps from line break to line break with `memchr` (SIMD) instead of looking at
//! each byte in turn: it runs on every read of every keep-alive request, and byte by byte it
//! was about 2% of a proxied request's instructions (callgrind, a 140-byte head). The
//! byte-by-byte scan is kept for tests as the reference, and a property test holds the two
//! to the same answers for any bytes in any split.

use super::answer::Bounds;
use crate::denial::Limit;

/// Longest request line (method, target, version) the edge lets through: 16 KiB, above any
/// API path and what common servers accept (nginx 8 KiB, Node 16 KiB).
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// Longest method token before the scan stands aside (`OPTIONS` is 7).
const MAX_METHOD: usize = 16;

/// Where the scan is within the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// In the method; `n` bytes of it so far.
    Method(usize),
    /// In the rest of the request line.
    Line,
    /// In the header section; `fresh` right after a line break (a blank line ends the head).
    Fields { fresh: bool },
    /// The head is over, or it does not start like a request: pingora decides.
    Aside,
}

/// Counts one request head's bytes and lines as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadScan {
    at: At,
    /// Bytes of the request line so far.
    line: usize,
    /// Bytes of the header section so far.
    section: usize,
    /// Header lines so far.
    fields: usize,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            at: At::Method(0),
            line: 0,
            section: 0,
            fields: 0,
        }
    }
}

impl HeadScan {
    /// Feeds the next bytes of the head; a limit when the head went over one.
    pub fn feed(&mut self, mut bytes: &[u8], b: &Bounds) -> Option<Limit> {
        while let Some((&c, rest)) = bytes.split_first() {
            match self.at {
                At::Aside => return None,
                At::Method(n) => {
                    self.line += 1;
                    self.at = match c {
                        b' ' if n > 0 => At::Line,
                        // Not a request line (or the rest of a body pingora drains between
                        // requests): pingora's parser decides, and its 400 is replaced.
                        c if n >= MAX_METHOD || !is_tchar(c) => At::Aside,
                        _ => At::Method(n + 1),
                    };
                    bytes = rest;
                }
                At::Line => {
                    let (run, brk) = split_at_break(bytes);
                    self.line += run.len();
                    // SECURITY: a request line is bounded well below pingora's 1 MiB head.
                    if self.line > MAX_REQUEST_LINE {
                        return Some(Limit::RequestLineTooLong);
                    }
                    let rest = brk?;
                    self.line += 1;
                    self.at = At::Fields { fresh: true };
                    bytes = rest;
                }
                At::Fields { fresh } => {
                    let (run, brk) = split_at_break(bytes);
                    self.section += run.len();
                    let fresh = fresh && run.iter().all(|&c| c == b'\r');
                    self.at = At::Fields { fresh };
                    // SECURITY: header sections are bounded before pingora buffers them (it
                    // would read up to 1 MiB); the blank line that ends one is not counted.
                    if self.section > b.max_header_bytes + 2 {
                        return Some(Limit::HeadersTooLarge);
                    }
                    let rest = brk?;
                    self.section += 1;
                    if fresh {
                        self.at = At::Aside;
                        return None;
                    }
                    self.fields += 1;
                    self.at = At::Fields { fresh: true };
                    if self.fields > b.max_headers {
                        return Some(Limit::TooManyHeaders);
                    }
                    if self.section > b.max_header_bytes + 2 {
                        return Some(Limit::HeadersTooLarge);
                    }
                    bytes = rest;
                }
            }
        }
        None
    }
}

/// The bytes before the first line break, and what follows that break (None: no break).
fn split_at_break(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'\n', bytes) {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    }
}

/// RFC 9110 token characters (a method is a token).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
