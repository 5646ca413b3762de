//! The operator against the local cluster with the pod runner: SafetyPolicy monitors. Each test
//! function drives its own operator process (one at a time). `safety_policy_monitors`: monitors
//! land on exactly the selected robots and become Ready on real scans (a sensor-sim pod per robot
//! feeds its ROS domain), a robot whose stop lock nobody consumes is counted `unconsumed` (the
//! other, whose sim subscribes, `enforcing`), a policy change rewrites the ConfigMap without
//! replacing any monitor pod, a second policy on the same robots and stop topic is Stalled with
//! `Conflict`, and a namespace without the robot-workloads label is refused.
//! `safety_policy_approvals`: relaxations wait for approval with the old policy live, tightenings
//! apply at once, the Latched reset, robots relabelled out held until approved (also across an
//! operator restart), and the Events.

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
    HarnessError, TestCluster, TestNamespace, http_get, install_crds, random_suffix, wait_until,
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

/// One operator at a time: each test here starts one, and an operator acts on every namespace.
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// CRDs and the PriorityClass the chart ships (tests create it).
async fn prepare(client: &kube::Client) -> anyhow::Result<()> {
    install_crds(client).await?;
    let pc: PriorityClass = serde_json::from_value(json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS}, "value": 1_000_000_000,
    }))?;
    Api::<PriorityClass>::all(client.clone())
        .patch(
            PRIORITY_CLASS,
            &PatchParams::apply("robofleet-tests").force(),
            &Patch::Apply(&pc),
        )
        .await?;
    Ok(())
}

/// Starts the operator (its own Lease, so it leads at once) with monitors on `safety_port`;
/// its metrics on `metrics_addr`.
fn start_operator(
    cluster: &TestCluster,
    safety_port: u16,
    metrics_addr: &str,
) -> anyhow::Result<tokio::process::Child> {
    let kubeconfig = robofleet_tests::operator_kubeconfig(cluster);
    let mut cmd = tokio::process::Command::new(workspace_binary("robofleet-operator"));
    cmd.args([
        "--lease-name",
        &robofleet_tests::operator_lease(format!("robofleet-operator-{}", random_suffix())),
        "--metrics-addr",
        metrics_addr,
        "--image",
        "default=robofleet/inference-sidecar:dev",
        "--bridge-image",
        "bridge=robofleet/ros2-bridge:dev",
        "--safety-metrics-port",
        &safety_port.to_string(),
    ])
    .env("RUST_LOG", "info,kube=warn")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if let Some(k) = &kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    Ok(cmd.spawn()?)
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
    let _one = ONE_OPERATOR.lock().await;
    let client = cluster.client.clone();
    prepare(&client).await?;
    let port = free_port()?;
    let mut operator = start_operator(&cluster, port, "127.0.0.1:0")?;

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

    let ns =
        TestNamespace::create(&client, "op-safety", &[(labels::ROBOT_WORKLOADS, "true")]).await?;
    let other = TestNamespace::create(&client, "op-safety-no", &[]).await?;
    let result = async {
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
    remove_namespace(&client, ns).await;
    remove_namespace(&client, other).await;
    result
}

/// Deletes a test's namespace and waits (up to 90 s) until it is gone, so the next test's
/// operator finds none of its policies and its robots run none of its pods.
async fn remove_namespace(client: &kube::Client, ns: TestNamespace) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let name = ns.name.clone();
    drop(ns);
    let _ = api
        .delete(&name, &kube::api::DeleteParams::background())
        .await;
    let _ = wait_until(
        Duration::from_secs(90),
        &format!("namespace {name} gone"),
        || async { Ok(api.get_opt(&name).await?.is_none()) },
    )
    .await;
}

/// Until no pod of another test runs on `robots` (a leftover LIDAR sim would be a second
/// publisher on the robot's scan topic).
async fn wait_robots_free(client: &kube::Client, robots: &[String]) -> anyhow::Result<()> {
    let all: Api<Pod> = Api::all(client.clone());
    for robot in robots {
        let lp = ListParams::default().fields(&format!("spec.nodeName={robot}"));
        wait_until(
            Duration::from_secs(90),
            &format!("no other test's pods on {robot}"),
            || async { Ok(all.list(&lp).await?.items.is_empty()) },
        )
        .await?;
    }
    Ok(())
}

/// The value of the first sample line of `text` that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The `/metrics` text of `owner`'s monitor on `node` (it listens on the robot's address).
async fn monitor_metrics(
    pods: &Api<Pod>,
    owner: &str,
    node: &str,
    port: u16,
) -> Result<Option<String>, HarnessError> {
    let lp = ListParams::default().labels(&format!("{}={owner}", labels::OWNER));
    let host = pods.list(&lp).await?.items.into_iter().find_map(|p| {
        let on_node = p.spec.as_ref()?.node_name.as_deref() == Some(node);
        let alive = p.metadata.deletion_timestamp.is_none();
        (on_node && alive).then_some(p.status?.host_ip?)
    });
    Ok(host.and_then(|h| http_get(&format!("{h}:{port}"), "/metrics").map(|(_, body)| body)))
}

/// Whether `owner`'s monitor on `node` holds the stop lock (`robofleet_safety_stop_active`).
async fn stopped(
    pods: &Api<Pod>,
    owner: &str,
    node: &str,
    port: u16,
) -> Result<Option<bool>, HarnessError> {
    let series = format!("robofleet_safety_stop_active{{policy=\"{owner}\"}}");
    Ok(monitor_metrics(pods, owner, node, port)
        .await?
        .and_then(|t| sample(&t, &series))
        .map(|v| v > 0.5))
}

/// Plays the kubelet's ConfigMap volume sync, which the pod runner does not do (it writes
/// ConfigMap volumes once, when a pod starts): copies the policy file from the ConfigMap into
/// each of `owner`'s monitor pods' volume, atomically (write, then rename, as the kubelet swaps
/// its `..data` link). The monitors notice within their 1 s reload interval. Returns the file.
async fn sync_policy_volumes(
    runner_state: &std::path::Path,
    pods: &Api<Pod>,
    cms: &Api<ConfigMap>,
    owner: &str,
) -> anyhow::Result<String> {
    let file = cms
        .get(&format!("safety-{owner}"))
        .await?
        .data
        .and_then(|d| d.get("policy.yaml").cloned())
        .ok_or_else(|| anyhow::anyhow!("policy ConfigMap of {owner} has no policy.yaml"))?;
    let lp = ListParams::default().labels(&format!("{}={owner}", labels::OWNER));
    for p in pods.list(&lp).await?.items {
        let (Some(node), Some(uid)) = (p.spec.as_ref().and_then(|s| s.node_name.clone()), p.uid())
        else {
            continue;
        };
        let dir = runner_state
            .join("robots")
            .join(&node)
            .join("pods")
            .join(format!(
                "{}_{}_{uid}",
                p.namespace().unwrap_or_default(),
                p.name_any()
            ))
            .join("volumes")
            .join("policy");
        if !dir.is_dir() {
            continue; // not started yet: it will read the current ConfigMap when it starts
        }
        let tmp = dir.join(".policy.yaml.tmp");
        std::fs::write(&tmp, &file)?;
        std::fs::rename(&tmp, dir.join("policy.yaml"))?;
    }
    Ok(file)
}

/// Checks `check` every 250 ms for `period`; fails at the first `false`.
async fn holds<F, Fut>(period: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, HarnessError>>,
{
    let end = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < end {
        anyhow::ensure!(check().await?, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

fn condition(
    s: &robofleet_crds::safety_policy::SafetyPolicyStatus,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.common
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The Events about SafetyPolicy `name`: reason, aggregated count, note.
async fn events(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, i32, String)>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("SafetyPolicy") && r.name.as_deref() == Some(name)
            })
        })
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (
                e.reason.unwrap_or_default(),
                count,
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}

/// A LIDAR sim pod on `robot` with scenario file `scenario` of ConfigMap `lidar`.
fn lidar_pod(i: usize, robot: &str, scenario: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
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
    }))?)
}

/// A post 0.45 m straight ahead, forever, and a consumer of the stop lock.
const SCENARIO_POST: &str = "sensor: {type: lidar2d, topic: /scan, rateHz: 20, lidar: {beams: 360}}\n\
    scenario: {obstacles: [{name: post, bearingDeg: 0, startDistance: 0.45, speed: 0, width: 0.1}]}\n\
    duration: 600s\nunitsUnderTest: {stopTopic: /safety/stop}\n";

fn front(range: f64) -> serde_json::Value {
    json!([{"name": "front", "shape": "sector", "action": "stop",
            "minAngleDeg": -30, "maxAngleDeg": 30, "range": range}])
}

/// Approvals end to end (real monitors, real scans): a relaxing change waits with the old policy
/// enforced (the monitor on the robot with a post in front stays stopped) until
/// `robofleet.io/approve` names its hash, then applies (the robot clears); a tightening applies
/// at once; a Latched stop holds on clear scans until `reset@<nonce>`, which is acknowledged in
/// `status.lastAction` and relayed once; a robot relabelled out keeps its monitor (also across an
/// operator restart) until approved; one Event per transition.
#[tokio::test]
#[ignore = "needs cluster"]
async fn safety_policy_approvals() -> anyhow::Result<()> {
    use robofleet_crds::rollout::RolloutPhase;
    let cluster = TestCluster::connect().await?;
    let Some(runner_state) = cluster.require_pod_runner("safety_policy_approvals")? else {
        return Ok(());
    };
    let _one = ONE_OPERATOR.lock().await;
    let client = cluster.client.clone();
    prepare(&client).await?;
    let port = free_port()?;
    let op_metrics = format!("127.0.0.1:{}", free_port()?);
    let mut operator = start_operator(&cluster, port, &op_metrics)?;

    let key = format!("test.robofleet.io/approvals-{}", random_suffix());
    let nodes: Api<Node> = Api::all(client.clone());
    let robots: Vec<String> = nodes
        .list(&ListParams::default().labels(&format!("{}=true", labels::ROBOT)))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    anyhow::ensure!(robots.len() >= 3, "need 3 robots, have {}", robots.len());
    // x has a post in front of it; y sees nothing.
    let (x, y) = (robots[2].clone(), robots[1].clone());
    wait_robots_free(&client, &[x.clone(), y.clone()]).await?;
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
    for r in [&x, &y] {
        label(r, Some("yes")).await?;
    }
    let ns =
        TestNamespace::create(&client, "op-approve", &[(labels::ROBOT_WORKLOADS, "true")]).await?;

    let result = async {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let policies: Api<SafetyPolicy> = Api::namespaced(client.clone(), &ns.name);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
        let status = || async {
            Ok::<_, HarnessError>(policies.get("guard").await?.status.unwrap_or_default())
        };
        let patch = |body: serde_json::Value| {
            let policies = policies.clone();
            async move {
                policies
                    .patch("guard", &PatchParams::default(), &Patch::Merge(&body))
                    .await
            }
        };
        let sync = || sync_policy_volumes(&runner_state, &pods, &cms, "guard");
        let x_stopped = || stopped(&pods, "guard", &x, port);

        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "lidar"},
                "data": {"post.yaml": SCENARIO_POST, "clear.yaml": SCENARIO_CONSUMER},
            }))?,
        )
        .await?;
        pods.create(&PostParams::default(), &lidar_pod(0, &x, "post.yaml")?)
            .await?;
        pods.create(&PostParams::default(), &lidar_pod(1, &y, "clear.yaml")?)
            .await?;
        let guard: SafetyPolicy = serde_json::from_value(json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
            "metadata": {"name": "guard"},
            "spec": {
                "robotSelector": {"matchLabels": {key.clone(): "yes"}},
                "source": {"topic": "/scan", "sourceTimeout": "500ms", "frame": "laser"},
                "zones": front(0.6),
                "release": {"mode": "Auto", "holdTime": "1s"},
            }
        }))?;
        policies.create(&PostParams::default(), &guard).await?;

        // ---- the first version needs no approval; the post stops x.
        wait_until(
            Duration::from_secs(150),
            "guard Healthy on x and y, both enforcing, nothing pending",
            || async {
                let s = status().await?;
                Ok(s.phase == Some(RolloutPhase::Healthy)
                    && s.robots.total == 2
                    && s.robots.enforcing == 2
                    && s.pending_hash.is_none())
            },
        )
        .await?;
        wait_until(Duration::from_secs(30), "x stopped by the post", || async {
            Ok(x_stopped().await? == Some(true))
        })
        .await?;
        anyhow::ensure!(
            stopped(&pods, "guard", &y, port).await? == Some(false),
            "y sees nothing and is clear"
        );
        let first_hash = status().await?.active_hash.unwrap_or_default();

        // ---- a relaxing change (0.6 → 0.4, the post would be outside) waits, the old policy
        // runs: ConfigMap unchanged, x stays stopped.
        patch(json!({"spec": {"zones": front(0.4)}})).await?;
        wait_until(Duration::from_secs(60), "ApprovalPending", || async {
            let s = status().await?;
            Ok(s.common.observed_generation == Some(2)
                && s.pending_hash.is_some()
                && condition(&s, "ApprovalPending").is_some_and(|c| c.status == "True"))
        })
        .await?;
        let s = status().await?;
        let pending = s.pending_hash.clone().unwrap_or_default();
        let msg = condition(&s, "ApprovalPending")
            .map(|c| c.message)
            .unwrap_or_default();
        anyhow::ensure!(
            msg.contains("zone front: the new zone does not contain the old one")
                && msg.contains(&format!("robofleet.io/approve={pending} --overwrite")),
            "the message says what relaxes and how to approve: {msg}"
        );
        anyhow::ensure!(
            s.phase == Some(RolloutPhase::Healthy),
            "Healthy while pending, not Paused: {s:?}"
        );
        anyhow::ensure!(
            s.active_hash.as_deref() == Some(first_hash.as_str()),
            "the active policy is still the first"
        );
        let live = sync().await?;
        anyhow::ensure!(
            live.contains("0.6") && !live.contains("0.4"),
            "the old policy file is live: {live}"
        );
        holds(
            Duration::from_secs(4),
            "x stopped under the old policy",
            || async { Ok(x_stopped().await? == Some(true)) },
        )
        .await?;

        // ---- a wrong hash is ignored; the right one applies the change.
        patch(json!({"metadata": {"annotations": {"robofleet.io/approve": "0000000000"}}})).await?;
        wait_until(
            Duration::from_secs(30),
            "the wrong hash reported as ignored",
            || async {
                let s = status().await?;
                Ok(condition(&s, "ApprovalPending")
                    .is_some_and(|c| c.status == "True" && c.message.contains("is ignored")))
            },
        )
        .await?;
        anyhow::ensure!(sync().await?.contains("0.6"), "still the old policy");
        patch(json!({"metadata": {"annotations": {"robofleet.io/approve": pending.clone()}}}))
            .await?;
        wait_until(
            Duration::from_secs(30),
            "approved change applied",
            || async {
                let s = status().await?;
                Ok(s.pending_hash.is_none()
                    && s.approved_hash.as_deref() == Some(pending.as_str())
                    && s.active_hash.as_deref() != Some(first_hash.as_str()))
            },
        )
        .await?;
        let live = sync().await?;
        anyhow::ensure!(
            live.contains("0.4"),
            "the approved policy is in the file: {live}"
        );
        wait_until(
            Duration::from_secs(20),
            "x clear under the approved policy",
            || async { Ok(x_stopped().await? == Some(false)) },
        )
        .await?;

        // ---- a tightening (0.4 → 0.5, Auto → Latched) applies at once; the post stops x again
        // and the stop latches.
        patch(json!({"spec": {"zones": front(0.5), "release": {"mode": "Latched"}}})).await?;
        wait_until(
            Duration::from_secs(30),
            "tightening applied at once",
            || async {
                let s = status().await?;
                let cm = cms.get("safety-guard").await?;
                let file = cm
                    .data
                    .and_then(|d| d.get("policy.yaml").cloned())
                    .unwrap_or_default();
                Ok(s.common.observed_generation == Some(3)
                    && s.pending_hash.is_none()
                    && file.contains("0.5")
                    && file.contains("Latched"))
            },
        )
        .await?;
        sync().await?;
        wait_until(Duration::from_secs(20), "x stopped (latched)", || async {
            Ok(x_stopped().await? == Some(true))
        })
        .await?;

        // ---- relax the zone again (approved): scans are clear now, but the latch holds.
        patch(json!({"spec": {"zones": front(0.4)}})).await?;
        wait_until(
            Duration::from_secs(30),
            "second relaxation pending",
            || async { Ok(status().await?.pending_hash.is_some_and(|h| h != pending)) },
        )
        .await?;
        let second = status().await?.pending_hash.unwrap_or_default();
        patch(json!({"metadata": {"annotations": {"robofleet.io/approve": second.clone()}}}))
            .await?;
        wait_until(
            Duration::from_secs(30),
            "second approval applied",
            || async { Ok(status().await?.approved_hash.as_deref() == Some(second.as_str())) },
        )
        .await?;
        let reloads = |t: &str| {
            sample(
                t,
                "robofleet_safety_config_reloads_total{outcome=\"applied\"}",
            )
        };
        let before = monitor_metrics(&pods, "guard", &x, port)
            .await?
            .and_then(|t| reloads(&t))
            .unwrap_or(0.0);
        anyhow::ensure!(sync().await?.contains("0.4"), "0.4 in the file");
        wait_until(
            Duration::from_secs(20),
            "x's monitor reloaded the policy",
            || async {
                let now = monitor_metrics(&pods, "guard", &x, port)
                    .await?
                    .and_then(|t| reloads(&t))
                    .unwrap_or(0.0);
                Ok(now > before)
            },
        )
        .await?;
        holds(
            Duration::from_secs(4),
            "x latched on clear scans",
            || async { Ok(x_stopped().await? == Some(true)) },
        )
        .await?;

        // ---- reset@<nonce>: relayed, acknowledged, x released; the same nonce is not relayed
        // again.
        patch(json!({"metadata": {"annotations": {"robofleet.io/action": "reset@n1"}}})).await?;
        wait_until(Duration::from_secs(30), "reset acknowledged", || async {
            Ok(status().await?.last_action.as_deref() == Some("reset@n1"))
        })
        .await?;
        let live = sync().await?;
        anyhow::ensure!(
            live.contains("\"resetNonce\": \"n1\""),
            "nonce in the file: {live}"
        );
        wait_until(
            Duration::from_secs(20),
            "x released by the reset",
            || async { Ok(x_stopped().await? == Some(false)) },
        )
        .await?;
        patch(json!({"metadata": {"annotations": {"robofleet.io/action": null}}})).await?;
        patch(json!({"metadata": {"annotations": {"robofleet.io/action": "reset@n1"}}})).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        anyhow::ensure!(
            sync().await? == live,
            "an acknowledged nonce changes nothing"
        );
        anyhow::ensure!(
            status().await?.last_action.as_deref() == Some("reset@n1"),
            "still acknowledged once"
        );

        // ---- y relabelled out keeps its monitor until approved, across an operator restart.
        let before = monitors(&pods, "guard").await?;
        let y_monitor = before.get(&y).cloned().expect("monitor on y");
        label(&y, None).await?;
        wait_until(Duration::from_secs(30), "y held", || async {
            let s = status().await?;
            Ok(s.robots.held == 1
                && s.held_robots == vec![y.clone()]
                && s.robots.total == 1
                && s.pending_hash.is_some()
                && s.phase == Some(RolloutPhase::Healthy))
        })
        .await?;
        let third = status().await?.pending_hash.unwrap_or_default();
        let _ = operator.start_kill();
        let _ = operator.wait().await;
        operator = start_operator(&cluster, port, &op_metrics)?;
        let reconciles = || {
            http_get(&op_metrics, "/metrics")
                .and_then(|(_, t)| {
                    sample(
                        &t,
                        "robofleet_operator_reconcile_total{kind=\"SafetyPolicy\",result=\"ok\"}",
                    )
                })
                .unwrap_or(0.0)
        };
        // The new operator's first reconcile (this namespace holds the only policy), then one
        // more for a change it must look at: an unrelated annotation.
        wait_until(
            Duration::from_secs(60),
            "the restarted operator reconciled",
            || async { Ok(reconciles() >= 1.0) },
        )
        .await?;
        patch(json!({"metadata": {"annotations": {"test.robofleet.io/poke": "1"}}})).await?;
        wait_until(
            Duration::from_secs(60),
            "the restarted operator reconciled again",
            || async { Ok(reconciles() >= 2.0) },
        )
        .await?;
        let s = status().await?;
        anyhow::ensure!(
            s.pending_hash.as_deref() == Some(third.as_str()) && s.robots.held == 1,
            "the restart recovered the same pending release: {s:?}"
        );
        let m = monitors(&pods, "guard").await?;
        anyhow::ensure!(
            m.get(&y).map(|v| &v.1) == Some(&y_monitor.1),
            "y's monitor kept across the restart: {m:?}"
        );
        patch(json!({"metadata": {"annotations": {"robofleet.io/approve": third.clone()}}}))
            .await?;
        wait_until(
            Duration::from_secs(60),
            "y released after approval",
            || async {
                let s = status().await?;
                let m = monitors(&pods, "guard").await?;
                Ok(s.robots.held == 0 && s.pending_hash.is_none() && !m.contains_key(&y))
            },
        )
        .await?;
        anyhow::ensure!(
            monitors(&pods, "guard").await?.contains_key(&x),
            "x keeps its monitor"
        );

        // ---- one Event per transition, none per robot.
        let ev = events(&client, &ns.name, "guard").await?;
        // The recorder aggregates repeats into a series (one per operator process).
        let count = |r: &str| -> i32 {
            ev.iter()
                .filter(|(reason, _, _)| reason == r)
                .map(|(_, n, _)| n)
                .sum()
        };
        anyhow::ensure!(
            ev.iter()
                .all(|(_, _, note)| !note.contains(&x) && !note.contains(&y)),
            "no Event is about one robot: {ev:?}"
        );
        anyhow::ensure!(
            (
                count("ApprovalPending"),
                count("Approved"),
                count("ResetRelayed")
            ) == (3, 3, 1),
            "events: {ev:?}"
        );
        anyhow::ensure!(count("Healthy") >= 1, "became Healthy: {ev:?}");
        anyhow::Ok(())
    }
    .await;

    for r in [&x, &y] {
        let _ = label(r, None).await;
    }
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    remove_namespace(&client, ns).await;
    result
}
