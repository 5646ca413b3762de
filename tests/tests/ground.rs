//! Tests that prove the test ground is a real Kubernetes control plane: robots are Ready Nodes,
//! the scheduler places pods on them with loopback pod IPs, the namespace and garbage collectors
//! run, and the node lifecycle controller notices a robot going offline.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Node, Pod, PodSpec, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use robofleet_crds::labels;
use robofleet_tests::{TestCluster, TestNamespace, random_suffix, wait_until};

/// kwok simulates exactly the nodes carrying this label (`tests/cluster/up.sh`).
const KWOK_LABEL: &str = "kwok.x-k8s.io/node";

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn robots_are_ready_nodes_with_robot_labels() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let robots = nodes
        .list(&ListParams::default().labels(&format!("{}=true", labels::ROBOT)))
        .await?;
    let want: usize = std::env::var("ROBOFLEET_ROBOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    assert!(
        robots.items.len() >= want,
        "{} robots, want at least {want}",
        robots.items.len()
    );
    for robot in &robots.items {
        let name = robot.name_any();
        assert!(node_ready(robot), "robot {name} is not Ready");
        let l = robot.labels();
        assert!(
            l.contains_key(labels::ZONE),
            "robot {name} has no zone label"
        );
        let domain: u32 = l
            .get(labels::ROS_DOMAIN_ID)
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("robot {name} has no numeric ROS domain id"));
        assert!(
            domain <= 232,
            "robot {name}: domain id {domain} out of range"
        );
    }
    if cluster.require_kwok("robot addresses") {
        for robot in &robots.items {
            let ips: Vec<_> = robot
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .collect();
            assert!(
                !ips.is_empty() && ips.iter().all(|ip| ip.starts_with("127.")),
                "robot {} has non-loopback or no InternalIP: {ips:?}",
                robot.name_any()
            );
        }
        // the infra node exists, is Ready and is not a robot
        let infra = nodes.get("infra-000").await?;
        assert!(node_ready(&infra));
        assert!(!infra.labels().contains_key(labels::ROBOT));
    }
    Ok(())
}

fn pause_deployment(name: &str, replicas: i32) -> Deployment {
    let labels_map: BTreeMap<String, String> = [("app".to_owned(), name.to_owned())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels_map.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels_map),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some([(labels::ROBOT.to_owned(), "true".to_owned())].into()),
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("robofleet.invalid/never-pulled:0".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn deployment_pods_run_on_robots_with_loopback_ips() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let ns = TestNamespace::create(&cluster.client, "ground-deploy", &[]).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns.name);
    deployments
        .create(&PostParams::default(), &pause_deployment("pause", 3))
        .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns.name);
    let lp = ListParams::default().labels("app=pause");
    wait_until(Duration::from_secs(90), "3 Running pods", || async {
        let list = pods.list(&lp).await?;
        Ok(list.items.len() == 3
            && list.items.iter().all(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_deref())
                        .is_some()
            }))
    })
    .await?;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    for pod in pods.list(&lp).await? {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .expect("scheduled");
        let node = nodes.get(&node).await?;
        assert_eq!(
            node.labels().get(labels::ROBOT).map(String::as_str),
            Some("true")
        );
        if cluster.kwok {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            let ip: std::net::Ipv4Addr = ip.parse()?;
            assert!(ip.is_loopback(), "pod {} has IP {ip}", pod.name_any());
            // the pod IP lies inside its node's pod CIDR
            let cidr = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .expect("podCIDR");
            let prefix: Vec<&str> = cidr.split('.').take(3).collect();
            assert!(
                ip.to_string()
                    .starts_with(&format!("{}.", prefix.join("."))),
                "{ip} not in {cidr}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn deleting_a_namespace_completes() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let ns = TestNamespace::create(&cluster.client, "ground-nsdel", &[]).await?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &ns.name);
    deployments
        .create(&PostParams::default(), &pause_deployment("doomed", 2))
        .await?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await?;
    wait_until(Duration::from_secs(120), "namespace gone", || async {
        Ok(namespaces.get_opt(&ns.name).await?.is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn deleting_an_owner_garbage_collects_children() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let ns = TestNamespace::create(&cluster.client, "ground-gc", &[]).await?;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns.name);
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    let owner_ref = OwnerReference {
        api_version: ConfigMap::api_version(&()).into(),
        kind: ConfigMap::kind(&()).into(),
        name: owner.name_any(),
        uid: owner.uid().expect("uid"),
        ..OwnerReference::default()
    };
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("child-{i}")),
                    owner_references: Some(vec![owner_ref.clone()]),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await?;
    }
    cms.delete("owner", &DeleteParams::background()).await?;
    wait_until(Duration::from_secs(60), "children collected", || async {
        let left = cms.list(&ListParams::default()).await?;
        Ok(!left
            .items
            .iter()
            .any(|c| c.name_any().starts_with("child-")))
    })
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn robot_taken_offline_turns_not_ready_and_gets_noexecute_taint() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    if !cluster.require_kwok("robot_taken_offline") {
        return Ok(());
    }
    // A node of its own, shaped like a robot but without the robot label, so no other test (and
    // no operator under test) sees a robot disappear under it.
    let name = format!("offline-{}", random_suffix());
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {KWOK_LABEL: "fake", "type": "kwok", "kubernetes.io/hostname": name,
                       labels::ZONE: "zone-test", labels::ROS_DOMAIN_ID: "42"},
        },
        "spec": {"podCIDR": "127.8.0.0/24", "podCIDRs": ["127.8.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.98.0.1"}],
                   "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                   "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let result = async {
        wait_until(Duration::from_secs(60), "new robot Ready", || async {
            Ok(nodes.get_opt(&name).await?.is_some_and(|n| node_ready(&n)))
        })
        .await?;
        // Offline: kwok stops renewing the Lease of a node that loses its label, as a robot off
        // Wi-Fi stops its kubelet's heartbeats.
        let patch = serde_json::json!({"metadata": {"labels": {KWOK_LABEL: null}}});
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        wait_until(
            Duration::from_secs(90),
            "robot NotReady with NoExecute taint",
            || async {
                let Some(n) = nodes.get_opt(&name).await? else {
                    return Ok(false);
                };
                let tainted = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|ts| {
                        ts.iter().any(|t| {
                            t.effect == "NoExecute"
                                && (t.key == "node.kubernetes.io/unreachable"
                                    || t.key == "node.kubernetes.io/not-ready")
                        })
                    });
                Ok(!node_ready(&n) && tainted)
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    nodes.delete(&name, &DeleteParams::default()).await?;
    result
}
