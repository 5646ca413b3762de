//! The operator against the local cluster: InferenceService placement. One test function drives
//! one operator process (several operators would fight over the same objects), step by step:
//! pods land on exactly the selected robots, relabelling a robot moves its pod, a deleted pod
//! returns, a spec change replaces pods with the new revision (kept in a ControllerRevision), a
//! robot offline past the toleration timeout keeps its pod and is counted offline while the
//! service stays Healthy, a broken model is reported from the robots' fallback, and refusals (namespace not allowed, image off the allow-list, no matching robot) are Stalled.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use robofleet_crds::{InferenceService, labels};
use robofleet_tests::{
    HarnessError, TestCluster, TestNamespace, install_crds, random_suffix, wait_until,
    workspace_binary,
};
use serde_json::json;

const IMAGE: &str = "robofleet/inference-sidecar:dev";

fn isvc(name: &str, selector_key: &str, sha: char) -> InferenceService {
    serde_json::from_value(json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "file:///models/detector.onnx", "sha256": sha.to_string().repeat(64), "version": "v1"},
            "robotSelector": {"matchLabels": {selector_key: "yes"}},
            // Placement is the subject here: every change goes to every robot at once (waves
            // and analysis are tests/tests/operator_rollout.rs).
            "rollout": {"strategy": "AllAtOnce"},
        }
    }))
    .expect("valid InferenceService")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

async fn pod_nodes(pods: &Api<Pod>, owner: &str) -> Result<BTreeSet<String>, HarnessError> {
    let lp = ListParams::default().labels(&format!("{}={owner}", labels::OWNER));
    Ok(pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            p.spec
                .as_ref()?
                .affinity
                .as_ref()?
                .node_affinity
                .as_ref()?
                .required_during_scheduling_ignored_during_execution
                .as_ref()?
                .node_selector_terms
                .first()?
                .match_fields
                .as_ref()?
                .first()?
                .values
                .as_ref()?
                .first()
                .cloned()
        })
        .collect())
}

async fn stalled_reason(
    api: &Api<InferenceService>,
    name: &str,
) -> Result<Option<String>, HarnessError> {
    let obj = api.get(name).await?;
    Ok(obj.status.and_then(|s| {
        s.common
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| c.reason)
    }))
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn inference_service_placement() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    let client = cluster.client.clone();
    install_crds(&client).await?;
    let kubeconfig = robofleet_tests::operator_kubeconfig(&cluster);
    let mut cmd = tokio::process::Command::new(workspace_binary("robofleet-operator"));
    cmd.args([
        "--lease-name",
        &robofleet_tests::operator_lease(format!("robofleet-operator-{}", random_suffix())),
        "--metrics-addr",
        "127.0.0.1:0",
        "--image",
        &format!("default={IMAGE}"),
    ])
    .env("RUST_LOG", "info,kube=warn")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    if let Some(k) = &kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let mut operator = cmd.spawn()?;

    // Robots chosen by a label of this test's own.
    let key = format!("test.robofleet.io/placement-{}", random_suffix());
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
    label(&robots[0], Some("yes")).await?;
    label(&robots[1], Some("yes")).await?;

    let result = async {
        let ns = TestNamespace::create(&client, "op-place", &[(labels::ROBOT_WORKLOADS, "true")])
            .await?;
        let isvcs: Api<InferenceService> = Api::namespaced(client.clone(), &ns.name);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        isvcs
            .create(&PostParams::default(), &isvc("detector", &key, 'a'))
            .await?;

        let want: BTreeSet<String> = [robots[0].clone(), robots[1].clone()].into();
        wait_until(
            Duration::from_secs(60),
            "pods on exactly the two labelled robots",
            || async { Ok(pod_nodes(&pods, "detector").await? == want) },
        )
        .await?;
        wait_until(
            Duration::from_secs(60),
            "status counts 2 robots, both updated",
            || async {
                let s = isvcs.get("detector").await?.status;
                Ok(s.is_some_and(|s| {
                    s.robots.total == 2
                        && s.robots.updated == 2
                        && s.common.observed_generation.is_some()
                }))
            },
        )
        .await?;
        let first_rev = pods
            .list(&ListParams::default().labels(&format!("{}=detector", labels::OWNER)))
            .await?
            .items[0]
            .labels()
            .get(labels::REVISION)
            .cloned()
            .unwrap_or_default();
        let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns.name);
        anyhow::ensure!(
            revisions
                .get_opt(&format!("detector-{first_rev}"))
                .await?
                .is_some(),
            "ControllerRevision kept"
        );

        // Relabelling moves the pod.
        label(&robots[1], None).await?;
        label(&robots[2], Some("yes")).await?;
        let moved: BTreeSet<String> = [robots[0].clone(), robots[2].clone()].into();
        wait_until(
            Duration::from_secs(60),
            "pod moved to the newly labelled robot",
            || async { Ok(pod_nodes(&pods, "detector").await? == moved) },
        )
        .await?;

        // A deleted pod returns.
        let victim = pods
            .list(&ListParams::default().labels(&format!("{}=detector", labels::OWNER)))
            .await?
            .items[0]
            .name_any();
        pods.delete(&victim, &DeleteParams::default()).await?;
        wait_until(Duration::from_secs(60), "deleted pod recreated", || async {
            Ok(pods
                .get_opt(&victim)
                .await?
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
                && pod_nodes(&pods, "detector").await? == moved)
        })
        .await?;

        // A new model is a new revision: every pod is replaced.
        isvcs
            .patch(
                "detector",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"model": {"sha256": "b".repeat(64)}}})),
            )
            .await?;
        wait_until(
            Duration::from_secs(90),
            "pods replaced at the new revision",
            || async {
                let list = pods
                    .list(&ListParams::default().labels(&format!("{}=detector", labels::OWNER)))
                    .await?;
                Ok(list.items.len() == 2
                    && list
                        .items
                        .iter()
                        .all(|p| p.labels().get(labels::REVISION) != Some(&first_rev)))
            },
        )
        .await?;

        // A real model becomes the stable revision; a wrong sha256 then makes every updated robot
        // fall back to it, which the operator learns by scraping and reports as ModelLoadFailed.
        let model =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/add_mul.onnx");
        let good_sha = sha256_hex(&std::fs::read(&model)?);
        let mut real = isvc("realmodel", &key, 'f');
        real.spec.model.uri = format!("file://{}", model.display());
        real.spec.model.sha256 = good_sha;
        // Host network: a second service on the same robots needs ports of its own (the scheduler
        // refuses a clash, as it should).
        real.spec.runtime.ports.inference = 8100;
        real.spec.runtime.ports.metrics = 8102;
        isvcs.create(&PostParams::default(), &real).await?;
        wait_until(
            Duration::from_secs(120),
            "realmodel Healthy with a stable revision",
            || async {
                let s = isvcs.get("realmodel").await?.status;
                Ok(s.is_some_and(|s| {
                    s.phase == Some(robofleet_crds::inference_service::RolloutPhase::Healthy)
                        && s.stable_revision.is_some()
                        && s.robots.ready == 2
                }))
            },
        )
        .await?;

        // A robot offline past the short toleration timeout keeps its pod (robot pods tolerate
        // not-ready/unreachable without a limit), is counted offline, and the service stays
        // Healthy. A plain pod without those tolerations on the same robot is evicted: that
        // proves the timeout really passed.
        let offline_robot = robots[0].clone();
        let real_pods = pods
            .list(&ListParams::default().labels(&format!("{}=realmodel", labels::OWNER)))
            .await?;
        let kept = real_pods
            .items
            .iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(offline_robot.as_str()))
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .expect("a realmodel pod on the robot");
        let control: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "control-no-tolerations"},
            "spec": {"nodeName": offline_robot, "containers": [{"name": "c", "image": "robofleet.invalid/none:0"}]}
        }))?;
        pods.create(&PostParams::default(), &control).await?;
        nodes
            .patch(&offline_robot, &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"kwok.x-k8s.io/node": null}}})))
            .await?;
        let offline_result = async {
            wait_until(Duration::from_secs(120), "control pod evicted from the offline robot", || async {
                Ok(pods.get_opt("control-no-tolerations").await?.is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
            })
            .await?;
            let still = pods.get_opt(&kept.0).await?;
            anyhow::ensure!(
                still.as_ref().is_some_and(|p| p.uid().unwrap_or_default() == kept.1 && p.metadata.deletion_timestamp.is_none()),
                "the robot pod on the offline robot was evicted or replaced"
            );
            wait_until(Duration::from_secs(60), "realmodel Healthy with 1 robot offline", || async {
                Ok(isvcs.get("realmodel").await?.status.is_some_and(|s| {
                    s.phase == Some(robofleet_crds::inference_service::RolloutPhase::Healthy) && s.robots.offline == 1
                }))
            })
            .await?;
            anyhow::Ok(())
        }
        .await;
        nodes
            .patch(&offline_robot, &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"kwok.x-k8s.io/node": "fake"}}})))
            .await?;
        offline_result?;
        wait_until(Duration::from_secs(60), "robot back online and counted", || async {
            Ok(isvcs.get("realmodel").await?.status.is_some_and(|s| s.robots.offline == 0 && s.robots.ready == 2))
        })
        .await?;
        isvcs
            .patch(
                "realmodel",
                &PatchParams::default(),
                // Without automatic rollback the robots keep the broken revision (serving the
                // fallback) and the service says so; with it, tests/tests/operator_rollout.rs.
                &Patch::Merge(json!({"spec": {"model": {"sha256": "0".repeat(64)},
                                              "rollout": {"strategy": "AllAtOnce", "autoRollback": false}}})),
            )
            .await?;
        wait_until(
            Duration::from_secs(120),
            "realmodel Stalled with ModelLoadFailed, both robots on the fallback",
            || async {
                let s = isvcs.get("realmodel").await?.status.unwrap_or_default();
                Ok(s.robots.updated == 2
                    && stalled_reason(&isvcs, "realmodel").await?.as_deref()
                        == Some("ModelLoadFailed"))
            },
        )
        .await?;
        let status = isvcs.get("realmodel").await?.status.expect("status");
        let message = status.common.message.unwrap_or_default();
        anyhow::ensure!(
            message.contains("failed to load") && message.contains("fallback"),
            "message: {message}"
        );
        anyhow::ensure!(
            status.phase == Some(robofleet_crds::inference_service::RolloutPhase::Degraded)
        );
        // One Warning Event for the transition, not one per robot.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns.name);
        wait_until(Duration::from_secs(30), "a ModelLoadFailed Event for realmodel", || async {
            Ok(events.list(&ListParams::default()).await?.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("realmodel")
                    && e.reason.as_deref() == Some("ModelLoadFailed")
                    && e.type_.as_deref() == Some("Warning")
            }))
        })
        .await?;

        // The scrape path of `--scrape-transport api-server-proxy` (operator/src/scrape.rs) is
        // the API server's pods/proxy: the real API server routes it to the pod and refuses it
        // here only because every pod address of this test ground is loopback (400 "address not
        // allowed"; a wrong path would be a 404).
        let robot_pod = pods
            .list(&ListParams::default().labels(&format!("{}=realmodel", labels::OWNER)))
            .await?
            .items
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no realmodel pod"))?;
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}:8002/proxy/metrics",
            ns.name,
            robot_pod.name_any()
        );
        let answer = client
            .request_text(http::Request::get(&path).body(Vec::new())?)
            .await;
        match answer {
            Err(kube::Error::Api(e)) => anyhow::ensure!(
                e.code == 400 && e.message.contains("address not allowed"),
                "pods/proxy answered {} {}",
                e.code,
                e.message
            ),
            other => anyhow::bail!("pods/proxy to a loopback pod was not refused: {other:?}"),
        }

        // Refusals are Stalled with their reason.
        isvcs
            .create(
                &PostParams::default(),
                &isvc("nobody", "test.robofleet.io/no-such-label", 'c'),
            )
            .await?;
        let mut off_list = isvc("offlist", &key, 'd');
        off_list.spec.runtime.image = Some("not-allowed".into());
        isvcs.create(&PostParams::default(), &off_list).await?;
        let other = TestNamespace::create(&client, "op-noworkloads", &[]).await?;
        let other_api: Api<InferenceService> = Api::namespaced(client.clone(), &other.name);
        other_api
            .create(&PostParams::default(), &isvc("detector", &key, 'e'))
            .await?;
        for (api, name, reason) in [
            (&isvcs, "nobody", "NoMatchingRobots"),
            (&isvcs, "offlist", "ImageNotAllowed"),
            (&other_api, "detector", "NamespaceNotAllowed"),
        ] {
            wait_until(
                Duration::from_secs(60),
                &format!("{name} Stalled with {reason}"),
                || async { Ok(stalled_reason(api, name).await?.as_deref() == Some(reason)) },
            )
            .await?;
        }
        let other_pods: Api<Pod> = Api::namespaced(client.clone(), &other.name);
        anyhow::ensure!(
            other_pods
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "no pods where not allowed"
        );
        anyhow::ensure!(
            pod_nodes(&pods, "offlist").await?.is_empty(),
            "no pods for an image off the allow-list"
        );
        anyhow::Ok(())
    }
    .await;

    for r in &robots[..3] {
        let _ = label(r, None).await;
    }
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    result
}
