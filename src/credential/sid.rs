//! `sid = base64url_nopad(SHA-256(token bytes))` (contract §1, fixed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// A session id: the SHA-256 of a token. The raw token is never kept past hashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub [u8; 32]);

impl Sid {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Sid {
        Sid(Sha256::digest(token.as_bytes()).into())
    }

    /// The 43-character base64url form used in headers, the store and the admin API.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the 43-character form; anything else is `None`.
    pub fn decode(s: &str) -> Option<Sid> {
        if s.len() != 43 {
            return None;
        }
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut out) {
            Ok(32) => Some(Sid(out)),
            _ => None,
        }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_is_base64url_of_sha256_without_padding() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        let sid = Sid::of("abc");
        assert_eq!(sid.encode(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(Sid::decode(&sid.encode()), Some(sid));
    }

    #[test]
    fn malformed_sids_do_not_decode() {
        assert_eq!(Sid::decode(""), None);
        assert_eq!(
            Sid::decode("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="),
            None
        );
        assert_eq!(
            Sid::decode("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"),
            None
        );
        assert_eq!(
            Sid::decode("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa"),
            None
        );
    }
}
