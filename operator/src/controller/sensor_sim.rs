//! SensorSim controller: fetch → decide the run (pure, `core::sensor_sim`) → apply the sim file
//! and the run's pods → status from the sim containers' real exit codes → delete the pods once
//! the run is over (the result stays in status).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use robofleet_crds::conditions::reasons;
use robofleet_crds::labels;
use robofleet_crds::sensor_sim::{SimPhase, TargetMode};
use robofleet_crds::{InferenceService, SafetyPolicy, SensorSim};
use serde_json::json;

use super::Context;
use crate::apply::{FIELD_MANAGER, apply, delete};
use crate::core::isvc::{Owner, Template};
use crate::core::robots::{self, Robot};
use crate::core::sensor_sim::{self, MonitorUnit, Plan, SimSettings, SimState, Units};
use crate::core::status::Blocker;

/// Kind name used in labels, metrics and events.
pub const KIND: &str = "SensorSim";

/// Why a reconcile failed (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a namespace or name.
    #[error("object has no namespace or name")]
    MissingMetadata,
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::MissingMetadata => "missing_metadata",
        }
    }
}

/// Reconciles one SensorSim.
pub async fn reconcile(obj: Arc<SensorSim>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile(KIND);
    let result = reconcile_inner(&obj, &ctx).await;
    timer.finish(match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    });
    result
}

/// Retries failed reconciles after a delay.
pub fn error_policy(obj: Arc<SensorSim>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %obj.name_any(), error = %err, "sensor sim reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

fn blocked(reason: &'static str, message: String) -> Plan {
    Plan::Blocked(Blocker { reason, message })
}

/// Resolves the units under test of a sandbox run, or says why they cannot be.
async fn resolve_units(
    ctx: &Context,
    ns: &str,
    sim: &SensorSim,
) -> Result<Result<Units, Plan>, Error> {
    let mut units = Units::default();
    let Some(uut) = &sim.spec.units_under_test else {
        return Ok(Ok(units));
    };
    if let Some(r) = &uut.safety_policy_ref {
        let api: Api<SafetyPolicy> = Api::namespaced(ctx.client.clone(), ns);
        let Some(policy) = api.get_opt(&r.name).await? else {
            return Ok(Err(blocked(
                reasons::INVALID_SPEC,
                format!(
                    "unitsUnderTest.safetyPolicyRef: SafetyPolicy {ns}/{} not found",
                    r.name
                ),
            )));
        };
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        if cms
            .get_opt(&crate::core::safety::config_map_name(&r.name))
            .await?
            .is_none()
        {
            return Ok(Err(blocked(
                reasons::INVALID_SPEC,
                format!(
                    "SafetyPolicy {ns}/{} has no policy file yet (is it placeable? see its status)",
                    r.name
                ),
            )));
        }
        units.monitor = Some(MonitorUnit {
            policy: r.name.clone(),
            stop_topic: policy.spec.output.stop_topic.for_robot("${ROBOT}"),
        });
    }
    if let Some(r) = &uut.inference_service_ref {
        let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), ns);
        let Some(isvc) = api.get_opt(&r.name).await? else {
            return Ok(Err(blocked(
                reasons::INVALID_SPEC,
                format!(
                    "unitsUnderTest.inferenceServiceRef: InferenceService {ns}/{} not found",
                    r.name
                ),
            )));
        };
        let revision = uut.revision.clone().or_else(|| {
            isvc.status
                .as_ref()
                .and_then(|s| s.stable_revision.as_ref())
                .map(|r| r.hash.clone())
        });
        let Some(revision) = revision else {
            return Ok(Err(blocked(
                reasons::INVALID_SPEC,
                format!(
                    "InferenceService {ns}/{} has no stable revision yet; name unitsUnderTest.revision",
                    r.name
                ),
            )));
        };
        let crs: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
        let template = crs
            .get_opt(&format!("{}-{revision}", r.name))
            .await?
            .and_then(|cr| cr.data)
            .and_then(|d| serde_json::from_value::<Template>(d.0).ok());
        let Some(template) = template else {
            return Ok(Err(blocked(
                reasons::INVALID_SPEC,
                format!(
                    "InferenceService {ns}/{} has no revision {revision}",
                    r.name
                ),
            )));
        };
        units.inference = Some(template.spec);
    }
    Ok(Ok(units))
}

async fn reconcile_inner(obj: &SensorSim, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingMetadata)?;
    let name = obj.metadata.name.clone().ok_or(Error::MissingMetadata)?;
    let client = &ctx.client;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = obj.metadata.generation;
    ctx.caches_ready().await;
    let pods: Vec<Pod> = crate::cache::pods_of(&ctx.pods, KIND, &ns, &name);

    // ---- decide the run (pure decisions, fetched inputs)
    let allowed = crate::cache::allows_robot_workloads(&ctx.namespaces, &ns);
    let images = &ctx.config.bridge_images;
    let image = images.entries.get(&images.default_entry).cloned();
    let settings = image.clone().map(|image| SimSettings {
        image,
        sandbox_domain_id: ctx.config.sandbox_ros_domain_id,
    });
    let owner = Owner {
        kind: KIND.into(),
        name: name.clone(),
        namespace: ns.clone(),
        reference: obj
            .controller_owner_ref(&())
            .ok_or(Error::MissingMetadata)?,
    };
    let finished = sensor_sim::finished(obj.status.as_ref(), generation);
    let mut desired: Vec<Pod> = Vec::new();
    let mut stop_topic = None;
    let plan = if obj.spec.template {
        Plan::Template
    } else if !allowed {
        blocked(
            reasons::NAMESPACE_NOT_ALLOWED,
            format!(
                "namespace {ns} is not labelled {}=true; robot workloads are created only there",
                labels::ROBOT_WORKLOADS
            ),
        )
    } else if let Some(s) = &settings {
        match resolve_units(ctx, &ns, obj).await? {
            Err(plan) => plan,
            Ok(units) => {
                stop_topic = units.monitor.as_ref().map(|m| m.stop_topic.clone());
                match obj.spec.target.mode {
                    TargetMode::Sandbox => {
                        desired.push(sensor_sim::sandbox_pod(&owner, s, &units));
                        Plan::Run { pods: 1 }
                    }
                    TargetMode::Robots => {
                        let robots_all: Vec<Robot> = ctx
                            .nodes
                            .state()
                            .iter()
                            .filter_map(|n| Robot::from_node(n))
                            .collect();
                        match robots::select(obj.spec.target.robot_selector.as_ref(), &robots_all) {
                            Err(e) => blocked(reasons::INVALID_SPEC, e.to_string()),
                            Ok(sel) if sel.is_empty() => blocked(
                                reasons::NO_MATCHING_ROBOTS,
                                "spec.target.robotSelector matches no robot".into(),
                            ),
                            Ok(sel) => {
                                let bad = sensor_sim::unsafe_targets(&sel);
                                if bad.is_empty() {
                                    desired.extend(
                                        sel.iter().map(|r| sensor_sim::robot_pod(&owner, s, r)),
                                    );
                                    Plan::Run { pods: sel.len() }
                                } else {
                                    blocked(
                                        reasons::UNSAFE_TARGET,
                                        format!(
                                            "{} selected robot(s) are not labelled {}=true (e.g. {}); \
                                             a sim never publishes into a real robot's graph",
                                            bad.len(),
                                            labels::SIMULATED,
                                            bad.iter()
                                                .take(3)
                                                .copied()
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    )
                                }
                            }
                        }
                    }
                }
            }
        }
    } else {
        blocked(
            reasons::IMAGE_NOT_ALLOWED,
            "the operator has no --bridge-image to run sims with".into(),
        )
    };

    // ---- apply: the sim file and the run's pods (never after the run is over)
    let running = matches!(plan, Plan::Run { .. }) && !finished;
    if running {
        let file = sensor_sim::sim_file(&obj.spec, stop_topic.as_deref());
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        apply(
            &cm_api,
            &sensor_sim::config_map_name(&name),
            &sensor_sim::config_map(&owner, file),
        )
        .await?;
        for pod in &desired {
            let pod_name = pod.name_any();
            match pods.iter().find(|p| p.name_any() == pod_name) {
                None => {
                    apply(&pods_api, &pod_name, pod).await?;
                }
                Some(p)
                    if p.metadata.deletion_timestamp.is_none()
                        && p.labels().get(labels::REVISION)
                            != pod.labels().get(labels::REVISION) =>
                {
                    delete(&pods_api, &pod_name).await?;
                }
                Some(_) => {}
            }
        }
    }

    // ---- status from the sim containers of the run's current pods
    let states: Vec<(String, SimState)> = pods
        .iter()
        .filter(|p| {
            desired.iter().any(|d| {
                d.name_any() == p.name_any()
                    && d.labels().get(labels::REVISION) == p.labels().get(labels::REVISION)
            })
        })
        .map(|p| {
            let who = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| p.name_any());
            (who, sensor_sim::sim_state(p))
        })
        .collect();
    let (new_status, changed) = sensor_sim::compute_status(
        obj.status.as_ref(),
        &obj.spec,
        generation,
        &plan,
        &states,
        &now,
    );
    if changed {
        let api: Api<SensorSim> = Api::namespaced(client.clone(), &ns);
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
        if new_status.phase != obj.status.as_ref().and_then(|s| s.phase) {
            tracing::info!(namespace = %ns, %name, phase = ?new_status.phase, "sensor sim phase");
            let phase = new_status
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_default();
            super::publish_transition(ctx, &obj.object_ref(&()), &phase, &new_status.common).await;
        }
    }

    // ---- the run is over (or cannot run): its pods go, the result stays in status
    let over = sensor_sim::finished(Some(&new_status), generation) || !running;
    if over {
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            delete(&pods_api, &p.name_any()).await?;
        }
    } else {
        // Pods of an older run (another revision or robots no longer selected).
        for p in pods.iter().filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !desired.iter().any(|d| d.name_any() == p.name_any())
        }) {
            delete(&pods_api, &p.name_any()).await?;
        }
    }
    let active = matches!(
        new_status.phase,
        Some(SimPhase::Pending | SimPhase::Running)
    ) && running;
    Ok(Action::requeue(if active {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(60)
    }))
}
