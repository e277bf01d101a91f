//! `allow_in_path` (on a route or `[routing.default]`) and `routing.case_insensitive_paths`:
//! what a route accepts for an upstream that reads paths leniently.

use super::locate::KeyPath;
use super::validate::{Errors, choice};
use crate::net::path::Quirks;

/// The spellings a route may allow, by the names the config uses.
const QUIRKS: &[(&str, Quirks)] = &[
    ("semicolons", Quirks::SEMICOLON),
    ("double_encoding", Quirks::DOUBLE_ENCODED),
    ("non_utf8", Quirks::NON_UTF8),
    ("encoded_controls", Quirks::ENCODED_CONTROL),
];

/// A route's `allow_in_path` list, as the quirks it allows.
pub(super) fn allow_in_path(list: &[String], path: &KeyPath, e: &mut Errors) -> Quirks {
    list.iter().enumerate().fold(Quirks::NONE, |acc, (i, s)| {
        let at = path.key("allow_in_path").index(i);
        match choice(s, "path spelling", QUIRKS, at, e) {
            Some(q) => acc.with(q),
            None => acc,
        }
    })
}
