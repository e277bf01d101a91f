//! Durations written as strings in TOML (`"250ms"`, `"30s"`, `"15m"`, `"2h"`, `"7d"`).
//!
//! Written by hand because the format is tiny and we want one canonical spelling when the
//! normalized config is printed; humantime-style crates accept far more than we document.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A non-negative duration with millisecond precision, as written in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl Dur {
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn as_millis(self) -> i64 {
        self.0.as_millis().min(i64::MAX as u128) as i64
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses `<integer><unit>` where unit is one of `ms`, `s`, `m`, `h`, `d`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(digits_end);
        if num.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: expected a whole number followed by ms, s, m, h or d (e.g. \"30s\")"
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        let per = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| {
                format!("invalid duration {s:?}: unit must be one of ms, s, m, h, d (e.g. \"30s\")")
            })?;
        let ms = n
            .checked_mul(per)
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        Ok(Dur(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    /// The largest unit that expresses the value exactly: 900s prints as "15m".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, per) in UNITS {
            if ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        unreachable!("every whole millisecond count is divisible by 1")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(Dur::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Dur::parse("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(Dur::parse("15m").unwrap().0, Duration::from_secs(900));
        assert_eq!(Dur::parse("2h").unwrap().0, Duration::from_secs(7200));
        assert_eq!(Dur::parse("7d").unwrap().0, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn rejects_bad_spellings_with_a_clear_message() {
        for bad in [
            "",
            "s",
            "10",
            "10 s",
            "1.5s",
            "-1s",
            "10sec",
            "10S",
            "99999999999999999999d",
        ] {
            let err = Dur::parse(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn prints_the_canonical_spelling() {
        assert_eq!(Dur::parse("900s").unwrap().to_string(), "15m");
        assert_eq!(Dur::parse("1500ms").unwrap().to_string(), "1500ms");
        assert_eq!(Dur::parse("0ms").unwrap().to_string(), "0s");
        assert_eq!(Dur::parse("86400s").unwrap().to_string(), "1d");
    }
}
