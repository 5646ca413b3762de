//! The pod runner: a small kubelet for simulated robots.
//!
//! kwok makes robot Nodes look alive, and a custom kwok stage (`tests/cluster/stages/`) makes pods
//! labelled `app.kubernetes.io/managed-by=robofleet-operator` Running (with pod and host IPs) but
//! never Ready and never completed or deleted. This runner watches those pods; for each one bound
//! to a simulated robot it plans the pod ([`spec`], pure), runs a supervisor ([`pod`]) with a task
//! per container ([`container`]) that starts the local binary the image names ([`process`]), runs
//! its probes ([`probe`]) and reports what happened as the pod's status ([`status`], pure). When a
//! pod is deleted it stops the processes and then completes the delete; on SIGTERM it stops every
//! child before exiting.

pub mod address;
pub mod config;
pub mod container;
pub mod env;
pub mod error;
pub mod pod;
pub mod probe;
pub mod process;
pub mod spec;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::config::{Config, selector_matches};
use self::error::RunnerError;
use self::pod::Stop;
use self::spec::NodeInfo;

/// The label that marks pods the runner owns (and kwok's upstream stages leave alone).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "robofleet-operator");

struct Handle {
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

/// Runs until SIGTERM/SIGINT, then stops every pod's processes.
pub async fn run(cfg: Config, client: Client) -> Result<(), RunnerError> {
    let cfg = Arc::new(cfg);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunnerError::io("installing", "SIGTERM handler"))?;
    let pods_api: Api<Pod> = Api::all(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    let wc = watcher::Config::default().labels(&cfg.pod_selector);
    let mut events = watcher(pods_api, wc).default_backoff().boxed();
    let mut pods: HashMap<String, Handle> = HashMap::new();
    let mut nodes: HashMap<String, Option<NodeInfo>> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let node_wc = watcher::Config::default().labels(&selector_string(&cfg.node_selector));
    let mut node_events = watcher(nodes_api.clone(), node_wc)
        .default_backoff()
        .boxed();
    let mut online: HashMap<String, watch::Sender<bool>> = HashMap::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<String>();
    tracing::info!(selector = %cfg.pod_selector, "pod runner watching");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            // A pod task says so as its last act: its processes are gone and its delete is done.
            Some(uid) = done.recv() => {
                pods.remove(&uid);
            }
            Some(Ok(ev)) = node_events.next() => {
                if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = ev {
                    let now = is_online(&n);
                    online
                        .entry(n.name_any())
                        .or_insert_with(|| watch::channel(now).0)
                        .send_if_modified(|v| std::mem::replace(v, now) != now);
                }
            }
            ev = events.next() => match ev {
                None => break,
                Some(Err(e)) => tracing::warn!("pod watch: {e}"),
                Some(Ok(watcher::Event::Init)) => seen.clear(),
                Some(Ok(watcher::Event::InitDone)) => {
                    for (uid, h) in &pods {
                        if !seen.contains(uid) {
                            let _ = h.stop.send(Some(Stop::Gone(Duration::ZERO)));
                        }
                    }
                }
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                    seen.insert(p.uid().unwrap_or_default());
                    let mut ctx = Ctx {
                        cfg: &cfg, client: &client, nodes_api: &nodes_api, done: &done_tx,
                        online: &mut online,
                    };
                    on_pod(p, &mut ctx, &mut pods, &mut nodes).await;
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some(h) = pods.get(&p.uid().unwrap_or_default()) {
                        let _ = h.stop.send(Some(Stop::Gone(grace_of(&p))));
                    }
                }
            }
        }
    }
    tracing::info!(pods = pods.len(), "stopping every pod's processes");
    for h in pods.values() {
        let _ = h.stop.send(Some(Stop::Shutdown(cfg.shutdown_grace)));
    }
    for (_, h) in pods {
        let _ = h.task.await;
    }
    Ok(())
}

struct Ctx<'a> {
    online: &'a mut HashMap<String, watch::Sender<bool>>,
    cfg: &'a Arc<Config>,
    client: &'a Client,
    nodes_api: &'a Api<Node>,
    done: &'a mpsc::UnboundedSender<String>,
}

fn grace_of(p: &Pod) -> Duration {
    let secs = p.metadata.deletion_grace_period_seconds.or_else(|| {
        p.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
    });
    Duration::from_secs(secs.unwrap_or(30).try_into().unwrap_or(0))
}

async fn on_pod(
    p: Pod,
    ctx: &mut Ctx<'_>,
    pods: &mut HashMap<String, Handle>,
    nodes: &mut HashMap<String, Option<NodeInfo>>,
) {
    let uid = p.uid().unwrap_or_default();
    if let Some(h) = pods.get(&uid) {
        if p.metadata.deletion_timestamp.is_some() && h.stop.borrow().is_none() {
            let _ = h.stop.send(Some(Stop::Delete(grace_of(&p))));
        }
        return;
    }
    let Some(node_name) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let node = match nodes.get(&node_name) {
        Some(n) => n.clone(),
        None => {
            let info = match ctx.nodes_api.get_opt(&node_name).await {
                Ok(Some(n)) => {
                    let now = is_online(&n);
                    ctx.online
                        .entry(node_name.clone())
                        .or_insert_with(|| watch::channel(now).0);
                    node_info(&n, &ctx.cfg.node_selector)
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(node = %node_name, "reading node: {e}");
                    return;
                }
            };
            nodes.insert(node_name.clone(), info.clone());
            info
        }
    };
    let Some(node) = node else {
        return;
    };
    if p.metadata.deletion_timestamp.is_some() {
        // Nothing of ours runs for it (finished, or never started): complete the delete.
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
        tokio::spawn(async move { pod::delete_now(&api, &p).await });
        return;
    }
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    let has_ip = status.and_then(|s| s.pod_ip.as_deref()).is_some();
    if phase != Some("Running") || !has_ip {
        return; // kwok's stage has not run yet, or the pod is finished
    }
    tracing::info!(pod = %p.name_any(), namespace = %p.namespace().unwrap_or_default(), node = %node.name, "starting pod");
    let (stop, stop_rx) = watch::channel(None);
    let online = ctx
        .online
        .entry(node.name.clone())
        .or_insert_with(|| watch::channel(true).0)
        .subscribe();
    let (cfg, client, done) = (ctx.cfg.clone(), ctx.client.clone(), ctx.done.clone());
    let task_uid = uid.clone();
    let task = tokio::spawn(async move {
        pod::run(p, node, cfg, client, online, stop_rx).await;
        let _ = done.send(task_uid);
    });
    pods.insert(uid, Handle { stop, task });
}

/// The label kwok simulates nodes by: a robot without it is offline (`tests/cluster/up.sh`).
pub const ONLINE_LABEL: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Whether the robot is online: its pods keep running either way (as on a robot off Wi-Fi), but
/// the runner writes their status only while it is online.
pub fn is_online(n: &Node) -> bool {
    n.labels().get(ONLINE_LABEL.0).map(String::as_str) == Some(ONLINE_LABEL.1)
}

fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The robot's address, domain and CPUs, if the node is a simulated robot.
pub fn node_info(n: &Node, selector: &BTreeMap<String, String>) -> Option<NodeInfo> {
    if !selector_matches(selector, n.labels()) {
        return None;
    }
    let status = n.status.as_ref();
    let ip = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())?;
    Some(NodeInfo {
        name: n.name_any(),
        ip,
        ros_domain_id: n
            .labels()
            .get(robofleet_crds::labels::ROS_DOMAIN_ID)
            .cloned(),
        cpu: status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("cpu"))
            .map(|q| address::cpu_cores(&q.0).to_string()),
    })
}
