//! GeoIP lookups (country and ASN) from MaxMind databases, with reload by atomic swap: a
//! request sees either the old databases or the new ones, never none.

use arc_swap::ArcSwap;
use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What the databases know about an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    pub asn: Option<u32>,
}

impl GeoInfo {
    pub fn country_str(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

struct Db {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
    modified: Option<SystemTime>,
}

impl Db {
    fn open(path: &Path) -> Result<Db, String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let reader = Reader::open_readfile(path)
            .map_err(|e| format!("cannot open MaxMind database {}: {e}", path.display()))?;
        Ok(Db {
            reader,
            path: path.to_path_buf(),
            modified,
        })
    }

    fn changed(&self) -> bool {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            != self.modified
    }
}

/// One generation of loaded databases.
#[derive(Default)]
pub struct Databases {
    country: Option<Db>,
    asn: Option<Db>,
}

impl Databases {
    /// Looks `ip` up in whichever databases are loaded. "Not found" is simply unknown.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let ip = ip.to_canonical();
        let country = self.country.as_ref().and_then(|db| {
            let r = db.reader.lookup(ip).ok()?;
            let rec: CountryRecord = r.decode().ok()??;
            let code = rec.country?.iso_code?.as_bytes();
            (code.len() == 2 && code.iter().all(u8::is_ascii_alphabetic))
                .then(|| [code[0].to_ascii_uppercase(), code[1].to_ascii_uppercase()])
        });
        let asn = self.asn.as_ref().and_then(|db| {
            let r = db.reader.lookup(ip).ok()?;
            let rec: AsnRecord = r.decode().ok()??;
            rec.autonomous_system_number
        });
        GeoInfo { country, asn }
    }

    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none()
    }
}

/// The configured database files and the current generation.
pub struct GeoIp {
    country_path: Option<PathBuf>,
    asn_path: Option<PathBuf>,
    current: ArcSwap<Databases>,
}

impl GeoIp {
    /// Loads the databases; an unreadable file is a startup error.
    pub fn open(country: Option<&Path>, asn: Option<&Path>) -> Result<GeoIp, String> {
        let dbs = Databases {
            country: country.map(Db::open).transpose()?,
            asn: asn.map(Db::open).transpose()?,
        };
        Ok(GeoIp {
            country_path: country.map(Path::to_path_buf),
            asn_path: asn.map(Path::to_path_buf),
            current: ArcSwap::from_pointee(dbs),
        })
    }

    /// No databases at all.
    pub fn none() -> GeoIp {
        GeoIp {
            country_path: None,
            asn_path: None,
            current: ArcSwap::from_pointee(Databases::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.country_path.is_some() || self.asn_path.is_some()
    }

    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        self.current.load().lookup(ip)
    }

    /// Reloads both files; on any error the old generation stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let next = Databases {
            country: self.country_path.as_deref().map(Db::open).transpose()?,
            asn: self.asn_path.as_deref().map(Db::open).transpose()?,
        };
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Whether a database file changed on disk since it was loaded.
    pub fn changed_on_disk(&self) -> bool {
        let cur = self.current.load();
        cur.country.as_ref().is_some_and(Db::changed) || cur.asn.as_ref().is_some_and(Db::changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/geoip")
            .join(name)
    }

    fn geo() -> GeoIp {
        GeoIp::open(
            Some(&testdata("GeoLite2-Country-Test.mmdb")),
            Some(&testdata("GeoLite2-ASN-Test.mmdb")),
        )
        .unwrap()
    }

    #[test]
    fn known_test_addresses_resolve() {
        let g = geo();
        let c = |ip: &str| {
            g.lookup(ip.parse().unwrap())
                .country_str()
                .map(str::to_string)
        };
        assert_eq!(c("81.2.69.142").as_deref(), Some("GB"));
        assert_eq!(c("89.160.20.112").as_deref(), Some("SE"));
        assert_eq!(c("216.160.83.56").as_deref(), Some("US"));
        assert_eq!(c("2001:218::1").as_deref(), Some("JP"));
        assert_eq!(g.lookup("1.0.0.1".parse().unwrap()).asn, Some(15169));
        assert_eq!(g.lookup("::ffff:1.0.0.1".parse().unwrap()).asn, Some(15169));
    }

    #[test]
    fn unknown_addresses_are_unknown_not_errors() {
        let g = geo();
        assert_eq!(g.lookup("10.0.0.1".parse().unwrap()), GeoInfo::default());
        assert_eq!(
            GeoIp::none().lookup("81.2.69.142".parse().unwrap()),
            GeoInfo::default()
        );
    }

    #[test]
    fn a_bad_file_is_a_clear_error_and_a_failed_reload_keeps_the_old_databases() {
        let err = GeoIp::open(Some(Path::new("/nonexistent.mmdb")), None)
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent.mmdb"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.mmdb");
        std::fs::copy(testdata("GeoLite2-Country-Test.mmdb"), &p).unwrap();
        let g = GeoIp::open(Some(&p), None).unwrap();
        std::fs::write(&p, b"garbage").unwrap();
        assert!(g.changed_on_disk() || g.reload().is_err());
        assert!(g.reload().is_err());
        assert_eq!(
            g.lookup("81.2.69.142".parse().unwrap()).country_str(),
            Some("GB")
        );
    }
}
