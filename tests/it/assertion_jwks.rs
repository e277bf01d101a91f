//! Asymmetric assertions through the real binary: an upstream receives an ES256 or EdDSA
//! assertion that verifies with the key fetched from `/.well-known/jwks.json` (with the Rust
//! example, `examples/verify_assertion.rs`, the PyJWT one, `examples/verify_assertion.py`, and
//! the Node/jose one, `examples/verify_assertion.mjs`),
//! the served set carries no private key material, and keys rotate by reload: a new key is
//! published before it signs, the old one stays published for the overlap.

use crate::common::*;
use crate::upstreams::wait_until;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use serde_json::json;

#[path = "../../examples/verify_assertion.rs"]
#[allow(dead_code, reason = "the example's main is for `cargo run --example`")]
mod verify_example;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/assertion/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `[identity]` signing with `alg` and the given `[[identity.assertion_keys]]` bodies.
fn identity(alg: &str, keys: &[String]) -> String {
    let mut s = format!("[identity]\nassertion_algorithm = \"{alg}\"\nassertion_ttl = \"30s\"\n");
    for k in keys {
        s += &format!("[[identity.assertion_keys]]\n{k}\n");
    }
    s
}

fn key(file: &str, kid: &str, extra: &str) -> String {
    format!("file = \"{}\"\nkid = \"{kid}\"\n{extra}", fixture(file))
}

/// The assertion the upstream got for an admitted request with a user's session.
fn assertion(fg: &Fluxgate, up: &Upstream) -> String {
    let (tok, _) = fg.create_session(json!({"user_id": "42", "kind": "session", "lifetime": "1h"}));
    let r = fg.send(&Req::get("/users/@me?x=1").header("authorization", &tok));
    assert_eq!(r.status, 200, "{}", r.text());
    let all = up.last().all("x-fluxgate-assertion");
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

fn jwks(fg: &Fluxgate) -> JwkSet {
    let r = fg.send(&Req::get("/.well-known/jwks.json"));
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect()
}

#[test]
fn es256_and_eddsa_assertions_verify_with_the_key_fetched_from_the_jwks() {
    for (alg, file) in [("ES256", "es256-a.pem"), ("EdDSA", "ed25519-a.pem")] {
        let up = Upstream::start();
        let fg = Fluxgate::start(up.addr, &identity(alg, &[key(file, "k1", "")]));
        let token = assertion(&fg, &up);
        let r = fg.send(&Req::get("/.well-known/jwks.json"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
        assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
        let set: JwkSet = serde_json::from_slice(&r.body).unwrap();
        // Answered by fluxgate itself: the upstream saw only the request above.
        assert_eq!(up.count(), 1, "the JWKS request was forwarded");
        let host = fg.proxy.to_string();
        let claims =
            verify_example::verify(&set, &token, &host).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims.sub.as_deref(), Some("42"));
        assert_eq!(claims.kind, "session");
        assert_eq!(claims.path, "/users/@me?x=1");
        assert_eq!(kid_of(&token), "k1");
        // The same set on the admin listener.
        let admin = get(fg.admin, "/.well-known/jwks.json").unwrap();
        assert_eq!(admin.status, 200);
        assert_eq!(admin.body, r.body);
        // The same kid from another deployment's key does not verify it.
        let foreign = if alg == "ES256" {
            "es256-b.pem"
        } else {
            "ed25519-b.pem"
        };
        let up2 = Upstream::start();
        let fg2 = Fluxgate::start(up2.addr, &identity(alg, &[key(foreign, "k1", "")]));
        let foreign_set = jwks(&fg2);
        assert!(verify_example::verify(&foreign_set, &token, &host).is_err());
    }
}

#[test]
fn the_jwks_cannot_reach_private_key_material() {
    // SECURITY: every served byte is read: no `d` member, and neither the private scalar (raw,
    // base64, base64url) nor any piece of the PEM file appears in the body.
    use base64::Engine;
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &identity(
            "ES256",
            &[
                key(
                    "es256-a.pem",
                    "a",
                    "publish_until = \"2099-01-01T00:00:00Z\"",
                ),
                key("es256-b.pem", "b", "sign_from = \"2020-01-01T00:00:00Z\""),
            ],
        ),
    );
    let ed_up = Upstream::start();
    let ed = Fluxgate::start(
        ed_up.addr,
        &identity("EdDSA", &[key("ed25519-a.pem", "e", "")]),
    );
    for (fg, files) in [
        (&fg, &["es256-a.pem", "es256-b.pem"][..]),
        (&ed, &["ed25519-a.pem"][..]),
    ] {
        let proxy = fg.send(&Req::get("/.well-known/jwks.json")).body;
        let admin = get(fg.admin, "/.well-known/jwks.json").unwrap().body;
        for body in [&proxy, &admin] {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            for k in v["keys"].as_array().unwrap() {
                assert!(k.get("d").is_none(), "{k}");
            }
            let text = String::from_utf8_lossy(body);
            for f in files {
                let pem = std::fs::read_to_string(fixture(f)).unwrap();
                let der = pem::parse(&pem).unwrap().into_contents();
                let d = private_scalar(&der);
                assert!(!body.windows(d.len()).any(|w| w == d), "raw scalar of {f}");
                for enc in [
                    base64::engine::general_purpose::STANDARD.encode(d),
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d),
                ] {
                    // Any 8-character run of the encoded scalar would be a leak.
                    for i in 0..enc.len() - 8 {
                        assert!(!text.contains(&enc[i..i + 8]), "{f}: {text}");
                    }
                }
                for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                    for i in 0..line.len().saturating_sub(12) {
                        assert!(!text.contains(&line[i..i + 12]), "{f}: {text}");
                    }
                }
            }
        }
    }
}

/// The private scalar inside a PKCS#8 P-256 or Ed25519 key.
fn private_scalar(der: &[u8]) -> &[u8] {
    if der.len() == 48 {
        // Ed25519: a 16-byte header, then the 32-byte seed.
        return &der[16..];
    }
    // P-256: the SEC1 ECPrivateKey inside has version 1, then OCTET STRING (32 bytes).
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("a SEC1 private key");
    &der[at + 5..at + 5 + 32]
}

#[test]
fn keys_rotate_by_reload_published_before_signing_and_kept_for_the_overlap() {
    let up = Upstream::start();
    let a = |extra: &str| key("es256-a.pem", "a", extra);
    let b = |extra: &str| key("es256-b.pem", "b", extra);
    let fg = Fluxgate::start(up.addr, &identity("ES256", &[a("")]));
    let base = std::fs::read_to_string(&fg.config_path).unwrap();
    let head = base.split("[identity]").next().unwrap().to_string();
    let mut reloads = 0.0;
    let reload = |keys: &[String], reloads: &mut f64| {
        std::fs::write(
            &fg.config_path,
            format!("{head}{}", identity("ES256", keys)),
        )
        .unwrap();
        fg.signal("HUP");
        *reloads += 1.0;
        let n = *reloads;
        wait_until(10, "the reload", || {
            fg.metric("fluxgate_config_reloads_total{result=\"success\",what=\"config\"}") == n
        });
    };
    assert_eq!(kids(&jwks(&fg)), ["a"]);
    assert_eq!(kid_of(&assertion(&fg, &up)), "a");

    // 1. The new key is published before it signs.
    reload(
        &[a(""), b("sign_from = \"2099-01-01T00:00:00Z\"")],
        &mut reloads,
    );
    assert_eq!(kids(&jwks(&fg)), ["a", "b"]);
    assert_eq!(kid_of(&assertion(&fg, &up)), "a");

    // 2. It signs; the old key stays published for the overlap.
    reload(
        &[
            a("publish_until = \"2099-01-01T00:00:00Z\""),
            b("sign_from = \"2020-01-01T00:00:00Z\""),
        ],
        &mut reloads,
    );
    let set = jwks(&fg);
    assert_eq!(kids(&set), ["a", "b"]);
    let token = assertion(&fg, &up);
    assert_eq!(kid_of(&token), "b");
    verify_example::verify(&set, &token, &fg.proxy.to_string()).unwrap();

    // 3. The overlap is over: the old key is no longer published.
    reload(
        &[
            a("publish_until = \"2020-06-01T00:00:00Z\""),
            b("sign_from = \"2020-01-01T00:00:00Z\""),
        ],
        &mut reloads,
    );
    assert_eq!(kids(&jwks(&fg)), ["b"]);
    assert_eq!(kid_of(&assertion(&fg, &up)), "b");

    // A reload with a broken key keeps the keys in use.
    std::fs::write(
        &fg.config_path,
        format!(
            "{head}{}",
            identity("ES256", &[key("missing.pem", "c", "")])
        ),
    )
    .unwrap();
    fg.signal("HUP");
    let log = fg.wait_log("configuration reload refused");
    assert!(log.contains("missing.pem"), "{log}");
    assert_eq!(kids(&jwks(&fg)), ["b"]);
}

#[test]
fn without_asymmetric_keys_the_jwks_path_is_an_ordinary_request() {
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        "[identity]\nassertion_secret = { value = \"assertion-secret-0123456789abcdef\" }\n\
         [[route]]\npath = \"/.well-known/jwks.json\"\nauth = \"none\"\n",
    );
    let r = fg.send(&Req::get("/.well-known/jwks.json"));
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1, "forwarded to the upstream");
    assert_eq!(get(fg.admin, "/.well-known/jwks.json").unwrap().status, 404);
}

/// Runs a verifying example (`program args… <jwks-url> <assertion> <host>`) against a live
/// fluxgate for each algorithm: it prints the claims of a real assertion, and exits 1 for an
/// assertion for another host and for a tampered one.
fn example_verifies_live_assertions(program: &str, args: &[&str], dir: &str) {
    for (alg, file) in [("ES256", "es256-a.pem"), ("EdDSA", "ed25519-a.pem")] {
        let up = Upstream::start();
        let fg = Fluxgate::start(up.addr, &identity(alg, &[key(file, "ex", "")]));
        let token = assertion(&fg, &up);
        let url = format!("http://{}/.well-known/jwks.json", fg.proxy);
        let host = fg.proxy.to_string();
        let run = |token: &str, host: &str| {
            std::process::Command::new(program)
                .args(args)
                .args([&url, token, host])
                .current_dir(dir)
                .output()
                .unwrap()
        };
        let out = run(&token, &host);
        assert!(
            out.status.success(),
            "{program} {alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["iss"], "fluxgate");
        assert_eq!(claims["path"], "/users/@me?x=1");
        // The script refuses an assertion for another host, and a tampered one: a changed
        // signature, and a changed claim under the original signature.
        assert_eq!(run(&token, "other.example").status.code(), Some(1));
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert_eq!(run(&forged, &host).status.code(), Some(1));
        let parts: Vec<&str> = token.split('.').collect();
        let claims = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap()
        .replace("\"sub\":\"42\"", "\"sub\":\"1\"");
        assert!(claims.contains("\"sub\":\"1\""), "{claims}");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims),
            parts[2]
        );
        let out = run(&forged, &host);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{program} {alg} took a changed sub: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_pyjwt_example_verifies_an_assertion_from_a_live_fluxgate() {
    let has_pyjwt = std::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_pyjwt,
        "python3 with PyJWT and cryptography is needed: scripts/prereqs test installs them"
    );
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    example_verifies_live_assertions("python3", &["verify_assertion.py"], examples);
}

#[test]
fn the_node_jose_example_verifies_an_assertion_from_a_live_fluxgate() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    // Without arguments the script prints its usage and exits 2, once node has found jose
    // (in examples/node_modules, which `scripts/prereqs test` installs from the lockfile).
    let ready = std::process::Command::new("node")
        .arg("verify_assertion.mjs")
        .current_dir(examples)
        .output()
        .is_ok_and(|o| o.status.code() == Some(2));
    if !ready {
        let required = std::env::var("CI").as_deref() == Ok("true")
            || std::env::var("FLUXGATE_REQUIRE_NODE").as_deref() == Ok("1");
        assert!(
            !required,
            "node with jose is needed under CI: scripts/prereqs test installs jose into \
             examples/node_modules (`npm ci --prefix examples`)"
        );
        eprintln!(
            "SKIPPED: node or jose is missing (scripts/prereqs test; CI=true or \
             FLUXGATE_REQUIRE_NODE=1 fails instead)"
        );
        return;
    }
    example_verifies_live_assertions("node", &["verify_assertion.mjs"], examples);
}

#[test]
fn the_forward_auth_endpoint_never_admits_a_jwks_request_upstream() {
    // The proxy answers the JWKS itself; an edge asking the decision endpoint would forward the
    // request upstream past the route's rules, so it is refused there.
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "[forward_auth]\nlisten = \"127.0.0.1:0\"\n{}",
            identity("ES256", &[key("es256-a.pem", "a", "")])
        ),
    );
    let r = Req::get("/")
        .header("X-Original-Method", "GET")
        .header("X-Original-URI", "/.well-known/jwks.json")
        .send(fg.forward_auth.unwrap());
    r.denial(403, "FORBIDDEN");
    assert_eq!(up.count(), 0);
}

#[test]
fn a_generated_key_is_written_0600_at_first_start_and_kept_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let pem = dir.path().join("assertion.pem");
    let up = Upstream::start();
    let extra = format!(
        "[identity]\nassertion_algorithm = \"EdDSA\"\n[[identity.assertion_keys]]\nfile = \"{}\"\ngenerate = true\n",
        pem.display()
    );
    let cfg = base_config(dir.path(), up.addr, &extra);
    // check-config checks it with a throwaway key and writes nothing.
    std::fs::write(dir.path().join("check.toml"), &cfg).unwrap();
    let check = std::process::Command::new(bin())
        .arg("check-config")
        .arg(dir.path().join("check.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!pem.exists(), "check-config wrote the key");

    let fg = Fluxgate::start_with(dir.clone(), &cfg);
    fg.wait_log("generated a new assertion key");
    let mode = std::fs::metadata(&pem).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let first = kids(&jwks(&fg));
    assert_eq!(first.len(), 1);
    let token = assertion(&fg, &up);
    verify_example::verify(&jwks(&fg), &token, &fg.proxy.to_string()).unwrap();
    let dir = fg.stop();
    let fg = Fluxgate::start_with(dir, &cfg);
    assert_eq!(kids(&jwks(&fg)), first, "the key was replaced on restart");
}

#[test]
fn a_jwks_request_never_reaches_the_upstream_even_with_a_route_for_its_path() {
    // SECURITY: while fluxgate publishes keys there, the path is fluxgate's: a route cannot send
    // it upstream (where an upstream's own file could shadow the keys). Other methods are
    // ordinary requests.
    let up = Upstream::start();
    let fg = Fluxgate::start(
        up.addr,
        &format!(
            "[[route]]\npath = \"/.well-known/*\"\nauth = \"none\"\n{}",
            identity("ES256", &[key("es256-a.pem", "a", "")])
        ),
    );
    for target in ["/.well-known/jwks.json", "/.well-known/jwks.json?refresh=1"] {
        let r = fg.send(&Req::get(target));
        assert_eq!(r.status, 200);
        assert_eq!(kids(&serde_json::from_slice(&r.body).unwrap()), ["a"]);
        let head = fg.send(&Req::new("HEAD", target));
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    assert_eq!(up.count(), 0, "a JWKS request was forwarded");
    assert_eq!(
        fg.send(&Req::new("POST", "/.well-known/jwks.json")).status,
        200
    );
    assert_eq!(up.count(), 1, "other methods follow the routes");
}
