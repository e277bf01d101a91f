use super::*;

const TARGET: &[u8] = b"/users/42/reset/\xc3\xa9t\xc3\xa9?token=flx_secret-in-query";

fn line() -> AccessLine<'static> {
    static SID: Sid = Sid([7; 32]);
    AccessLine {
        request_id: "abc-123",
        method: "GET",
        route: "we\"ird\\name\n",
        route_template: Some("/users/:id/reset/*"),
        target: Some(TARGET),
        decision: "admitted",
        reason: "session",
        status: 200,
        latency_us: 749,
        upstream_us: Some(512),
        client_ip: "2001:db8::1".parse().unwrap(),
        user_id: Some("77"),
        sid: Some(&SID),
        bytes_in: 12,
        bytes_out: 3400,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

/// [`json`] at the present time.
fn json_now(b: &mut Vec<u8>, l: &AccessLine<'_>) {
    json(b, l, crate::clock::unix_now());
}

fn json_of(l: &AccessLine<'_>) -> (String, serde_json::Value) {
    let mut b = Vec::new();
    json(&mut b, l, crate::clock::unix_now());
    let s = String::from_utf8(b).unwrap();
    let v = serde_json::from_str(&s).unwrap();
    (s, v)
}

#[test]
fn json_lines_parse_and_carry_every_field() {
    let (s, v) = json_of(&line());
    assert!(s.ends_with('\n'));
    assert_eq!(s.matches('\n').count(), 1);
    assert_eq!(v["target"], "fluxgate::access");
    assert_eq!(v["level"], "INFO");
    let f = &v["fields"];
    assert_eq!(f["request_id"], "abc-123");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "we\"ird\\name\n");
    assert_eq!(f["route_template"], "/users/:id/reset/*");
    assert_eq!(f["path"], "/users/42/reset/été");
    assert_eq!(f["decision"], "admitted");
    assert_eq!(f["reason"], "session");
    assert_eq!(f["status"], 200);
    assert_eq!(f["latency_us"], 749);
    assert_eq!(f["upstream_us"], 512);
    assert_eq!(f["client_ip"], "2001:db8::1");
    assert_eq!(f["user_id"], "77");
    assert_eq!(f["sid_prefix"], &Sid([7; 32]).encode()[..8]);
    assert_eq!(f["bytes_in"], 12);
    assert_eq!(f["bytes_out"], 3400);
    assert_eq!(f["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let ts = v["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-11-29T07:17:51.578372Z".len());
}

#[test]
fn fields_that_do_not_apply_are_absent() {
    let mut l = line();
    (
        l.route_template,
        l.upstream_us,
        l.user_id,
        l.sid,
        l.trace_id,
    ) = (None, None, None, None, None);
    let (_, v) = json_of(&l);
    let f = v["fields"].as_object().unwrap();
    for k in [
        "route_template",
        "upstream_us",
        "user_id",
        "sid_prefix",
        "trace_id",
    ] {
        assert!(!f.contains_key(k), "{k} present: {f:?}");
    }
}

#[test]
fn a_token_in_the_query_string_never_reaches_the_log() {
    for format in [json_now as fn(&mut Vec<u8>, &AccessLine<'_>), logfmt] {
        let mut b = Vec::new();
        format(&mut b, &line());
        let s = String::from_utf8(b).unwrap();
        assert!(!s.contains("flx_secret-in-query"), "{s}");
        assert!(!s.contains("token="), "{s}");
    }
    assert_eq!(log_path(b"/a#frag?x=1"), "/a");
    assert_eq!(log_path(b"?only=query"), "");
}

#[test]
fn only_a_prefix_of_the_session_id_is_logged() {
    let sid = Sid::of("flx_some-session-token");
    let whole = sid.encode();
    let mut l = line();
    l.sid = Some(&sid);
    for format in [json_now as fn(&mut Vec<u8>, &AccessLine<'_>), logfmt] {
        let mut b = Vec::new();
        format(&mut b, &l);
        let s = String::from_utf8(b).unwrap();
        assert!(s.contains(&whole[..8]), "{s}");
        assert!(
            !s.contains(&whole[..9]),
            "more than 8 characters of the sid: {s}"
        );
        assert!(!s.contains("flx_some-session-token"));
    }
}

#[test]
fn long_paths_are_cut_at_a_character_boundary() {
    let mut t = vec![b'/'; 1];
    t.extend("é".repeat(300).as_bytes());
    let p = log_path(&t);
    assert!(
        p.len() <= PATH_MAX && p.len() >= PATH_MAX - 3,
        "{}",
        p.len()
    );
    assert!(p.ends_with('é'), "{p}");
    assert!(!p.contains('\u{fffd}'));
    assert_eq!(log_path(b"/ok/\xff\xfe").as_ref(), "/ok/\u{fffd}\u{fffd}");
    // Found by the property test: each invalid byte becomes 3 bytes of U+FFFD.
    let p = log_path(&[0xff; 300]);
    assert!(
        p.len() <= PATH_MAX && p.chars().all(|c| c == '\u{fffd}'),
        "{}",
        p.len()
    );
}

#[test]
fn logfmt_quotes_what_needs_quoting() {
    let mut b = Vec::new();
    logfmt(&mut b, &line());
    let b = String::from_utf8(b).unwrap();
    assert!(b.contains(" request_id=abc-123 "));
    assert!(b.contains(r#" route="we\"ird\\name\n" "#), "{b}");
    assert!(b.contains(" route_template=/users/:id/reset/* "), "{b}");
    assert!(
        b.contains(" path=/users/42/reset/été ") || b.contains(r#" path="/users/42/reset/été" "#),
        "{b}"
    );
    assert!(b.contains(" status=200 latency_us=749 upstream_us=512 client_ip=2001:db8::1 "));
    assert!(b.contains(" user_id=77 sid_prefix="), "{b}");
    assert!(b.contains(" bytes_in=12 bytes_out=3400 trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"));
    assert_eq!(b.matches('\n').count(), 1);
}

#[test]
fn dates_are_right_across_eras_and_leap_days() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
}

#[test]
fn a_client_cannot_write_a_rustls_warning_per_connection() {
    assert_eq!(filter_directives("info"), "info,rustls=error");
    assert_eq!(
        filter_directives("warn,fluxgate=debug"),
        "warn,fluxgate=debug,rustls=error"
    );
    // The operator's own choice for rustls wins.
    assert_eq!(filter_directives("info,rustls=warn"), "info,rustls=warn");
    for level in [
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "info,pingora=warn",
    ] {
        assert!(tracing_subscriber::EnvFilter::try_new(filter_directives(level)).is_ok());
    }
}
