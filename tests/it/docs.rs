//! The README against the code: its module map names every top-level entry of `src/` and
//! nothing else, and its request-path diagram lists the stages that `src/pipeline.rs` lists, in
//! the same order. Each failure says what to add or remove, and where.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The entries directly under `src/`: `name.rs` files and `name/` folders.
fn src_entries() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    std::fs::read_dir(&src)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect()
}

/// The entries the README's module map names: in the first code block after `## Development`,
/// the lines under `src/` that start with exactly two spaces, up to the first run of two spaces
/// ("  main.rs, cli.rs     command line" names `main.rs` and `cli.rs`). Continuation lines are
/// indented further and name nothing.
fn readme_module_map(readme: &str) -> BTreeSet<String> {
    let dev = readme
        .find("\n## Development\n")
        .expect("README.md has a `## Development` section");
    let block = readme[dev..]
        .split("```")
        .nth(1)
        .expect("the Development section has a code block");
    let mut lines = block.lines().skip_while(|l| l.trim_end() != "src/");
    assert!(
        lines.next().is_some(),
        "the Development code block has a `src/` line"
    );
    let mut names = BTreeSet::new();
    for line in lines.take_while(|l| l.starts_with(' ')) {
        let Some(entry) = line.strip_prefix("  ") else {
            continue;
        };
        if entry.starts_with(' ') {
            continue;
        }
        let first_column = entry.split("  ").next().unwrap_or_default();
        for name in first_column.split(',') {
            names.insert(name.trim().to_string());
        }
    }
    names
}

#[test]
fn the_readme_module_map_lists_exactly_the_entries_of_src() {
    let listed = readme_module_map(&read("README.md"));
    let actual = src_entries();
    assert!(
        actual.len() > 10,
        "suspiciously few entries in src/: {actual:?}"
    );
    let missing: Vec<_> = actual.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&actual).collect();
    let mut problems = Vec::new();
    for name in &missing {
        problems.push(format!(
            "add `{name}`: it is in src/ but not in the map (a line `  {name}   <what it owns>`)"
        ));
    }
    for name in &gone {
        problems.push(format!(
            "remove `{name}`: the map lists it but src/ has no such file or folder"
        ));
    }
    assert!(
        problems.is_empty(),
        "README.md, module map under `## Development` (src/ block):\n  {}",
        problems.join("\n  ")
    );
}

/// `(number, name)` of each stage in the `//!` doc of src/pipeline.rs: lines
/// `//! N. name — why`.
fn pipeline_stages(source: &str) -> Vec<(u32, String)> {
    source
        .lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
        .filter_map(|l| {
            let rest = l.strip_prefix("//!")?.trim_start();
            let (num, rest) = rest.split_once(". ")?;
            let num: u32 = num.parse().ok()?;
            let (name, _why) = rest.split_once(" — ")?;
            Some((num, name.trim().to_string()))
        })
        .collect()
}

/// `(number, name)` of each stage in the README's request-path diagram (the first code block):
/// lines `│ N name   description`, the name ending at the first run of two spaces.
fn readme_stages(readme: &str) -> Vec<(u32, String)> {
    let diagram = readme
        .split("```")
        .nth(1)
        .expect("README.md opens with the request-path diagram");
    diagram
        .lines()
        .filter_map(|l| {
            let rest = l.split_once('│')?.1.trim_start();
            let (num, rest) = rest.split_once(' ')?;
            let num: u32 = num.parse().ok()?;
            let name = rest.trim_start().split("  ").next()?;
            Some((num, name.trim().to_string()))
        })
        .collect()
}

fn show(stages: &[(u32, String)]) -> String {
    stages
        .iter()
        .map(|(n, s)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_readme_stage_diagram_matches_the_pipeline_module_doc() {
    let code = pipeline_stages(&read("src/pipeline.rs"));
    let readme = readme_stages(&read("README.md"));
    assert!(
        code.len() >= 5,
        "src/pipeline.rs: expected its module doc to number the stages as `//! N. name — why`, \
         found {code:?}"
    );
    let numbers: Vec<u32> = code.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u32> = (1..=code.len() as u32).collect();
    assert_eq!(
        numbers, expected,
        "src/pipeline.rs numbers its stages out of order"
    );
    let mut problems = Vec::new();
    for (n, name) in &code {
        match readme.iter().find(|(m, _)| m == n) {
            None => problems.push(format!("add stage `{n} {name}`")),
            Some((_, other)) if other != name => {
                problems.push(format!("stage {n}: rename `{other}` to `{name}`"))
            }
            Some(_) => {}
        }
    }
    for (n, name) in &readme {
        if !code.iter().any(|(m, _)| m == n) {
            problems.push(format!("remove stage `{n} {name}`"));
        }
    }
    if problems.is_empty() {
        // Same numbers and names; a repeated number would still differ here.
        assert_eq!(readme, code);
    }
    assert!(
        problems.is_empty(),
        "README.md, request-path diagram (the first code block, lines `│ N name   why`), \
         against src/pipeline.rs:\n  {}\nREADME has: {}\npipeline.rs has: {}",
        problems.join("\n  "),
        show(&readme),
        show(&code)
    );
}

#[test]
fn the_guides_fluxer_settings_pass_check_config() {
    let guide = read("docs/guide.md");
    let section = guide
        .split("## Fronting a Fluxer API")
        .nth(1)
        .expect("docs/guide.md has a `## Fronting a Fluxer API` section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a ```toml block in the Fluxer section");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxer.toml");
    // Only what a real deployment adds around it: where the store lives, the admin listener.
    let cfg = format!(
        "[sessions.embedded]\npath = \"{}/s.redb\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{block}",
        dir.path().display()
    );
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .arg("check-config")
        .arg(&path)
        .env(
            "FLUXER_SUDO_MODE_SECRET",
            "a-sudo-secret-of-32-characters-00",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the guide's Fluxer settings do not pass check-config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dockerfile_pins_the_toolchain_and_ships_the_tested_container_config() {
    let dockerfile = read("deploy/Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let pin = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("rust-toolchain.toml names a channel")
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_IMAGE=rust:{pin}-bookworm")),
        "deploy/Dockerfile must build with rust:{pin}-bookworm (rust-toolchain.toml)"
    );
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("org.opencontainers.image.version=\"{version}\"")),
        "the image's version label must be Cargo.toml's {version}"
    );
    // The config the image runs is the one tests/it/operations.rs starts.
    assert!(dockerfile.contains("deploy/container.toml /out/etc/fluxgate/config.toml"));
    assert!(dockerfile.contains(r#"CMD ["run", "--config", "/etc/fluxgate/config.toml"]"#));
    assert!(
        dockerfile.contains(r#"["fluxgate", "probe", "--config", "/etc/fluxgate/config.toml"]"#)
    );
}
