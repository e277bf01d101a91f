//! Each Kubernetes overlay's fluxgate config, taken from the rendered manifests (the ConfigMap
//! that the container's `/etc/fluxgate` mount names), through the real binary with exactly the
//! environment the Deployment gives the container, the fluxgate-secrets keys filled with test
//! values: `check-config` accepts it and refuses it without the Secret or with a placeholder;
//! `run` serves with it, and the manifest's own probe commands pass against it.

use crate::common::redis::RedisServer;
use crate::common::*;
use crate::deploy::{fluxgate_container, name, of_kind, pod_templates};
use crate::require_manifests;
use fluxgate::clock::monotonic_now;
use serde_json::Value;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Test values for the keys of the fluxgate-secrets Secret, standing in for the operator's
/// `openssl rand -hex 32`. A key this test does not know fails it: the README's `kubectl
/// create secret` must create it too (`the_readme_creates_every_secret_key_…`).
fn secret(key: &str) -> String {
    match key {
        "admin-secret" => "6f1c0b9e4a7d2e8f5c3b1a0d9e8f7c6b".into(),
        "redis-password" => "3d9a41c07e5b28f6a1c4e0b97d2f58a3".into(),
        k => panic!("the manifests reference the fluxgate-secrets key {k:?}, unknown here"),
    }
}

/// The container's environment as the kubelet builds it, the Secret's values from `secret`.
fn environment(c: &Value, secret: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    let env = c["env"].as_array().map(Vec::as_slice).unwrap_or_default();
    env.iter()
        .map(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], "fluxgate-secrets", "{e}");
            let key = r["key"].as_str().unwrap();
            (e["name"].as_str().unwrap().to_string(), secret(key))
        })
        .collect()
}

/// The config the fluxgate container reads: `run --config /etc/fluxgate/config.toml`, with
/// `/etc/fluxgate` mounted from a ConfigMap of this overlay.
fn mounted_config(objs: &[Value]) -> String {
    let (c, pod) = fluxgate_container(objs);
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", "/etc/fluxgate/config.toml"])
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/fluxgate")
        .expect("a mount at /etc/fluxgate");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let cm_name = volume["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap volume");
    let cm = of_kind(objs, "ConfigMap")
        .into_iter()
        .find(|cm| name(cm) == cm_name)
        .unwrap_or_else(|| panic!("the Deployment mounts {cm_name}, which is not rendered"));
    cm["data"]["config.toml"].as_str().unwrap().to_string()
}

/// The rendered config with what only exists in the cluster made local: the API's Service name
/// (check-config resolves upstream names) and the state directory.
fn localized(toml: &str, dir: &std::path::Path) -> String {
    toml.replace("\"api:8080\"", "\"127.0.0.1:8080\"")
        .replace("/var/lib/fluxgate", &dir.display().to_string())
}

fn check_config(path: &std::path::Path, env: &[(String, String)]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .arg("check-config")
        .arg(path)
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn each_overlays_config_passes_check_config_with_its_deployments_environment() {
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, localized(&mounted_config(objs), dir.path())).unwrap();
        let (c, _) = fluxgate_container(objs);
        let env = environment(c, &secret);
        let (code, text) = check_config(&path, &env);
        assert_eq!(code, Some(0), "{overlay}: {text}");
        for (_, v) in &env {
            assert!(!text.contains(v.as_str()), "{overlay}: a secret printed");
        }
        // Without the Secret (the pod would not even be created), and with a placeholder.
        let (code, text) = check_config(&path, &[]);
        assert_eq!(code, Some(64), "{overlay}: {text}");
        assert!(text.contains("FLUXGATE_ADMIN_SECRET"), "{overlay}: {text}");
        let placeholder = |k: &str| match k {
            "admin-secret" => "change-me-change-me-change-me".to_string(),
            k => secret(k),
        };
        let (code, text) = check_config(&path, &environment(c, &placeholder));
        assert_eq!(code, Some(64), "{overlay}: {text}");
        assert!(text.contains("placeholder"), "{overlay}: {text}");
    }
}

#[test]
fn the_readme_creates_every_secret_key_the_manifests_reference() {
    let r = require_manifests!();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/README.md")).unwrap();
    for (overlay, objs) in &r.overlays {
        for (workload, t) in pod_templates(objs) {
            for c in t["spec"]["containers"].as_array().unwrap() {
                for e in c["env"].as_array().into_iter().flatten() {
                    let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                    assert!(
                        readme.contains(&format!("--from-literal={key}=")),
                        "{overlay}/{workload}: deploy/README.md does not create the key {key}"
                    );
                }
            }
        }
    }
}

/// `fluxgate run` on a config, with only `env` in its environment; killed on drop.
struct Running {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Running {
    fn start(cfg: &str, dir: &std::path::Path, env: &[(String, String)]) -> Running {
        let path = dir.join("run.toml");
        std::fs::write(&path, cfg).unwrap();
        let log = dir.join("stderr.log");
        let mut child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .env_clear()
            .envs(env.iter().cloned())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("did not start: {}", std::fs::read_to_string(&log).unwrap())
        });
        let addr = |v: &Value| v.as_str().unwrap().parse().unwrap();
        let (proxy, admin) = (addr(&v["proxy"][0]), addr(&v["admin"]));
        Running {
            child,
            proxy,
            admin,
        }
    }

    /// Runs one of the manifest's probe commands against this process: the same arguments,
    /// with the admin address this test's process got instead of 127.0.0.1:9090.
    fn probe(&self, command: &Value) -> Option<i32> {
        let args: Vec<String> = command
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("127.0.0.1:9090", &self.admin.to_string())
            })
            .collect();
        assert_eq!(args[0], "fluxgate", "the probe runs the image's binary");
        let out = Command::new(bin()).args(&args[1..]).output().unwrap();
        out.status.code()
    }

    /// Every probe of the container passes (readiness may need a moment for the store).
    fn assert_probes_pass(&self, c: &Value) {
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let cmd = &c[probe]["exec"]["command"];
            let deadline = monotonic_now() + Duration::from_secs(10);
            while self.probe(cmd) != Some(0) {
                assert!(monotonic_now() < deadline, "{probe} {cmd} never passed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Anonymous requests: the public route reaches the upstream, anything else is refused.
    fn assert_serves(&self, up: &Upstream) {
        assert_eq!(Req::get("/public/hello").send(self.proxy).status, 200);
        assert_eq!(up.last().target, "/public/hello");
        Req::get("/private")
            .send(self.proxy)
            .denial(401, "UNAUTHORIZED");
        assert_eq!(up.count(), 1, "the refused request reached the upstream");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rendered config on loopback port 0, in front of `up`, its state in `dir`.
fn runnable(toml: &str, dir: &std::path::Path, up: &Upstream) -> String {
    let cfg = localized(toml, dir)
        .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"")
        .replace("\"0.0.0.0:9090\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:3000\"", &format!("\"{}\"", up.addr))
        .replace("\"127.0.0.1:8080\"", &format!("\"{}\"", up.addr));
    // Pingora's upgrade socket defaults to one path in /tmp: one per test.
    cfg.replacen(
        "[server]\n",
        &format!(
            "[server]\nupgrade_socket = \"{}/upgrade.sock\"\n",
            dir.display()
        ),
        1,
    )
}

#[test]
fn the_sidecar_overlay_serves_with_its_config_and_its_probe_commands_pass() {
    let r = require_manifests!();
    let objs = r.overlay("sidecar");
    let (c, _) = fluxgate_container(objs);
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = runnable(&mounted_config(objs), dir.path(), &up);
    let fg = Running::start(&cfg, dir.path(), &environment(c, &secret));
    fg.assert_probes_pass(c);
    fg.assert_serves(&up);
}

#[test]
fn the_standalone_overlay_reaches_its_redis_with_the_password_both_take_from_the_secret() {
    let r = require_manifests!();
    crate::require_redis!();
    let objs = r.overlay("standalone");
    // Redis as redis.yaml starts it: `--requirepass $(REDIS_PASSWORD)`, expanded from its env.
    let (_, redis_pod) = pod_templates(objs)
        .into_iter()
        .find(|(n, _)| *n == "fluxgate-redis")
        .unwrap();
    let rc = &redis_pod["spec"]["containers"][0];
    let redis_env = environment(rc, &secret);
    let args: Vec<&str> = rc["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--requirepass").unwrap();
    let var = args[at + 1].trim_start_matches("$(").trim_end_matches(')');
    let password = &redis_env.iter().find(|(k, _)| k == var).unwrap().1;
    let redis = RedisServer::start_with(&["--requirepass", password]);

    let (c, _) = fluxgate_container(objs);
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = mounted_config(objs);
    assert!(toml.contains("redis://fluxgate-redis:6379"));
    let cfg = runnable(&toml, dir.path(), &up).replace("redis://fluxgate-redis:6379", &redis.url());
    let fg = Running::start(&cfg, dir.path(), &environment(c, &secret));
    // Readiness is 200 only while fluxgate's Redis commands succeed: the password matched.
    fg.assert_probes_pass(c);
    fg.assert_serves(&up);
}
