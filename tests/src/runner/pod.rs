//! One pod's supervisor: fetch what it refers to, plan it, materialise its volumes, give it a
//! network namespace when it is not hostNetwork, run a task per container, write the pod status
//! whenever a container record changes, and on deletion stop everything and complete the delete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodCondition, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::config::Config;
use super::container::{self, ContainerCtx};
use super::error::RunnerError;
use super::process;
use super::spec::{self, NodeInfo, PlanInput, PodPlan, VolumeContent};
use super::status::{self, State};

/// Why a pod's processes stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The pod is being deleted: stop with this grace period, then complete the delete.
    Delete(Duration),
    /// The pod object is gone already: stop with this grace period.
    Gone(Duration),
    /// The runner is shutting down: stop, leave the API alone.
    Shutdown(Duration),
}

impl Stop {
    fn grace(self) -> Duration {
        match self {
            Self::Delete(g) | Self::Gone(g) | Self::Shutdown(g) => g,
        }
    }
}

/// Where the runner keeps a robot's state and a pod's files.
pub fn robot_dir(state: &Path, node: &str) -> PathBuf {
    state.join("robots").join(node)
}

/// The directory of one pod under its robot.
pub fn pod_dir(state: &Path, node: &str, pod: &Pod) -> PathBuf {
    robot_dir(state, node).join("pods").join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    ))
}

/// Where PID records go.
pub fn pid_dir(state: &Path) -> PathBuf {
    state.join("pids")
}

/// Runs a pod until it is stopped; returns once its processes are gone (and, for
/// [`Stop::Delete`], the pod object is deleted).
pub async fn run(
    pod: Pod,
    node: NodeInfo,
    cfg: Arc<Config>,
    client: Client,
    online: watch::Receiver<bool>,
    mut stop: watch::Receiver<Option<Stop>>,
) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut writer = StatusWriter {
        api: api.clone(),
        name: name.clone(),
        conditions: pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default(),
        last: None,
        online,
    };
    let result = supervise(&pod, &node, &cfg, &client, &mut writer, &mut stop).await;
    if let Err(e) = result {
        tracing::warn!(pod = %name, namespace = %ns, kind = e.kind(), "cannot run pod: {e}");
        let waiting = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| status::Container {
                state: State::Waiting {
                    reason: e.kind().into(),
                    message: Some(e.to_string()),
                },
                ..status::Container::new(&c.name, c.image.as_deref().unwrap_or_default())
            })
            .collect::<Vec<_>>();
        writer.write(&waiting).await;
    }
    // The pod's processes are done; wait until it is deleted (or the runner stops).
    let why = match stop.wait_for(Option::is_some).await {
        Ok(s) => *s,
        Err(_) => None,
    };
    if let Some(Stop::Delete(_)) = why {
        delete_now(&api, &pod).await;
    }
    tracing::info!(pod = %name, namespace = %ns, ?why, "pod finished");
}

/// Deletes the pod object with no further grace (its processes are gone), only if it is still
/// the same pod (UID precondition).
pub async fn delete_now(api: &Api<Pod>, pod: &Pod) {
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod.name_any(), "completing the delete failed: {e}"),
    }
}

async fn supervise(
    pod: &Pod,
    node: &NodeInfo,
    cfg: &Config,
    client: &Client,
    writer: &mut StatusWriter,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Result<(), RunnerError> {
    let ns = pod.namespace().unwrap_or_default();
    let (config_maps, secrets) = referenced(pod, client, &ns).await?;
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_else(|| node.ip.clone());
    let pod_dir = pod_dir(&cfg.state_dir, &node.name, pod);
    let robot_dir = robot_dir(&cfg.state_dir, &node.name);
    let plan = spec::plan(
        pod,
        &PlanInput {
            node,
            pod_ip: &pod_ip,
            pod_dir: &pod_dir,
            robot_dir: &robot_dir,
            images: &cfg.images,
            pass_env: &cfg.pass_env,
            config_maps: &config_maps,
            secrets: &secrets,
        },
    )?;
    materialise(&plan)?;
    let uid = pod.uid().unwrap_or_default();
    let pids = pid_dir(&cfg.state_dir);
    let sandbox = if !plan.host_network && cfg.pod_netns {
        let mut s = process::start_sandbox(&pod_dir.join("sandbox.log")).await?;
        s.record(&pids, &format!("{uid}.sandbox"))?;
        Some(s)
    } else {
        None
    };
    let netns = sandbox.as_ref().map(|s| process::netns_path(s.pid));
    let previous_restarts: BTreeMap<String, i32> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| (c.name.clone(), c.restart_count))
        .collect();

    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (grace_tx, grace_rx) = watch::channel(None);
    let mut records: Vec<status::Container> = plan
        .containers
        .iter()
        .map(|c| status::Container::new(&c.name, &c.image))
        .collect();
    let mut tasks = Vec::new();
    for (index, launch) in plan.containers.iter().enumerate() {
        let ctx = ContainerCtx {
            index,
            policy: plan.restart_policy,
            backoff: cfg.backoff,
            netns: netns.clone(),
            pid_dir: pids.clone(),
            key: format!("{uid}.{}", launch.name),
            restart_count: previous_restarts.get(&launch.name).copied().unwrap_or(0),
        };
        let launch = Arc::new(launch.clone());
        tasks.push(tokio::spawn(container::run(
            launch,
            ctx,
            updates_tx.clone(),
            grace_rx.clone(),
        )));
    }
    drop(updates_tx);
    let mut stopping = false;
    let mut online = writer.online.clone();
    loop {
        tokio::select! {
            // Back online: write the status again (the node lifecycle controller marked the pod
            // not Ready while the robot was away).
            Ok(()) = online.changed(), if !stopping => {
                if *online.borrow_and_update() {
                    writer.last = None;
                    writer.write(&records).await;
                }
            }
            u = updates.recv() => match u {
                Some((i, rec)) => {
                    if let Some(slot) = records.get_mut(i) {
                        *slot = rec;
                    }
                    // Coalesce a burst of changes into one write.
                    while let Ok((i, rec)) = updates.try_recv() {
                        if let Some(slot) = records.get_mut(i) {
                            *slot = rec;
                        }
                    }
                    if !stopping {
                        writer.write(&records).await;
                    }
                }
                None => break,
            },
            why = async { stop.wait_for(Option::is_some).await.ok().and_then(|s| *s) }, if !stopping => {
                let grace = why.map_or(Duration::ZERO, |s| s.grace().min(plan.grace));
                stopping = true;
                let _ = grace_tx.send(Some(grace));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Some(s) = sandbox {
        s.stop(Duration::ZERO).await;
    }
    Ok(())
}

/// ConfigMaps and Secrets the pod refers to (volumes, env, envFrom); missing ones are left out
/// and reported by the plan unless optional.
async fn referenced(
    pod: &Pod,
    client: &Client,
    ns: &str,
) -> Result<(BTreeMap<String, ConfigMap>, BTreeMap<String, Secret>), RunnerError> {
    let Some(spec) = &pod.spec else {
        return Ok(Default::default());
    };
    let mut cm_names = Vec::new();
    let mut secret_names = Vec::new();
    for v in spec.volumes.iter().flatten() {
        cm_names.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secret_names.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            cm_names.extend(src.config_map.as_ref().map(|c| c.name.clone()));
            secret_names.extend(src.secret.as_ref().map(|c| c.name.clone()));
        }
    }
    for c in &spec.containers {
        for e in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            cm_names.extend(e.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secret_names.extend(e.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
        for f in c.env_from.iter().flatten() {
            cm_names.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
            secret_names.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out_cm = BTreeMap::new();
    for n in cm_names {
        if let Some(cm) = cms.get_opt(&n).await? {
            out_cm.insert(n, cm);
        }
    }
    let mut out_s = BTreeMap::new();
    for n in secret_names {
        if let Some(s) = secrets.get_opt(&n).await? {
            out_s.insert(n, s);
        }
    }
    Ok((out_cm, out_s))
}

/// Creates the pod's directories and volumes on the host.
fn materialise(plan: &PodPlan) -> Result<(), RunnerError> {
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(RunnerError::io("creating", p));
    for c in &plan.containers {
        mkdir(&c.dir)?;
        mkdir(&c.cwd)?;
    }
    for v in &plan.volumes {
        match &v.content {
            VolumeContent::EmptyDir | VolumeContent::HostDir => mkdir(&v.host_path)?,
            VolumeContent::HostFile => {
                if let Some(parent) = v.host_path.parent() {
                    mkdir(parent)?;
                }
                if !v.host_path.exists() {
                    std::fs::write(&v.host_path, b"")
                        .map_err(RunnerError::io("creating", &v.host_path))?;
                }
            }
            VolumeContent::Files(files) => {
                mkdir(&v.host_path)?;
                for (rel, bytes) in files {
                    let path = v.host_path.join(rel);
                    if let Some(parent) = path.parent() {
                        mkdir(parent)?;
                    }
                    std::fs::write(&path, bytes).map_err(RunnerError::io("writing", &path))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes the pod status (merge patch of the status subresource) when it changed, and only while
/// the robot is online: a kubelet off the network cannot reach the API server either.
struct StatusWriter {
    api: Api<Pod>,
    name: String,
    conditions: Vec<PodCondition>,
    last: Option<serde_json::Value>,
    online: watch::Receiver<bool>,
}

impl StatusWriter {
    async fn write(&mut self, records: &[status::Container]) {
        if !*self.online.borrow() {
            return;
        }
        let patch = status::pod_status(records, &self.conditions, Timestamp::now());
        if self.last.as_ref() == Some(&patch) {
            return;
        }
        for attempt in 0..3u32 {
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(pod) => {
                    self.conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
                    self.last = Some(patch);
                    return;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, attempt, "status write failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}
