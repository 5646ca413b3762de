//! InferenceService controller: fetch → validate → desired pods (pure, `core::isvc`) → apply →
//! status (pure, `core::status`), written once and only on change.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use robofleet_crds::InferenceService;
use robofleet_crds::conditions::reasons;
use robofleet_crds::inference_service::{ModelRef, RevisionRef};
use robofleet_crds::labels;
use serde_json::json;

use std::collections::HashMap;

use super::{Confirmation, Context};
use crate::apply::{FIELD_MANAGER, apply};
use crate::core::isvc::{self, Owner, RenderContext, RenderError};
use crate::core::robots::{self, Robot};
use crate::core::status::{self, Blocker, Observed, PodObservation};
use crate::scrape;

/// Kind name used in labels, metrics and events.
pub const KIND: &str = "InferenceService";

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a namespace or name (cannot happen for a namespaced kind).
    #[error("object has no namespace or name")]
    MissingMetadata,
    /// Serialising a template failed.
    #[error("serialising the pod template: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::MissingMetadata => "missing_metadata",
            Self::Serialize(_) => "serialize",
        }
    }
}

/// Reconciles one InferenceService.
pub async fn reconcile(obj: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile(KIND);
    let result = reconcile_inner(&obj, &ctx).await;
    timer.finish(match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    });
    result
}

/// Retries failed reconciles with a growing delay per object.
pub fn error_policy(obj: Arc<InferenceService>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %obj.name_any(), error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_inner(obj: &InferenceService, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingMetadata)?;
    let name = obj.metadata.name.clone().ok_or(Error::MissingMetadata)?;
    let client = &ctx.client;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // ---- fetch
    let namespace = Api::<Namespace>::all(client.clone()).get_opt(&ns).await?;
    let allowed = namespace
        .as_ref()
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(labels::ROBOT_WORKLOADS))
        .is_some_and(|v| v == "true");
    let robots_all: Vec<Robot> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| Robot::from_node(n))
        .collect();
    let owner_selector = format!("{}={KIND},{}={name}", labels::OWNER_KIND, labels::OWNER);
    let pods = pods_api
        .list(&ListParams::default().labels(&owner_selector))
        .await?
        .items;

    // ---- validate and decide (pure)
    let fallback = obj
        .status
        .as_ref()
        .and_then(|s| s.stable_revision.as_ref())
        .filter(|s| s.model.sha256 != obj.spec.model.sha256 || s.model.uri != obj.spec.model.uri)
        .map(|s| format!("{}@{}", s.model.uri, s.model.sha256));
    let render_ctx = RenderContext {
        images: &ctx.config.images,
        host_path_prefix: &ctx.config.host_path_prefix,
    };
    let rendered = isvc::render(&name, &obj.spec, &render_ctx);
    let selected = robots::select(obj.spec.robot_selector.as_ref(), &robots_all);
    let mut blocker = None;
    if !allowed {
        blocker = Some(Blocker {
            reason: reasons::NAMESPACE_NOT_ALLOWED,
            message: format!(
                "namespace {ns} is not labelled {}=true; robot workloads are created only there",
                labels::ROBOT_WORKLOADS
            ),
        });
    }
    let template = match rendered {
        Ok(t) => Some(t),
        Err(e) => {
            let reason = match e {
                RenderError::ImageNotAllowed(..) => reasons::IMAGE_NOT_ALLOWED,
                RenderError::HostPathNotAllowed(..) => reasons::INVALID_SPEC,
            };
            blocker.get_or_insert(Blocker {
                reason,
                message: e.to_string(),
            });
            None
        }
    };
    let selected = match selected {
        Ok(s) => s,
        Err(e) => {
            blocker.get_or_insert(Blocker {
                reason: reasons::INVALID_SPEC,
                message: e.to_string(),
            });
            Vec::new()
        }
    };
    let revision = template.as_ref().map(isvc::Template::revision);

    // ---- apply
    let mut converging = false;
    if let (None, Some(template), Some(revision)) = (&blocker, &template, &revision) {
        let owner = Owner {
            kind: KIND.into(),
            name: name.clone(),
            namespace: ns.clone(),
            reference: obj
                .controller_owner_ref(&())
                .ok_or(Error::MissingMetadata)?,
        };
        store_revision(ctx, obj, &owner, template, revision).await?;
        let default_domain = obj.spec.ros.as_ref().and_then(|r| r.domain_id);
        let desired: Vec<Pod> = selected
            .iter()
            .map(|robot| {
                isvc::robot_pod(
                    &owner,
                    template,
                    revision,
                    robot,
                    default_domain,
                    fallback.as_deref(),
                )
            })
            .collect();
        converging = super::converge_pods(&pods_api, &desired, &pods).await?;
    }

    // ---- bounded confirmation: what the updated robots say they serve
    let owner_key = format!("{ns}/{name}");
    let confirmed = confirm(
        ctx,
        &owner_key,
        &pods,
        revision.as_deref(),
        obj.spec.runtime.ports.metrics,
    )
    .await;
    let unconfirmed = confirmed.1;
    let confirmed = confirmed.0;

    // ---- status (pure, written only on change)
    let observations: Vec<PodObservation> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let robot = p.spec.as_ref()?.node_name.clone()?;
            let st = p.status.as_ref();
            Some(PodObservation {
                robot,
                revision: p
                    .labels()
                    .get(labels::REVISION)
                    .cloned()
                    .unwrap_or_default(),
                ready: st
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
                failed: st.and_then(|s| s.phase.as_deref()) == Some("Failed"),
                fell_back: p
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|uid| confirmed.get(uid))
                    .filter(|c| c.model.fallback)
                    .map(|c| c.failure_reason.clone().unwrap_or_default()),
                crashing: crash_message(p),
            })
        })
        .collect();
    let observed = Observed {
        generation: obj.metadata.generation,
        robots: &selected,
        pods: &observations,
        revision: revision.as_deref(),
        blocker,
        model_uri: &obj.spec.model.uri,
    };
    let (mut new_status, mut changed) = status::compute(obj.status.as_ref(), &observed, &now);
    let healthy = new_status.phase == Some(robofleet_crds::rollout::RolloutPhase::Healthy);
    if let (true, Some(rev)) = (healthy, &revision) {
        let stable = RevisionRef {
            name: format!("{name}-{rev}"),
            hash: rev.clone(),
            model: ModelRef {
                uri: obj.spec.model.uri.clone(),
                sha256: obj.spec.model.sha256.clone(),
                version: obj.spec.model.version.clone(),
            },
        };
        if new_status.stable_revision.as_ref() != Some(&stable) {
            new_status.stable_revision = Some(stable);
            changed = true;
        }
    }
    if changed {
        let api: Api<InferenceService> = Api::namespaced(client.clone(), &ns);
        let patch = json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": KIND,
            "status": new_status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    let old_phase = obj.status.as_ref().and_then(|s| s.phase);
    if new_status.phase != old_phase {
        let phase = new_status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        super::publish_transition(ctx, &obj.object_ref(&()), &phase, &new_status.common).await;
    }
    let progressing = converging
        || unconfirmed
        || new_status.phase == Some(robofleet_crds::rollout::RolloutPhase::Progressing);
    Ok(Action::requeue(if progressing {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(300)
    }))
}

/// What a failing container said, when it keeps failing: CrashLoopBackOff, or three restarts.
fn crash_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        let looping = waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff");
        if !looping && c.restart_count < 3 {
            return None;
        }
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let detail = last
            .map(|t| {
                // The last line says why (logs end with the fatal error).
                let msg = t.message.as_deref().unwrap_or("").trim();
                let last = msg
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                let msg: String = last.trim().chars().take(300).collect();
                if msg.is_empty() {
                    format!("exited with code {}", t.exit_code)
                } else {
                    format!("exited with code {}: {msg}", t.exit_code)
                }
            })
            .unwrap_or_else(|| "keeps restarting".to_owned());
        Some(format!("container {} {detail}", c.name))
    })
}

/// Most robot pods scraped per reconcile (the rest wait for the next one).
const MAX_SCRAPES_PER_RECONCILE: usize = 16;

/// Scrapes running pods at `revision` whose served model is not yet known and returns what every
/// current pod confirmed (by UID) and whether any is still unconfirmed. Unreachable or malformed
/// targets are counted and retried on the next reconcile, never fatal.
async fn confirm(
    ctx: &Context,
    owner_key: &str,
    pods: &[Pod],
    revision: Option<&str>,
    port: u16,
) -> (HashMap<String, Confirmation>, bool) {
    let mut known = ctx
        .confirmations
        .lock()
        .map(|mut m| m.remove(owner_key).unwrap_or_default())
        .unwrap_or_default();
    let current: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            revision.is_some() && p.labels().get(labels::REVISION).map(String::as_str) == revision
        })
        .collect();
    known.retain(|uid, _| current.iter().any(|p| p.metadata.uid.as_ref() == Some(uid)));
    let mut budget = MAX_SCRAPES_PER_RECONCILE;
    let mut unconfirmed = false;
    for pod in &current {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        if known.contains_key(&uid) {
            continue;
        }
        unconfirmed = true;
        let status = pod.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let Some(host) = status.and_then(|s| s.host_ip.clone()).filter(|_| running) else {
            continue;
        };
        if budget == 0 {
            break;
        }
        budget -= 1;
        let url = format!("http://{host}:{port}/metrics");
        match ctx.scraper.fetch(&url).await {
            Ok(text) => {
                let (samples, malformed) = scrape::parse(&text);
                ctx.metrics.scraped(if malformed > 0 {
                    "malformed_lines"
                } else {
                    "ok"
                });
                if let Some(model) = scrape::loaded_model(&samples) {
                    let failure_reason = scrape::load_failure_reasons(&samples)
                        .into_iter()
                        .next()
                        .map(|r| r.0);
                    known.insert(
                        uid,
                        Confirmation {
                            model,
                            failure_reason,
                        },
                    );
                }
            }
            Err(e) => {
                ctx.metrics.scraped(e.kind());
                tracing::debug!(%url, error = %e, "scrape failed");
            }
        }
    }
    let unconfirmed = unconfirmed
        && current.iter().any(|p| {
            p.metadata
                .uid
                .as_ref()
                .is_some_and(|u| !known.contains_key(u))
        });
    if let Ok(mut m) = ctx.confirmations.lock() {
        m.insert(owner_key.to_owned(), known.clone());
    }
    (known, unconfirmed)
}

/// Keeps the revision's rendered template in an owned ControllerRevision, so stable pods can be
/// rebuilt exactly.
async fn store_revision(
    ctx: &Context,
    obj: &InferenceService,
    owner: &Owner,
    template: &isvc::Template,
    revision: &str,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let cr_name = format!("{}-{revision}", owner.name);
    if api.get_opt(&cr_name).await?.is_some() {
        return Ok(());
    }
    let mut cr_labels = isvc::child_labels(owner, "revision");
    cr_labels.insert(labels::REVISION.to_owned(), revision.to_owned());
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(cr_name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(cr_labels),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        data: Some(RawExtension(serde_json::to_value(template)?)),
        revision: obj.metadata.generation.unwrap_or(0),
    };
    apply(&api, &cr_name, &cr).await?;
    Ok(())
}
