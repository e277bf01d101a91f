use super::*;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// The head at the front of `raw` and how many bytes it took.
fn head(raw: &str) -> (Head, usize) {
    let mut buf = BytesMut::from(raw.as_bytes());
    match parse(&mut buf) {
        Parsed::Head(h) => (h, raw.len() - buf.len()),
        _ => panic!("not a head: {raw:?}"),
    }
}

fn parse_bytes(raw: &[u8]) -> Parsed {
    parse(&mut BytesMut::from(raw))
}

#[test]
fn a_keep_alive_head_is_read_with_its_headers_in_order() {
    let raw = "GET /_auth HTTP/1.1\r\nHost: a\r\nX-Original-URI: /x\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";
    let (h, n) = head(raw);
    assert_eq!(n, raw.len());
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.target, "/_auth");
    assert!(!h.close);
    let fields: Vec<(&str, &str)> = h
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("host", "a"),
            ("x-original-uri", "/x"),
            ("cookie", "a=1"),
            ("cookie", "b=2")
        ]
    );
}

#[test]
fn pipelined_heads_are_read_one_at_a_time() {
    let raw = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    let (first, n) = head(raw);
    assert_eq!(first.target, "/a");
    let (second, m) = head(&raw[n..]);
    assert_eq!(second.target, "/b");
    assert_eq!(n + m, raw.len());
}

#[test]
fn shared_values_read_as_copies_would_across_pipelined_heads() {
    // One connection's buffer: names in any case, and values that stay whole after the next
    // head is taken off the buffer.
    let mut raw = String::new();
    for i in 0..20 {
        raw += &format!(
            "GET /{i} HTTP/1.1\r\nX-Original-URI: /u{i}\r\nx-ORIGINAL-uri: /v{i}\r\nX-Extra-{i}: e{i}\r\nCookie: c={i}\r\n\r\n"
        );
    }
    let mut buf = BytesMut::from(raw.as_bytes());
    let read_into = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let mut heads = Vec::new();
    while let Parsed::Head(h) = parse(&mut buf) {
        heads.push(h);
    }
    assert!(buf.is_empty());
    assert_eq!(heads.len(), 20);
    for (i, h) in heads.iter().enumerate() {
        assert_eq!(h.target, format!("/{i}"));
        let fields: Vec<(String, String)> = h
            .fields
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let want = [
            ("x-original-uri".to_owned(), format!("/u{i}")),
            ("x-original-uri".to_owned(), format!("/v{i}")),
            (format!("x-extra-{i}"), format!("e{i}")),
            ("cookie".to_owned(), format!("c={i}")),
        ];
        assert_eq!(fields, want);
        assert_eq!(h.fields[0].0, HeaderName::from_static("x-original-uri"));
        // Shared, not copied: every value lies in the bytes the head was read into.
        for (_, v) in &h.fields {
            assert!(read_into.contains(&(v.as_bytes().as_ptr() as usize)));
        }
    }
}

#[test]
fn empty_and_padded_values_are_read_as_they_are_meant() {
    let (h, _) = head("GET / HTTP/1.1\r\nX-A:\r\nX-B: \r\nX-C:  v \t\r\nX-D:\t\r\n\r\n");
    let values: Vec<&[u8]> = h.fields.iter().map(|(_, v)| v.as_bytes()).collect();
    assert_eq!(values, [&b""[..], b"", b"v", b""]);
}

#[test]
fn a_value_a_header_value_may_not_hold_is_a_bad_head() {
    // DEL is not allowed in a header value (nor by httparse); obs-text is, as bytes.
    assert!(matches!(
        parse_bytes(b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n"),
        Parsed::Bad
    ));
    let (h, _) = head("GET / HTTP/1.1\r\nX-A: café\r\n\r\n");
    assert_eq!(h.fields[0].1.as_bytes(), "café".as_bytes());
}

#[test]
fn close_http_1_0_and_bodies_end_the_connection_after_the_answer() {
    assert!(
        head("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
            .0
            .close
    );
    assert!(head("GET / HTTP/1.0\r\n\r\n").0.close);
    assert!(
        !head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .0
            .close
    );
    // SECURITY: a body is never read, so it must never be parsed as the next request head.
    assert!(head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").0.close);
    assert!(
        head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .0
            .close
    );
    assert!(!head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0.close);
}

#[test]
fn a_smuggled_second_request_in_a_body_is_not_read_as_a_head() {
    let raw = "GET /_auth HTTP/1.1\r\nContent-Length: 37\r\n\r\nGET /_auth HTTP/1.1\r\nX-Original-URI: /admin\r\n\r\n";
    let (h, _) = head(raw);
    assert!(
        h.close,
        "the connection ends before the body could be taken for a head"
    );
}

#[test]
fn partial_bad_and_oversized_heads_are_told_apart() {
    assert!(matches!(
        parse_bytes(b"GET /a HTTP/1.1\r\nHost: a"),
        Parsed::Partial
    ));
    assert!(matches!(
        parse_bytes(b"GET /a HTTP/1.1\r\nHo st: a\r\n\r\n"),
        Parsed::Bad
    ));
    assert!(matches!(parse_bytes(b"\x16\x03\x01\x02\x00"), Parsed::Bad));
    let mut big = b"GET /a HTTP/1.1\r\nX-A: ".to_vec();
    big.resize(MAX_HEAD + 1, b'a');
    assert!(matches!(parse_bytes(&big), Parsed::TooLarge));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET /a HTTP/1.1\r\n{many}\r\n");
    assert!(matches!(parse_bytes(raw.as_bytes()), Parsed::TooLarge));
}

#[test]
fn an_answer_is_written_as_one_http_1_1_response() {
    let a = Answer {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        )],
        body: Bytes::from_static(b"{\"code\":1}"),
    };
    let mut out = Vec::new();
    let mut date = Date::default();
    encode(&a, false, false, &mut date, &mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 10\r\ndate: "), "{text}");
    assert!(text.ends_with(" GMT\r\n\r\n{\"code\":1}"), "{text}");
    let mut resp = [httparse::EMPTY_HEADER; 8];
    let mut r = httparse::Response::new(&mut resp);
    assert!(r.parse(&out).unwrap().is_complete());

    out.clear();
    encode(&a, true, true, &mut date, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("content-length: 10\r\n"), "{text}");
    assert!(
        text.ends_with("connection: close\r\n\r\n"),
        "a HEAD answer has no body: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_trickled_byte_by_byte_is_cut_off_at_its_deadline_from_the_first_byte() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let reader = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let started = tokio::time::Instant::now();
        let r = read_head(&mut server, &mut buf, &mut Timer::new()).await;
        (r.err(), started.elapsed())
    });
    // Slowloris: one byte every 3 s never finishes the head, and each byte must not restart
    // the clock.
    for b in b"GET /_auth HTTP/1.1\r\nX-Original-URI: /x" {
        if client.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        if reader.is_finished() {
            break;
        }
    }
    let (status, elapsed) = reader.await.unwrap();
    assert_eq!(status, Some(StatusCode::REQUEST_TIMEOUT));
    assert!(
        elapsed <= HEAD_TIMEOUT + Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_quietly_after_the_idle_timeout() {
    let (_client, mut server) = tokio::io::duplex(1024);
    let mut buf = BytesMut::new();
    let started = tokio::time::Instant::now();
    assert!(matches!(
        read_head(&mut server, &mut buf, &mut Timer::new()).await,
        Ok(None)
    ));
    assert_eq!(started.elapsed(), IDLE_TIMEOUT);
}
