//! TLS material: certificate and key loading, certificate choice by SNI with reload without a
//! restart, and CA bundles for TLS to the upstream.
//!
//! The handshake itself is rustls inside Pingora (TLS 1.2 and 1.3 only); this module gives it a
//! [`ResolvesServerCert`] whose certificates can be swapped atomically. Names are matched with
//! webpki, the same check clients make, so wildcards and IP SANs behave as a client expects.

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

    /// Whether a certificate or key file changed since the last (re)load.
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
    paths.iter().map(|p| load_pair(&p.cert, &p.key)).collect()
}

fn mtimes(paths: &[CertPaths]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .flat_map(|p| [&p.cert, &p.key])
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
}
