//! InferenceService controller: fetch → validate and render the revision (pure, `core::isvc`) →
//! observe the robots (pods, gates, the wave's analysis: `rollout_io`) → one rollout step (pure,
//! `core::rollout`) → status first, written only on change → then the robot updates the step
//! decided (delete, then create on a later step), preflight SensorSims, Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use robofleet_crds::common::LocalRef;
use robofleet_crds::conditions::{DesiredCondition, reasons, set_condition, types};
use robofleet_crds::inference_service::{InferenceServiceStatus, ModelRef, RevisionRef};
use robofleet_crds::sensor_sim::{SimPhase, UnitsUnderTest};
use robofleet_crds::{InferenceService, SensorSim, annotations, labels};
use serde_json::json;

use std::collections::HashMap;

use super::rollout_io;
use super::{Confirmation, Context};
use crate::apply::{FIELD_MANAGER, apply};
use crate::core::analysis::{self, WaveWindow};
use crate::core::isvc::{self, Owner, RenderContext, RenderError};
use crate::core::robots::{self, Robot};
use crate::core::rollout::{self, Loaded, PodState, PreflightChild, RobotObservation, SimOutcome};
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
    tracing::debug!(service = %obj.name_any(), "reconcile");
    let result = reconcile_inner(&obj, &ctx).await;
    tracing::debug!(service = %obj.name_any(), ?result, "reconciled");
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
    let owner_key = format!("{ns}/{name}");

    // A cached object older than the status this operator last wrote would replay a step.
    let written = ctx
        .written
        .lock()
        .ok()
        .and_then(|w| w.get(&owner_key).copied());
    let seen: Option<u64> = obj
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok());
    if let (Some(w), Some(s)) = (written, seen)
        && s < w
    {
        return Ok(Action::requeue(Duration::from_millis(300)));
    }

    // ---- fetch (from the shared caches)
    ctx.caches_ready().await;
    let allowed = crate::cache::allows_robot_workloads(&ctx.namespaces, &ns);
    let robots_all: Vec<Robot> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| Robot::from_node(n))
        .collect();
    let pods = crate::cache::pods_of(&ctx.pods, KIND, &ns, &name);
    if !ctx
        .expectations
        .met(&owner_key, &pods, std::time::Instant::now())
    {
        // The cache has not caught up with this service's last pod writes yet.
        return Ok(Action::requeue(Duration::from_millis(300)));
    }

    // ---- validate (pure)
    let bridges = &ctx.config.bridge_images;
    let render_ctx = RenderContext {
        images: &ctx.config.images,
        host_path_prefix: &ctx.config.host_path_prefix,
        bridge_image: bridges
            .entries
            .get(&bridges.default_entry)
            .map(String::as_str),
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
                RenderError::NoBridgeImage => reasons::IMAGE_NOT_ALLOWED,
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
    let plan = match rollout::Plan::from_spec(&obj.spec.rollout) {
        Ok(p) => Some(p),
        Err(e) => {
            blocker.get_or_insert(Blocker {
                reason: reasons::INVALID_SPEC,
                message: e.to_string(),
            });
            None
        }
    };
    let revision = template.as_ref().map(isvc::Template::revision);
    let owner = Owner {
        kind: KIND.into(),
        name: name.clone(),
        namespace: ns.clone(),
        reference: obj
            .controller_owner_ref(&())
            .ok_or(Error::MissingMetadata)?,
    };
    let prev = obj.status.clone().unwrap_or_default();

    // ---- bounded confirmation: what each robot pod's sidecar says it serves
    let (confirmed, unconfirmed) =
        confirm(ctx, &owner_key, &pods, None, obj.spec.runtime.ports.metrics).await;
    let observations = pod_observations(&pods, &confirmed);

    let (Some(template), Some(revision), Some(plan), None, false) =
        (&template, &revision, &plan, &blocker, selected.is_empty())
    else {
        // Nothing can be rolled out: report why (blockers win; no robot is NoMatchingRobots).
        let observed = Observed {
            generation: obj.metadata.generation,
            robots: &selected,
            pods: &observations,
            revision: revision.as_deref(),
            blocker,
            model_uri: &obj.spec.model.uri,
        };
        let (new_status, changed) = status::compute(Some(&prev), &observed, &now);
        write_status(ctx, obj, &owner_key, &prev, new_status, changed).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    store_revision(ctx, obj, &owner, template, revision).await?;

    // ---- observe the robots (pods, gates) and, when due, analyse the wave
    let stable = prev.stable_revision.as_ref().map(|r| r.hash.clone());
    let robot_names: Vec<&str> = selected.iter().map(|r| r.name.as_str()).collect();
    let by_robot = rollout_io::by_robot(&pods, &name, &robot_names);
    // The robots' safety monitors matter for gates (robots not yet on the new revision) and for a
    // running rollout's analysis; a settled service lists none (one LIST of every monitor pod).
    let settled =
        prev.rollout.is_none() && by_robot_settled(&pods, revision) && pods.len() >= selected.len();
    let monitors = if settled {
        HashMap::new()
    } else {
        rollout_io::monitors(ctx).await?
    };
    // Gates matter for robots that may be updated forward: those not yet on the new revision.
    let candidates: Vec<String> = selected
        .iter()
        .filter(|r| {
            by_robot
                .get(&r.name)
                .is_none_or(|p| rollout_io::revision_of(p) != *revision)
        })
        .map(|r| r.name.clone())
        .collect();
    let gates = rollout_io::gate_views(ctx, &monitors, &candidates).await;
    let robot_obs: Vec<RobotObservation> = selected
        .iter()
        .map(|r| {
            let gate = gates.get(&r.name).cloned().unwrap_or_default();
            RobotObservation {
                name: r.name.clone(),
                online: r.ready,
                state_label: r.labels.get(labels::STATE).cloned(),
                state_reported: gate.state,
                stop_lock: gate.stop_lock,
                pod: by_robot.get(&r.name).map(|p| PodState {
                    revision: rollout_io::revision_of(p),
                    ready: rollout_io::is_ready(p),
                    terminating: p.metadata.deletion_timestamp.is_some(),
                    created: p
                        .metadata
                        .creation_timestamp
                        .clone()
                        .unwrap_or_else(|| now.clone()),
                    loaded: p
                        .metadata
                        .uid
                        .as_ref()
                        .and_then(|u| confirmed.get(u))
                        .map_or(Loaded::Unknown, |c| {
                            if c.model.fallback {
                                Loaded::Fallback
                            } else {
                                Loaded::Requested
                            }
                        }),
                }),
            }
        })
        .collect();
    let state = prev.rollout.as_ref();
    let analysed = rollout::analysis_robots(plan, state, stable.as_deref(), &robot_obs, &now);
    let mut report = None;
    let mut baseline = None;
    match state {
        Some(s) if !analysed.is_empty() => {
            let mut window = ctx
                .windows
                .lock()
                .ok()
                .and_then(|mut w| w.remove(&owner_key))
                .filter(|w| w.is_for(&s.revision, s.wave))
                .unwrap_or_else(|| WaveWindow::new(&s.revision, s.wave));
            rollout_io::feed_window(
                ctx,
                &mut window,
                &analysed,
                &pods,
                obj.spec.runtime.ports.metrics,
                &monitors,
            )
            .await;
            if rollout::analysis_due(plan, state, obj.spec.paused, &now)
                && let Some(a) = &plan.analysis
            {
                let prometheus = rollout_io::prometheus_results(ctx, &a.checks).await;
                let preferred = obj
                    .spec
                    .runtime
                    .execution_providers
                    .first()
                    .map_or("cpu", isvc::provider_arg);
                let inputs = analysis::Inputs {
                    window: &window,
                    baseline: s.baseline.as_ref(),
                    preferred_provider: preferred,
                    prometheus: &prometheus,
                };
                report = Some(analysis::evaluate(&a.checks, a.no_data, &inputs, &now));
            }
            if let Ok(mut w) = ctx.windows.lock() {
                w.insert(owner_key.clone(), window);
            }
        }
        _ => {
            if let Ok(mut w) = ctx.windows.lock() {
                w.remove(&owner_key);
            }
        }
    }
    if rollout::baseline_wanted(plan, state) {
        let sample = rollout::stable_sample(plan, state, stable.as_deref(), &robot_obs, &now);
        let samples = rollout_io::stable_samples(ctx, &sample, &monitors).await;
        baseline = Some(analysis::baseline(&samples, &now));
    }
    let preflight = preflight_children(ctx, &ns, &name).await?;

    // ---- decide (pure)
    let action = obj
        .annotations()
        .get(annotations::ACTION)
        .map(String::as_str);
    let input = rollout::Input {
        plan,
        spec_paused: obj.spec.paused,
        desired: revision,
        stable: stable.as_deref(),
        state,
        aborted: prev.aborted_revision.as_deref(),
        last_action: prev.last_action.as_deref(),
        action,
        previous_waves: &prev.waves,
        robots: &robot_obs,
        analysis: report.as_ref(),
        baseline: baseline.as_ref(),
        preflight: &preflight,
    };
    let decision = rollout::step(&input, &now);

    // ---- status first (the next step acts on what was written)
    let models = RevisionModels::new(ctx, obj, &name, revision, &prev).await?;
    let observed = Observed {
        generation: obj.metadata.generation,
        robots: &selected,
        pods: &observations,
        revision: Some(revision),
        blocker: None,
        model_uri: &obj.spec.model.uri,
    };
    let new_status = merge_status(&prev, obj, &decision, &observed, &models, &now);
    let changed = new_status != prev;
    write_status(ctx, obj, &owner_key, &prev, new_status.clone(), changed).await?;
    for e in &decision.events {
        tracing::info!(service = %owner_key, reason = e.reason, message = %e.message, "rollout event");
        super::publish_event(
            ctx,
            &obj.object_ref(&()),
            e.warning,
            e.reason,
            &e.message,
            "Rollout",
        )
        .await;
    }
    for reason in &decision.aborts {
        ctx.metrics.rollout_aborted(reason);
    }
    let t = &decision.tally;
    ctx.metrics.rollout_robots(
        &ns,
        &name,
        &[
            ("stable", t.stable),
            ("canary", t.canary),
            ("updating", t.updating),
            ("deferred", t.deferred),
            ("offline", t.offline),
            ("unobserved", t.unobserved),
            ("pending", t.pending),
        ],
    );

    // ---- act: robot updates (delete, then create on a later step), strays, preflight
    let default_domain = obj.spec.ros.as_ref().and_then(|r| r.domain_id);
    let stable_model = models.fallback_arg(decision.stable.as_deref());
    let mut templates: HashMap<String, isvc::Template> = HashMap::new();
    templates.insert(revision.clone(), template.clone());
    // Decide every write first (templates of other revisions loaded once), then send them with
    // bounded concurrency: an AllAtOnce step or a large wave updates many robots at once.
    let mut deletes: Vec<&Pod> = Vec::new();
    let mut creates: Vec<Pod> = Vec::new();
    for u in &decision.updates {
        tracing::info!(service = %owner_key, robot = %u.robot, from = ?u.from, to = %u.to, kind = ?u.kind, "robot update");
        match &u.from {
            Some(_) => {
                if let Some(p) = by_robot
                    .get(&u.robot)
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    deletes.push(p);
                }
            }
            None => {
                let Some(robot) = selected.iter().find(|r| r.name == u.robot) else {
                    continue;
                };
                if !templates.contains_key(&u.to) {
                    match load_template(ctx, &ns, &name, &u.to).await? {
                        Some(t) => {
                            templates.insert(u.to.clone(), t);
                        }
                        None => {
                            tracing::warn!(%owner_key, revision = %u.to, "no ControllerRevision for revision");
                            continue;
                        }
                    }
                }
                let fallback = stable_model
                    .as_deref()
                    .filter(|_| Some(&u.to) != decision.stable.as_ref());
                creates.push(isvc::robot_pod(
                    &owner,
                    &templates[&u.to],
                    &u.to,
                    robot,
                    default_domain,
                    fallback,
                ));
            }
        }
    }
    let mut expected = super::write_pods(&pods_api, creates, deletes).await?;
    // Pods on robots no longer selected go; Failed pods are replaced (with backoff).
    for p in &pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // A pod not bound yet has no nodeName: its name says which robot it is for.
        let wanted = rollout_io::robot_of(p, &name, &robot_names)
            .is_some_and(|n| selected.iter().any(|r| r.name == n));
        let failed = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
        if !wanted || (failed && super::may_replace_failed(p)) {
            tracing::info!(service = %owner_key, pod = %p.name_any(), failed, "deleting a stray or failed pod");
            crate::apply::delete(&pods_api, &p.name_any()).await?;
            expected.deleted.extend(p.metadata.uid.clone());
        }
    }
    ctx.expectations
        .expect(&owner_key, expected, std::time::Instant::now());
    if let Some(req) = &decision.preflight {
        ensure_preflight(ctx, obj, &owner, req, &selected).await?;
    }

    let busy = unconfirmed || !decision.updates.is_empty() || decision.tally.updating > 0;
    // Converging: re-check soon, backing off while nothing changes (an unreachable robot's
    // sidecar would otherwise keep the service polled every 2 s).
    let poll = if busy {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for p in &pods {
            p.metadata.name.hash(&mut h);
            p.metadata.resource_version.hash(&mut h);
        }
        obj.metadata.generation.hash(&mut h);
        (unconfirmed, decision.updates.len(), decision.tally.updating).hash(&mut h);
        ctx.busy
            .lock()
            .map_or(crate::core::backoff::BUSY_BASE, |mut b| {
                b.next(&owner_key, h.finish())
            })
    } else {
        if let Ok(mut b) = ctx.busy.lock() {
            b.settled(&owner_key);
        }
        Duration::from_secs(300)
    };
    let requeue = decision
        .requeue_after
        .unwrap_or(Duration::from_secs(300))
        .min(poll)
        .max(Duration::from_millis(500));
    Ok(Action::requeue(requeue))
}

/// Every pod runs `revision` and none is being replaced.
fn by_robot_settled(pods: &[Pod], revision: &str) -> bool {
    pods.iter()
        .all(|p| p.metadata.deletion_timestamp.is_none() && rollout_io::revision_of(p) == revision)
}

/// What the status computation needs of each pod.
fn pod_observations(
    pods: &[Pod],
    confirmed: &HashMap<String, Confirmation>,
) -> Vec<PodObservation> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let robot = p.spec.as_ref()?.node_name.clone()?;
            let st = p.status.as_ref();
            Some(PodObservation {
                robot,
                revision: rollout_io::revision_of(p),
                ready: rollout_io::is_ready(p),
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
        .collect()
}

/// Writes status (server-side apply of the status subresource) when it changed, remembers the
/// resourceVersion written, and publishes an Event when the phase changed.
async fn write_status(
    ctx: &Context,
    obj: &InferenceService,
    owner_key: &str,
    prev: &InferenceServiceStatus,
    new_status: InferenceServiceStatus,
    changed: bool,
) -> Result<(), Error> {
    if !changed {
        return Ok(());
    }
    let ns = obj.namespace().ok_or(Error::MissingMetadata)?;
    let name = obj.name_any();
    let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": KIND,
        "status": new_status,
    });
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if let (Some(rv), Ok(mut w)) = (
        written
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok()),
        ctx.written.lock(),
    ) {
        w.insert(owner_key.to_owned(), rv);
    }
    if new_status.phase != prev.phase {
        let phase = new_status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        super::publish_transition(ctx, &obj.object_ref(&()), &phase, &new_status.common).await;
    }
    Ok(())
}

/// The models of the revisions status names, from the spec (the desired revision), the previous
/// status, or the revisions' ControllerRevisions.
struct RevisionModels {
    known: HashMap<String, ModelRef>,
}

impl RevisionModels {
    async fn new(
        ctx: &Context,
        obj: &InferenceService,
        name: &str,
        desired: &str,
        prev: &InferenceServiceStatus,
    ) -> Result<Self, Error> {
        let mut known = HashMap::new();
        known.insert(
            desired.to_owned(),
            ModelRef {
                uri: obj.spec.model.uri.clone(),
                sha256: obj.spec.model.sha256.clone(),
                version: obj.spec.model.version.clone(),
            },
        );
        for r in [&prev.stable_revision, &prev.canary_revision]
            .into_iter()
            .flatten()
        {
            known
                .entry(r.hash.clone())
                .or_insert_with(|| r.model.clone());
        }
        let wanted: Vec<String> = [prev.rollout.as_ref().map(|s| s.revision.clone())]
            .into_iter()
            .flatten()
            .filter(|h| !known.contains_key(h))
            .collect();
        let ns = obj.namespace().unwrap_or_default();
        for h in wanted {
            if let Some(m) = load_model(ctx, &ns, name, &h).await? {
                known.insert(h, m);
            }
        }
        Ok(Self { known })
    }

    fn reference(&self, name: &str, hash: Option<&str>) -> Option<RevisionRef> {
        let hash = hash?;
        Some(RevisionRef {
            name: format!("{name}-{hash}"),
            hash: hash.to_owned(),
            model: self.known.get(hash).cloned().unwrap_or_default(),
        })
    }

    /// `--fallback-model` of pods not on the stable revision: the stable model.
    fn fallback_arg(&self, stable: Option<&str>) -> Option<String> {
        let m = self.known.get(stable?)?;
        Some(format!("{}@{}", m.uri, m.sha256))
    }
}

/// The new status: counts and the last failure from the pods (`core::status`), phase,
/// conditions, message and the rollout's own fields from the decision.
fn merge_status(
    prev: &InferenceServiceStatus,
    obj: &InferenceService,
    d: &rollout::Decision,
    observed: &Observed<'_>,
    models: &RevisionModels,
    now: &Time,
) -> InferenceServiceStatus {
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let (mut s, _) = status::compute(Some(prev), observed, now);
    let t = &d.tally;
    s.robots.total = t.total;
    s.robots.offline = t.offline;
    s.robots.deferred = t.deferred;
    s.robots.unobserved = t.unobserved;
    s.robots.pending = t.pending;
    // `updated` (pods at the newest revision) and `failed` come from the pods themselves.
    s.robots.ready = t.stable + t.canary;
    s.phase = Some(d.phase);
    s.common.message = Some(d.message.clone());
    s.common.observed_generation = generation;
    for (type_, c) in [
        (types::READY, d.ready),
        (types::RECONCILING, d.reconciling),
        (types::STALLED, d.stalled),
    ] {
        set_condition(
            &mut s.common.conditions,
            DesiredCondition {
                type_,
                status: c.status,
                reason: c.reason,
                message: d.message.clone(),
            },
            generation,
            now,
        );
    }
    s.rollout = d.state.clone();
    s.stable_revision = models.reference(&name, d.stable.as_deref());
    s.canary_revision = models.reference(&name, d.canary.as_deref());
    s.aborted_revision = d.aborted.clone();
    s.last_action = d.last_action.clone();
    s.current_wave = d.current_wave;
    s.waves = d.waves.clone();
    s
}

/// The preflight SensorSim children of this service (labelled with it as owner).
async fn preflight_children(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Vec<PreflightChild>, Error> {
    Ok(ctx
        .sims
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| {
            s.labels().get(labels::OWNER_KIND).map(String::as_str) == Some(KIND)
                && s.labels().get(labels::OWNER).map(String::as_str) == Some(name)
        })
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| {
            let template = s.labels().get(PREFLIGHT_TEMPLATE_LABEL)?.clone();
            let created = s.metadata.creation_timestamp.clone()?;
            let st = s.status.as_ref();
            let current =
                st.is_some_and(|st| st.common.observed_generation == s.metadata.generation);
            let outcome = match st.and_then(|st| st.phase).filter(|_| current) {
                Some(SimPhase::Succeeded) => SimOutcome::Succeeded,
                Some(SimPhase::Failed) => SimOutcome::Failed(
                    st.and_then(|st| st.common.message.clone())
                        .unwrap_or_else(|| "failed".into()),
                ),
                _ => SimOutcome::Running,
            };
            Some(PreflightChild {
                template,
                created,
                outcome,
            })
        })
        .collect())
}

/// Label on a preflight child naming its template.
const PREFLIGHT_TEMPLATE_LABEL: &str = "robofleet.io/preflight-template";

/// Creates the preflight children `<template>-<revision>` that do not exist yet (deleting those
/// of an earlier attempt), each testing the candidate revision and the SafetyPolicy that selects
/// the canary robots, if one does.
async fn ensure_preflight(
    ctx: &Context,
    obj: &InferenceService,
    owner: &Owner,
    req: &rollout::PreflightRequest,
    selected: &[&Robot],
) -> Result<(), Error> {
    let api: Api<SensorSim> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let policy = ctx
        .policies
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(owner.namespace.as_str()))
        .find(|p| {
            robots::select(p.spec.robot_selector.as_ref(), selected.iter().copied())
                .is_ok_and(|s| !s.is_empty())
        })
        .map(|p| p.name_any());
    for template in &req.templates {
        let child_name = format!("{template}-{}", req.revision);
        if let Some(existing) = api.get_opt(&child_name).await? {
            let stale = existing
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|c| !crate::core::rollout::clock::created_since(c, &req.since));
            if stale && existing.metadata.deletion_timestamp.is_none() {
                api.delete(&child_name, &Default::default()).await?;
            }
            continue;
        }
        let Some(t) = api.get_opt(template).await? else {
            continue;
        };
        let mut spec = t.spec.clone();
        spec.template = false;
        spec.units_under_test = Some(UnitsUnderTest {
            safety_policy_ref: policy.clone().map(|name| LocalRef { name }).or_else(|| {
                spec.units_under_test
                    .as_ref()
                    .and_then(|u| u.safety_policy_ref.clone())
            }),
            inference_service_ref: Some(LocalRef {
                name: owner.name.clone(),
            }),
            revision: Some(req.revision.clone()),
        });
        let mut child_labels = isvc::child_labels(owner, "preflight");
        child_labels.insert(PREFLIGHT_TEMPLATE_LABEL.into(), template.clone());
        let child = SensorSim {
            metadata: ObjectMeta {
                name: Some(child_name.clone()),
                namespace: Some(owner.namespace.clone()),
                labels: Some(child_labels),
                owner_references: Some(vec![owner.reference.clone()]),
                ..Default::default()
            },
            spec,
            status: None,
        };
        apply(&api, &child_name, &child).await?;
        tracing::info!(service = %obj.name_any(), sim = %child_name, "preflight started");
    }
    Ok(())
}

/// The stored template of `revision`.
async fn load_template(
    ctx: &Context,
    ns: &str,
    name: &str,
    revision: &str,
) -> Result<Option<isvc::Template>, Error> {
    Ok(revision_of(ctx, ns, &format!("{name}-{revision}"))
        .await?
        .and_then(|cr| cr.data.clone())
        .and_then(|d| serde_json::from_value(d.0).ok()))
}

/// The model of `revision`, from its ControllerRevision's annotations.
async fn load_model(
    ctx: &Context,
    ns: &str,
    name: &str,
    revision: &str,
) -> Result<Option<ModelRef>, Error> {
    Ok(revision_of(ctx, ns, &format!("{name}-{revision}"))
        .await?
        .and_then(|cr| cr.metadata.annotations.clone())
        .and_then(|a| {
            Some(ModelRef {
                uri: a.get(MODEL_URI)?.clone(),
                sha256: a.get(MODEL_SHA)?.clone(),
                version: a.get(MODEL_VERSION).cloned(),
            })
        }))
}

/// A ControllerRevision from the cache, else from the API server (then cached).
pub(crate) async fn revision_of(
    ctx: &Context,
    ns: &str,
    cr_name: &str,
) -> Result<Option<Arc<ControllerRevision>>, kube::Error> {
    if let Some(cr) = ctx.revisions.get(ns, cr_name) {
        return Ok(Some(cr));
    }
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cr) = api.get_opt(cr_name).await? else {
        return Ok(None);
    };
    ctx.revisions.insert(ns, cr_name, cr);
    Ok(ctx.revisions.get(ns, cr_name))
}

const MODEL_URI: &str = "robofleet.io/model-uri";
const MODEL_SHA: &str = "robofleet.io/model-sha256";
const MODEL_VERSION: &str = "robofleet.io/model-version";

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

/// Scrapes running pods (at `revision`, or all when `None`) whose served model is not yet known and returns what every
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
            revision.is_none_or(|r| p.labels().get(labels::REVISION).map(String::as_str) == Some(r))
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
        let url = scrape::pod_metrics_url(
            ctx.config.scrape_transport,
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            &host,
            port,
        );
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
    // A revision of an earlier object of the same name (deleted, then recreated) is not ours.
    let ours = |cr: &ControllerRevision| {
        cr.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == owner.reference.uid)
    };
    if revision_of(ctx, &owner.namespace, &cr_name)
        .await?
        .is_some_and(|cr| ours(&cr))
    {
        return Ok(());
    }
    let mut cr_labels = isvc::child_labels(owner, "revision");
    cr_labels.insert(labels::REVISION.to_owned(), revision.to_owned());
    let cr = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(cr_name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(cr_labels),
            annotations: Some(
                [
                    (MODEL_URI.to_owned(), obj.spec.model.uri.clone()),
                    (MODEL_SHA.to_owned(), obj.spec.model.sha256.clone()),
                ]
                .into_iter()
                .chain(
                    obj.spec
                        .model
                        .version
                        .clone()
                        .map(|v| (MODEL_VERSION.to_owned(), v)),
                )
                .collect(),
            ),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        data: Some(RawExtension(serde_json::to_value(template)?)),
        revision: obj.metadata.generation.unwrap_or(0),
    };
    let stored = apply(&api, &cr_name, &cr).await?;
    ctx.revisions.insert(&owner.namespace, &cr_name, stored);
    Ok(())
}
