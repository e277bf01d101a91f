//! Key paths (`route[2].path`) and where they are in the file (line and column), so every
//! config problem can point at its place.

use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
    /// Parses `a.b[0].c` (used by tests and for building paths from strings).
    pub fn parse(s: &str) -> Self {
        let mut out = Vec::new();
        for part in s.split('.') {
            let (name, rest) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                out.push(Seg::Key(name.to_string()));
            }
            for idx in rest.split('[') {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    out.push(Seg::Index(i));
                }
            }
        }
        KeyPath(out)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The parsed document with spans, for looking up where things are.
pub struct Located<'i> {
    src: &'i str,
    root: Option<Spanned<DeTable<'i>>>,
}

impl<'i> Located<'i> {
    pub fn new(src: &'i str) -> Self {
        Located {
            src,
            root: DeTable::parse(src).ok(),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Span of the key (`want_key`) or the value at `path`, if it is written in the file.
    /// For a missing path the nearest written ancestor is used.
    pub fn span(&self, path: &KeyPath, want_key: bool) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: Option<&DeTable> = Some(root.get_ref());
        let mut array: Option<&[Spanned<DeValue>]> = None;
        let mut best = None;
        for seg in &path.0 {
            let v = match seg {
                Seg::Key(k) => {
                    let Some((key, v)) =
                        table.and_then(|t| t.iter().find(|(key, _)| key.get_ref() == k))
                    else {
                        break;
                    };
                    best = Some(if want_key { key.span() } else { v.span() });
                    v
                }
                Seg::Index(i) => {
                    let Some(v) = array.and_then(|a| a.get(*i)) else {
                        break;
                    };
                    best = Some(v.span());
                    v
                }
            };
            table = None;
            array = None;
            match v.get_ref() {
                DeValue::Table(t) => table = Some(t),
                DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        best
    }

    /// The deepest key path whose key or value contains `offset`.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::root();
        if let Some(root) = self.root.as_ref() {
            table_path(root.get_ref(), offset, &mut path);
        }
        path
    }
}

/// Table and array spans do not always cover their bodies (a `[table]` header is its own
/// span), so the search walks every entry instead of descending by containment.
fn table_path(t: &DeTable<'_>, offset: usize, path: &mut KeyPath) -> bool {
    for (k, v) in t.iter() {
        path.0.push(Seg::Key(k.get_ref().to_string()));
        if value_path(v, offset, path) || k.span().contains(&offset) {
            return true;
        }
        path.0.pop();
    }
    false
}

fn value_path(v: &Spanned<DeValue<'_>>, offset: usize, path: &mut KeyPath) -> bool {
    match v.get_ref() {
        DeValue::Table(t) => table_path(t, offset, path),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.0.push(Seg::Index(i));
                if value_path(item, offset, path) {
                    return true;
                }
                path.0.pop();
            }
            v.span().contains(&offset)
        }
        _ => v.span().contains(&offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[server]\nthreads = 2\n\n[[route]]\npath = \"/a\"\n\n[[route]]\npath = \"/b\"\nauth = \"nope\"\n";

    #[test]
    fn key_paths_print_like_toml() {
        assert_eq!(KeyPath::parse("route[1].auth").to_string(), "route[1].auth");
        assert_eq!(
            KeyPath::root().key("route").index(1).key("auth"),
            KeyPath::parse("route[1].auth")
        );
    }

    #[test]
    fn finds_the_line_of_a_nested_value() {
        let l = Located::new(SRC);
        let span = l.span(&KeyPath::parse("route[1].auth"), false).unwrap();
        assert_eq!(l.line_col(span.start), (9, 8));
        let span = l.span(&KeyPath::parse("server.threads"), true).unwrap();
        assert_eq!(l.line_col(span.start), (2, 1));
    }

    #[test]
    fn finds_the_path_at_an_offset() {
        let l = Located::new(SRC);
        let off = SRC.find("\"nope\"").unwrap() + 1;
        assert_eq!(l.path_at(off).to_string(), "route[1].auth");
    }
}
