use super::*;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header by hand: version/command byte, family/protocol byte, the address block (and
/// TLVs) as given, and the length the header announces.
fn v2(ver_cmd: u8, fam: u8, block: &[u8], announced: u16) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend([ver_cmd, fam]);
    h.extend(announced.to_be_bytes());
    h.extend(block);
    h
}

fn v4_block() -> Vec<u8> {
    let mut b = vec![198, 51, 100, 7, 10, 0, 0, 1];
    b.extend(4711u16.to_be_bytes());
    b.extend(443u16.to_be_bytes());
    b
}

fn v6_block() -> Vec<u8> {
    let mut b = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    b.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    b.extend(4711u16.to_be_bytes());
    b.extend(443u16.to_be_bytes());
    b
}

fn header(len: usize, source: &str) -> Result<Parsed, Malformed> {
    Ok(Parsed::Header {
        len,
        source: Some(source.parse().unwrap()),
    })
}

fn keeps_peer(len: usize) -> Result<Parsed, Malformed> {
    Ok(Parsed::Header { len, source: None })
}

#[test]
fn v1_tcp4_and_tcp6_name_the_client_and_leave_what_follows() {
    let h = b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\r\n";
    let mut with_http = h.to_vec();
    with_http.extend(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(parse(&with_http), header(h.len(), "198.51.100.7:4711"));
    let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n";
    assert_eq!(parse(h6), header(h6.len(), "[2001:db8::7]:4711"));
}

#[test]
fn v2_ipv4_and_ipv6_name_the_client() {
    let h = v2(0x21, 0x11, &v4_block(), 12);
    assert_eq!(parse(&h), header(28, "198.51.100.7:4711"));
    let h = v2(0x21, 0x21, &v6_block(), 36);
    assert_eq!(parse(&h), header(52, "[2001:db8::7]:4711"));
    // Well-formed TLVs (here a NOOP of 3 bytes) are part of the header.
    let mut block = v4_block();
    block.extend([0x04, 0, 3, 0, 0, 0]);
    let mut h = v2(0x21, 0x11, &block, 18);
    h.extend(b"GET /");
    assert_eq!(parse(&h), header(34, "198.51.100.7:4711"));
}

#[test]
fn ipv4_mapped_sources_are_folded_to_ipv4() {
    let h = b"PROXY TCP6 ::ffff:198.51.100.7 ::1 4711 443\r\n";
    assert_eq!(parse(h), header(h.len(), "198.51.100.7:4711"));
}

#[test]
fn a_header_split_over_several_segments_is_incomplete_until_whole() {
    for whole in [
        b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\r\n".to_vec(),
        v2(0x21, 0x11, &v4_block(), 12),
    ] {
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
        }
        assert!(matches!(parse(&whole), Ok(Parsed::Header { .. })));
    }
}

#[test]
fn local_unknown_unspec_unix_and_udp_never_set_the_client_ip() {
    // v2 LOCAL (the balancer's health check), even with addresses.
    assert_eq!(parse(&v2(0x20, 0x11, &v4_block(), 12)), keeps_peer(28));
    assert_eq!(parse(&v2(0x20, 0x00, &[], 0)), keeps_peer(16));
    // PROXY with an unspecified family or protocol, a Unix socket, or UDP.
    assert_eq!(parse(&v2(0x21, 0x00, &[], 0)), keeps_peer(16));
    assert_eq!(parse(&v2(0x21, 0x10, &v4_block(), 12)), keeps_peer(28));
    assert_eq!(parse(&v2(0x21, 0x31, &[0; 216], 216)), keeps_peer(232));
    assert_eq!(parse(&v2(0x21, 0x12, &v4_block(), 12)), keeps_peer(28));
    // v1 UNKNOWN.
    let h = b"PROXY UNKNOWN\r\n";
    assert_eq!(parse(h), keeps_peer(h.len()));
}

#[test]
fn a_header_that_lies_about_its_family_is_refused() {
    // v1: the family says IPv4, the addresses are IPv6, and the other way round.
    assert_eq!(
        parse(b"PROXY TCP4 2001:db8::7 2001:db8::1 4711 443\r\n"),
        Err(Malformed::V1)
    );
    assert_eq!(
        parse(b"PROXY TCP6 198.51.100.7 10.0.0.1 4711 443\r\n"),
        Err(Malformed::V1)
    );
    // v2: IPv6 announced, an IPv4-sized block given.
    assert_eq!(parse(&v2(0x21, 0x21, &v4_block(), 12)), Err(Malformed::V2));
    // v2: IPv4 announced, an IPv6-sized block given (the rest does not read as TLVs).
    assert_eq!(
        parse(&v2(0x21, 0x11, &v6_block(), 36)),
        Err(Malformed::Tlvs)
    );
}

#[test]
fn truncated_and_garbage_headers_are_refused() {
    // Shorter than its family's addresses.
    assert_eq!(
        parse(&v2(0x21, 0x11, &v4_block()[..6], 6)),
        Err(Malformed::V2)
    );
    // Bad version, command, family.
    assert_eq!(parse(&v2(0x11, 0x11, &v4_block(), 12)), Err(Malformed::V2));
    assert_eq!(parse(&v2(0x2f, 0x11, &v4_block(), 12)), Err(Malformed::V2));
    assert_eq!(parse(&v2(0x21, 0x41, &v4_block(), 12)), Err(Malformed::V2));
    // A TLV that runs past the end of the header.
    let mut block = v4_block();
    block.extend([0x04, 0, 9, 0]);
    assert_eq!(parse(&v2(0x21, 0x11, &block, 16)), Err(Malformed::Tlvs));
    // v1 garbage.
    for bad in [
        &b"PROXY TCP4 198.51.100.7 10.0.0.1 4711\r\n"[..],
        b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 443 extra\r\n",
        b"PROXY TCP4 198.51.100.777 10.0.0.1 4711 443\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 99999 443\r\n",
        b"PROXY SCTP 198.51.100.7 10.0.0.1 4711 443\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\n\r",
        b"PROXY \xff\xfe\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    // Not a PROXY header at all: a plain HTTP request.
    assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(Malformed::NotProxy));
}

#[test]
fn headers_past_the_size_bound_are_refused_before_they_are_read() {
    // v1 without an end of line, past its 107 bytes.
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
    assert_eq!(parse(&long[..100]), Ok(Parsed::Incomplete));
    assert_eq!(parse(&long), Err(Malformed::V1));
    // v2 announcing more than MAX_HEADER: refused on its first 16 bytes.
    assert_eq!(parse(&v2(0x21, 0x11, &[], 60_000)), Err(Malformed::TooLong));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap stand-in for the fuzz target: every prefix of a few odd inputs.
    let mut odd = v2(0x21, 0x21, &v6_block(), 36);
    odd.extend(b"PROXY TCP4 \r\n\0\xff");
    for n in 0..odd.len() {
        let _ = parse(&odd[..n]);
        let _ = parse(&odd[n..]);
    }
}
