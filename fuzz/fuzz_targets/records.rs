//! Records read back from Redis (or the embedded store), which a backend may write directly:
//! session records, invalidation messages and IP-authorization tickets.
//!
//! Invariants: a decoded session record is valid, round-trips through `encode`, and becomes
//! header-ready (`Session::new`) with header values that carry no CR/LF; a parsed invalidation
//! round-trips through its payload; a live ticket is version 1 and not expired.
#![no_main]

use fluxgate::credential::Sid;
use fluxgate::session::invalidation::Invalidation;
use fluxgate::session::locations::Ticket;
use fluxgate::session::{Session, SessionRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, i64, &[u8])| {
    let (which, now, bytes) = input;
    match which % 3 {
        0 => {
            let Ok(rec) = SessionRecord::decode(bytes) else {
                return;
            };
            rec.validate().expect("a decoded record is valid");
            assert_eq!(SessionRecord::decode(&rec.encode()).as_ref(), Ok(&rec));
            let s = Session::new(Sid::of("flx_fuzz"), rec.clone())
                .expect("a decoded record becomes a session");
            assert_eq!(s.user_id(), rec.user_id);
            for v in [
                Some(s.user_header()),
                s.client_id_header().cloned(),
                s.scopes_header().cloned(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(!v.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'));
            }
        }
        1 => {
            if let Some(inv) = Invalidation::parse(bytes) {
                assert_eq!(Invalidation::parse(inv.payload().as_bytes()), Some(inv));
            }
        }
        _ => {
            if let Some(t) = Ticket::decode_live(bytes, now) {
                assert!(t.v == 1 && t.expires_at > now);
                assert_eq!(Ticket::decode_live(&t.encode(), now), Some(t));
            }
        }
    }
});
