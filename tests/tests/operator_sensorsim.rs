//! The operator against the local cluster with the pod runner: SensorSims. One operator process:
//! a sandboxed sim whose expectations hold ends Succeeded and one whose expectations cannot hold
//! ends Failed, both from the sim's real exit code with its assertions in status; the sandbox runs
//! the named SafetyPolicy's monitor beside the sim, off the robots, and its scans never reach the
//! robot's own monitor even on the same ROS domain ID (a positive control shows that monitor does
//! count scans published on its graph); a sim targeting a robot not labelled
//! `robofleet.io/simulated=true` is refused with `UnsafeTarget`; a template never runs.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use robofleet_crds::sensor_sim::{SensorSimStatus, SimPhase};
use robofleet_crds::{SafetyPolicy, SensorSim, labels};
use robofleet_tests::{
    HarnessError, TestCluster, TestNamespace, http_get, install_crds, random_suffix, wait_until,
    workspace_binary,
};
use serde_json::json;

fn policy(selector_key: &str) -> SafetyPolicy {
    serde_json::from_value(json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
        "metadata": {"name": "front"},
        "spec": {
            "robotSelector": {"matchLabels": {selector_key: "yes"}},
            "source": {"topic": "/scan", "sourceTimeout": "300ms", "frame": "laser"},
            "zones": [{"name": "front", "shape": "sector", "action": "stop",
                       "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.35}],
            "release": {"mode": "Auto", "holdTime": "500ms"},
            "output": {"stopTopic": "/safety/stop", "heartbeat": "100ms"},
        }
    }))
    .expect("valid SafetyPolicy")
}

/// A box approaching head-on at 1 m/s from 1.2 m, gone after 2 s.
fn sim(name: &str, expect: serde_json::Value, target: Option<serde_json::Value>) -> SensorSim {
    let mut spec = json!({
        "sensor": {"type": "lidar2d", "topic": "/scan", "rateHz": 40, "lidar": {"beams": 360}},
        "duration": "3500ms",
        "scenario": {"obstacles": [{"name": "box", "bearingDeg": 0, "startDistance": 1.2, "speed": 1.0,
                                    "minDistance": 0.15, "width": 0.2, "disappearAt": "2s"}]},
        "expect": expect,
        "unitsUnderTest": {"safetyPolicyRef": {"name": "front"}},
    });
    if let Some(t) = target {
        spec["target"] = t;
    }
    serde_json::from_value(json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "SensorSim",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid SensorSim")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn status(api: &Api<SensorSim>, name: &str) -> Result<SensorSimStatus, HarnessError> {
    Ok(api.get(name).await?.status.unwrap_or_default())
}

async fn wait_final(api: &Api<SensorSim>, name: &str) -> anyhow::Result<SensorSimStatus> {
    wait_until(
        Duration::from_secs(150),
        &format!("SensorSim {name} reaches a final phase"),
        || async {
            let s = status(api, name).await?;
            Ok(s.exit_code.is_some()
                && matches!(s.phase, Some(SimPhase::Succeeded | SimPhase::Failed)))
        },
    )
    .await?;
    Ok(status(api, name).await?)
}

/// `robofleet_ros_topic_messages_total{topic="/scan",direction="in"}` of the monitor at `addr`
/// (absent = 0); `None` if it does not answer.
fn scans_in(addr: &str) -> Option<f64> {
    let (code, body) = http_get(addr, "/metrics")?;
    if code != 200 {
        return None;
    }
    Some(
        body.lines()
            .filter(|l| {
                l.starts_with("robofleet_ros_topic_messages_total{")
                    && l.contains("topic=\"/scan\"")
                    && l.contains("direction=\"in\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn sensor_sims_run_sandboxed_and_report_real_exit_codes() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster
        .require_pod_runner("sensor_sims_run_sandboxed")?
        .is_none()
    {
        return Ok(());
    }
    let client = cluster.client.clone();
    install_crds(&client).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let robots: Vec<Node> = nodes
        .list(&ListParams::default().labels(&format!("{}=true", labels::ROBOT)))
        .await?
        .items;
    anyhow::ensure!(robots.len() >= 2, "need 2 robots, have {}", robots.len());
    let robot = robots[0].name_any();
    let robot_ip = robots[0]
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .expect("robot address");
    let domain: u16 = robots[0]
        .labels()
        .get(labels::ROS_DOMAIN_ID)
        .and_then(|d| d.parse().ok())
        .expect("robot domain id");

    // The sandbox uses the robot's own domain ID: only its network namespace keeps them apart.
    let kubeconfig = robofleet_tests::operator_kubeconfig(&cluster);
    let port = free_port()?;
    let mut cmd = tokio::process::Command::new(workspace_binary("robofleet-operator"));
    cmd.args([
        "--lease-name",
        &robofleet_tests::operator_lease(format!("robofleet-operator-{}", random_suffix())),
        "--metrics-addr",
        "127.0.0.1:0",
        "--image",
        "default=robofleet/inference-sidecar:dev",
        "--bridge-image",
        "bridge=robofleet/ros2-bridge:dev",
        "--safety-metrics-port",
        &port.to_string(),
        "--sandbox-ros-domain-id",
        &domain.to_string(),
    ])
    .env("RUST_LOG", "info,kube=warn")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if let Some(k) = &kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let mut operator = cmd.spawn()?;

    let key = format!("test.robofleet.io/sim-{}", random_suffix());
    let label = |value: Option<&str>| {
        let nodes = nodes.clone();
        let patch = json!({"metadata": {"labels": {key.clone(): value}}});
        let node = robot.clone();
        async move {
            nodes
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };
    label(Some("yes")).await?;

    let result = async {
        let ns = TestNamespace::create(&client, "op-sim", &[(labels::ROBOT_WORKLOADS, "true")])
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let policies: Api<SafetyPolicy> = Api::namespaced(client.clone(), &ns.name);
        let sims: Api<SensorSim> = Api::namespaced(client.clone(), &ns.name);
        // PriorityClass of robot monitors (the chart ships it; tests create it).
        let pc: k8s_openapi::api::scheduling::v1::PriorityClass = serde_json::from_value(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "robofleet-safety-critical"}, "value": 1_000_000_000,
        }))?;
        Api::<k8s_openapi::api::scheduling::v1::PriorityClass>::all(client.clone())
            .patch(
                "robofleet-safety-critical",
                &PatchParams::apply("robofleet-tests").force(),
                &Patch::Apply(&pc),
            )
            .await?;
        policies.create(&PostParams::default(), &policy(&key)).await?;
        // The robot's own monitor runs and answers on its metrics port.
        let monitor_addr = format!("{robot_ip}:{port}");
        wait_until(Duration::from_secs(90), "the robot's monitor answers", || {
            let a = monitor_addr.clone();
            async move { Ok(scans_in(&a).is_some()) }
        })
        .await?;
        let robot_scans_before = scans_in(&monitor_addr).unwrap_or(f64::NAN);

        // Must pass: the policy stops by 0.35 m and releases after its 500 ms hold.
        sims.create(
            &PostParams::default(),
            &sim(
                "approach-pass",
                json!([{"name": "stops", "safetyStopWithin": "300ms", "whenDistanceBelow": 0.35},
                       {"name": "releases", "safetyReleaseWithin": "1500ms", "safetyReleaseNotBefore": "500ms"}]),
                None,
            ),
        )
        .await?;
        // Must fail: it wants a stop by 0.9 m, the policy only stops at 0.35 m (0.55 s later).
        sims.create(
            &PostParams::default(),
            &sim(
                "approach-fail",
                json!([{"name": "early", "safetyStopWithin": "100ms", "whenDistanceBelow": 0.9}]),
                None,
            ),
        )
        .await?;
        // Robots that are not simulated are refused; a template never runs.
        sims.create(
            &PostParams::default(),
            &sim(
                "on-real-robot",
                json!([]),
                Some(json!({"mode": "Robots", "robotSelector": {"matchLabels": {key.clone(): "yes"}}})),
            ),
        )
        .await?;
        let mut template = sim("template", json!([]), None);
        template.spec.template = true;
        sims.create(&PostParams::default(), &template).await?;

        // While the pass sim runs, its pod is off the robots and has its own network namespace.
        wait_until(Duration::from_secs(90), "the sandbox pod is placed", || async {
            Ok(pods
                .list(&ListParams::default().labels(&format!("{}=approach-pass", labels::OWNER)))
                .await?
                .items
                .iter()
                .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()))
        })
        .await?;
        for p in pods
            .list(&ListParams::default().labels(&format!("{}=approach-pass", labels::OWNER)))
            .await?
            .items
        {
            let spec = p.spec.expect("pod spec");
            let node = spec.node_name.clone().unwrap_or_default();
            anyhow::ensure!(
                !robots.iter().any(|r| r.name_any() == node),
                "sandbox pod landed on robot {node}"
            );
            anyhow::ensure!(spec.host_network != Some(true), "sandbox pod on hostNetwork");
            let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
            anyhow::ensure!(
                names == ["sensor-sim", "safety-monitor"],
                "sim and monitor under test in one pod: {names:?}"
            );
        }

        let pass = wait_final(&sims, "approach-pass").await?;
        anyhow::ensure!(
            pass.phase == Some(SimPhase::Succeeded) && pass.exit_code == Some(0),
            "approach-pass: {pass:#?}"
        );
        anyhow::ensure!(pass.messages_published >= 100, "published: {pass:#?}");
        anyhow::ensure!(
            pass.assertions.len() == 2 && pass.assertions.iter().all(|a| a.passed),
            "assertions: {:#?}",
            pass.assertions
        );
        anyhow::ensure!(pass.assertions[0].name == "stops");
        anyhow::ensure!(
            pass.assertions[0].observed.contains("ms"),
            "observed reaction reported: {:?}",
            pass.assertions[0]
        );

        let fail = wait_final(&sims, "approach-fail").await?;
        anyhow::ensure!(
            fail.phase == Some(SimPhase::Failed) && fail.exit_code == Some(1),
            "approach-fail: {fail:#?}"
        );
        anyhow::ensure!(
            fail.assertions.len() == 1 && !fail.assertions[0].passed,
            "assertions: {:#?}",
            fail.assertions
        );
        let stalled = fail
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .map(|c| (c.status.clone(), c.reason.clone()));
        anyhow::ensure!(
            stalled == Some(("True".into(), "Failed".into())),
            "{stalled:?}"
        );

        // Isolation: hundreds of scans on the robot's domain ID, none reached its monitor.
        let robot_scans_after = scans_in(&monitor_addr).unwrap_or(f64::NAN);
        anyhow::ensure!(
            robot_scans_after == robot_scans_before && robot_scans_after == 0.0,
            "the robot's monitor counted sandbox scans: {robot_scans_before} -> {robot_scans_after}"
        );

        // Finished runs leave no pods; the result stays in status.
        wait_until(Duration::from_secs(60), "finished runs' pods are deleted", || async {
            let n = pods
                .list(&ListParams::default().labels(&format!("{}=SensorSim", labels::OWNER_KIND)))
                .await?
                .items
                .iter()
                .filter(|p| {
                    p.labels()
                        .get(labels::OWNER)
                        .is_some_and(|o| o.starts_with("approach-"))
                })
                .count();
            Ok(n == 0)
        })
        .await?;
        anyhow::ensure!(
            status(&sims, "approach-pass").await?.phase == Some(SimPhase::Succeeded),
            "result kept after the pods went"
        );

        wait_until(
            Duration::from_secs(60),
            "sim on a non-simulated robot is Stalled UnsafeTarget",
            || async {
                let s = status(&sims, "on-real-robot").await?;
                Ok(s.common
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "UnsafeTarget"))
            },
        )
        .await?;
        let t = status(&sims, "template").await?;
        anyhow::ensure!(t.phase == Some(SimPhase::Pending), "template: {t:#?}");
        let unsafe_or_template_pods = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                p.labels()
                    .get(labels::OWNER)
                    .is_some_and(|o| o == "on-real-robot" || o == "template")
            })
            .count();
        anyhow::ensure!(unsafe_or_template_pods == 0, "refused sims placed pods");

        // Positive control: a sim on the robot's own graph (hostNetwork, its domain) IS counted
        // by the robot's monitor, so the zero above is isolation, not a dead metric.
        let control: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "control",
                         "labels": {"app.kubernetes.io/managed-by": "robofleet-operator"}},
            "spec": {
                "nodeName": robot, "hostNetwork": true, "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "sim", "image": "robofleet/ros2-bridge:dev",
                    "args": ["sensor-sim", "--config", "/etc/sim/scenario.yaml",
                             "--result", "/results/result.json"],
                    "env": [{"name": "ROS_DOMAIN_ID", "value": domain.to_string()}],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/sim"},
                                     {"name": "results", "mountPath": "/results"}],
                }],
                "volumes": [{"name": "cfg", "configMap": {"name": "control"}},
                            {"name": "results", "emptyDir": {}}],
            }
        }))?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client.clone(), &ns.name);
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "control"}, "data": {
                "scenario.yaml": "sensor: {type: lidar2d, topic: /scan, rateHz: 20, lidar: {beams: 360}}\nduration: 60s\n"}}))?,
        )
        .await?;
        pods.create(&PostParams::default(), &control).await?;
        wait_until(
            Duration::from_secs(60),
            "the robot's monitor counts scans from its own graph",
            || {
                let a = monitor_addr.clone();
                async move { Ok(scans_in(&a).is_some_and(|n| n > 0.0)) }
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;

    let _ = label(None).await;
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    result
}
