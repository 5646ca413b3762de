//! The pod runner makes simulated robots tell the truth: real processes behind robofleet-operator
//! pods, readiness from real probes, phases from real exit codes, one address per robot, no
//! process left once a pod is deleted, and ROS 2 binaries that meet in their robot's domain over
//! DDS. Needs the local cluster started with the runner (`make test` does; see
//! docs/development.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use robofleet_tests::runner::process;
use robofleet_tests::{TestCluster, TestNamespace, random_suffix, wait_until};

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/models")
        .join(name)
}

/// `file://<fixture>@<sha256>` for a model fixture.
fn model_ref(name: &str) -> anyhow::Result<String> {
    let path = fixture(name);
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no digest for {}", path.display()))?;
    Ok(format!("file://{}@{digest}", path.display()))
}

fn require_ort() {
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH is unset: run `make venv` and export it (docs/sidecar.md); the pod runner \
         passes it to the inference-sidecar processes"
    );
}

/// A port free on loopback now (the tests never use fixed ports).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn managed_pod(name: &str, node: &str, spec: serde_json::Value) -> anyhow::Result<Pod> {
    let mut spec = spec;
    spec["nodeName"] = node.into();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {MANAGED_BY: "robofleet-operator"}},
        "spec": spec,
    }))?)
}

/// A hostNetwork inference-sidecar pod whose API and admin listeners are given as 127.0.0.1 and
/// 0.0.0.0 (as on a real robot); the runner turns both into the robot's address.
fn sidecar_pod(name: &str, node: &str, model: &str, api: u16, admin: u16) -> anyhow::Result<Pod> {
    managed_pod(
        name,
        node,
        serde_json::json!({
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "sidecar", "image": "ghcr.io/robofleet/inference-sidecar:test",
                "args": ["serve", "--model", model_ref(model)?,
                         "--listen", format!("127.0.0.1:{api}"),
                         "--admin-listen", format!("0.0.0.0:{admin}"),
                         "--model-cache", "/var/cache/robofleet/models",
                         "--drain-timeout", "1s"],
                "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/robofleet/models"}],
                "ports": [{"name": "admin", "containerPort": admin}],
                "readinessProbe": {
                    "httpGet": {"path": "/v2/health/ready", "port": "admin"},
                    "periodSeconds": 1, "failureThreshold": 1,
                },
            }],
            "volumes": [{"name": "cache", "hostPath": {"path": "/var/cache/robofleet/models",
                                                       "type": "DirectoryOrCreate"}}],
        }),
    )
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn container<'a>(p: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == name))
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

async fn robot_ip(client: &Client, node: &str) -> anyhow::Result<String> {
    let n = Api::<Node>::all(client.clone()).get(node).await?;
    n.status
        .and_then(|s| s.addresses)
        .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address)
        .ok_or_else(|| anyhow::anyhow!("robot {node} has no InternalIP"))
}

/// PIDs the runner recorded for a pod's containers (name → PID).
fn pids(runner_state: &Path, pod: &Pod) -> Vec<(String, i32)> {
    let uid = pod.uid().unwrap_or_default();
    process::recorded(&runner_state.join("pids"), &format!("{uid}."))
}

async fn wait_pod(
    pods: &Api<Pod>,
    name: &str,
    secs: u64,
    what: &str,
    mut f: impl FnMut(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    loop {
        if let Some(p) = pods.get_opt(name).await? {
            if f(&p) {
                return Ok(p);
            }
            last = Some(p);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "timed out after {secs} s waiting for {what}; pod status {:?}",
                last.and_then(|p| p.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One HTTP GET from the test (same loopback namespace as the robots); the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn killed_sidecar_loses_ready_within_the_probe_period_and_regains_it() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let Some(runner) = cluster.require_pod_runner("killed_sidecar")? else {
        return Ok(());
    };
    require_ort();
    let ns = TestNamespace::create(&cluster.client, "runner-kill", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let pod = sidecar_pod(
        "isvc-kill",
        "robot-000",
        "add_mul.onnx",
        free_port()?,
        free_port()?,
    )?;
    pods.create(&PostParams::default(), &pod).await?;
    let p = wait_pod(&pods, "isvc-kill", 90, "sidecar Ready", ready).await?;
    let recorded = pids(&runner, &p);
    let (_, pid) = recorded
        .iter()
        .find(|(k, _)| k.ends_with(".sidecar"))
        .cloned()
        .expect("sidecar PID recorded");
    assert!(alive(pid));

    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let killed_at = tokio::time::Instant::now();
    // probe period 1 s: not Ready within the period plus the status write
    wait_pod(&pods, "isvc-kill", 5, "Ready lost after the kill", |p| {
        !ready(p)
    })
    .await?;
    let lost_after = killed_at.elapsed();
    let p = wait_pod(
        &pods,
        "isvc-kill",
        60,
        "Ready again after the restart",
        |p| ready(p) && container(p, "sidecar").is_some_and(|c| c.restart_count == 1),
    )
    .await?;
    let c = container(&p, "sidecar").expect("status");
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state terminated");
    assert_eq!(last.exit_code, 137, "SIGKILL is 128 + 9");
    assert_eq!(last.signal, Some(9));
    assert_eq!(phase(&p), "Running");
    let new_pid = pids(&runner, &p)
        .into_iter()
        .find(|(k, _)| k.ends_with(".sidecar"))
        .map(|(_, pid)| pid)
        .expect("restarted PID recorded");
    assert_ne!(new_pid, pid);
    assert!(alive(new_pid));
    eprintln!("Ready lost {lost_after:?} after the kill");
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn model_that_fails_to_load_stays_running_but_not_ready() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("failed_model")?.is_none() {
        return Ok(());
    }
    require_ort();
    let ns = TestNamespace::create(&cluster.client, "runner-badmodel", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    // loads, then fails its warm-up: the sidecar exits 1 and is restarted with backoff
    let pod = sidecar_pod(
        "isvc-bad",
        "robot-001",
        "warmup_fail.onnx",
        free_port()?,
        free_port()?,
    )?;
    pods.create(&PostParams::default(), &pod).await?;
    let mut was_ready = false;
    let mut saw_phase = String::new();
    let p = wait_pod(&pods, "isvc-bad", 90, "two failed loads", |p| {
        was_ready |= ready(p);
        if phase(p) != "Running" {
            saw_phase = phase(p).to_owned();
        }
        container(p, "sidecar").is_some_and(|c| c.restart_count >= 2)
    })
    .await?;
    assert!(
        !was_ready && !ready(&p),
        "a pod whose model fails to load must never be Ready"
    );
    assert_eq!(phase(&p), "Running", "phase was {saw_phase:?}");
    let c = container(&p, "sidecar").expect("status");
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state terminated");
    assert_eq!(last.exit_code, 1);
    Ok(())
}

fn job_pod(name: &str, policy: &str, image: &str, command: &[&str]) -> anyhow::Result<Pod> {
    managed_pod(
        name,
        "robot-002",
        serde_json::json!({
            "restartPolicy": policy,
            "containers": [{
                "name": "job", "image": image, "command": command,
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "volumes": [{"name": "work", "emptyDir": {}}],
        }),
    )
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn run_to_completion_pods_end_from_the_real_exit_code() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("run_to_completion")?.is_none() {
        return Ok(());
    }
    let ns = TestNamespace::create(&cluster.client, "runner-jobs", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let cases = [
        job_pod("ok", "Never", "busybox", &["sh", "-c", "exit 0"]),
        job_pod(
            "fails",
            "Never",
            "busybox",
            &[
                "sh",
                "-c",
                "echo 'scene 3: obstacle missed' > /dev/termination-log; exit 3",
            ],
        ),
        // the real binary, refusing its configuration
        job_pod(
            "bad-flags",
            "Never",
            "ghcr.io/robofleet/inference-sidecar:test",
            &["inference-sidecar", "serve", "--model", "not-a-reference"],
        ),
        // fails once, then succeeds: the emptyDir outlives the restart
        job_pod(
            "retry",
            "OnFailure",
            "busybox",
            &[
                "sh",
                "-c",
                "if [ -e /work/tried ]; then exit 0; fi; touch /work/tried; exit 1",
            ],
        ),
    ];
    for p in cases {
        pods.create(&PostParams::default(), &p?).await?;
    }
    let done = |p: &Pod| matches!(phase(p), "Succeeded" | "Failed");
    let ok = wait_pod(&pods, "ok", 60, "ok finished", done).await?;
    assert_eq!(phase(&ok), "Succeeded");
    let fails = wait_pod(&pods, "fails", 60, "fails finished", done).await?;
    assert_eq!(phase(&fails), "Failed");
    let t = container(&fails, "job")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(t.exit_code, 3);
    assert_eq!(
        t.message.as_deref().map(str::trim),
        Some("scene 3: obstacle missed")
    );
    let bad = wait_pod(&pods, "bad-flags", 60, "bad-flags finished", done).await?;
    assert_eq!(phase(&bad), "Failed");
    let code = container(&bad, "job")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(
        code,
        Some(2),
        "inference-sidecar exits 2 on invalid configuration"
    );
    let retry = wait_pod(&pods, "retry", 60, "retry finished", done).await?;
    assert_eq!(phase(&retry), "Succeeded");
    assert_eq!(container(&retry, "job").map(|c| c.restart_count), Some(1));
    for p in [&ok, &fails, &bad, &retry] {
        assert!(!ready(p), "{} is finished, not Ready", p.name_any());
    }
    Ok(())
}

/// A pod that reports its network namespace and environment as its termination message.
fn env_report_pod(name: &str, host_network: bool) -> anyhow::Result<Pod> {
    managed_pod(
        name,
        "robot-002",
        serde_json::json!({
            "restartPolicy": "Never",
            "hostNetwork": host_network,
            "containers": [{
                "name": "report", "image": "busybox", "command": ["sh", "-c"],
                "args": ["echo \"$(readlink /proc/self/ns/net) $ROS_DOMAIN_ID $ROS_LOCALHOST_ONLY \
                          $POD_IP $NODE\" > /dev/termination-log"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
            }],
        }),
    )
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn pods_get_downward_api_ros_domain_and_their_own_network_unless_host_network()
-> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("env_and_netns")?.is_none() {
        return Ok(());
    }
    let ns = TestNamespace::create(&cluster.client, "runner-env", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let node = Api::<Node>::all(cluster.client.clone())
        .get("robot-002")
        .await?;
    let domain = node
        .labels()
        .get(robofleet_crds::labels::ROS_DOMAIN_ID)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("robot-002 has no ROS domain label"))?;
    let robot = robot_ip(&cluster.client, "robot-002").await?;
    let own_netns = std::fs::read_link("/proc/self/ns/net")?;
    for (name, host_network) in [("sandboxed", false), ("host", true)] {
        pods.create(&PostParams::default(), &env_report_pod(name, host_network)?)
            .await?;
    }
    for (name, host_network) in [("sandboxed", false), ("host", true)] {
        let p = wait_pod(&pods, name, 60, "report written", |p| {
            phase(p) == "Succeeded"
        })
        .await?;
        let pod_ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let report = container(&p, "report")
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.message.clone())
            .unwrap_or_default();
        let fields: Vec<&str> = report.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{name}: {report:?}");
        assert_eq!(
            fields[0] == own_netns.to_string_lossy(),
            host_network,
            "{name}: network namespace {} (the robots' is {})",
            fields[0],
            own_netns.display()
        );
        assert_eq!(
            fields[1], domain,
            "{name}: ROS_DOMAIN_ID from the robot's label"
        );
        assert_eq!(
            fields[2], "1",
            "{name}: DDS discovery restricted to localhost"
        );
        assert_eq!(fields[3], pod_ip, "{name}: status.podIP");
        assert_eq!(fields[4], "robot-002", "{name}: spec.nodeName");
        if host_network {
            assert_eq!(pod_ip, robot, "hostNetwork pods have the robot's address");
        } else {
            assert_ne!(pod_ip, robot);
        }
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn two_robots_run_the_same_binary_on_the_same_port() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let Some(runner) = cluster.require_pod_runner("same_port")? else {
        return Ok(());
    };
    require_ort();
    let ns = TestNamespace::create(&cluster.client, "runner-ports", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let (api, admin) = (free_port()?, free_port()?);
    let robots = ["robot-000", "robot-001"];
    for (i, robot) in robots.iter().enumerate() {
        let pod = sidecar_pod(&format!("isvc-{i}"), robot, "add_mul.onnx", api, admin)?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let mut seen = Vec::new();
    for (i, robot) in robots.iter().enumerate() {
        let p = wait_pod(
            &pods,
            &format!("isvc-{i}"),
            90,
            "both sidecars Ready",
            ready,
        )
        .await?;
        let ip = robot_ip(&cluster.client, robot).await?;
        assert_eq!(
            p.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            Some(ip.as_str()),
            "a hostNetwork pod has its robot's address"
        );
        assert_eq!(
            http_status(&format!("{ip}:{admin}"), "/v2/health/ready"),
            Some(200)
        );
        assert_eq!(
            http_status(&format!("{ip}:{api}"), "/v2/health/ready"),
            Some(200)
        );
        let pid = pids(&runner, &p).first().map(|(_, pid)| *pid).expect("PID");
        seen.push((ip, pid));
    }
    assert_ne!(seen[0].0, seen[1].0, "different robot addresses");
    assert_ne!(seen[0].1, seen[1].1, "different processes");
    assert!(seen.iter().all(|(_, pid)| alive(*pid)));
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn deleting_a_pod_stops_its_processes() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let Some(runner) = cluster.require_pod_runner("delete_stops")? else {
        return Ok(());
    };
    require_ort();
    let ns = TestNamespace::create(&cluster.client, "runner-delete", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let mut pod = sidecar_pod(
        "isvc-del",
        "robot-002",
        "add_mul.onnx",
        free_port()?,
        free_port()?,
    )?;
    // a second container that ignores SIGTERM: it must be killed after the grace period
    if let Some(spec) = pod.spec.as_mut() {
        spec.termination_grace_period_seconds = Some(2);
        spec.containers
            .push(serde_json::from_value(serde_json::json!({
                "name": "stubborn", "image": "busybox",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
            }))?);
    }
    pods.create(&PostParams::default(), &pod).await?;
    let p = wait_pod(&pods, "isvc-del", 90, "pod Ready", ready).await?;
    let recorded = pids(&runner, &p);
    assert_eq!(recorded.len(), 2, "one PID per container: {recorded:?}");
    assert!(recorded.iter().all(|(_, pid)| alive(*pid)));

    pods.delete("isvc-del", &DeleteParams::default()).await?;
    wait_until(Duration::from_secs(30), "pod deleted", || async {
        Ok(pods.get_opt("isvc-del").await?.is_none())
    })
    .await?;
    for (name, pid) in &recorded {
        wait_until(
            Duration::from_secs(5),
            &format!("{name} (PID {pid}) gone"),
            || async { Ok(!alive(*pid)) },
        )
        .await?;
    }
    assert!(pids(&runner, &p).is_empty(), "PID records removed");
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn robot_offline_keeps_its_processes_and_reports_again_when_back() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let Some(runner) = cluster.require_pod_runner("offline_robot")? else {
        return Ok(());
    };
    // A robot of its own (no robot label, so no other test sees it go away).
    let node_name = format!("offline-runner-{}", random_suffix());
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name, "labels": {
            "kwok.x-k8s.io/node": "fake", "type": "kwok", "kubernetes.io/hostname": node_name,
            robofleet_crds::labels::ROS_DOMAIN_ID: "43"}},
        "spec": {"podCIDR": "127.7.0.0/24", "podCIDRs": ["127.7.0.0/24"]},
        // kwok's node-initialize stage keeps the InternalIP only next to a Hostname address
        "status": {"addresses": [{"type": "InternalIP", "address": "127.97.0.1"},
                                 {"type": "Hostname", "address": node_name}],
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let ns = TestNamespace::create(&cluster.client, "runner-offline", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let result = async {
        wait_until(Duration::from_secs(60), "new robot Ready", || async {
            Ok(nodes.get_opt(&node_name).await?.is_some_and(|n| {
                n.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            }))
        })
        .await?;
        let pod = managed_pod(
            "monitor",
            &node_name,
            serde_json::json!({
                "hostNetwork": true,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "monitor", "image": "busybox",
                                "command": ["sh", "-c", "while true; do sleep 1; done"]}],
            }),
        )?;
        pods.create(&PostParams::default(), &pod).await?;
        let p = wait_pod(&pods, "monitor", 60, "pod Ready", ready).await?;
        let (_, pid) = pids(&runner, &p)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no PID recorded"))?;

        // Off Wi-Fi: heartbeats stop, the node lifecycle controller marks the pod not Ready.
        let patch = serde_json::json!({"metadata": {"labels": {"kwok.x-k8s.io/node": null}}});
        nodes
            .patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        wait_pod(
            &pods,
            "monitor",
            90,
            "pod marked not Ready while offline",
            |p| !ready(p),
        )
        .await?;
        assert!(
            alive(pid),
            "the robot's processes keep running while it is offline"
        );

        // Back: the runner reports the (still running) container again.
        let patch = serde_json::json!({"metadata": {"labels": {"kwok.x-k8s.io/node": "fake"}}});
        nodes
            .patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let p = wait_pod(&pods, "monitor", 90, "pod Ready again", ready).await?;
        assert_eq!(container(&p, "monitor").map(|c| c.restart_count), Some(0));
        assert!(alive(pid), "same process, not a restart");
        pods.delete("monitor", &DeleteParams::default()).await?;
        wait_until(Duration::from_secs(30), "pod deleted", || async {
            Ok(pods.get_opt("monitor").await?.is_none())
        })
        .await?;
        wait_until(Duration::from_secs(5), "process gone", || async {
            Ok(!alive(pid))
        })
        .await?;
        anyhow::Ok(())
    }
    .await;
    nodes.delete(&node_name, &DeleteParams::default()).await?;
    result
}

const POLICY: &str = "name: sim\nsource: {topic: /scan, sourceTimeout: 300ms}\n\
    zones: [{name: front, shape: sector, range: 0.35, minAngleDeg: -30, maxAngleDeg: 30, action: stop}]\n\
    release: {mode: Auto, holdTime: 500ms}\noutput: {stopTopic: /safety/stop, heartbeat: 100ms}\n";

const SCENARIO: &str = "sensor: {type: lidar2d, topic: /scan, rateHz: 40, lidar: {beams: 360}}\n\
    duration: 3500ms\nunitsUnderTest: {stopTopic: /safety/stop}\n\
    scenario: {obstacles: [{bearingDeg: 0, startDistance: 1.2, speed: 1.0, minDistance: 0.15, width: 0.2, disappearAt: 2s}]}\n\
    expect:\n  - {safetyStopWithin: 150ms, whenDistanceBelow: 0.35}\n";

#[tokio::test]
#[ignore = "needs cluster"]
async fn safety_monitor_and_sensor_sim_close_the_loop_over_dds_on_a_robot() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("closed_loop")?.is_none() {
        return Ok(());
    }
    let ns = TestNamespace::create(&cluster.client, "runner-dds", &[]).await?;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client.clone(), &ns.name);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "loop"},
            "data": {"policy.yaml": POLICY, "scenario.yaml": SCENARIO},
        }))?,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let metrics = free_port()?;
    // Both on one robot, both hostNetwork: they meet in its ROS domain (from the node label).
    let monitor = managed_pod(
        "safety",
        "robot-001",
        serde_json::json!({
            "hostNetwork": true,
            "containers": [{
                "name": "safety", "image": "ghcr.io/robofleet/ros2-bridge:test",
                "args": ["safety", "--config", "/etc/robofleet/policy.yaml",
                         "--metrics-addr", format!("0.0.0.0:{metrics}")],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/robofleet"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": metrics},
                                   "periodSeconds": 1},
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "loop"}}],
        }),
    )?;
    pods.create(&PostParams::default(), &monitor).await?;
    // Not Ready before the first valid scan (it holds the stop lock until then): wait until running.
    wait_pod(&pods, "safety", 60, "safety monitor running", |p| {
        container(p, "safety").is_some_and(|c| c.started == Some(true))
    })
    .await?;
    let sim = managed_pod(
        "sim",
        "robot-001",
        serde_json::json!({
            "hostNetwork": true,
            "restartPolicy": "Never",
            "containers": [{
                "name": "sim", "image": "ghcr.io/robofleet/ros2-bridge:test",
                "args": ["sensor-sim", "--config", "/etc/sim/scenario.yaml",
                         "--result", "/results/result.json", "--warmup-timeout", "20s"],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/sim"},
                                 {"name": "results", "mountPath": "/results"}],
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "loop"}},
                        {"name": "results", "emptyDir": {}}],
        }),
    )?;
    pods.create(&PostParams::default(), &sim).await?;
    let done = wait_pod(&pods, "sim", 90, "sensor-sim finished", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await?;
    let monitor_kept_running = pods
        .get_opt("safety")
        .await?
        .is_some_and(|m| container(&m, "safety").is_some_and(|c| c.restart_count == 0));
    assert!(
        monitor_kept_running,
        "the monitor ran through the scenario without a restart"
    );
    let code = container(&done, "sim")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(
        (phase(&done), code),
        ("Succeeded", Some(0)),
        "the monitor stopped the robot in time"
    );
    Ok(())
}

/// A pod runner of the test's own, for pods carrying `selector` (kwok's upstream stages run those,
/// so the cluster's runner never sees them).
fn start_own_runner(
    cluster_state: &Path,
    state: &Path,
    selector: &str,
) -> anyhow::Result<std::process::Child> {
    std::fs::create_dir_all(state)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("runner.log"))?;
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_pod-runner"))
        .env("KUBECONFIG", cluster_state.join("kubeconfig"))
        .args(["--pod-selector", selector, "--image", "busybox=/bin/sh"])
        .args(["--shutdown-grace-s", "2", "--state-dir"])
        .arg(state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()?)
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn runner_never_leaves_a_process_behind_on_sigterm_or_after_being_killed()
-> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("runner_shutdown")?.is_none() {
        return Ok(());
    }
    let cluster_state = cluster
        .state_dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("local cluster without a state directory"))?;
    let ns = TestNamespace::create(&cluster.client, "runner-own", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let selector_value = random_suffix();
    let selector = format!("robofleet.io/runner-test={selector_value}");
    let state = std::env::temp_dir().join(format!("pod-runner-own-{selector_value}"));
    let mut pod = managed_pod(
        "own",
        "robot-000",
        serde_json::json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "busybox",
                            "command": ["sh", "-c", "while true; do sleep 1; done"]}],
        }),
    )?;
    pod.metadata.labels = Some([("robofleet.io/runner-test".to_owned(), selector_value)].into());
    let pod = pods.create(&PostParams::default(), &pod).await?;
    let uid = pod.uid().unwrap_or_default();
    let recorded = || process::recorded(&state.join("pids"), &format!("{uid}."));
    let wait_pid = |not: Option<i32>| {
        let recorded = &recorded;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Some((_, pid)) = recorded().into_iter().find(|(_, p)| Some(*p) != not)
                    && alive(pid)
                {
                    return anyhow::Ok(pid);
                }
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "no process started");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Killed outright: its child survives it, and the next runner stops that child by record.
    let mut runner = start_own_runner(&cluster_state, &state, &selector)?;
    let first = wait_pid(None).await?;
    runner.kill()?;
    runner.wait()?;
    assert!(
        alive(first),
        "SIGKILL leaves the child (nothing can stop that)"
    );
    let mut runner = start_own_runner(&cluster_state, &state, &selector)?;
    wait_until(
        Duration::from_secs(30),
        "leftover stopped by the next runner",
        || async { Ok(!alive(first)) },
    )
    .await?;
    let second = wait_pid(Some(first)).await?;

    // SIGTERM: the runner stops every child before it exits.
    kill(Pid::from_raw(i32::try_from(runner.id())?), Signal::SIGTERM)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = runner.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            runner.kill()?;
            anyhow::bail!("runner did not exit on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "runner exit: {status}");
    wait_until(
        Duration::from_secs(5),
        "child gone with the runner",
        || async { Ok(!alive(second)) },
    )
    .await?;
    assert!(recorded().is_empty(), "PID records removed");
    pods.delete("own", &DeleteParams::default()).await?;
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn sandboxed_pod_is_probed_inside_its_own_network_namespace() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("sandboxed_probe")?.is_none() {
        return Ok(());
    }
    require_ort();
    let ns = TestNamespace::create(&cluster.client, "runner-sandbox", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let (api, admin) = (free_port()?, free_port()?);
    let mut pod = sidecar_pod("sandboxed", "infra-000", "add_mul.onnx", api, admin)?;
    if let Some(spec) = pod.spec.as_mut() {
        spec.host_network = Some(false);
    }
    pods.create(&PostParams::default(), &pod).await?;
    let p = wait_pod(&pods, "sandboxed", 90, "sandboxed sidecar Ready", ready).await?;
    let pod_ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    assert!(pod_ip.starts_with("127.9."), "infra pod CIDR: {pod_ip}");
    // Ready came from a probe run inside the pod's namespace: from the robots' namespace the
    // same address and port has nothing listening.
    assert_eq!(
        http_status(&format!("{pod_ip}:{admin}"), "/v2/health/ready"),
        None
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn pod_the_runner_cannot_run_says_why() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if cluster.require_pod_runner("unknown_image")?.is_none() {
        return Ok(());
    }
    let ns = TestNamespace::create(&cluster.client, "runner-refused", &[]).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let pod = managed_pod(
        "unknown",
        "robot-000",
        serde_json::json!({"containers": [{"name": "c", "image": "nginx:1.27"}]}),
    )?;
    pods.create(&PostParams::default(), &pod).await?;
    let p = wait_pod(&pods, "unknown", 60, "reason reported", |p| {
        container(p, "c")
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("ErrImageNeverPull"))
    })
    .await?;
    let message = container(&p, "c")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(message.contains("nginx:1.27"), "{message}");
    assert!(!ready(&p));
    assert_eq!(phase(&p), "Running");
    // and it is still deleted properly
    pods.delete("unknown", &DeleteParams::default()).await?;
    wait_until(Duration::from_secs(30), "pod deleted", || async {
        Ok(pods.get_opt("unknown").await?.is_none())
    })
    .await?;
    Ok(())
}
