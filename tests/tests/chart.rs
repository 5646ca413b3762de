//! The Helm chart (`charts/robofleet/`) lints, renders, and installs into the local cluster; its
//! operator args are flags the binary knows; the operator's ServiceAccount can do exactly what the
//! controllers need (checked with `kubectl auth can-i --as`) and cannot read Secrets; a user bound
//! to `robofleet-view` can read but not `promote`, and `robofleet-rollout-operator` can.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::path::PathBuf;
use std::process::{Command, Output};

use robofleet_tests::{TestCluster, TestNamespace, install_crds, random_suffix, workspace_binary};

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
    let ns = TestNamespace::create(&cluster.client, "chart", &[]).await?;
    let other = TestNamespace::create(&cluster.client, "chart-other", &[]).await?;
    let release = format!("rf-{}", random_suffix());
    let priority = format!("robofleet-safety-critical-{}", random_suffix());
    // rendered manifests pass the API server's validation as a whole
    let rendered = ok(tool("helm").args(["template", &release, &chart(), "-n", &ns.name]));
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
        "--set",
        &format!("safetyPriorityClass.name={priority}"),
        "--set",
        &format!("userRoles.create={}", !roles_exist),
    ]));
    checks(&ns.name, &other.name, &release, &priority)
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
