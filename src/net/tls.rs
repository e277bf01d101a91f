//! TLS material: certificate and key loading, certificate choice by SNI with reload without a
//! restart, and CA bundles for TLS to the upstream.
//!
//! The handshake itself is rustls inside Pingora (TLS 1.2 and 1.3 only); this module gives it a
//! [`ResolvesServerCert`] whose certificates can be swapped atomically. Names are matched with
//! webpki, the same check clients make, so wildcards and IP SANs behave as a client expects.
//!
//! A certificate may come with an OCSP response (DER, as `openssl ocsp -respout` writes it),
//! stapled by rustls to handshakes that ask for one. fluxgate never fetches OCSP itself: the
//! operator's job refreshes the file, and it is re-read with the certificates.

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A DER OCSP response to staple.
    pub ocsp: Option<PathBuf>,
}

/// The largest OCSP response accepted (real ones are 1 to 4 KiB; rustls sends it whole in the
/// handshake).
const MAX_OCSP: u64 = 64 * 1024;

/// Reads a DER OCSP response. Only its outer shape is checked (one whole DER `SEQUENCE`), which
/// catches an empty, truncated, PEM or base64 file; the response itself is the CA's, signed, and
/// checked by the client. Hand-written because those few bytes of DER framing are all that is
/// read here (an OCSP crate would pull in an ASN.1 stack to parse what clients parse anyway).
pub fn load_ocsp(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read OCSP response {}: {e}", path.display()))?
        .len();
    if len > MAX_OCSP {
        return Err(format!(
            "{} is {len} bytes; an OCSP response is at most {MAX_OCSP}",
            path.display()
        ));
    }
    let der = std::fs::read(path)
        .map_err(|e| format!("cannot read OCSP response {}: {e}", path.display()))?;
    if der.is_empty() {
        return Err(format!(
            "{} is empty: expected a DER OCSP response",
            path.display()
        ));
    }
    if der_sequence_len(&der) != Some(der.len()) {
        return Err(format!(
            "{} is not a DER OCSP response (PEM or base64? `openssl ocsp -respout` writes DER)",
            path.display()
        ));
    }
    Ok(der)
}

/// The total length of the DER `SEQUENCE` at the start of `der` (tag, length, contents).
fn der_sequence_len(der: &[u8]) -> Option<usize> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (content, header) = match first {
        0..=0x7f => (usize::from(first), 2),
        // Long form, 1 to 3 length bytes (at most MAX_OCSP), no leading zero.
        0x81..=0x83 => {
            let n = usize::from(first & 0x7f);
            let bytes = rest.get(..n)?;
            if bytes[0] == 0 {
                return None;
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return None;
            }
            (len, 2 + n)
        }
        _ => return None,
    };
    content.checked_add(header)
}

/// A certificate with its key, and its OCSP response when it has one.
pub fn load_certified(p: &CertPaths) -> Result<Arc<CertifiedKey>, String> {
    let ck = load_pair(&p.cert, &p.key)?;
    let Some(ocsp) = &p.ocsp else {
        return Ok(ck);
    };
    let mut ck = Arc::unwrap_or_clone(ck);
    ck.ocsp = Some(load_ocsp(ocsp)?);
    Ok(Arc::new(ck))
}

/// Reads a PEM certificate chain and its private key, and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    };
    webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("{}: the first certificate is unusable: {e}", cert.display()))?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a PEM private key from {}: {e}", key.display()))?;
    let ck = CertifiedKey::from_der(chain, der, &rustls::crypto::ring::default_provider())
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(ck))
}

/// Reads a PEM bundle of CA certificates (DER each).
pub fn load_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    for (i, der) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice())).map_err(|e| {
            format!(
                "certificate {} in {} is not a usable CA: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(certs)
}

/// The certificates of one TLS listener. The first is the default, served when the client's
/// SNI matches no certificate or it sends none.
#[derive(Debug)]
pub struct CertResolver {
    paths: Vec<CertPaths>,
    current: ArcSwap<Vec<Arc<CertifiedKey>>>,
    seen: Mutex<Vec<Option<SystemTime>>>,
}

impl CertResolver {
    pub fn new(paths: Vec<CertPaths>) -> Result<CertResolver, String> {
        let loaded = load_all(&paths)?;
        Ok(CertResolver {
            seen: Mutex::new(mtimes(&paths)),
            current: ArcSwap::from_pointee(loaded),
            paths,
        })
    }

    /// Loads every certificate again; all or nothing: on any error the ones in use stay.
    pub fn reload(&self) -> Result<(), String> {
        let stamps = mtimes(&self.paths);
        let loaded = load_all(&self.paths)?;
        self.current.store(Arc::new(loaded));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamps;
        }
        Ok(())
    }

    /// Whether a certificate, key or OCSP file changed since the last (re)load.
    pub fn changed_on_disk(&self) -> bool {
        let now = mtimes(&self.paths);
        self.seen.lock().map(|seen| *seen != now).unwrap_or(false)
    }

    /// The certificate for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.current.load();
        if let Some(name) = sni.and_then(|s| ServerName::try_from(s).ok()) {
            let matching = certs.iter().find(|ck| {
                ck.end_entity_cert()
                    .ok()
                    .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                    .is_some_and(|c| c.verify_is_valid_for_subject_name(&name).is_ok())
            });
            if let Some(ck) = matching {
                return Some(ck.clone());
            }
        }
        certs.first().cloned()
    }

    /// The serial-free identity of what is served for `sni` (the leaf's DER), for tests.
    pub fn leaf_for(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        self.pick(sni)
            .and_then(|ck| ck.end_entity_cert().ok().map(|c| c.to_vec()))
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

fn load_all(paths: &[CertPaths]) -> Result<Vec<Arc<CertifiedKey>>, String> {
    paths.iter().map(load_certified).collect()
}

fn mtimes(paths: &[CertPaths]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .flat_map(|p| [Some(&p.cert), Some(&p.key), p.ocsp.as_ref()])
        .flatten()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &Path, name: &str, sans: &[&str]) -> CertPaths {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let paths = CertPaths {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            ocsp: None,
        };
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        paths
    }

    #[test]
    fn sni_picks_the_matching_certificate_and_falls_back_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["api.example.test"]);
        let b = write_cert(dir.path(), "b", &["*.gateway.example.test"]);
        let r = CertResolver::new(vec![a.clone(), b.clone()]).unwrap();
        let leaf = |p: &CertPaths| CertificateDer::from_pem_file(&p.cert).unwrap().to_vec();
        assert_eq!(r.leaf_for(Some("api.example.test")), Some(leaf(&a)));
        assert_eq!(r.leaf_for(Some("eu.gateway.example.test")), Some(leaf(&b)));
        assert_eq!(r.leaf_for(Some("other.example.test")), Some(leaf(&a)));
        assert_eq!(r.leaf_for(None), Some(leaf(&a)));
    }

    #[test]
    fn a_mismatched_key_or_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let b = write_cert(dir.path(), "b", &["b.test"]);
        let err = load_pair(&a.cert, &b.key).unwrap_err();
        assert!(err.contains("do not make a usable pair"), "{err}");
        std::fs::write(&b.cert, "not pem").unwrap();
        let err = load_pair(&b.cert, &b.key).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = load_pair(&dir.path().join("missing.pem"), &a.key).unwrap_err();
        assert!(err.contains("cannot read certificate"), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_certificates_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let r = CertResolver::new(vec![a.clone()]).unwrap();
        let before = r.leaf_for(None);
        std::fs::write(&a.key, "broken").unwrap();
        assert!(r.changed_on_disk());
        assert!(r.reload().is_err());
        assert_eq!(r.leaf_for(None), before);
        let fresh = write_cert(dir.path(), "a", &["a.test"]);
        r.reload().unwrap();
        assert_ne!(r.leaf_for(None), before);
        assert_eq!(
            r.leaf_for(None),
            Some(CertificateDer::from_pem_file(&fresh.cert).unwrap().to_vec())
        );
    }

    #[test]
    fn an_ocsp_file_is_read_whole_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ocsp.der");
        // A short-form and a long-form DER SEQUENCE (contents are the CA's, not checked).
        let short = [0x30, 0x03, 0x0a, 0x01, 0x00];
        std::fs::write(&f, short).unwrap();
        assert_eq!(load_ocsp(&f).unwrap(), short);
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(0xab, 0x100));
        std::fs::write(&f, &long).unwrap();
        assert_eq!(load_ocsp(&f).unwrap(), long);
        for (bad, why) in [
            (&b""[..], "is empty"),
            (b"-----BEGIN OCSP RESPONSE-----", "not a DER OCSP response"),
            (b"MIIB", "not a DER OCSP response"),
            (&long[..long.len() - 1], "not a DER OCSP response"),
            (
                &[0x30, 0x81, 0x05, 1, 2, 3, 4, 5],
                "not a DER OCSP response",
            ),
        ] {
            std::fs::write(&f, bad).unwrap();
            let err = load_ocsp(&f).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let err = load_ocsp(&dir.path().join("missing.der")).unwrap_err();
        assert!(err.contains("cannot read OCSP response"), "{err}");
    }

    #[test]
    fn the_ocsp_response_is_served_with_its_certificate_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = write_cert(dir.path(), "a", &["a.test"]);
        let f = dir.path().join("a.ocsp");
        std::fs::write(&f, [0x30, 0x01, 0x01]).unwrap();
        a.ocsp = Some(f.clone());
        let r = CertResolver::new(vec![a]).unwrap();
        let ocsp = |r: &CertResolver| r.pick(None).unwrap().ocsp.clone();
        assert_eq!(ocsp(&r), Some(vec![0x30, 0x01, 0x01]));
        std::fs::write(&f, [0x30, 0x02, 0x02, 0x02]).unwrap();
        r.reload().unwrap();
        assert_eq!(ocsp(&r), Some(vec![0x30, 0x02, 0x02, 0x02]));
        // An OCSP file gone bad fails the reload; what was stapled stays.
        std::fs::write(&f, b"").unwrap();
        assert!(r.reload().is_err());
        assert_eq!(ocsp(&r), Some(vec![0x30, 0x02, 0x02, 0x02]));
    }
}
