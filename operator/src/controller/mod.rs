//! One module per kind: reconcile + error_policy + watch wiring, nothing else.

pub mod inference_service;
pub mod rollout_io;
pub mod safety_policy;
pub mod sensor_sim;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use robofleet_crds::{SafetyPolicy, SensorSim};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scrape::{LoadedModel, Scrape};

/// Shared by every reconcile; built once in [`crate::run`].
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Validated configuration.
    pub config: Config,
    /// Cache of Nodes (robots and others), kept by a reflector.
    pub nodes: Store<Node>,
    /// The pods this operator owns, stripped ([`crate::cache::strip_pod`]); one watch shared by
    /// the three controllers, read instead of LISTing on every reconcile.
    pub pods: Store<Pod>,
    /// Namespaces' names and labels (robot-workloads allow-list).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The SafetyPolicy controller's cache (conflicts, preflight's policy).
    pub policies: Store<SafetyPolicy>,
    /// The SensorSim controller's cache (preflight children).
    pub sims: Store<SensorSim>,
    /// ControllerRevisions read or written (immutable once written).
    pub revisions: crate::cache::Revisions,
    /// What the pod cache must show after each owner's last pod writes.
    pub expectations: crate::cache::Expectations,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Transport for robot pods' `/metrics`.
    pub scraper: Arc<dyn Scrape>,
    /// What each updated robot pod confirmed it serves: owner (`namespace/name`) → pod UID → model.
    /// Pruned to the owner's current pods on every reconcile, so it stays bounded.
    pub confirmations: Mutex<HashMap<String, HashMap<String, Confirmation>>>,
    /// Stop-lock consumers each safety monitor last reported: owner (`namespace/name`) → pod UID →
    /// count. A failed scrape keeps the last value (one failed scrape flips nothing); pruned to
    /// the owner's current pods on every reconcile.
    pub stop_consumers: Mutex<HashMap<String, HashMap<String, u32>>>,
    /// The analysis window of each InferenceService's current wave (`namespace/name`); dropped
    /// when the rollout ends, rebuilt empty after a restart.
    pub windows: Mutex<HashMap<String, crate::core::analysis::WaveWindow>>,
    /// Safety monitors' last pages by URL, for the rollout gates (entries older than a minute
    /// are dropped).
    pub monitor_cache: Mutex<HashMap<String, (std::time::Instant, Vec<crate::scrape::Sample>)>>,
    /// The resourceVersion of the last status this operator wrote per InferenceService: a
    /// reconcile of an older (cached) object waits instead of acting twice on the same state.
    pub written: Mutex<HashMap<String, u64>>,
    /// Busy-requeue streaks of converging InferenceServices ([`crate::core::backoff::BusyRequeue`]).
    pub busy: Mutex<crate::core::backoff::BusyRequeue>,
}

impl Context {
    /// Waits until every shared cache has listed once (immediate afterwards): a reconcile must
    /// never read an empty cache as "no pods".
    pub async fn caches_ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let _ = self.sims.wait_until_ready().await;
    }
}

/// What a robot pod's sidecar confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// The model it serves.
    pub model: LoadedModel,
    /// Its most frequent model load failure reason, if it counted any.
    pub failure_reason: Option<String>,
}

/// Brings one owner's robot pods to `desired`: creates the missing ones (server-side apply),
/// replaces those at another revision, or Failed (with a per-pod backoff,
/// [`crate::core::backoff`]), by delete-then-create (hostNetwork ports would
/// clash if the new pod started before the old one is gone; the create happens on a later
/// reconcile), and deletes pods no longer desired. Returns whether anything is still converging
/// and what the pod cache must show for these writes.
pub async fn converge_pods(
    api: &kube::Api<Pod>,
    desired: &[Pod],
    existing: &[Pod],
) -> Result<(bool, crate::cache::Expected), kube::Error> {
    use kube::ResourceExt;
    use robofleet_crds::labels;
    let mut converging = false;
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    for pod in desired {
        let name = pod.name_any();
        match existing.iter().find(|p| p.name_any() == name) {
            Some(p) if p.metadata.deletion_timestamp.is_some() => converging = true,
            Some(p) => {
                let failed = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
                let stale = p.labels().get(labels::REVISION) != pod.labels().get(labels::REVISION);
                if stale || (failed && may_replace_failed(p)) {
                    deletes.push(p);
                    converging = true;
                } else if failed {
                    converging = true;
                }
            }
            None => {
                creates.push(pod.clone());
                converging = true;
            }
        }
    }
    for pod in existing {
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_none()
            && !desired.iter().any(|d| d.name_any() == name)
        {
            deletes.push(pod);
        }
    }
    let expected = write_pods(api, creates, deletes).await?;
    Ok((converging, expected))
}

/// Sends pod deletes and creates (server-side apply) with bounded concurrency, as the
/// DaemonSet controller batches its writes. Returns the UIDs the pod cache must show
/// ([`crate::cache::Expectations`]).
pub async fn write_pods(
    api: &kube::Api<Pod>,
    creates: Vec<Pod>,
    deletes: Vec<&Pod>,
) -> Result<crate::cache::Expected, kube::Error> {
    use futures::{StreamExt, TryStreamExt};
    use kube::ResourceExt;
    enum Done {
        Created(Option<String>),
        Deleted(Option<String>),
    }
    let mut writes: Vec<(String, Option<Pod>, Option<String>)> = Vec::new();
    for p in deletes {
        writes.push((p.name_any(), None, p.metadata.uid.clone()));
    }
    for p in creates {
        writes.push((p.name_any(), Some(p), None));
    }
    let done: Vec<Done> = futures::stream::iter(writes)
        .map(|(name, pod, uid)| async move {
            // One budget for the whole process: a thousand-robot policy may use all of it once
            // the services are done, but never more.
            let _permit = POD_WRITES.acquire().await;
            match pod {
                Some(pod) => crate::apply::apply(api, &name, &pod)
                    .await
                    .map(|p| Done::Created(p.metadata.uid)),
                None => crate::apply::delete(api, &name)
                    .await
                    .map(|()| Done::Deleted(uid)),
            }
        })
        .buffer_unordered(POD_WRITE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut expected = crate::cache::Expected::default();
    for d in done {
        match d {
            Done::Created(Some(u)) => expected.created.push(u),
            Done::Deleted(Some(u)) => expected.deleted.push(u),
            _ => {}
        }
    }
    Ok(expected)
}

/// Pod creates and deletes in flight at once, in the whole operator (all owners together).
pub const POD_WRITE_CONCURRENCY: usize = 48;

static POD_WRITES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(POD_WRITE_CONCURRENCY);

/// Per-pod backoff for replacing Failed pods (process-wide: pod names are unique per namespace).
pub(crate) fn may_replace_failed(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    static BACKOFF: std::sync::LazyLock<Mutex<crate::core::backoff::Backoff>> =
        std::sync::LazyLock::new(Default::default);
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    BACKOFF
        .lock()
        .map(|mut b| b.try_replace(&key, std::time::Instant::now()))
        .unwrap_or(true)
}

/// One Event per phase transition of a resource (never one per robot): Warning with the Stalled
/// reason when stalled, else Normal with the phase. Failures to publish are only logged.
pub async fn publish_transition(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    phase: &str,
    status: &robofleet_crds::conditions::ResourceStatus,
) {
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
        .map(|c| c.reason.clone());
    let warning = stalled.is_some();
    let reason = stalled.unwrap_or_else(|| phase.to_owned());
    let note = status.message.clone().unwrap_or_default();
    publish_event(
        ctx,
        object,
        warning,
        &reason,
        &note,
        &format!("Became{phase}"),
    )
    .await;
}

/// Publishes one Event on `object` (kube's recorder aggregates repeats); failures are only
/// logged.
pub async fn publish_event(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
    action: &str,
) {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    static RECORDER: std::sync::OnceLock<Recorder> = std::sync::OnceLock::new();
    let recorder = RECORDER.get_or_init(|| {
        Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: "robofleet-operator".into(),
                instance: None,
            },
        )
    });
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, object).await {
        tracing::debug!(error = %e, "could not publish event");
    }
}
