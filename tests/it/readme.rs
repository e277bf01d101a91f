//! The README's commands cannot rot: the configuration walk-through is started exactly as
//! written (its TOML, then its commands in order, with only the addresses and the store path
//! moved to this test's own), and every command line in the README's shell blocks is one a
//! test runs.

use crate::common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The first ```` ```lang ```` block of `section` (after its `## ` heading) in `text`.
fn block<'a>(text: &'a str, section: &str, lang: &str) -> &'a str {
    text.split(&format!("\n## {section}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no `## {section}`"))
        .split(&format!("```{lang}\n"))
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no ```{lang} block in `## {section}`"))
}

/// Every command line of the README's ```` ```sh ```` blocks, comments and blank lines left out.
fn sh_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in text.split("```sh\n").skip(1) {
        for line in b.split("```").next().unwrap().lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                out.push(line.to_string());
            }
        }
    }
    out
}

/// `line` without its trailing `# comment`, split as a POSIX shell splits words in single or
/// double quotes (all the README uses).
fn words(line: &str) -> (Vec<String>, String) {
    let (mut words, mut cur, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    let mut comment = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') if !in_word => {
                comment = chars.collect::<String>().trim().to_string();
                break;
            }
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => (cur.push(c), in_word = true).1,
        }
    }
    if in_word {
        words.push(cur);
    }
    (words, comment)
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let text = readme();
    let toml = block(&text, "Configuration walk-through", "toml");
    let commands = block(&text, "Configuration walk-through", "sh");
    let up = Upstream::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (proxy, admin) = (free_port(), free_port());
    // Only what this test must change: its own ports, its upstream, its store file.
    let moved = [
        ("0.0.0.0:8080", format!("127.0.0.1:{proxy}")),
        ("127.0.0.1:9090", format!("127.0.0.1:{admin}")),
        ("127.0.0.1:3000", up.addr.to_string()),
        (
            "/var/lib/fluxgate/sessions.redb",
            dir.path().join("sessions.redb").display().to_string(),
        ),
    ];
    let mut cfg = toml.to_string();
    for (from, to) in &moved {
        assert!(cfg.contains(from), "the walk-through no longer has {from}");
        cfg = cfg.replace(from, to);
    }
    let path = dir.path().join("fluxgate.toml");
    std::fs::write(&path, &cfg).unwrap();
    let fluxgate = |args: &[String]| {
        let mut c = Command::new(bin());
        c.args(args).current_dir(dir.path());
        c
    };
    let mut env_secret = None;
    let mut token = None;
    let mut running: Option<std::process::Child> = None;
    let mut ran = Vec::new();
    for line in commands.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (w, comment) = words(line);
        let args: Vec<String> = w.iter().skip(1).cloned().collect();
        match w[0].as_str() {
            "export" => {
                let (name, value) = w[1].split_once('=').unwrap();
                assert_eq!(name, "FLUXGATE_ADMIN_SECRET");
                assert_eq!(value, "$(openssl rand -hex 24)");
                // What `openssl rand -hex 24` prints: 48 hex digits.
                env_secret = Some(format!(
                    "{:016x}{:032x}",
                    fastrand::u64(..),
                    fastrand::u128(..)
                ));
            }
            "fluxgate" if args[0] == "run" => {
                let mut child = fluxgate(&args)
                    .env("FLUXGATE_ADMIN_SECRET", env_secret.as_ref().unwrap())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let first = first_line(&mut child);
                assert!(
                    first.contains(r#""event":"listening""#),
                    "`{line}` printed {first:?}"
                );
                running = Some(child);
            }
            "fluxgate" => {
                let out = fluxgate(&args)
                    .env("FLUXGATE_ADMIN_SECRET", env_secret.as_ref().unwrap())
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).to_string();
                let code = out.status.code();
                match args[0].as_str() {
                    "check-config" | "probe" => assert_eq!(
                        code,
                        Some(0),
                        "`{line}`: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                    "sessions" => {
                        assert_eq!(code, Some(0), "`{line}`: {stdout}");
                        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                        token = Some(v["token"].as_str().unwrap().to_string());
                    }
                    "explain" => {
                        // No credential: denied (exit 1), and it says which stage and why.
                        assert_eq!(code, Some(1), "`{line}`: {stdout}");
                        assert!(stdout.contains("UNAUTHORIZED"), "`{line}`: {stdout}");
                    }
                    other => panic!("the walk-through runs `fluxgate {other}`: teach this test"),
                }
            }
            "curl" => {
                let url = w.last().unwrap();
                let target = url
                    .strip_prefix("http://127.0.0.1:8080")
                    .unwrap_or_else(|| panic!("`{line}`: not the walk-through's listener"));
                let mut req = Req::get(target);
                if let Some(h) = w.iter().position(|a| a == "-H") {
                    let (name, value) = w[h + 1].split_once(": ").unwrap();
                    assert_eq!(value, "flx_…", "the README shows the token elided");
                    req = req.header(name, token.as_ref().expect("a session first"));
                }
                let before = up.count();
                let r = req.send(format!("127.0.0.1:{proxy}").parse().unwrap());
                let want: u16 = comment[..3]
                    .parse()
                    .expect("the comment starts with the status");
                assert_eq!(r.status, want, "`{line}`");
                if want == 200 {
                    assert_eq!(up.count(), before + 1);
                    let user = up.last().get("x-fluxgate-user-id");
                    assert_eq!(user.as_deref(), Some("123456789012345678"));
                } else {
                    r.denial(want, "UNAUTHORIZED");
                    assert_eq!(up.count(), before, "a denial is not forwarded");
                }
            }
            other => panic!("the walk-through runs `{other}`: teach this test"),
        }
        ran.push(line.to_string());
    }
    let mut child = running.expect("the walk-through starts fluxgate");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ran.len() >= 8, "ran {ran:#?}");
}

#[test]
fn every_command_in_the_readme_is_run_by_a_test() {
    let text = readme();
    let walkthrough = sh_lines(&format!(
        "```sh\n{}```",
        block(&text, "Configuration walk-through", "sh")
    ));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let mut unexplained = Vec::new();
    for line in sh_lines(&text) {
        let (w, _) = words(&line);
        let covered = if walkthrough.contains(&line) {
            // the_readme_walkthrough_runs_as_written, above.
            true
        } else {
            match w.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                // CI runs the suite through it (.ci/run), and the demo test runs what it runs.
                ["scripts/test"] => read(".ci/run").lines().any(|l| l.trim() == "scripts/test"),
                ["scripts/demo"] => {
                    read("scripts/demo").contains("demo")
                        && read("tests/it/demo_and_cli.rs").contains(r#".args(["demo""#)
                }
                // tests/it/deploy.rs renders and validates every overlay with this script.
                ["kubectl", "apply", "-k", dir] => {
                    root.join(dir).join("kustomization.yaml").exists()
                        && read("scripts/check-manifests").contains("overlays")
                        && read("tests/it/deploy.rs").contains("check-manifests")
                }
                _ => false,
            }
        };
        if !covered {
            unexplained.push(line);
        }
    }
    assert!(
        unexplained.is_empty(),
        "README commands no test runs (run them in a test, then list them here):\n  {}",
        unexplained.join("\n  ")
    );
}
