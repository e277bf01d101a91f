//! The head scan: bounds in any split, and the fast scan held to the byte-by-byte one.

use super::*;
use crate::metrics::Metrics;
use proptest::prelude::*;
use std::sync::Arc;

impl HeadScan {
    /// The straightforward scan, one byte at a time: the reference the fast one is held to.
    fn feed_bytewise(&mut self, bytes: &[u8], b: &Bounds) -> Option<Limit> {
        for &c in bytes {
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
                }
                At::Line => {
                    self.line += 1;
                    if c == b'\n' {
                        self.at = At::Fields { fresh: true };
                    } else if self.line > MAX_REQUEST_LINE {
                        // SECURITY: a request line is bounded well below pingora's 1 MiB head.
                        return Some(Limit::RequestLineTooLong);
                    }
                }
                At::Fields { fresh } => {
                    self.section += 1;
                    match c {
                        b'\n' if fresh => {
                            self.at = At::Aside;
                            return None;
                        }
                        b'\n' => {
                            self.fields += 1;
                            self.at = At::Fields { fresh: true };
                        }
                        b'\r' => {}
                        _ => self.at = At::Fields { fresh: false },
                    }
                    // SECURITY: header sections are bounded before pingora buffers them (it
                    // would read up to 1 MiB); the blank line that ends one is not counted.
                    if self.fields > b.max_headers {
                        return Some(Limit::TooManyHeaders);
                    }
                    if self.section > b.max_header_bytes + 2 {
                        return Some(Limit::HeadersTooLarge);
                    }
                }
            }
        }
        None
    }
}

fn bounds() -> Bounds {
    bounds_of(64, 3)
}

fn bounds_of(max_header_bytes: usize, max_headers: usize) -> Bounds {
    Bounds {
        max_header_bytes,
        max_headers,
        metrics: Arc::new(Metrics::default()),
    }
}

fn scan(chunks: &[&[u8]]) -> Option<Limit> {
    let b = bounds();
    let mut s = HeadScan::default();
    chunks.iter().find_map(|c| s.feed(c, &b))
}

#[test]
fn heads_within_the_bounds_pass_in_any_split() {
    let head = b"GET /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    for cut in 0..head.len() {
        assert_eq!(scan(&[&head[..cut], &head[cut..]]), None, "cut at {cut}");
    }
    // Bytes after the blank line are the body: not counted.
    let body = vec![b'x'; 100_000];
    assert_eq!(scan(&[head, &body]), None);
}

#[test]
fn an_overlong_request_line_is_414() {
    let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
    assert_eq!(scan(&[line.as_bytes()]), Some(Limit::RequestLineTooLong));
}

#[test]
fn an_oversized_or_crowded_header_section_is_431() {
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(80));
    assert_eq!(scan(&[big.as_bytes()]), Some(Limit::HeadersTooLarge));
    let many = b"GET / HTTP/1.1\nA: 1\nB: 2\nC: 3\nD: 4\n\n";
    assert_eq!(scan(&[many]), Some(Limit::TooManyHeaders));
}

#[test]
fn bytes_that_do_not_start_like_a_request_are_left_to_pingora() {
    let junk = vec![0x16u8; 100_000];
    assert_eq!(scan(&[&junk]), None);
    let json = format!("{{\"a\":\"{}\"}}", "b".repeat(100_000));
    assert_eq!(scan(&[json.as_bytes()]), None);
}

/// Heads made of the bytes that matter to the scan (line breaks, carriage returns, spaces,
/// token and non-token bytes), long enough to cross the bounds below.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"GETPOST/a:xX-".to_vec()),
        2 => Just(b'\n'),
        2 => Just(b'\r'),
        1 => Just(b' '),
        1 => any::<u8>(),
    ];
    let start = prop::sample::select(vec![&b"GET / HTTP/1.1\r\n"[..], b"GET ", b"", b"\x16\x03"]);
    (start, prop::collection::vec(byte, 0..160)).prop_map(|(s, mut rest)| {
        let mut v = s.to_vec();
        v.append(&mut rest);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_fast_scan_answers_as_the_bytewise_scan_for_any_bytes_in_any_split(
        head in head(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        max_header_bytes in 0usize..48,
        max_headers in 0usize..5,
    ) {
        let b = bounds_of(max_header_bytes, max_headers);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(head.len() + 1)).collect();
        at.push(0);
        at.push(head.len());
        at.sort_unstable();
        let (mut fast, mut slow) = (HeadScan::default(), HeadScan::default());
        for w in at.windows(2) {
            let chunk = &head[w[0]..w[1]];
            let (f, s) = (fast.feed(chunk, &b), slow.feed_bytewise(chunk, &b));
            prop_assert_eq!(f, s);
            if f.is_some() {
                break;
            }
            prop_assert_eq!(fast, slow);
        }
    }
}

#[test]
fn a_request_line_at_the_limit_passes_and_one_byte_over_is_414() {
    let b = bounds();
    for (extra, want) in [(0, None), (1, Some(Limit::RequestLineTooLong))] {
        // "GET /" + padding + " HTTP/1.1\r" is the line before its "\n".
        let pad = MAX_REQUEST_LINE - "GET / HTTP/1.1\r".len() + extra;
        let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(pad));
        let mut s = HeadScan::default();
        assert_eq!(s.feed(line.as_bytes(), &b), want, "extra {extra}");
    }
}
