//! Request-target checks (contract §2).
//!
//! The path fluxgate matches must be the path the upstream acts on. Any spelling that a server
//! behind us could read differently (encoded separators, dot segments, backslashes, empty
//! segments, non-origin-form targets) is refused with 400 before routing, so no route policy can
//! be bypassed by choosing a spelling.
//!
//! A few spellings only a lenient upstream reads differently (`;params`, double encoding,
//! escapes that are not UTF-8, encoded spaces and control characters) are noted as [`Quirks`];
//! the matched route refuses them unless it allows them (`allow_in_path`), since an API path
//! has no use for them.

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form: absolute-form, authority-form, `*`, or empty.
    NotOriginForm,
    /// `%2f` or `%5c` in the path: an encoded separator.
    EncodedSeparator,
    /// `%2e` in the path: an encoded dot, the raw material of encoded dot segments.
    EncodedDot,
    /// `%00` in the path.
    EncodedNul,
    /// A raw backslash, which some servers treat as `/`.
    Backslash,
    /// A `.` or `..` segment.
    DotSegment,
    /// An empty segment (`//`), which some servers collapse.
    EmptySegment,
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// A control character, space, `#` or non-ASCII byte in the target.
    BadByte,
    /// `;` or `%3b` in the path, on a route that does not allow it, or whose `;params` would
    /// pick another route.
    Semicolon,
    /// `%25` followed by two hex digits: a second decoding makes it another byte.
    DoubleEncoded,
    /// Escapes that decode to bytes that are not UTF-8 (overlong `%c0%ae` among them).
    NonUtf8,
    /// An escaped space or control character (`%01`–`%20`, `%7f`); Pingora also writes a raw
    /// space or control character in the request line this way.
    EncodedControl,
}

impl PathError {
    /// Stable snake_case reason for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path_not_origin_form",
            PathError::EncodedSeparator => "path_encoded_separator",
            PathError::EncodedDot => "path_encoded_dot",
            PathError::EncodedNul => "path_encoded_nul",
            PathError::Backslash => "path_backslash",
            PathError::DotSegment => "path_dot_segment",
            PathError::EmptySegment => "path_empty_segment",
            PathError::BadPercent => "path_bad_percent",
            PathError::BadByte => "path_bad_byte",
            PathError::Semicolon => "path_semicolon",
            PathError::DoubleEncoded => "path_double_encoded",
            PathError::NonUtf8 => "path_non_utf8",
            PathError::EncodedControl => "path_encoded_control",
        }
    }

    /// Human message for the 400 body.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "The request target must be a path starting with '/'.",
            PathError::EncodedSeparator => "Encoded '/' or '\\' is not allowed in the path.",
            PathError::EncodedDot => "Encoded '.' is not allowed in the path.",
            PathError::EncodedNul => "Encoded NUL is not allowed in the path.",
            PathError::Backslash => "'\\' is not allowed in the path.",
            PathError::DotSegment => "'.' and '..' path segments are not allowed.",
            PathError::EmptySegment => "Empty path segments ('//') are not allowed.",
            PathError::BadPercent => "Invalid percent-encoding in the path.",
            PathError::BadByte => "Invalid character in the request target.",
            PathError::Semicolon => "';' is not allowed in this path.",
            PathError::DoubleEncoded => "Double percent-encoding is not allowed in the path.",
            PathError::NonUtf8 => "Percent-escapes in the path must decode to UTF-8.",
            PathError::EncodedControl => {
                "Encoded spaces and control characters are not allowed in the path."
            }
        }
    }
}

/// Spellings in a path that passed the checks but that only a lenient upstream reads
/// differently; the matched route refuses those it does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks(u8);

impl Quirks {
    pub const NONE: Quirks = Quirks(0);
    /// `;` or `%3b`: servers that strip `;params` act on another path.
    pub const SEMICOLON: Quirks = Quirks(1);
    /// `%25` + two hex digits: servers that decode twice act on another path.
    pub const DOUBLE_ENCODED: Quirks = Quirks(2);
    /// Escapes decoding to invalid UTF-8: servers that "repair" overlong forms see `.` or `/`.
    pub const NON_UTF8: Quirks = Quirks(4);
    /// `%01`–`%20`, `%7f`: servers that trim decoded whitespace see a dot segment in `..%20`.
    pub const ENCODED_CONTROL: Quirks = Quirks(8);

    pub fn contains(self, q: Quirks) -> bool {
        self.0 & q.0 == q.0
    }

    pub fn with(self, q: Quirks) -> Quirks {
        Quirks(self.0 | q.0)
    }

    /// The first quirk of `self` that `allowed` does not allow, as the refusal.
    pub fn refused(self, allowed: Quirks) -> Option<PathError> {
        [
            (Quirks::SEMICOLON, PathError::Semicolon),
            (Quirks::DOUBLE_ENCODED, PathError::DoubleEncoded),
            (Quirks::NON_UTF8, PathError::NonUtf8),
            (Quirks::ENCODED_CONTROL, PathError::EncodedControl),
        ]
        .into_iter()
        .find(|(q, _)| self.contains(*q) && !allowed.contains(*q))
        .map(|(_, e)| e)
    }
}

/// A target that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedPath<'a> {
    /// The path, byte for byte as received (without the query).
    pub path: &'a str,
    /// Whether the path holds percent-escapes (routing then decodes a copy).
    pub has_escapes: bool,
    /// Lenient-upstream spellings the route must allow.
    pub quirks: Quirks,
}

/// Checks a raw request target (`/path?query`).
pub fn check_target(target: &[u8]) -> Result<CheckedPath<'_>, PathError> {
    if target.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Reject bytes no origin-form target may carry, in the query too.
    if target.iter().any(|&b| b <= 0x20 || b >= 0x7f || b == b'#') {
        return Err(PathError::BadByte);
    }
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let path = &target[..path_end];
    let (has_escapes, mut quirks) = check_escapes(path)?;
    if path.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    check_segments(path)?;
    if path.contains(&b';') {
        quirks = quirks.with(Quirks::SEMICOLON);
    }
    // Every byte is printable ASCII (checked above), so this cannot fail.
    let path = std::str::from_utf8(path).map_err(|_| PathError::BadByte)?;
    if has_escapes && std::str::from_utf8(&decode_bytes(path)).is_err() {
        quirks = quirks.with(Quirks::NON_UTF8);
    }
    Ok(CheckedPath {
        path,
        has_escapes,
        quirks,
    })
}

fn check_escapes(path: &[u8]) -> Result<(bool, Quirks), PathError> {
    let mut any = false;
    let mut quirks = Quirks::NONE;
    let mut i = 0;
    while let Some(off) = path[i..].iter().position(|&b| b == b'%') {
        let at = i + off;
        let (Some(&h), Some(&l)) = (path.get(at + 1), path.get(at + 2)) else {
            return Err(PathError::BadPercent);
        };
        let (Some(h), Some(l)) = (hex(h), hex(l)) else {
            return Err(PathError::BadPercent);
        };
        // SECURITY: encoded separators, dots and NUL let one spelling mean two paths.
        match h << 4 | l {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            b'.' => return Err(PathError::EncodedDot),
            0 => return Err(PathError::EncodedNul),
            // SECURITY: what a second decoding, a `;params` strip or a whitespace trim would
            // turn into another path; the route decides (`Quirks`).
            b'%' if path.get(at + 3).copied().and_then(hex).is_some()
                && path.get(at + 4).copied().and_then(hex).is_some() =>
            {
                quirks = quirks.with(Quirks::DOUBLE_ENCODED);
            }
            b';' => quirks = quirks.with(Quirks::SEMICOLON),
            0x01..=0x20 | 0x7f => quirks = quirks.with(Quirks::ENCODED_CONTROL),
            _ => {}
        }
        any = true;
        i = at + 3;
    }
    Ok((any, quirks))
}

fn check_segments(path: &[u8]) -> Result<(), PathError> {
    // The first byte is '/', so the first split item is always empty; skip it.
    let mut segments = path.split(|&b| b == b'/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        // SECURITY: dot segments are resolved differently by different servers; `..;x` and
        // `..%3b` are dot segments to a server that strips `;params`.
        let bare = seg.split(|&b| b == b';').next().unwrap_or_default();
        let bare = match bare.windows(3).position(|w| w.eq_ignore_ascii_case(b"%3b")) {
            Some(at) => &bare[..at],
            None => bare,
        };
        if bare == b"." || bare == b".." {
            return Err(PathError::DotSegment);
        }
        // A single trailing slash is allowed; an empty segment anywhere else is not.
        if seg.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
    }
    Ok(())
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a path for route matching. Only called when the path has escapes; the
/// checks above guarantee decoding cannot create a separator, a dot or NUL.
pub fn decode_for_matching(path: &str) -> String {
    String::from_utf8_lossy(&decode_bytes(path)).into_owned()
}

fn decode_bytes(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: &str) -> PathError {
        check_target(t.as_bytes()).unwrap_err()
    }

    #[test]
    fn ordinary_paths_pass_unchanged() {
        let p = check_target(b"/users/@me/guilds?limit=10").unwrap();
        assert_eq!(p.path, "/users/@me/guilds");
        assert!(!p.has_escapes);
        assert_eq!(check_target(b"/").unwrap().path, "/");
        assert_eq!(check_target(b"/a/").unwrap().path, "/a/");
    }

    #[test]
    fn encoded_slash_and_backslash_are_refused_in_any_case() {
        for t in ["/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb"] {
            assert_eq!(err(t), PathError::EncodedSeparator, "{t}");
        }
    }

    #[test]
    fn encoded_dot_and_nul_are_refused() {
        assert_eq!(err("/a/%2e%2e/admin"), PathError::EncodedDot);
        assert_eq!(err("/a/%2E"), PathError::EncodedDot);
        assert_eq!(err("/a%00b"), PathError::EncodedNul);
    }

    #[test]
    fn raw_backslash_is_refused() {
        assert_eq!(err("/a\\..\\admin"), PathError::Backslash);
    }

    #[test]
    fn dot_segments_are_refused() {
        for t in ["/./a", "/a/../b", "/a/.", "/a/..", "/..", "/a/./b?x=1"] {
            assert_eq!(err(t), PathError::DotSegment, "{t}");
        }
        // Dots inside a segment are ordinary characters.
        assert!(check_target(b"/a/..b/c.d/...").is_ok());
    }

    #[test]
    fn empty_segments_are_refused_but_one_trailing_slash_is_fine() {
        assert_eq!(err("//admin"), PathError::EmptySegment);
        assert_eq!(err("/a//b"), PathError::EmptySegment);
        assert_eq!(err("/a//"), PathError::EmptySegment);
        assert!(check_target(b"/a/b/").is_ok());
    }

    #[test]
    fn non_origin_form_targets_are_refused() {
        for t in ["http://evil/a", "*", "", "example.com:443", "a/b"] {
            assert_eq!(err(t), PathError::NotOriginForm, "{t:?}");
        }
    }

    #[test]
    fn bad_percent_and_bytes_are_refused() {
        assert_eq!(err("/a%zz"), PathError::BadPercent);
        assert_eq!(err("/a%2"), PathError::BadPercent);
        assert_eq!(err("/a b"), PathError::BadByte);
        assert_eq!(err("/a#frag"), PathError::BadByte);
        assert_eq!(err("/a\x01"), PathError::BadByte);
        assert_eq!(
            check_target("/é".as_bytes()).unwrap_err(),
            PathError::BadByte
        );
    }

    fn quirks(t: &str) -> Quirks {
        check_target(t.as_bytes()).unwrap().quirks
    }

    #[test]
    fn dot_segments_behind_params_are_refused() {
        // A server that strips `;params` resolves these as `..` and `.`.
        for t in [
            "/public/..;/admin",
            "/public/..;x/admin",
            "/a/.;/b",
            "/public/..%3b/admin",
            "/a/..%3B",
        ] {
            assert_eq!(err(t), PathError::DotSegment, "{t}");
        }
    }

    #[test]
    fn lenient_upstream_spellings_are_noted_for_the_route_to_refuse() {
        assert_eq!(quirks("/users/@me/delete;x"), Quirks::SEMICOLON);
        assert_eq!(quirks("/users/@me/delete%3bx"), Quirks::SEMICOLON);
        // Double encoding: a second decoding makes `%252e%252e` a dot segment.
        assert_eq!(quirks("/public/%252e%252e/admin"), Quirks::DOUBLE_ENCODED);
        // Overlong UTF-8 for '.', and bytes that are no UTF-8 at all.
        assert_eq!(quirks("/public/%c0%ae%c0%ae/admin"), Quirks::NON_UTF8);
        assert_eq!(quirks("/a/%ff"), Quirks::NON_UTF8);
        // What Pingora makes of a raw space or control character, and their own escapes.
        for t in ["/public/..%20/admin", "/a%09", "/a%0b", "/a%7f", "/a%01"] {
            assert_eq!(quirks(t), Quirks::ENCODED_CONTROL, "{t}");
        }
        // Ordinary escapes: none.
        for t in [
            "/users/%40me",
            "/emoji/%F0%9F%98%80",
            "/a%25",
            "/a%25zz",
            "/a?x=%20;y",
        ] {
            assert_eq!(quirks(t), Quirks::NONE, "{t}");
        }
    }

    #[test]
    fn a_route_refuses_the_quirks_it_does_not_allow() {
        let q = quirks("/a;b/%252e");
        assert_eq!(q.refused(Quirks::NONE), Some(PathError::Semicolon));
        assert_eq!(q.refused(Quirks::SEMICOLON), Some(PathError::DoubleEncoded));
        let both = Quirks::SEMICOLON.with(Quirks::DOUBLE_ENCODED);
        assert_eq!(q.refused(both), None);
    }

    #[test]
    fn query_is_not_subject_to_path_rules() {
        let p = check_target(b"/a?next=%2f..%2f&x=./").unwrap();
        assert_eq!(p.path, "/a");
    }

    #[test]
    fn other_escapes_are_kept_and_decoded_only_for_matching() {
        let p = check_target(b"/users/%40me").unwrap();
        assert_eq!(p.path, "/users/%40me");
        assert!(p.has_escapes);
        assert_eq!(decode_for_matching(p.path), "/users/@me");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    #[test]
    fn random_targets_never_panic_and_accepted_ones_are_clean() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"/%.\\?#azAZ09 \x00\xff2fFeE5cC";
        for _ in 0..50_000 {
            let len = rng.usize(0..24);
            let t: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            if let Ok(p) = check_target(&t) {
                assert!(p.path.starts_with('/'));
                assert!(
                    !p.path.contains("/../") && !p.path.contains("/./") && !p.path.contains('\\')
                );
                let lower = p.path.to_ascii_lowercase();
                assert!(!lower.contains("%2f") && !lower.contains("%2e") && !lower.contains("%5c"));
                let _ = decode_for_matching(p.path);
            }
        }
    }
}

#[cfg(test)]
#[path = "path_props.rs"]
mod props;
