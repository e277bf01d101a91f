//! `fluxgate check-config` and `fluxgate run` against the shipped example and each invalid
//! fixture: the right exit code and a message naming the key and its line.

use std::path::Path;
use std::process::Command;

pub(super) fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(crate::common::bin())
        .arg("check-config")
        .arg(path)
        .env("FLUXGATE_GATEWAY_SECRET", "gateway-secret-0123456789")
        .env("FLUXGATE_ADMIN_SECRET", "admin-secret-0123456789")
        .env("FLUXGATE_SUDO_SECRET", "sudo-secret-0123456789")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

#[test]
fn the_example_config_is_valid_and_prints_normalized_without_secrets() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let (code, out, err) = check(&example);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[server]"), "{out}");
    assert!(!out.contains("gateway-secret-0123456789"));
    assert!(!out.contains("admin-secret-0123456789"));
}

/// Every key the config understands (as printed by the normalized default and example
/// configs) is explained in config.toml.example.
#[test]
fn the_example_config_explains_every_key() {
    let example_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let example = std::fs::read_to_string(&example_path).unwrap();
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for path in [empty.path(), example_path.as_path()] {
        let (code, out, err) = check(path);
        assert_eq!(code, 0, "{err}");
        let v: toml::Value = toml::from_str(&out).unwrap();
        collect(&v, &mut keys);
    }
    assert!(keys.len() > 40, "suspiciously few keys: {keys:?}");
    let mut missing = Vec::new();
    for k in &keys {
        let set = example
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{k} =")));
        let explained = example.lines().any(|l| {
            l.trim_start().starts_with('#') && l.split_whitespace().nth(1) == Some(k.as_str())
        });
        let inline_or_header = example.contains(&format!("{{ {k} = "))
            || example.contains(&format!("[[{k}]]"))
            || example.contains(&format!(".{k}]]"));
        if !(set || explained || inline_or_header) {
            missing.push(k.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "config.toml.example does not explain: {missing:?}"
    );
}

fn collect(v: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                if !matches!(v, toml::Value::Table(_)) && !is_table_array(v) {
                    out.insert(k.clone());
                }
                collect(v, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}

fn is_table_array(v: &toml::Value) -> bool {
    matches!(v, toml::Value::Array(a) if a.iter().any(|x| matches!(x, toml::Value::Table(_))))
}

#[test]
fn each_invalid_fixture_is_refused_with_its_message() {
    let cases: &[(&str, &[&str])] = &[
        (
            "unknown_keys.toml",
            &[
                "server.listn (line 2, column 1): unknown key",
                "sessions.cache_tll (line 5, column 1): unknown key",
            ],
        ),
        (
            "bad_duration.toml",
            &["sessions.cache_ttl (line 2, column 13): invalid duration \"thirty seconds\""],
        ),
        (
            "bad_route.toml",
            &[
                "route[0].path (line 2, column 8): path pattern \"users/@me\" must start with '/'",
                "route[0].auth (line 3, column 8): unknown auth mode \"maybe\"",
            ],
        ),
        (
            "internal_without_secret.toml",
            &[
                "route[0].auth (line 3, column 8): \"internal\" needs at least one [[internal_secrets]] entry",
            ],
        ),
        (
            "short_secret.toml",
            &["internal_secrets[0].secret (line 3, column 10): secret is too short"],
        ),
        (
            "bad_cidr.toml",
            &[
                "client_ip.trusted_proxies[1] (line 2, column 34): \"not-a-network\" is not an IP address or CIDR block",
            ],
        ),
        ("syntax_error.toml", &["(line 1, column"]),
        (
            "wrong_type.toml",
            &["server.threads (line 2, column 11): invalid type: string \"many\""],
        ),
        (
            "unknown_store.toml",
            &["sessions.store (line 2, column 9): unknown store \"postgres\""],
        ),
        (
            "missing_env_secret.toml",
            &[
                "admin.secret (line 2, column 10): environment variable FLUXGATE_TEST_VARIABLE_THAT_IS_NOT_SET is not set",
            ],
        ),
    ];
    for (file, expected) in cases {
        let (code, out, err) = check(&fixture(file));
        assert_eq!(code, 64, "{file}: exit {code}\n{out}{err}");
        assert!(out.is_empty(), "{file}: printed a config despite errors");
        for e in *expected {
            assert!(err.contains(e), "{file}: expected {e:?} in:\n{err}");
        }
    }
}

#[test]
fn run_refuses_to_start_with_an_invalid_config_and_says_why() {
    let out = Command::new(crate::common::bin())
        .args(["run", "--config"])
        .arg(fixture("bad_route.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown auth mode"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
}

#[test]
fn run_with_a_missing_file_says_so() {
    let out = Command::new(crate::common::bin())
        .args(["run", "--config", "/nonexistent/fluxgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn a_busy_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[admin]\nlisten = \"{}\"\n[sessions.embedded]\npath = \"{}/s.redb\"\n",
        taken.local_addr().unwrap(),
        dir.path().display()
    );
    let p = dir.path().join("c.toml");
    std::fs::write(&p, cfg).unwrap();
    let out = Command::new(crate::common::bin())
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[test]
fn the_shipped_placeholder_secrets_are_refused_at_start() {
    // The kind of value an example Secret ships, left in place by someone who forgot to replace it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[admin]\nlisten = \"127.0.0.1:0\"\nsecret = { value = \"REPLACE-with-output-of-openssl-rand-hex-32\" }\n",
    )
    .unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("admin.secret"), "{err}");
    assert!(err.contains("placeholder"), "{err}");
}
