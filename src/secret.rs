//! A resolved secret: compared by SHA-256 digest in constant time, never printed. A leaf
//! module (no crate imports), so every room that holds a secret can use it without depending
//! on the config that resolved it.

use sha2::{Digest, Sha256};
use std::fmt;

/// A resolved secret. Compared by SHA-256 digest in constant time; never printed.
#[derive(Clone)]
pub struct Secret {
    bytes: String,
    digest: [u8; 32],
}

impl Secret {
    pub fn new(bytes: String) -> Self {
        let digest = Sha256::digest(bytes.as_bytes()).into();
        Secret { bytes, digest }
    }

    /// The secret itself, for the few places that must send it (the CLI talking to the admin API).
    pub fn expose(&self) -> &str {
        &self.bytes
    }

    /// SHA-256 of the secret: what candidates are compared against.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Constant-time comparison of a presented value against this secret.
    // SECURITY: comparing digests in constant time means neither the secret's length nor a
    // matching prefix can be learned from response timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let d: [u8; 32] = Sha256::digest(presented).into();
        d.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Two secrets are equal when their bytes are (compared by digest, in constant time).
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        use subtle::ConstantTimeEq;
        self.digest.ct_eq(&other.digest).into()
    }
}

impl Eq for Secret {}
