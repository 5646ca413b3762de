//! The operator against the local cluster with the pod runner: SafetyPolicy monitors. One test
//! function drives one operator process: monitors land on exactly the selected robots and become
//! Ready on real scans (a sensor-sim pod per robot feeds its ROS domain), a robot whose stop lock
//! nobody consumes is counted `unconsumed` (the other, whose sim subscribes, `enforcing`), a policy change rewrites
//! the ConfigMap without replacing any monitor pod, a second policy on the same robots and stop
//! topic is Stalled with `Conflict`, and a namespace without the robot-workloads label is refused.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use robofleet_crds::{SafetyPolicy, labels};
use robofleet_tests::{
    HarnessError, TestCluster, TestNamespace, install_crds, random_suffix, wait_until,
    workspace_binary,
};
use serde_json::json;

const PRIORITY_CLASS: &str = "robofleet-safety-critical";
/// Scans with nothing in range, long enough for the whole test.
const SCENARIO: &str = "sensor: {type: lidar2d, topic: /scan, rateHz: 20, lidar: {beams: 360}}\n\
    duration: 600s\n";
/// The same, and the sim subscribes to the stop lock: a consumer, as twist_mux would be.
const SCENARIO_CONSUMER: &str = "sensor: {type: lidar2d, topic: /scan, rateHz: 20, lidar: {beams: 360}}\n\
    duration: 600s\nunitsUnderTest: {stopTopic: /safety/stop}\n";

fn policy(name: &str, selector_key: &str, range: f64) -> SafetyPolicy {
    serde_json::from_value(json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
        "metadata": {"name": name},
        "spec": {
            "robotSelector": {"matchLabels": {selector_key: "yes"}},
            // One of the two robots has a consumer of its stop lock.
            "minEnforcingPercent": 50,
            "source": {"topic": "/scan", "sourceTimeout": "500ms", "frame": "laser"},
            "zones": [{"name": "front", "shape": "sector", "action": "stop",
                       "minAngleDeg": -30, "maxAngleDeg": 30, "range": range}],
        }
    }))
    .expect("valid SafetyPolicy")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Monitor pods of `owner`: node → (pod name, UID, ready, restarts).
async fn monitors(
    pods: &Api<Pod>,
    owner: &str,
) -> Result<BTreeMap<String, (String, String, bool, i32)>, HarnessError> {
    let lp = ListParams::default().labels(&format!("{}={owner}", labels::OWNER));
    Ok(pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let st = p.status.as_ref();
            let ready = st
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let restarts = st
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            Some((node, (p.name_any(), p.uid()?, ready, restarts)))
        })
        .collect())
}

async fn stalled_reason(
    api: &Api<SafetyPolicy>,
    name: &str,
) -> Result<Option<String>, HarnessError> {
    Ok(api.get(name).await?.status.and_then(|s| {
        s.common
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| c.reason)
    }))
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn safety_policy_monitors() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster
        .require_pod_runner("safety_policy_monitors")?
        .is_none()
    {
        return Ok(());
    }
    let client = cluster.client.clone();
    install_crds(&client).await?;
    // The chart ships this PriorityClass; tests create it.
    let pc: PriorityClass = serde_json::from_value(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS}, "value": 1_000_000,
    }))?;
    Api::<PriorityClass>::all(client.clone())
        .patch(
            PRIORITY_CLASS,
            &PatchParams::apply("robofleet-tests").force(),
            &Patch::Apply(&pc),
        )
        .await?;

    let kubeconfig = cluster.state_dir.as_ref().map(|d| d.join("kubeconfig"));
    let port = free_port()?;
    let mut cmd = tokio::process::Command::new(workspace_binary("robofleet-operator"));
    cmd.args([
        "--lease-name",
        &format!("robofleet-operator-{}", random_suffix()),
        "--metrics-addr",
        "127.0.0.1:0",
        "--image",
        "default=robofleet/inference-sidecar:dev",
        "--bridge-image",
        "bridge=robofleet/ros2-bridge:dev",
        "--safety-metrics-port",
        &port.to_string(),
    ])
    .env("RUST_LOG", "info,kube=warn")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if let Some(k) = &kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let mut operator = cmd.spawn()?;

    let key = format!("test.robofleet.io/safety-{}", random_suffix());
    let nodes: Api<Node> = Api::all(client.clone());
    let robots: Vec<String> = nodes
        .list(&ListParams::default().labels(&format!("{}=true", labels::ROBOT)))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    anyhow::ensure!(robots.len() >= 3, "need 3 robots, have {}", robots.len());
    let label = |node: &str, value: Option<&str>| {
        let nodes = nodes.clone();
        let patch = json!({"metadata": {"labels": {key.clone(): value}}});
        let node = node.to_owned();
        async move {
            nodes
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };
    let chosen = [robots[0].clone(), robots[1].clone()];
    for r in &chosen {
        label(r, Some("yes")).await?;
    }

    let result = async {
        let ns = TestNamespace::create(&client, "op-safety", &[(labels::ROBOT_WORKLOADS, "true")])
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let policies: Api<SafetyPolicy> = Api::namespaced(client.clone(), &ns.name);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);

        // A LIDAR on each chosen robot: a sensor-sim pod in the robot's ROS domain.
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "lidar"}, "data": {"scenario.yaml": SCENARIO, "consumer.yaml": SCENARIO_CONSUMER},
            }))?,
        )
        .await?;
        // Robot 0's lock has a consumer, robot 1's has none.
        for (i, robot) in chosen.iter().enumerate() {
            let scenario = if i == 0 { "consumer.yaml" } else { "scenario.yaml" };
            let sim: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("lidar-{i}"),
                             "labels": {"app.kubernetes.io/managed-by": "robofleet-operator"}},
                "spec": {
                    "nodeName": robot, "hostNetwork": true, "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "sim", "image": "robofleet/ros2-bridge:dev",
                        "args": ["sensor-sim", "--config", format!("/etc/sim/{scenario}"),
                                 "--result", "/results/result.json"],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/sim"},
                                         {"name": "results", "mountPath": "/results"}],
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "lidar"}},
                                {"name": "results", "emptyDir": {}}],
                }
            }))?;
            pods.create(&PostParams::default(), &sim).await?;
        }

        policies
            .create(&PostParams::default(), &policy("front", &key, 0.35))
            .await?;
        let want: BTreeSet<String> = chosen.iter().cloned().collect();
        wait_until(
            Duration::from_secs(90),
            "monitors on exactly the two labelled robots, all Ready",
            || async {
                let m = monitors(&pods, "front").await?;
                Ok(m.keys().cloned().collect::<BTreeSet<_>>() == want && m.values().all(|v| v.2))
            },
        )
        .await?;
        wait_until(
            Duration::from_secs(150),
            "status Healthy with 2/2 ready, 1 enforcing and 1 unconsumed",
            || async {
                let s = policies.get("front").await?.status;
                Ok(s.is_some_and(|s| {
                    s.robots.total == 2
                        && s.robots.ready == 2
                        && s.robots.enforcing == 1
                        && s.robots.unconsumed == 1
                        && s.phase == Some(robofleet_crds::rollout::RolloutPhase::Healthy)
                }))
            },
        )
        .await?;
        let before = monitors(&pods, "front").await?;
        let hash_before = policies
            .get("front")
            .await?
            .status
            .and_then(|s| s.active_hash)
            .unwrap_or_default();
        // The pod spec carries no policy: the config is in the ConfigMap.
        let cm = cms.get("safety-front").await?;
        let file = cm
            .data
            .as_ref()
            .and_then(|d| d.get("policy.yaml"))
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(file.contains("0.35"), "policy file holds the zone: {file}");

        // A policy change: the ConfigMap changes, the monitors stay (same UIDs, no restart).
        policies
            .patch(
                "front",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"zones": [{"name": "front", "shape": "sector",
                    "action": "stop", "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.5}]}}),
                ),
            )
            .await?;
        wait_until(
            Duration::from_secs(60),
            "new policy in the ConfigMap and status",
            || async {
                let cm = cms.get("safety-front").await?;
                let has = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get("policy.yaml"))
                    .is_some_and(|f| f.contains("0.5") && !f.contains("0.35"));
                let s = policies.get("front").await?.status.unwrap_or_default();
                Ok(has
                    && s.active_hash.is_some_and(|h| h != hash_before)
                    && s.common.observed_generation == Some(2))
            },
        )
        .await?;
        let after = monitors(&pods, "front").await?;
        for (node, (name, uid, _, restarts)) in &before {
            let now = after.get(node).expect("monitor still on the robot");
            anyhow::ensure!(
                (&now.0, &now.1, now.3) == (name, uid, *restarts),
                "monitor on {node} was replaced or restarted: {before:?} -> {after:?}"
            );
        }

        // A second policy on the same robots and stop topic: the older one wins.
        policies
            .create(&PostParams::default(), &policy("front-again", &key, 0.4))
            .await?;
        wait_until(
            Duration::from_secs(60),
            "second policy Stalled with Conflict",
            || async {
                Ok(stalled_reason(&policies, "front-again").await?.as_deref() == Some("Conflict"))
            },
        )
        .await?;
        anyhow::ensure!(
            monitors(&pods, "front-again").await?.is_empty(),
            "no monitors for the conflicting policy"
        );
        anyhow::ensure!(
            stalled_reason(&policies, "front").await?.is_none(),
            "the older policy is unaffected"
        );

        // A namespace without the robot-workloads label is refused.
        let other = TestNamespace::create(&client, "op-safety-no", &[]).await?;
        let other_policies: Api<SafetyPolicy> = Api::namespaced(client.clone(), &other.name);
        other_policies
            .create(&PostParams::default(), &policy("elsewhere", &key, 0.3))
            .await?;
        wait_until(
            Duration::from_secs(60),
            "policy in an unlabelled namespace is NamespaceNotAllowed",
            || async {
                Ok(stalled_reason(&other_policies, "elsewhere")
                    .await?
                    .as_deref()
                    == Some("NamespaceNotAllowed"))
            },
        )
        .await?;
        let other_pods: Api<Pod> = Api::namespaced(client.clone(), &other.name);
        anyhow::ensure!(
            other_pods
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "no pods where not allowed"
        );
        anyhow::Ok(())
    }
    .await;

    for r in &chosen {
        let _ = label(r, None).await;
    }
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    result
}
