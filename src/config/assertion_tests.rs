use crate::config::parse;
use crate::config::tests::errors;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/assertion/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn keys(alg: &str, entries: &[&str]) -> String {
    let mut s = format!("[identity]\nassertion_algorithm = \"{alg}\"\n");
    for e in entries {
        s += &format!("[[identity.assertion_keys]]\n{e}\n");
    }
    s
}

fn file(name: &str) -> String {
    format!("file = \"{}\"", fixture(name))
}

#[test]
fn unreadable_and_wrong_type_key_files_are_errors_naming_the_file_and_key() {
    let src = keys(
        "ES256",
        &[
            &format!("file = \"{}\"", fixture("missing.pem")),
            &file("ed25519-a.pem"),
            &file("sec1-p256.pem"),
            &file("README.md"),
        ],
    );
    let e = errors(&src).join("\n");
    for (n, name, why) in [
        (0, "missing.pem", "cannot read"),
        (1, "ed25519-a.pem", "is not a P-256"),
        (2, "sec1-p256.pem", "not a PKCS#8 private key"),
        (3, "README.md", "is not a PEM file"),
    ] {
        let line = e
            .lines()
            .find(|l| l.starts_with(&format!("identity.assertion_keys[{n}].file")))
            .unwrap_or_else(|| panic!("no error for key {n}:\n{e}"));
        assert!(line.contains(name) && line.contains(why), "{line}");
    }
    let ed = errors(&keys("EdDSA", &[&file("es256-a.pem")])).join("\n");
    assert!(ed.contains("es256-a.pem is not an Ed25519"), "{ed}");
}

#[test]
fn a_duplicate_kid_is_refused() {
    let a = file("es256-a.pem");
    let e = errors(&keys("ES256", &[&a, &a])).join("\n");
    assert!(
        e.contains("identity.assertion_keys[1].kid") && e.contains("kid of another key"),
        "{e}"
    );
    let named = [
        format!("{a}\nkid = \"k1\""),
        format!("{}\nkid = \"k1\"", file("es256-b.pem")),
    ];
    let e = errors(&keys("ES256", &[&named[0], &named[1]])).join("\n");
    assert!(e.contains("\"k1\" is the kid of another key"), "{e}");
}

#[test]
fn secret_and_keys_must_match_the_algorithm() {
    let e = errors(&keys("HS256", &[&file("es256-a.pem")])).join("\n");
    assert!(e.contains("identity.assertion_keys"), "{e}");
    let mut src = keys("EdDSA", &[&file("ed25519-a.pem")]);
    src = src.replace(
        "assertion_algorithm",
        "assertion_secret = { value = \"assertion-secret-0123456789abcdef\" }\nassertion_algorithm",
    );
    let e = errors(&src).join("\n");
    assert!(
        e.contains("identity.assertion_secret") && e.contains("HS256"),
        "{e}"
    );
    let e = errors(&keys("ES256", &[])).join("\n");
    assert!(
        e.contains("at least one [[identity.assertion_keys]]"),
        "{e}"
    );
    let e = errors(&keys("RS256", &[])).join("\n");
    assert!(e.contains("identity.assertion_algorithm"), "{e}");
}

#[test]
fn a_retired_key_needs_a_successor_signing_an_assertion_life_before() {
    // Retiring the only key would leave it signing unpublished: refused.
    let e = errors(&keys(
        "ES256",
        &[&format!(
            "{}\npublish_until = \"2026-01-01T00:00:00Z\"",
            file("es256-a.pem")
        )],
    ))
    .join("\n");
    assert!(
        e.contains("identity.assertion_keys[0].publish_until"),
        "{e}"
    );
    // A successor that takes over 30 s before, with a 60 s assertion life: still refused.
    let close = [
        format!(
            "{}\npublish_until = \"2026-01-01T00:00:30Z\"",
            file("es256-a.pem")
        ),
        format!(
            "{}\nsign_from = \"2026-01-01T00:00:00Z\"",
            file("es256-b.pem")
        ),
    ];
    let e = errors(&keys("ES256", &[&close[0], &close[1]])).join("\n");
    assert!(e.contains("assertion_ttl (60s)"), "{e}");
    let fine = [close[0].replace("00:00:30Z", "00:01:00Z"), close[1].clone()];
    parse(&keys("ES256", &[&fine[0], &fine[1]]), "t.toml").expect("overlap covers a life");
    let e = errors(&keys(
        "ES256",
        &[&format!(
            "{}\nsign_from = \"tomorrow\"",
            file("es256-a.pem")
        )],
    ))
    .join("\n");
    assert!(
        e.contains("identity.assertion_keys[0].sign_from") && e.contains("RFC 3339"),
        "{e}"
    );
}

#[test]
fn the_hs256_secret_keeps_working_unchanged() {
    let cfg = parse(
        "[identity]\nassertion_secret = { value = \"assertion-secret-0123456789abcdef\" }\n",
        "t.toml",
    )
    .expect("valid");
    let a = cfg.live.assertion.expect("an asserter");
    assert!(a.keys().is_none(), "HS256 publishes no keys");
}
