//! The identity headers fluxgate owns, written once. Config keys, default names, validation,
//! stripping, injection and the tests all read [`IdentityHeader::ALL`]; names are looked up by
//! variant, never by position, so two entries cannot be swapped by accident.

use http::HeaderName;
use std::ops::Index;

/// Writes the table: each variant with its `[identity]` config key and default header name.
macro_rules! identity_headers {
    ($( $(#[$doc:meta])* $variant:ident => $key:literal, $default:literal; )*) => {
        /// One identity header fluxgate sets upstream (contract §4).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum IdentityHeader { $( $(#[$doc])* $variant, )* }

        impl IdentityHeader {
            /// Every identity header, in the order of the table.
            pub const ALL: &'static [IdentityHeader] = &[$( IdentityHeader::$variant, )*];

            /// Its key in the `[identity]` section of the config file.
            pub const fn config_key(self) -> &'static str {
                match self { $( IdentityHeader::$variant => $key, )* }
            }

            /// Its name unless the operator renames it.
            pub const fn default_name(self) -> &'static str {
                match self { $( IdentityHeader::$variant => $default, )* }
            }
        }
    };
}

identity_headers! {
    /// `session`, `oauth2`, `bot`, `internal` or `anonymous`.
    AuthKind => "auth_kind_header", "X-Fluxgate-Auth-Kind";
    /// The user id (a Fluxer snowflake).
    UserId => "user_id_header", "X-Fluxgate-User-Id";
    /// The sid, `base64url(sha256(token))`.
    SessionId => "session_id_header", "X-Fluxgate-Session-Id";
    /// Space-separated OAuth2 scopes.
    Scopes => "scopes_header", "X-Fluxgate-Scopes";
    /// The OAuth2 client (application) the token was issued to, when known.
    ClientId => "client_id_header", "X-Fluxgate-Client-Id";
    /// The name of the internal secret that matched.
    Service => "service_header", "X-Fluxgate-Service";
    /// Unix seconds until which a valid sudo proof holds.
    SudoUntil => "sudo_until_header", "X-Fluxgate-Sudo-Until";
    /// The resolved client IP.
    ClientIp => "client_ip_header", "X-Fluxgate-Client-Ip";
    /// ISO country code from GeoIP.
    Country => "country_header", "X-Fluxgate-Country";
    /// Autonomous system number from GeoIP.
    Asn => "asn_header", "X-Fluxgate-Asn";
    /// A signed JWT of all of the above (when configured).
    Assertion => "assertion_header", "X-Fluxgate-Assertion";
}

/// How many identity headers there are.
pub const COUNT: usize = IdentityHeader::ALL.len();

impl IdentityHeader {
    fn index(self) -> usize {
        self as usize
    }
}

/// The configured name of every identity header (operators may rename them; `x-fluxgate-*`
/// stays reserved either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames([HeaderName; COUNT]);

impl HeaderNames {
    /// Builds the table from a name per header; `name` is asked once for each, by variant.
    pub fn from_fn(mut name: impl FnMut(IdentityHeader) -> HeaderName) -> HeaderNames {
        HeaderNames(std::array::from_fn(|i| name(IdentityHeader::ALL[i])))
    }

    /// The default names.
    pub fn defaults() -> HeaderNames {
        HeaderNames::from_fn(|h| {
            HeaderName::from_bytes(h.default_name().as_bytes())
                .expect("the default names are valid header names")
        })
    }

    /// Every configured name.
    pub fn all(&self) -> &[HeaderName; COUNT] {
        &self.0
    }
}

impl Index<IdentityHeader> for HeaderNames {
    type Output = HeaderName;
    fn index(&self, h: IdentityHeader) -> &HeaderName {
        &self.0[h.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_indexed_by_variant_not_position() {
        for (i, h) in IdentityHeader::ALL.iter().enumerate() {
            assert_eq!(h.index(), i, "{h:?} is out of order in ALL");
        }
        let names = HeaderNames::defaults();
        assert_eq!(names[IdentityHeader::UserId], "x-fluxgate-user-id");
        assert_eq!(names[IdentityHeader::SessionId], "x-fluxgate-session-id");
    }

    #[test]
    fn config_keys_and_default_names_are_unique() {
        for (i, a) in IdentityHeader::ALL.iter().enumerate() {
            for b in &IdentityHeader::ALL[..i] {
                assert_ne!(a.config_key(), b.config_key());
                assert!(!a.default_name().eq_ignore_ascii_case(b.default_name()));
            }
            assert!(
                a.default_name()
                    .to_ascii_lowercase()
                    .starts_with("x-fluxgate-")
            );
        }
    }
}
