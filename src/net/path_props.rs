//! Property tests (issue 18): the request-target checks against a straightforward reference
//! written from the contract's rules (§2), and decoding for matching against a plain decoder.

use super::{check_target, decode_for_matching};
use proptest::prelude::*;

/// The contract's rules, one after the other, on the decoded meaning of each escape.
fn reference_accepts(t: &[u8]) -> bool {
    if t.first() != Some(&b'/') {
        return false;
    }
    if t.iter().any(|b| !(0x21..=0x7e).contains(b) || *b == b'#') {
        return false;
    }
    let path = t.split(|b| *b == b'?').next().unwrap_or_default();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let Some(hex) = path.get(i + 1..i + 3) else {
                return false;
            };
            let Ok(v) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16) else {
                return false;
            };
            if hex.iter().any(|b| !b.is_ascii_hexdigit()) || [b'/', b'\\', b'.', 0].contains(&v) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if path.contains(&b'\\') {
        return false;
    }
    let segs: Vec<&[u8]> = path.split(|b| *b == b'/').skip(1).collect();
    segs.iter()
        .enumerate()
        .all(|(i, s)| *s != b"." && *s != b".." && (!s.is_empty() || i + 1 == segs.len()))
}

fn reference_decode(p: &str) -> Vec<u8> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&p[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Targets built from the pieces that matter: separators, dots, escapes of every kind, a query.
fn target() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"/".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"?".to_vec()),
        Just(b"#".to_vec()),
        Just(b" ".to_vec()),
        Just(b"%".to_vec()),
        "[a-zA-Z0-9_~@:;=-]{1,4}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| format!("%{b:02x}").into_bytes()),
        any::<u8>().prop_map(|b| format!("%{b:02X}").into_bytes()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Never accepts what the contract refuses.
    #[test]
    fn path_checks_accept_nothing_the_reference_refuses(t in target()) {
        if let Ok(p) = check_target(&t) {
            prop_assert!(reference_accepts(&t), "accepted {:?}", String::from_utf8_lossy(&t));
            // Idempotent: the accepted path passes again, unchanged.
            prop_assert_eq!(check_target(p.path.as_bytes()), Ok(p));
        }
    }

    /// On targets made of plain characters, separators and dots only, the two agree exactly
    /// (stricter rules elsewhere, e.g. on `;` or `%25`, do not change these).
    #[test]
    fn path_checks_match_the_reference_on_plain_targets(t in "[/.a-z0-9?]{0,16}") {
        prop_assert_eq!(check_target(t.as_bytes()).is_ok(), reference_accepts(t.as_bytes()), "{:?}", t);
    }

    /// Decoding for matching is plain percent-decoding, and on an accepted path it creates no
    /// separator, dot segment or backslash.
    #[test]
    fn decoding_matches_a_plain_decoder(t in target()) {
        if let Ok(p) = check_target(&t) {
            let d = decode_for_matching(p.path);
            prop_assert_eq!(d.clone(), String::from_utf8_lossy(&reference_decode(p.path)).into_owned());
            prop_assert_eq!(d.matches('/').count(), p.path.matches('/').count());
            prop_assert!(!d.contains('\\') && !d.split('/').any(|s| s == "." || s == ".."));
        }
    }
}
