//! Credentials: what a client presents and how it becomes a session id.
//!
//! This room parses the `Authorization` header and the session cookie in the contract's order
//! (§1) and turns a token into its `sid`. It never looks anything up: resolving a sid is the
//! session room's job.

mod parse;
mod sid;
mod token;

pub use parse::{Extracted, Malformed, extract, extract_internal, session_cookie_candidates};
pub use sid::Sid;
pub use token::{generate, is_bot_token, is_oauth2_token, is_session_token};

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of credential a session record or a presented token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Session,
    Oauth2,
    Bot,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Session, Kind::Oauth2, Kind::Bot];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Oauth2 => "oauth2",
            Kind::Bot => "bot",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest credential accepted anywhere (contract §1).
pub const MAX_CREDENTIAL_LEN: usize = 512;

/// At most this many `fluxer_session` cookies are considered (contract §1).
pub const MAX_COOKIE_CANDIDATES: usize = 3;
