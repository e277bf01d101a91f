//! Property tests (issue 19): whatever bytes a client puts in its method, path or headers,
//! the access log writes exactly one line, and in JSON that line parses and is byte for byte
//! what serde_json makes of the derived struct (the straightforward writer the hand-written
//! one replaced).

use super::{AccessLine, JsonLine, PATH_MAX, Timestamp, json, logfmt};
use crate::credential::Sid;
use proptest::prelude::*;

/// Any string, weighted toward what breaks hand-written formatters.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\\n\r\t\u{0}\u{1f}\u{7f}\u{2028}\u{2029}= a{}]{0,40}",
    ]
}

fn check(target: Option<&[u8]>, strs: &[String; 5], now: std::time::Duration, v4: bool) {
    let sid = Sid::of(&strs[4]);
    let l = AccessLine {
        request_id: &strs[0],
        method: &strs[1],
        route: &strs[2],
        route_template: Some(&strs[3]),
        target,
        decision: "denied",
        reason: "no_credential",
        status: 401,
        latency_us: 1,
        upstream_us: None,
        client_ip: if v4 {
            "192.0.2.1".parse().unwrap()
        } else {
            "2001:db8::7".parse().unwrap()
        },
        user_id: Some(&strs[4]),
        sid: Some(&sid),
        bytes_in: 0,
        bytes_out: 0,
        trace_id: Some(&strs[0]),
    };
    let mut b = Vec::new();
    json(&mut b, &l, now);
    let mut reference = serde_json::to_vec(&JsonLine {
        timestamp: Timestamp(now).to_string(),
        level: "INFO",
        fields: &l,
        target: "fluxgate::access",
    })
    .unwrap();
    reference.push(b'\n');
    assert_eq!(
        String::from_utf8_lossy(&b),
        String::from_utf8_lossy(&reference)
    );
    assert_eq!(b, reference);
    let s = std::str::from_utf8(&b).expect("a JSON line is UTF-8");
    assert_eq!(s.matches('\n').count(), 1, "one line: {s:?}");
    assert!(s.ends_with('\n') && !s.contains('\r'));
    let v: serde_json::Value = serde_json::from_str(s).expect("a JSON line parses");
    let f = &v["fields"];
    assert_eq!(f["method"].as_str(), Some(strs[1].as_str()));
    assert_eq!(f["user_id"].as_str(), Some(strs[4].as_str()));
    match target {
        Some(_) => {
            let path = f["path"].as_str().unwrap();
            assert!(path.len() <= PATH_MAX);
            assert!(!path.contains('?'));
        }
        None => assert!(f.get("path").is_none(), "{s}"),
    }

    let mut b = Vec::new();
    logfmt(&mut b, &l);
    let s = String::from_utf8_lossy(&b);
    assert_eq!(s.matches('\n').count(), 1, "one line: {s:?}");
    assert!(s.ends_with('\n') && !s.contains('\r'));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    #[test]
    fn any_request_bytes_give_exactly_one_valid_line(
        target in proptest::collection::vec(any::<u8>(), 0..600),
        strs in [nasty(), nasty(), nasty(), nasty(), nasty()],
        // Up to past the year 9999, where the digits are no longer written by hand.
        secs in 0u64..260_000_000_000,
        micros in 0u32..1_000_000,
        v4 in any::<bool>(),
        with_path in proptest::bool::weighted(0.9),
    ) {
        let now = std::time::Duration::new(secs, micros * 1000);
        check(with_path.then_some(&target[..]), &strs, now, v4);
    }
}
