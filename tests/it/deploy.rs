//! The Kubernetes manifests (deploy/kubernetes): `scripts/check-manifests` renders every overlay
//! with `kubectl kustomize` and validates it offline against the API schemas; these tests run it
//! once and check on the rendered objects what a schema cannot: no Secret shipped with values,
//! the admin port reachable only as the NetworkPolicy allows, the probes on the admin port, two
//! replicas or more in the standalone overlay, locked-down containers with resources. Running
//! each overlay's config with the real binary is in `deploy_run`.
//!
//! The tools (kubectl, kubernetes-validate; `scripts/prereqs test` installs them) are required
//! under CI (`CI=true`) or with FLUXGATE_REQUIRE_K8S=1; elsewhere these tests are skipped with a
//! visible message, like the Redis tests.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The objects of each overlay, as `kubectl apply -k` would send them.
pub struct Rendered {
    pub overlays: Vec<(String, Vec<Value>)>,
}

impl Rendered {
    pub fn overlay(&self, name: &str) -> &[Value] {
        &self.overlays.iter().find(|(n, _)| n == name).unwrap().1
    }
}

/// `scripts/check-manifests OUT [with OVERLAYS_DIR]`: its exit code and output.
pub fn check_manifests(out: &Path, overlays_dir: Option<&Path>) -> (Option<i32>, String) {
    let mut c = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-manifests"));
    c.arg(out);
    if let Some(d) = overlays_dir {
        c.env("OVERLAYS_DIR", d);
    }
    let o = c.output().expect("run scripts/check-manifests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// Whether a missing tool fails the test (CI) rather than skipping it.
fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("FLUXGATE_REQUIRE_K8S").as_deref() == Ok("1")
}

/// Renders and validates once for all tests in this binary; `None` (after a visible SKIPPED
/// line) where the tools are missing and not required.
pub fn rendered() -> Option<&'static Rendered> {
    static R: OnceLock<Option<Rendered>> = OnceLock::new();
    let r = R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (code, text) = check_manifests(dir.path(), None);
        if code == Some(69) {
            assert!(
                !required(),
                "the manifest tools are missing under CI:\n{text}"
            );
            return None;
        }
        assert_eq!(code, Some(0), "scripts/check-manifests failed:\n{text}");
        let overlays = ["sidecar", "standalone"]
            .iter()
            .map(|o| {
                let json = std::fs::read_to_string(dir.path().join(format!("{o}.json"))).unwrap();
                (o.to_string(), serde_json::from_str(&json).unwrap())
            })
            .collect();
        Some(Rendered { overlays })
    });
    if r.is_none() {
        eprintln!(
            "SKIPPED: kubectl or kubernetes-validate is not installed (scripts/prereqs test; CI=true or FLUXGATE_REQUIRE_K8S=1 fails instead)"
        );
    }
    r.as_ref()
}

#[macro_export]
macro_rules! require_manifests {
    () => {
        match $crate::deploy::rendered() {
            Some(r) => r,
            None => return,
        }
    };
}

pub fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap()
}

/// The pod templates: (workload name, pod template).
pub fn pod_templates(objs: &[Value]) -> Vec<(&str, &Value)> {
    objs.iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .map(|o| (name(o), &o["spec"]["template"]))
        .collect()
}

/// The container named `fluxgate` and its pod template, of the one workload that has one.
pub fn fluxgate_container(objs: &[Value]) -> (&Value, &Value) {
    let found: Vec<_> = pod_templates(objs)
        .into_iter()
        .flat_map(|(_, t)| {
            let cs = t["spec"]["containers"].as_array().unwrap();
            cs.iter()
                .filter(|c| c["name"] == "fluxgate")
                .map(move |c| (c, t))
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one fluxgate container per overlay");
    found[0]
}

/// Whether `selector` (a map of labels) selects a pod labelled `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("matchLabels-style selector");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The containerPort named `port_name` of a container.
pub fn container_port(c: &Value, port_name: &str) -> u64 {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port_name)
        .unwrap_or_else(|| panic!("no port named {port_name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn each_overlay_renders_with_every_piece_of_the_base() {
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        for kind in [
            "ConfigMap",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ServiceMonitor",
            "Deployment",
        ] {
            assert!(!of_kind(objs, kind).is_empty(), "{overlay}: no {kind}");
        }
    }
}

#[test]
fn no_secret_value_ships_in_the_manifests() {
    // A Secret with placeholder data in the files would start (and stay) in someone's cluster:
    // every secret comes from the Secret the operator creates, by reference.
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        assert!(
            of_kind(objs, "Secret").is_empty(),
            "{overlay} ships a Secret"
        );
        for (workload, t) in pod_templates(objs) {
            for c in t["spec"]["containers"].as_array().unwrap() {
                for e in c["env"].as_array().into_iter().flatten() {
                    let var = e["name"].as_str().unwrap();
                    let from = &e["valueFrom"]["secretKeyRef"];
                    assert!(
                        from["name"] == "fluxgate-secrets" && e.get("value").is_none(),
                        "{overlay}/{workload}: {var} is not a reference into fluxgate-secrets: {e}"
                    );
                }
            }
        }
        for cm in of_kind(objs, "ConfigMap") {
            let toml = cm["data"]["config.toml"].as_str().unwrap();
            assert!(
                !toml.contains("{ value") && !toml.contains("{value"),
                "{overlay}: an inline secret in the ConfigMap"
            );
        }
    }
}

#[test]
fn the_admin_port_is_in_no_service_beyond_the_network_policy() {
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        let (c, pod) = fluxgate_container(objs);
        let admin = container_port(c, "admin");
        let labels = &pod["metadata"]["labels"];
        let admin_target = |p: &Value| {
            p["targetPort"] == "admin" || p["targetPort"] == admin || p["port"] == admin
        };
        let exposing: Vec<_> = of_kind(objs, "Service")
            .into_iter()
            .filter(|s| selects(&s["spec"]["selector"], labels))
            .filter(|s| {
                s["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(admin_target)
            })
            .collect();
        // The ServiceMonitor's Service, and no other; headless, so nothing outside the
        // cluster (NodePort, LoadBalancer) can carry traffic to the port.
        assert_eq!(exposing.len(), 1, "{overlay}: services with the admin port");
        let svc = exposing[0];
        assert_eq!(name(svc), "fluxgate-metrics");
        assert_eq!(svc["spec"]["type"], "ClusterIP", "{overlay}");
        assert_eq!(svc["spec"]["clusterIP"], "None", "{overlay}");
        let monitor = of_kind(objs, "ServiceMonitor")[0];
        assert!(selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &svc["metadata"]["labels"]
        ));
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");

        let policies: Vec<_> = of_kind(objs, "NetworkPolicy")
            .into_iter()
            .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], labels))
            .collect();
        assert_eq!(policies.len(), 1, "{overlay}: policies on fluxgate's pods");
        let spec = &policies[0]["spec"];
        assert!(
            spec["policyTypes"]
                .as_array()
                .unwrap()
                .contains(&"Ingress".into())
        );
        for rule in spec["ingress"].as_array().unwrap() {
            let ports = rule["ports"].as_array();
            let covers_admin = ports.is_none_or(|ps| {
                ps.iter()
                    .any(|p| p["port"] == admin || p["port"] == "admin" || p["port"].is_null())
            });
            if !covers_admin {
                continue;
            }
            // Any rule that opens the admin port admits the monitoring namespace, no more.
            let from = rule["from"]
                .as_array()
                .expect("an admin rule without `from`");
            assert_eq!(from.len(), 1, "{overlay}: {rule}");
            assert_eq!(
                from[0],
                serde_json::json!({"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "monitoring"}}}),
                "{overlay}"
            );
        }
    }
}

#[test]
fn every_probe_runs_fluxgate_probe_on_the_admin_port() {
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        let (c, _) = fluxgate_container(objs);
        let admin = container_port(c, "admin");
        for (probe, live) in [
            ("startupProbe", true),
            ("livenessProbe", true),
            ("readinessProbe", false),
        ] {
            let cmd: Vec<&str> = c[probe]["exec"]["command"]
                .as_array()
                .unwrap_or_else(|| panic!("{overlay}: {probe} is not an exec probe"))
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(&cmd[..2], ["fluxgate", "probe"], "{overlay} {probe}");
            let at = cmd.iter().position(|a| *a == "--admin").unwrap();
            assert_eq!(
                cmd[at + 1],
                format!("127.0.0.1:{admin}"),
                "{overlay} {probe}: not the admin port"
            );
            assert_eq!(
                cmd.contains(&"--live"),
                live,
                "{overlay} {probe}: /livez or /readyz"
            );
        }
        // The config's admin listener is the port the probes use.
        let cm = of_kind(objs, "ConfigMap")[0];
        let toml = cm["data"]["config.toml"].as_str().unwrap();
        assert!(
            toml.contains(&format!("listen = \"0.0.0.0:{admin}\"")),
            "{overlay}"
        );
    }
}

#[test]
fn the_standalone_overlay_runs_two_replicas_or_more_spread_over_nodes() {
    let r = require_manifests!();
    let objs = r.overlay("standalone");
    let (_, pod) = fluxgate_container(objs);
    let deployment = of_kind(objs, "Deployment")
        .into_iter()
        .find(|d| d["spec"]["template"] == *pod)
        .unwrap();
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let anti = &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert!(selects(
        &anti["labelSelector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let pdb = of_kind(objs, "PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(selects(
        &pdb["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    // The sidecar's single replica must not make its budget block every node drain.
    let sidecar_pdb = of_kind(r.overlay("sidecar"), "PodDisruptionBudget")[0];
    assert!(sidecar_pdb["spec"].get("minAvailable").is_none());
    assert_eq!(sidecar_pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn every_container_runs_unprivileged_read_only_with_resources() {
    let r = require_manifests!();
    for (overlay, objs) in &r.overlays {
        for (workload, t) in pod_templates(objs) {
            let pod = &t["spec"]["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true, "{overlay}/{workload}");
            assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
            assert_eq!(t["spec"]["automountServiceAccountToken"], false);
            for c in t["spec"]["containers"].as_array().unwrap() {
                let at = format!("{overlay}/{workload}/{}", c["name"]);
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{at}"
                );
                let res = &c["resources"];
                for (k, v) in [
                    ("requests", "cpu"),
                    ("requests", "memory"),
                    ("limits", "memory"),
                ] {
                    assert!(res[k][v].is_string(), "{at}: no {k}.{v}");
                }
            }
        }
    }
}

#[test]
fn a_misspelt_field_fails_the_manifest_check() {
    // The check must be able to fail: the same tree with one field misspelt.
    require_manifests!();
    let tree = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(tree.path())
        .status()
        .unwrap();
    assert!(status.success());
    let deployment = tree
        .path()
        .join("kubernetes/overlays/standalone/deployment.yaml");
    let text = std::fs::read_to_string(&deployment).unwrap();
    assert!(text.contains("readOnlyRootFilesystem: true"));
    std::fs::write(
        &deployment,
        text.replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesytem: true",
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = check_manifests(out.path(), Some(&tree.path().join("kubernetes/overlays")));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("'readOnlyRootFilesytem' was unexpected"),
        "{text}"
    );
    assert!(text.contains("FAIL standalone"), "{text}");
    assert!(text.contains("ok sidecar"), "{text}");
}
