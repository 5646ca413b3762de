//! robofleet-operator: turns InferenceService, SafetyPolicy and SensorSim objects into pods on
//! robots, rolls models out wave by wave, and reports what it observes.
//!
//! Data flow (each reconcile): read the object, the robots it selects and its pods from the
//! shared caches ([`cache`]), validate (pure), compute the desired children and the rollout step
//! (pure, given observations and `now`, [`core`]), server-side apply ([`apply`]), then write
//! status once and only on change. [`controller`] holds one module per kind; [`run`] wires the
//! watches: the three custom resources; one watch of the pods the operator owns (label-selected,
//! stripped, shared by the three controllers; a pod change re-triggers its owner); Nodes and
//! Namespaces through reflectors whose relevant changes re-trigger every resource.

pub mod apply;
pub mod cache;
pub mod client;
pub mod config;
pub mod controller;
pub mod core;
pub mod leader;
pub mod metrics;
pub mod scrape;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use robofleet_crds::{InferenceService, SafetyPolicy, SensorSim};

use crate::config::Config;
use crate::controller::{Context, inference_service, safety_policy, sensor_sim};
use crate::metrics::Metrics;

/// Label selector for the pods this operator owns.
pub const OWNED_PODS: &str = "app.kubernetes.io/managed-by=robofleet-operator";

/// Runs the operator until SIGTERM or Ctrl-C. The metrics endpoint and the Node cache start at
/// once; the controllers (everything that writes) start only when `leadership` resolves, so a
/// standby keeps a warm cache and takes over without relisting the fleet's Nodes. `metrics` is
/// the registry the client counts its requests in ([`client::counting_client`]).
pub async fn run(
    config: Config,
    client: Client,
    metrics: Arc<Metrics>,
    leadership: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let server = {
        let metrics = metrics.clone();
        let mut rx = shutdown_rx.clone();
        let addr = config.metrics_addr;
        tokio::spawn(async move {
            metrics::serve(addr, metrics, async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
        })
    };

    // Nodes: a reflector strips what the operator never reads; only label, readiness, taint and
    // schedulability changes re-trigger reconciles.
    let (nodes, node_writer) = reflector::store::<Node>();
    let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| {
            n.metadata.managed_fields = None;
            n.metadata.annotations = None;
            if let Some(s) = n.status.as_mut() {
                s.images = None;
                s.node_info = None;
                s.volumes_attached = None;
                s.volumes_in_use = None;
            }
        })
        .reflect(node_writer)
        .applied_objects()
        .predicate_filter(node_relevant_hash, Default::default());

    let ready_metrics = metrics.clone();
    let nodes_ready = nodes.clone();
    tokio::spawn(async move {
        if nodes_ready.wait_until_ready().await.is_ok() {
            ready_metrics.set_ready(true);
        }
    });
    // One signal stops both controllers.
    let stop_tx = shutdown_tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm() => {}
        }
        let _ = stop_tx.send(true);
    });
    // Keep the Node cache warm while standing by; start writing only as the leader.
    let node_stream = {
        let mut node_stream = Box::pin(node_stream);
        let mut stop = shutdown_rx.clone();
        let mut leadership = std::pin::pin!(leadership);
        let led = loop {
            tokio::select! {
                () = &mut leadership => break true,
                _ = stop.wait_for(|v| *v) => break false,
                ev = node_stream.next() => if ev.is_none() { break false },
            }
        };
        if !led {
            let _ = server.await;
            return Ok(());
        }
        node_stream
    };
    // Pods: one watch of the pods this operator owns, stripped before caching, shared by the
    // three controllers: each pod change re-triggers its owner (named by its labels).
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (isvc_tx, isvc_pods) = futures::channel::mpsc::channel::<ObjectRef<InferenceService>>(256);
    let (safety_tx, safety_pods) = futures::channel::mpsc::channel::<ObjectRef<SafetyPolicy>>(256);
    let (sim_tx, sim_pods) = futures::channel::mpsc::channel::<ObjectRef<SensorSim>>(256);
    let pod_stream = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(OWNED_PODS),
    )
    .default_backoff()
    .modify(cache::strip_pod)
    .reflect(pod_writer)
    .touched_objects();
    tokio::spawn(async move {
        use futures::SinkExt;
        let mut pod_stream = std::pin::pin!(pod_stream);
        let (mut isvc_tx, mut safety_tx, mut sim_tx) = (isvc_tx, safety_tx, sim_tx);
        while let Some(p) = pod_stream.next().await {
            let Ok(p) = p else { continue };
            // A closed channel means that controller stopped; the others go on.
            let _ = match cache::owner_of(&p) {
                Some((inference_service::KIND, ns, name)) => {
                    isvc_tx.send(ObjectRef::new(name).within(ns)).await
                }
                Some((safety_policy::KIND, ns, name)) => {
                    safety_tx.send(ObjectRef::new(name).within(ns)).await
                }
                Some((sensor_sim::KIND, ns, name)) => {
                    sim_tx.send(ObjectRef::new(name).within(ns)).await
                }
                _ => Ok(()),
            };
        }
    });
    // Namespaces: names and labels only; a label change (robot workloads allowed or not)
    // re-triggers everything, like a robot change.
    let (namespaces, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let ns_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        Default::default(),
    )
    .default_backoff()
    .modify(cache::strip_namespace)
    .reflect(ns_writer)
    .applied_objects()
    .predicate_filter(
        |n: &PartialObjectMeta<Namespace>| {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            n.metadata.labels.hash(&mut h);
            Some(h.finish())
        },
        Default::default(),
    )
    .map(|r| r.map(|_| ()));
    // Node and namespace changes re-trigger every resource of every kind: one stream, fanned out.
    let (isvc_all_tx, isvc_all) = futures::channel::mpsc::channel::<()>(1);
    let (safety_all_tx, safety_all) = futures::channel::mpsc::channel::<()>(1);
    let (sim_all_tx, sim_all) = futures::channel::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let node_stream = node_stream.map(|r| r.map(|_| ()));
        let mut all = std::pin::pin!(futures::stream::select(node_stream, ns_stream));
        let (mut a, mut b, mut c) = (isvc_all_tx, safety_all_tx, sim_all_tx);
        while let Some(n) = all.next().await {
            if n.is_ok() {
                // A full channel already holds a pending "reconcile all".
                let _ = a.try_send(());
                let _ = b.try_send(());
                let _ = c.try_send(());
            }
        }
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let isvc = Controller::new(
        Api::<InferenceService>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config())
    .reconcile_on(isvc_pods)
    // Its preflight SensorSims (few, label-selected): a finished preflight moves the rollout on.
    .owns(
        Api::<SensorSim>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{}={}",
            robofleet_crds::labels::OWNER_KIND,
            inference_service::KIND
        )),
    )
    .reconcile_all_on(isvc_all)
    .graceful_shutdown_on(stopped(shutdown_rx.clone()));
    let safety = Controller::new(
        Api::<SafetyPolicy>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config())
    .reconcile_on(safety_pods)
    .reconcile_all_on(safety_all)
    .graceful_shutdown_on(stopped(shutdown_rx.clone()));
    let sims = Controller::new(
        Api::<SensorSim>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller_config())
    .reconcile_on(sim_pods)
    .reconcile_all_on(sim_all)
    .graceful_shutdown_on(stopped(shutdown_rx.clone()));
    let scraper: Arc<dyn scrape::Scrape> = match config.scrape_transport {
        scrape::Transport::Direct => Arc::new(scrape::HttpScrape::new(SCRAPE_TIMEOUT)),
        scrape::Transport::ApiServerProxy => Arc::new(scrape::ApiServerProxyScrape::new(
            client.clone(),
            SCRAPE_TIMEOUT,
        )),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        nodes: nodes.clone(),
        pods,
        namespaces,
        policies: safety.store(),
        sims: sims.store(),
        revisions: Default::default(),
        expectations: Default::default(),
        metrics: metrics.clone(),
        scraper,
        confirmations: Default::default(),
        stop_consumers: Default::default(),
        windows: Default::default(),
        monitor_cache: Default::default(),
        written: Default::default(),
        busy: Default::default(),
    });
    let isvc = isvc
        .run(
            inference_service::reconcile,
            inference_service::error_policy,
            ctx.clone(),
        )
        .for_each(log_event);
    let safety = safety
        .run(
            safety_policy::reconcile,
            safety_policy::error_policy,
            ctx.clone(),
        )
        .for_each(log_event);
    let sims = sims
        .run(sensor_sim::reconcile, sensor_sim::error_policy, ctx)
        .for_each(log_event);
    tokio::join!(isvc, safety, sims);
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    Ok(())
}

/// Every controller: a short trailing debounce, so a burst of pod events (a thousand monitor
/// pods starting) costs one reconcile of their owner, not one per event.
fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().debounce(RECONCILE_DEBOUNCE)
}

/// Per-request timeout of a metrics scrape.
pub const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a controller waits for more changes of an object before reconciling it.
pub const RECONCILE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(200);

async fn log_event<T, E: std::fmt::Display>(res: Result<T, E>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "controller event");
    }
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Hash of the Node fields placement depends on: labels, readiness, taints, unschedulable.
fn node_relevant_hash(node: &Node) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    node.metadata.labels.hash(&mut h);
    if let Some(spec) = &node.spec {
        spec.unschedulable.hash(&mut h);
        for t in spec.taints.iter().flatten() {
            (&t.key, &t.effect, &t.value).hash(&mut h);
        }
    }
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    ready.hash(&mut h);
    Some(h.finish())
}
