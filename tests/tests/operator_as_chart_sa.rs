//! The operator's e2e tests, again, with the operator holding only the chart's ServiceAccount:
//! the chart's ServiceAccount and RBAC (rendered by `helm template`, nothing else of the chart) go
//! into a namespace, a token is minted for the ServiceAccount (`kubectl create token`), and the
//! operator test binaries (placement, SafetyPolicy, SensorSim, rollouts, leader election) run with
//! `ROBOFLEET_OPERATOR_KUBECONFIG` pointing at a kubeconfig that carries that token. Every one of
//! them must pass: the chart's least-privilege RBAC is enough for everything the operator does.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::path::PathBuf;
use std::process::Command;

use robofleet_tests::{TestCluster, cluster_tool, install_crds, random_suffix};

fn ok(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The newest compiled test binary named `name` next to this one.
fn test_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().expect("deps dir");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                f.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('-'))
                    .is_some_and(|hash| hash.len() == 16 && !hash.contains('.'))
            })
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| anyhow::anyhow!("test binary {name} not built next to {}", me.display()))
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_operator_e2e_tests_pass_with_the_chart_service_account() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster
        .require_pod_runner("the_operator_e2e_tests_pass_with_the_chart_service_account")?
        .is_none()
    {
        return Ok(());
    }
    install_crds(&cluster.client).await?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let ns = format!("robofleet-sa-{}", random_suffix());
    ok(cluster_tool("kubectl").args(["create", "namespace", &ns]))?;
    // Only the ServiceAccount and its RBAC: the chart's other objects are cluster-wide policies
    // that would change what the other tests see.
    let rendered = ok(cluster_tool("helm").args([
        "template",
        "rf",
        &repo.join("charts/robofleet").display().to_string(),
        "-n",
        &ns,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ]))?;
    let manifest = std::env::temp_dir().join(format!("{ns}.yaml"));
    std::fs::write(&manifest, &rendered)?;
    ok(cluster_tool("kubectl")
        .args(["apply", "-n", &ns, "-f"])
        .arg(&manifest))?;
    let sa = rendered
        .split("\n---")
        .find(|d| d.contains("kind: ServiceAccount"))
        .and_then(|d| {
            d.lines()
                .skip_while(|l| !l.starts_with("metadata:"))
                .find_map(|l| l.trim().strip_prefix("name: ").map(str::to_owned))
        })
        .expect("the chart renders a ServiceAccount");
    let token =
        ok(cluster_tool("kubectl").args(["create", "token", &sa, "-n", &ns, "--duration", "2h"]))?;
    // A kubeconfig with the cluster's server and CA, and the ServiceAccount's token as the user.
    let server = ok(cluster_tool("kubectl").args([
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]))?;
    let ca = ok(cluster_tool("kubectl").args([
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]))?;
    let kubeconfig = std::env::temp_dir().join(format!("{ns}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa, namespace: {ns}}}\ncurrent-context: sa\n",
            token.trim()
        ),
    )?;
    // The token really is the ServiceAccount, and it cannot read Secrets.
    let who = ok(Command::new(cluster_tool("kubectl").get_program())
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ]))?;
    anyhow::ensure!(
        who == format!("system:serviceaccount:{ns}:{sa}"),
        "token user: {who}"
    );
    let secrets = Command::new(cluster_tool("kubectl").get_program())
        .env("KUBECONFIG", &kubeconfig)
        .args(["get", "secrets", "-A"])
        .output()?;
    anyhow::ensure!(
        !secrets.status.success(),
        "the ServiceAccount reads no Secrets"
    );

    let mut failures = Vec::new();
    for name in [
        "operator",
        "operator_sensorsim",
        "operator_safety",
        "operator_rollout",
        "operator_leader",
    ] {
        let bin = test_binary(name)?;
        // The chart's Role allows one Lease name; the last binary's operator was killed
        // without releasing it, so start from no Lease.
        ok(cluster_tool("kubectl").args([
            "delete",
            "lease",
            "-n",
            &ns,
            "robofleet-operator",
            "--ignore-not-found",
        ]))?;
        let out = Command::new(&bin)
            .env("ROBOFLEET_OPERATOR_LEASE", "robofleet-operator")
            .args(["--include-ignored", "--test-threads=1"])
            .env("ROBOFLEET_OPERATOR_KUBECONFIG", &kubeconfig)
            // The Lease lives in the operator's own namespace (its Role is there).
            .env("POD_NAMESPACE", &ns)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{name} as {sa}: {}",
            text.lines()
                .filter(|l| l.starts_with("test result"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if !out.status.success() || !text.contains("test result: ok") {
            // The first lines that say why (the whole output is long).
            let why: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.contains("Error")
                        || l.contains("forbidden")
                        || l.contains("WARN")
                        || l.contains("panicked")
                })
                .take(20)
                .collect();
            eprintln!("{name} failed:\n{}", why.join("\n"));
            failures.push(format!("{name}:\n{text}"));
        }
        // An RBAC refusal names the ServiceAccount ("User \"system:serviceaccount:...\" cannot
        // ..."); other 403s (a namespace being terminated) are not about permissions.
        if text.contains(&format!("system:serviceaccount:{ns}:{sa}\\\" cannot"))
            || text.contains(&format!("system:serviceaccount:{ns}:{sa}\" cannot"))
        {
            failures.push(format!("{name}: a request was refused by RBAC:\n{text}"));
        }
    }
    let _ = std::fs::remove_file(&kubeconfig);
    let _ = std::fs::remove_file(&manifest);
    let _ = cluster_tool("kubectl")
        .args(["delete", "namespace", &ns, "--wait=false"])
        .output();
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
