//! The Helm chart (`charts/robofleet/`) lints, renders, and installs into the local cluster; its
//! operator args are flags the binary knows; the operator's ServiceAccount can do exactly what the
//! controllers need (checked with `kubectl auth can-i --as`) and cannot read Secrets; a user bound
//! to `robofleet-view` can read but not `promote`, and `robofleet-rollout-operator` can. The
//! ValidatingAdmissionPolicies refuse a hand-made hostNetwork pod in a robot namespace, an image
//! off the allow-list, a hostPath outside the prefix and a `promote` annotation from a user without
//! the verb, and admit the operator's pods and an authorised user's verb. `deploy/base/` is the
//! chart rendered with its defaults, and the kustomize overlay builds and passes server dry run.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::path::PathBuf;
use std::process::{Command, Output};

use std::time::Duration;

use robofleet_tests::{
    TestCluster, TestNamespace, install_crds, random_suffix, wait_until, workspace_binary,
};
use serde_json::{Value, json};

const ALLOWED_IMAGE: &str = "ghcr.io/robofleet/inference-sidecar:0.1.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn chart() -> String {
    repo().join("charts/robofleet").display().to_string()
}

/// A cluster tool (`helm`, `kubectl`) from the harness's bin dir, or from PATH.
fn tool(name: &str) -> Command {
    let bin = std::env::var_os("ROBOFLEET_CLUSTER_BIN")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name));
    let mut cmd = Command::new(bin);
    let kubeconfig = std::env::var_os("ROBOFLEET_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("ROBOFLEET_CLUSTER_STATE").map(|s| PathBuf::from(s).join("kubeconfig"))
        });
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl auth can-i` as `user` (extra args: resource, namespace, subresource).
fn can_i(user: &str, verb: &str, args: &[&str]) -> bool {
    let out = run(tool("kubectl")
        .args(["auth", "can-i", verb])
        .args(args)
        .arg(format!("--as={user}")));
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[test]
#[ignore = "needs cluster"]
fn helm_lint_passes_and_the_operator_args_are_known_flags() {
    ok(tool("helm").args(["lint", "--strict", &chart()]));
    let rendered = ok(tool("helm").args(["template", "rf", &chart(), "-n", "robofleet-system"]));
    let args: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- --"))
        .map(|a| a.split('=').next().unwrap_or(a))
        .collect();
    for want in ["metrics-addr", "image", "lease-name", "leader-election"] {
        assert!(args.contains(&want), "--{want} missing from {args:?}");
    }
    let with_monitor = ok(tool("helm").args([
        "template",
        "rf",
        &chart(),
        "--set",
        "metrics.podMonitor.enabled=true",
    ]));
    assert!(with_monitor.contains("kind: PodMonitor"));
    assert!(
        !rendered.contains("kind: PodMonitor"),
        "PodMonitor is opt-in"
    );
    let operator = workspace_binary("robofleet-operator");
    if !operator.exists() {
        eprintln!(
            "skipped the --help check: {} is not built",
            operator.display()
        );
        return;
    }
    let help = ok(Command::new(&operator).arg("--help"));
    for a in &args {
        assert!(
            help.contains(&format!("--{a}")),
            "chart passes --{a}, which the operator does not know:\n{help}"
        );
    }
    // the downward API env the binary reads for the lease namespace and identity
    for env in ["POD_NAMESPACE", "POD_NAME"] {
        assert!(help.contains(env), "{env} not in --help");
        assert!(rendered.contains(&format!("name: {env}")), "{env} not set");
    }
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn chart_installs_and_its_service_account_has_least_privilege() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    // the admission policies are cluster-wide: scope them to this test's namespaces so tests
    // running beside it (robot pods with test images) are not affected
    let mark = random_suffix();
    let ns = TestNamespace::create(&cluster.client, "chart", &[]).await?;
    let other = TestNamespace::create(
        &cluster.client,
        "chart-robots",
        &[
            ("robofleet.io/robot-workloads", "true"),
            ("robofleet.io/chart-test", &mark),
        ],
    )
    .await?;
    let release = format!("rf-{}", random_suffix());
    let priority = format!("robofleet-safety-critical-{}", random_suffix());
    let values = std::env::temp_dir().join(format!("{release}-values.json"));
    std::fs::write(
        &values,
        json!({"admissionPolicy": {
            "robotNamespaceSelector": {"matchLabels": {
                "robofleet.io/robot-workloads": "true", "robofleet.io/chart-test": mark}},
            "verbsNamespaceSelector": {"matchLabels": {"robofleet.io/chart-test": mark}},
        }})
        .to_string(),
    )?;
    let values = values.display().to_string();
    // rendered manifests pass the API server's validation as a whole
    let rendered = ok(tool("helm").args([
        "template",
        &release,
        &chart(),
        "-n",
        &ns.name,
        "-f",
        &values,
    ]));
    let manifest = std::env::temp_dir().join(format!("{release}.yaml"));
    std::fs::write(&manifest, &rendered)?;
    ok(tool("kubectl")
        .args(["apply", "--dry-run=server", "-f"])
        .arg(&manifest));
    std::fs::remove_file(&manifest)?;

    // user roles are cluster-wide names: another install of them at once would clash, so this
    // release ships its own PriorityClass name and the roles are created once (left if present)
    let roles_exist = run(tool("kubectl").args(["get", "clusterrole", "robofleet-view"]))
        .status
        .success();
    let _release = Release {
        name: release.clone(),
        namespace: ns.name.clone(),
    };
    ok(tool("helm").args([
        "install",
        &release,
        &chart(),
        "-n",
        &ns.name,
        "-f",
        &values,
        "--set",
        &format!("safetyPriorityClass.name={priority}"),
        "--set",
        &format!("userRoles.create={}", !roles_exist),
    ]));
    std::fs::remove_file(&values)?;
    // the documented CRD upgrade command is accepted over the CRDs already installed
    ok(tool("kubectl")
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
        ])
        .arg(repo().join("charts/robofleet/crds")));
    checks(&ns.name, &other.name, &release, &priority)?;
    admission(&ns.name, &other.name, &release).await
}

fn pod(name: &str, image: &str, host_network: bool, host_path: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": host_network,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c", "image": image,
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            }],
            "volumes": [{"name": "cache", "hostPath": {"path": host_path}}],
        }
    })
}

/// `kubectl create --dry-run=server` of `obj` in `ns`, as `user` if given (admission runs on
/// dry runs too, and nothing is left behind).
fn dry_create(ns: &str, user: Option<&str>, obj: &Value) -> Output {
    let file = std::env::temp_dir().join(format!("chart-obj-{}.json", random_suffix()));
    std::fs::write(&file, obj.to_string()).expect("temp file");
    let mut cmd = tool("kubectl");
    cmd.args(["create", "--dry-run=server", "-n", ns, "-f"])
        .arg(&file);
    if let Some(u) = user {
        cmd.arg(format!("--as={u}"));
    }
    let out = run(&mut cmd);
    let _ = std::fs::remove_file(&file);
    out
}

fn refused(out: &Output, why: &str) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    !out.status.success() && err.contains(why)
}

async fn admission(ns: &str, robots: &str, release: &str) -> anyhow::Result<()> {
    let sa = format!("system:serviceaccount:{ns}:{release}-robofleet");
    let prefix = "/var/lib/robofleet/models";
    let hand_made = pod("hand-made", ALLOWED_IMAGE, true, prefix);
    // the policy takes effect once the API server has loaded it
    wait_until(
        Duration::from_secs(30),
        "the robot-pod policy refuses hostNetwork",
        || {
            let out = dry_create(robots, None, &hand_made);
            async move { Ok(refused(&out, "only by the robofleet operator")) }
        },
    )
    .await?;
    let out = dry_create(robots, Some(&sa), &hand_made);
    assert!(out.status.success(), "operator's pod refused: {out:?}");
    let out = dry_create(robots, None, &pod("plain", ALLOWED_IMAGE, false, prefix));
    assert!(out.status.success(), "compliant pod refused: {out:?}");
    let out = dry_create(
        robots,
        Some(&sa),
        &pod("evil", "evil/miner:1", true, prefix),
    );
    assert!(refused(&out, "allow-list"), "{out:?}");
    let out = dry_create(robots, Some(&sa), &pod("etc", ALLOWED_IMAGE, true, "/etc"));
    assert!(refused(&out, "hostPath"), "{out:?}");
    let out = dry_create(
        robots,
        Some(&sa),
        &pod("dots", ALLOWED_IMAGE, true, "/var/lib/robofleet/../../etc"),
    );
    assert!(refused(&out, "hostPath"), "{out:?}");
    let mut root = pod("root", ALLOWED_IMAGE, false, prefix);
    root["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    let out = dry_create(robots, None, &root);
    assert!(refused(&out, "non-root"), "{out:?}");

    // custom verbs: robofleet-edit may create and patch, but promoting needs `promote`
    let editor = format!("editor-{}", random_suffix());
    let roller = format!("roller-{}", random_suffix());
    for (user, role) in [
        (&editor, "robofleet-edit"),
        (&roller, "robofleet-edit"),
        (&roller, "robofleet-rollout-operator"),
    ] {
        ok(tool("kubectl").args([
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            "-n",
            robots,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]));
    }
    let example = repo().join("docs/reference/examples/inferenceservice-minimal.yaml");
    let mut isvc: Value = serde_yaml::from_str(&std::fs::read_to_string(example)?)?;
    let out = dry_create(robots, Some(&editor), &isvc);
    assert!(out.status.success(), "editor cannot create: {out:?}");
    isvc["metadata"]["annotations"] = json!({"robofleet.io/action": "promote@1"});
    wait_until(
        Duration::from_secs(30),
        "the verb policy refuses promote",
        || {
            let out = dry_create(robots, Some(&editor), &isvc);
            async move { Ok(refused(&out, "needs the RBAC verb 'promote'")) }
        },
    )
    .await?;
    let out = dry_create(robots, Some(&roller), &isvc);
    assert!(out.status.success(), "rollout operator refused: {out:?}");
    isvc["metadata"]["annotations"] = json!({"robofleet.io/action": "pause@1"});
    let out = dry_create(robots, Some(&editor), &isvc);
    assert!(out.status.success(), "pause needs only patch: {out:?}");

    // approvals: robofleet-edit cannot approve a SafetyPolicy, robofleet-safety-approver can
    let approver = format!("approver-{}", random_suffix());
    for role in ["robofleet-edit", "robofleet-safety-approver"] {
        ok(tool("kubectl").args([
            "create",
            "rolebinding",
            &format!("{approver}-{role}"),
            "-n",
            robots,
            &format!("--clusterrole={role}"),
            &format!("--user={approver}"),
        ]));
    }
    let example = repo().join("docs/reference/examples/safetypolicy-minimal.yaml");
    let mut policy: Value = serde_yaml::from_str(&std::fs::read_to_string(example)?)?;
    policy["metadata"]["annotations"] = json!({"robofleet.io/approve": "abc123"});
    let out = dry_create(robots, Some(&editor), &policy);
    assert!(refused(&out, "needs the RBAC verb 'approve'"), "{out:?}");
    let out = dry_create(robots, Some(&approver), &policy);
    assert!(out.status.success(), "safety approver refused: {out:?}");
    Ok(())
}

/// A Helm release uninstalled when dropped (also when a check panics), so its cluster-scoped
/// objects do not outlive the test.
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let out = run(tool("helm").args(["uninstall", &self.name, "-n", &self.namespace]));
        if !out.status.success() {
            eprintln!(
                "helm uninstall {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn checks(ns: &str, other: &str, release: &str, priority: &str) -> anyhow::Result<()> {
    let full = format!("{release}-robofleet");
    for (kind, name, namespaced) in [
        ("deployment", full.as_str(), true),
        ("serviceaccount", full.as_str(), true),
        ("service", &format!("{full}-metrics"), true),
        ("role", &format!("{full}-leader-election"), true),
        ("rolebinding", &format!("{full}-leader-election"), true),
        ("clusterrole", &format!("{full}-operator"), false),
        ("clusterrolebinding", &format!("{full}-operator"), false),
        ("priorityclass", priority, false),
        ("clusterrole", "robofleet-view", false),
        ("clusterrole", "robofleet-edit", false),
        ("clusterrole", "robofleet-rollout-operator", false),
        ("clusterrole", "robofleet-safety-approver", false),
    ] {
        let mut cmd = tool("kubectl");
        cmd.args(["get", kind, name]);
        if namespaced {
            cmd.args(["-n", ns]);
        }
        ok(&mut cmd);
    }
    let deploy = ok(tool("kubectl").args([
        "get",
        "deployment",
        &full,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}",
    ]));
    assert_eq!(deploy, "2 true");

    let sa = format!("system:serviceaccount:{ns}:{full}");
    let must = [
        ("list", vec!["pods", "--all-namespaces"]),
        ("watch", vec!["pods", "--all-namespaces"]),
        ("create", vec!["pods", "-n", other]),
        ("delete", vec!["pods", "-n", other]),
        ("patch", vec!["configmaps", "-n", other]),
        ("create", vec!["controllerrevisions.apps", "-n", other]),
        ("list", vec!["nodes"]),
        ("get", vec!["namespaces"]),
        (
            "watch",
            vec!["inferenceservices.robofleet.io", "--all-namespaces"],
        ),
        (
            "list",
            vec!["safetypolicies.robofleet.io", "--all-namespaces"],
        ),
        ("list", vec!["sensorsims.robofleet.io", "--all-namespaces"]),
        (
            "patch",
            vec![
                "inferenceservices.robofleet.io",
                "--subresource=status",
                "-n",
                other,
            ],
        ),
        ("create", vec!["events.events.k8s.io", "-n", other]),
        ("create", vec!["leases.coordination.k8s.io", "-n", ns]),
        (
            "update",
            vec!["leases.coordination.k8s.io/robofleet-operator", "-n", ns],
        ),
    ];
    for (verb, args) in &must {
        assert!(can_i(&sa, verb, args), "operator cannot {verb} {args:?}");
    }
    let must_not = [
        ("get", vec!["secrets", "-n", ns]),
        ("list", vec!["secrets", "--all-namespaces"]),
        ("watch", vec!["secrets", "-n", other]),
        ("create", vec!["leases.coordination.k8s.io", "-n", other]),
        (
            "update",
            vec!["leases.coordination.k8s.io/someone-else", "-n", ns],
        ),
        ("patch", vec!["inferenceservices.robofleet.io", "-n", other]),
        ("delete", vec!["nodes"]),
        ("create", vec!["pods", "--subresource=exec", "-n", other]),
        ("create", vec!["deployments.apps", "-n", other]),
        ("delete", vec!["namespaces"]),
        ("escalate", vec!["clusterroles.rbac.authorization.k8s.io"]),
        (
            "promote",
            vec!["inferenceservices.robofleet.io", "-n", other],
        ),
    ];
    for (verb, args) in &must_not {
        assert!(!can_i(&sa, verb, args), "operator can {verb} {args:?}");
    }

    // users: robofleet-view reads but cannot promote; robofleet-rollout-operator can
    let viewer = format!("viewer-{}", random_suffix());
    let roller = format!("roller-{}", random_suffix());
    for (user, role) in [
        (&viewer, "robofleet-view"),
        (&roller, "robofleet-rollout-operator"),
    ] {
        ok(tool("kubectl").args([
            "create",
            "rolebinding",
            &format!("{user}-binding"),
            "-n",
            other,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]));
    }
    let isvc = ["inferenceservices.robofleet.io", "-n", other];
    assert!(can_i(&viewer, "list", &isvc));
    assert!(!can_i(&viewer, "promote", &isvc));
    assert!(!can_i(&viewer, "patch", &isvc));
    assert!(can_i(&roller, "promote", &isvc));
    assert!(can_i(&roller, "abort", &isvc));
    assert!(!can_i(&roller, "get", &["secrets", "-n", other]));
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn kustomize_base_is_the_rendered_chart_and_the_overlay_applies() -> anyhow::Result<()> {
    let rendered = ok(tool("helm").args([
        "template",
        "robofleet",
        &chart(),
        "--namespace",
        "robofleet-system",
    ]));
    let committed = std::fs::read_to_string(repo().join("deploy/base/robofleet.yaml"))?;
    assert!(
        rendered == committed,
        "deploy/base/robofleet.yaml is stale: helm template robofleet charts/robofleet \\
         --namespace robofleet-system > deploy/base/robofleet.yaml"
    );
    let built = ok(tool("kubectl")
        .args(["kustomize"])
        .arg(repo().join("deploy/overlays/example")));
    // dry-run into a fresh namespace: robofleet-system may not exist here
    let cluster = TestCluster::connect().await?;
    let ns = TestNamespace::create(&cluster.client, "chart-kustomize", &[]).await?;
    let mut docs = Vec::new();
    for doc in built.split("\n---\n") {
        let mut v: Value = serde_yaml::from_str(doc)?;
        if v.is_null() || v["kind"] == "Namespace" {
            continue;
        }
        if v["metadata"]["namespace"] == "robofleet-system" {
            v["metadata"]["namespace"] = json!(ns.name);
        }
        if let Some(subjects) = v["subjects"].as_array_mut() {
            for s in subjects {
                s["namespace"] = json!(ns.name);
            }
        }
        docs.push(v);
    }
    assert!(docs.iter().any(|d| d["kind"] == "Deployment"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let file = std::env::temp_dir().join(format!("{}.json", ns.name));
    std::fs::write(&file, list.to_string())?;
    let out = run(tool("kubectl")
        .args(["apply", "--dry-run=server", "-f"])
        .arg(&file));
    std::fs::remove_file(&file)?;
    assert!(
        out.status.success(),
        "server dry run refused the overlay: {out:?}"
    );
    Ok(())
}

/// A CRD deleted when dropped (its objects go with it).
struct ThrowawayCrd(String);

impl Drop for ThrowawayCrd {
    fn drop(&mut self) {
        let out = run(tool("kubectl").args([
            "delete",
            "crd",
            &self.0,
            "--ignore-not-found",
            "--wait=false",
        ]));
        if !out.status.success() {
            eprintln!(
                "kubectl delete crd {}: {}",
                self.0,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `crd` (one of charts/robofleet/crds/) moved to `group`: its name follows, and the short names
/// and categories go (they would be ambiguous beside the real CRD's).
fn in_group(crd: &Value, group: &str) -> Value {
    let mut c = crd.clone();
    let plural = c["spec"]["names"]["plural"]
        .as_str()
        .expect("spec.names.plural")
        .to_owned();
    c["metadata"] = json!({"name": format!("{plural}.{group}")});
    c["spec"]["group"] = json!(group);
    let names = c["spec"]["names"].as_object_mut().expect("spec.names");
    names.remove("shortNames");
    names.remove("categories");
    c
}

/// The `message` of the CEL rule at `pointer` (a schema node) whose message contains `words`.
fn rule_message(crd: &Value, pointer: &str, words: &str) -> String {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        .pointer(pointer)
        .and_then(|n| n["x-kubernetes-validations"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str())
        .find(|m| m.contains(words))
        .unwrap_or_else(|| panic!("no CEL rule at {pointer} says {words:?}"))
        .to_owned()
}

/// The documented CRD upgrade (docs/install.md, "Upgrading": `kubectl apply --server-side
/// --force-conflicts -f charts/robofleet/crds/`, then `helm upgrade`), on a copy of the SensorSim
/// CRD in a throwaway group (tests share the cluster and the real CRDs). The "previous release"
/// lacks `spec.noise`; a Helm release installs it from its `crds/` as Helm does, with one object
/// of its own, and the test adds another. After the upgrade the objects keep their data, the new
/// field is accepted and stored, invalid values (of the new field, of CEL rules, of a transition
/// rule) are refused with their messages, and `helm upgrade` of the release (whose `crds/` still
/// holds the old schema) works and leaves the upgraded CRD alone.
#[tokio::test]
#[ignore = "needs cluster"]
async fn crd_upgrade_by_server_side_apply_keeps_objects_and_takes_the_new_schema()
-> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let ns = TestNamespace::create(&cluster.client, "chart-crd-upgrade", &[]).await?;
    let current: Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("charts/robofleet/crds/sensorsims.robofleet.io.yaml"),
    )?)?;
    let group = format!("u{}.upgrade-test.robofleet.io", random_suffix());
    let new = in_group(&current, &group);
    let mut old = new.clone();
    for v in old["spec"]["versions"].as_array_mut().expect("versions") {
        let spec = v
            .pointer_mut("/schema/openAPIV3Schema/properties/spec/properties")
            .and_then(Value::as_object_mut)
            .expect("spec properties");
        assert!(spec.remove("noise").is_some(), "the CRD has spec.noise");
    }
    let crd_name = new["metadata"]["name"].as_str().expect("name").to_owned();
    let resource = crd_name.clone(); // `sensorsims.<group>` for kubectl
    let api_version = format!("{group}/v1alpha1");

    // The previous release's chart: the old CRD in crds/, one object in templates/.
    let tmp = std::env::temp_dir().join(format!("robofleet-crd-upgrade-{}", random_suffix()));
    let chart_dir = tmp.join("chart");
    std::fs::create_dir_all(chart_dir.join("crds"))?;
    std::fs::create_dir_all(chart_dir.join("templates"))?;
    std::fs::write(
        chart_dir.join("Chart.yaml"),
        "apiVersion: v2\nname: crd-upgrade-test\nversion: 0.1.0\n",
    )?;
    std::fs::write(
        chart_dir.join("crds/sensorsims.yaml"),
        serde_json::to_string_pretty(&old)?,
    )?;
    std::fs::write(
        chart_dir.join("templates/sim.yaml"),
        format!(
            "apiVersion: {api_version}\nkind: SensorSim\nmetadata:\n  name: from-release\nspec:\n  \
             sensor: {{type: lidar2d, topic: /scan, rateHz: 15}}\n  duration: 10s\n\
             {{{{- with .Values.noise }}}}\n  noise: {{{{ toJson . }}}}\n{{{{- end }}}}\n"
        ),
    )?;
    let _crd = ThrowawayCrd(crd_name.clone());
    let release = format!("crd-up-{}", random_suffix());
    ok(tool("helm").args([
        "install",
        &release,
        &chart_dir.display().to_string(),
        "-n",
        &ns.name,
    ]));
    let _release = Release {
        name: release.clone(),
        namespace: ns.name.clone(),
    };

    let file = |name: &str, obj: &Value| -> anyhow::Result<PathBuf> {
        let p = tmp.join(format!("{name}.json"));
        std::fs::write(&p, obj.to_string())?;
        Ok(p)
    };
    let sim = |name: &str, spec: Value| {
        json!({"apiVersion": api_version, "kind": "SensorSim",
               "metadata": {"name": name, "namespace": ns.name}, "spec": spec})
    };
    let lidar_spec = json!({
        "sensor": {"type": "lidar2d", "topic": "/scan", "rateHz": 20, "lidar": {"beams": 360}},
        "duration": "15s",
        "scenario": {"obstacles": [{"name": "box", "bearingDeg": 0, "startDistance": 2.0,
                                    "speed": 0.5, "minDistance": 0.2, "width": 0.3}]},
        "expect": [{"name": "stops", "safetyStopWithin": "200ms", "whenDistanceBelow": 0.35}],
        "unitsUnderTest": {"safetyPolicyRef": {"name": "front"}},
    });
    let created = file("lidar", &sim("lidar", lidar_spec))?;
    ok(tool("kubectl").args(["create", "-f"]).arg(&created));
    let get_spec = |name: &str| -> anyhow::Result<Value> {
        let out = ok(tool("kubectl").args(["get", &resource, name, "-n", &ns.name, "-o", "json"]));
        Ok(serde_json::from_str::<Value>(&out)?["spec"].clone())
    };
    let lidar_before = get_spec("lidar")?;
    let release_before = get_spec("from-release")?;
    assert!(lidar_before["scenario"]["obstacles"][0]["name"] == "box");
    // The old schema does not know spec.noise: strict field validation refuses it.
    let noise = json!({"stddev": 0.05, "seed": 7});
    let noisy = file(
        "noisy",
        &sim(
            "noisy",
            json!({"sensor": {"type": "lidar2d", "topic": "/scan"}, "noise": noise}),
        ),
    )?;
    let out = run(tool("kubectl").args(["create", "-f"]).arg(&noisy));
    assert!(
        refused(&out, "unknown field \"spec.noise\""),
        "the old schema took spec.noise: {out:?}"
    );

    // The upgrade, as documented.
    let crds_dir = tmp.join("crds");
    std::fs::create_dir_all(&crds_dir)?;
    std::fs::write(
        crds_dir.join("sensorsims.yaml"),
        serde_json::to_string_pretty(&new)?,
    )?;
    ok(tool("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&crds_dir));
    ok(tool("kubectl").args([
        "wait",
        "--for=condition=Established",
        &format!("crd/{crd_name}"),
        "--timeout=60s",
    ]));
    // The API server swaps its handler for the new schema shortly after.
    wait_until(
        Duration::from_secs(30),
        "the upgraded CRD takes spec.noise",
        || {
            let out = run(tool("kubectl").args(["create", "-f"]).arg(&noisy));
            async move { Ok(out.status.success()) }
        },
    )
    .await?;
    assert_eq!(get_spec("noisy")?["noise"], noise, "spec.noise is stored");
    // the objects made under the old schema keep their data
    assert_eq!(get_spec("lidar")?, lidar_before);
    assert_eq!(get_spec("from-release")?, release_before);
    // and take the new field
    ok(tool("kubectl").args([
        "patch",
        &resource,
        "lidar",
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        &json!({"spec": {"noise": noise}}).to_string(),
    ]));
    let mut want = lidar_before.clone();
    want["noise"] = noise.clone();
    assert_eq!(get_spec("lidar")?, want);

    // Invalid values are refused with the schema's and the CEL rules' messages.
    let patch = |p: Value| {
        run(tool("kubectl").args([
            "patch",
            &resource,
            "lidar",
            "-n",
            &ns.name,
            "--type=merge",
            "-p",
            &p.to_string(),
        ]))
    };
    let out = patch(json!({"spec": {"noise": {"stddev": 300}}}));
    assert!(
        refused(&out, "spec.noise.stddev") && refused(&out, "less than or equal to 255"),
        "{out:?}"
    );
    let immutable = rule_message(&current, "/properties/spec/properties/sensor", "immutable");
    let out = patch(json!({"spec": {"sensor": {"type": "camera", "lidar": null}}}));
    assert!(refused(&out, &immutable), "{out:?}");
    let camera_only = rule_message(&current, "/properties/spec", "corruptImageRate");
    let corrupt_lidar = file(
        "corrupt-lidar",
        &sim(
            "corrupt-lidar",
            json!({"sensor": {"type": "lidar2d", "topic": "/scan"},
                   "faults": {"corruptImageRate": 0.1}}),
        ),
    )?;
    let out = run(tool("kubectl").args(["create", "-f"]).arg(&corrupt_lidar));
    assert!(refused(&out, &camera_only), "{out:?}");
    assert_eq!(get_spec("lidar")?, want, "a refused patch changed nothing");

    // The release upgrades (with the documented --reuse-values), its object takes the new field,
    // and Helm leaves the CRD alone although the chart's crds/ still has the old schema.
    let values = tmp.join("values.json");
    std::fs::write(&values, json!({"noise": noise}).to_string())?;
    ok(tool("helm").args([
        "upgrade",
        &release,
        &chart_dir.display().to_string(),
        "-n",
        &ns.name,
        "--reuse-values",
        "-f",
        &values.display().to_string(),
    ]));
    assert_eq!(get_spec("from-release")?["noise"], noise);
    let served = ok(tool("kubectl").args([
        "get",
        "crd",
        &crd_name,
        "-o",
        "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.noise.type}",
    ]));
    assert_eq!(served, "object", "helm upgrade reverted the CRD");
    let status: Value = serde_json::from_str(&ok(
        tool("helm").args(["status", &release, "-n", &ns.name, "-o", "json"])
    ))?;
    assert_eq!(status["version"], 2, "release revision");
    assert_eq!(status["info"]["status"], "deployed");
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
