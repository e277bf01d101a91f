//! Forward auth: the decision endpoint's head parser (src/forward_auth/serve.rs `parse`),
//! which hands each header value out as a slice of the buffer the head was read into.
//!
//! Invariants: the heads read from any bytes are exactly the heads httparse finds one after
//! another in those bytes, with the same names (lowercased) and the same value bytes, so the
//! slices never point at the wrong bytes or past the head; nothing panics.
#![no_main]

use fluxgate::fuzzing::forward_auth_heads;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (heads, _end) = forward_auth_heads(data);
    // The reference: httparse over the same bytes, each value copied.
    let mut at = 0;
    for head in &heads {
        let mut raw = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut raw);
        let Ok(httparse::Status::Complete(len)) = req.parse(&data[at..]) else {
            panic!("a head fluxgate read is not a whole head for httparse");
        };
        let want: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        assert_eq!(head, &want);
        at += len;
    }
});
