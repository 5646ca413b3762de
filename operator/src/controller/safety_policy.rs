//! SafetyPolicy controller: fetch → validate, find conflicts and decide what waits for approval
//! (pure, `core::safety`) → apply the policy ConfigMap, the record of approved robots and one
//! monitor pod per monitored robot → status, written only on change → one Event per transition.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use robofleet_crds::SafetyPolicy;
use robofleet_crds::conditions::reasons;
use robofleet_crds::labels;
use robofleet_crds::rollout::RolloutPhase;
use serde_json::json;

use super::Context;
use crate::apply::{FIELD_MANAGER, apply};
use crate::core::isvc::Owner;
use crate::core::robots::{self, Robot};
use crate::core::safety::approval::{self, Applied};
use crate::core::safety::transitions::{self, Transition};
use crate::core::safety::{self, Enforcement, MonitorObservation, MonitorSettings, PolicyClaim};
use crate::core::status::Blocker;
use crate::scrape;

/// Kind name used in labels, metrics and events.
pub const KIND: &str = "SafetyPolicy";

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

/// Reconciles one SafetyPolicy.
pub async fn reconcile(obj: Arc<SafetyPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile(KIND);
    let result = reconcile_inner(&obj, &ctx).await;
    timer.finish(match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    });
    result
}

/// Retries failed reconciles after a delay.
pub fn error_policy(obj: Arc<SafetyPolicy>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %obj.name_any(), error = %err, "safety policy reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

fn claim(p: &SafetyPolicy, robots_all: &[Robot]) -> PolicyClaim {
    let selected = robots::select(p.spec.robot_selector.as_ref(), robots_all).unwrap_or_default();
    PolicyClaim {
        key: format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
        created: p.metadata.creation_timestamp.clone(),
        stop_topic: p.spec.output.stop_topic.for_robot("${ROBOT}"),
        robots: selected.iter().map(|r| r.name.clone()).collect(),
    }
}

async fn reconcile_inner(obj: &SafetyPolicy, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingMetadata)?;
    let name = obj.metadata.name.clone().ok_or(Error::MissingMetadata)?;
    let client = &ctx.client;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // ---- fetch (pods, namespaces and the other policies from the shared caches)
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
        .met(&format!("{ns}/{name}"), &pods, std::time::Instant::now())
    {
        // The cache has not caught up with this policy's last pod writes yet.
        return Ok(Action::requeue(Duration::from_millis(300)));
    }
    // Only policies that can run monitors compete for robots: one in a namespace without the
    // robot-workloads label never places a monitor, so it must not take robots from one that can.
    let allowed_namespaces = crate::cache::robot_namespaces(&ctx.namespaces);
    let others: Vec<PolicyClaim> = ctx
        .policies
        .state()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .namespace
                .as_ref()
                .is_some_and(|n| allowed_namespaces.contains(n))
        })
        .map(|p| claim(p, &robots_all))
        .collect();
    // What was applied, as it survives restarts: the policy file the monitors read, the record
    // of approved robots.
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let policy_cm = cm_api.get_opt(&safety::config_map_name(&name)).await?;
    let record = cm_api
        .get_opt(&safety::record_name(&name))
        .await?
        .map(|cm| safety::parse_record(&cm));

    // ---- validate and decide (pure)
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
    let images = &ctx.config.bridge_images;
    let image = images.entries.get(&images.default_entry).cloned();
    if image.is_none() {
        blocker.get_or_insert(Blocker {
            reason: reasons::IMAGE_NOT_ALLOWED,
            message: "the operator has no --bridge-image to run safety monitors with".into(),
        });
    }
    let selected = match robots::select(obj.spec.robot_selector.as_ref(), &robots_all) {
        Ok(s) => s,
        Err(e) => {
            blocker.get_or_insert(Blocker {
                reason: reasons::INVALID_SPEC,
                message: e.to_string(),
            });
            Vec::new()
        }
    };
    let me = claim(obj, &robots_all);
    let lost = safety::conflicts(&me, &others);
    if let Some((robot, winner)) = lost.iter().next() {
        blocker.get_or_insert(Blocker {
            reason: reasons::CONFLICT,
            message: format!(
                "{} selected robot(s) (e.g. {robot}) already run policy {winner} on stop topic {}; \
                 one policy per robot and stop topic (the older wins)",
                lost.len(),
                obj.spec.output.stop_topic.for_robot("${ROBOT}")
            ),
        });
    }
    // A conflict keeps the monitors on the robots this policy does not lose.
    let placeable = allowed && image.is_some();
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let has_monitor = |robot: &str| {
        live.iter()
            .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(robot))
    };
    // Robots about to get a monitor that another policy still holds wait for that approval.
    let wanted: Vec<String> = selected
        .iter()
        .filter(|r| !lost.contains_key(&r.name) && !has_monitor(&r.name))
        .map(|r| r.name.clone())
        .collect();
    let deferred = if placeable && !wanted.is_empty() {
        held_elsewhere(ctx, &me, &wanted, &others).await?
    } else {
        BTreeMap::new()
    };
    if let Some((robot, holder)) = deferred.iter().next() {
        blocker.get_or_insert(Blocker {
            reason: reasons::CONFLICT,
            message: format!(
                "{} selected robot(s) (e.g. {robot}) keep the monitor of policy {holder} until its \
                 owner approves their release; one policy per robot and stop topic",
                deferred.len()
            ),
        });
    }

    // ---- approvals (pure)
    let robot_names: BTreeSet<String> = robots_all.iter().map(|r| r.name.clone()).collect();
    let mine: BTreeSet<String> = selected
        .iter()
        .map(|r| r.name.clone())
        .filter(|r| !lost.contains_key(r) && !deferred.contains_key(r))
        .collect();
    let applied = policy_cm
        .as_ref()
        .and_then(safety::file_of)
        .and_then(safety::parse_policy_file)
        .map(|spec| Applied {
            spec,
            // No record yet (an operator from before records): the robots with a monitor.
            robots: record.clone().unwrap_or_else(|| {
                live.iter()
                    .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                    .collect()
            }),
        });
    let annotations = obj.annotations();
    let last = obj.status.as_ref();
    let decision = approval::decide(&approval::Input {
        name: &name,
        spec: &obj.spec,
        applied: applied.as_ref(),
        selected: &mine,
        robots: &robot_names,
        approve: annotations
            .get(approval::APPROVE_ANNOTATION)
            .map(String::as_str),
        approved_hash: last.and_then(|s| s.approved_hash.as_deref()),
    });
    let action = annotations
        .get(safety::ACTION_ANNOTATION)
        .map(String::as_str);
    let nonce = safety::relay_nonce(action, last.and_then(|s| s.last_action.as_deref()));
    let file = safety::policy_file(&name, &decision.enforce, nonce.as_deref());
    let hash = safety::policy_hash(&safety::policy_file(&name, &decision.enforce, None));
    let pending_message = decision.pending_message(&ns, &name);

    // ---- apply
    let mut converging = false;
    if let (true, Some(image)) = (placeable, image) {
        let owner = Owner {
            kind: KIND.into(),
            name: name.clone(),
            namespace: ns.clone(),
            reference: obj
                .controller_owner_ref(&())
                .ok_or(Error::MissingMetadata)?,
        };
        // The policy first, then the record: a crash in between decides the same again.
        // Written only when the file changes: a no-op apply is still a write request.
        let current = policy_cm
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(safety::CONFIG_KEY));
        if current != Some(&file) {
            let cm = safety::config_map(&owner, file);
            apply(&cm_api, &safety::config_map_name(&name), &cm).await?;
        }
        if record.as_ref() != Some(&decision.monitored) {
            let rec = safety::record_config_map(&owner, &decision.monitored);
            apply(&cm_api, &safety::record_name(&name), &rec).await?;
        }
        let settings = MonitorSettings {
            image,
            priority_class: ctx.config.safety_priority_class.clone(),
            metrics_port: ctx.config.safety_metrics_port,
            memory: "64Mi".into(),
            cpu_request: "50m".into(),
        };
        let (template, revision) = safety::monitor_template(&owner, &settings);
        let desired: Vec<Pod> = robots_all
            .iter()
            .filter(|r| decision.monitored.contains(&r.name))
            .map(|robot| safety::monitor_pod(&owner, &template, &revision, robot))
            .collect();
        let (c, expected) = super::converge_pods(&pods_api, &desired, &pods).await?;
        converging = c;
        ctx.expectations
            .expect(&format!("{ns}/{name}"), expected, std::time::Instant::now());
    }

    // ---- low-rate scrape: who consumes each monitor's stop lock
    let consumers = scrape_consumers(ctx, &format!("{ns}/{name}"), &name, &pods).await;

    // The reset asked for is in the policy file now: acknowledged.
    let acknowledged = safety::reset_nonce(action).map(|n| format!("reset@{n}"));

    // ---- status (pure, written only on change)
    let observations: Vec<MonitorObservation> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let st = p.status.as_ref();
            Some(MonitorObservation {
                robot: p.spec.as_ref()?.node_name.clone()?,
                ready: st
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
                failed: st.and_then(|s| s.phase.as_deref()) == Some("Failed"),
                consumers: p
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|u| consumers.get(u))
                    .copied(),
            })
        })
        .collect();
    let conflicted = blocker
        .as_ref()
        .is_some_and(|b| b.reason == reasons::CONFLICT);
    let (new_status, changed) = safety::compute_status(
        obj.status.as_ref(),
        safety::Target {
            generation: obj.metadata.generation,
            min_enforcing_percent: obj.spec.min_enforcing_percent,
        },
        &selected,
        &observations,
        &if placeable {
            Enforcement {
                active_hash: Some(&hash),
                pending: decision.pending.as_ref().map(|p| {
                    (
                        p.hash.as_str(),
                        pending_message.as_deref().unwrap_or_default(),
                    )
                }),
                approved_hash: decision.approved_hash.as_deref(),
                held: Some(&decision.held),
                last_action: acknowledged.as_deref(),
            }
        } else {
            Enforcement::default()
        },
        blocker,
        &now,
    );
    if changed {
        let api: Api<SafetyPolicy> = Api::namespaced(client.clone(), &ns);
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
        publish(
            ctx,
            obj,
            transitions::transitions(obj.status.as_ref(), &new_status),
        )
        .await;
    }
    // Another policy's deletion ends a conflict without an event on this one: look again soon.
    // Robots another policy holds (`deferred`) are a Conflict too, looked at every 15 s: a robot
    // between two monitors has a silent lock, which its consumers treat as stop.
    let soon = converging || new_status.phase == Some(RolloutPhase::Progressing);
    let unscraped = observations
        .iter()
        .any(|o| o.ready && o.consumers.is_none());
    Ok(Action::requeue(if soon {
        Duration::from_secs(2)
    } else if conflicted || unscraped {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(60)
    }))
}

/// The robots of `wanted` another policy holds on the same stop topic (reads the record of each
/// other policy; called only when robots are about to get a monitor, so settled policies read
/// nothing).
async fn held_elsewhere(
    ctx: &Context,
    me: &PolicyClaim,
    wanted: &[String],
    others: &[PolicyClaim],
) -> Result<BTreeMap<String, String>, Error> {
    let mut records = Vec::new();
    for other in others.iter().filter(|o| o.key != me.key) {
        let Some((ns, name)) = other.key.split_once('/') else {
            continue;
        };
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        if let Some(cm) = api.get_opt(&safety::record_name(name)).await? {
            records.push((other.clone(), safety::parse_record(&cm)));
        }
    }
    Ok(safety::held_elsewhere(me, wanted, &records))
}

/// Publishes the Events of a status change; failures are only logged.
async fn publish(ctx: &Context, obj: &SafetyPolicy, events: Vec<Transition>) {
    let reference = obj.object_ref(&());
    for t in events {
        super::publish_event(ctx, &reference, t.warning, &t.reason, &t.note, &t.action).await;
    }
}

/// Most monitors scraped per reconcile (monitors not yet known first; the rest wait).
const MAX_SCRAPES_PER_RECONCILE: usize = 16;

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Scrapes ready monitors' `/metrics` for their stop-lock consumer count and returns what every
/// current pod last reported (by UID). An unreachable or malformed target keeps its last value.
async fn scrape_consumers(
    ctx: &Context,
    owner_key: &str,
    policy: &str,
    pods: &[Pod],
) -> HashMap<String, u32> {
    let mut known = ctx
        .stop_consumers
        .lock()
        .map(|mut m| m.remove(owner_key).unwrap_or_default())
        .unwrap_or_default();
    known.retain(|uid, _| pods.iter().any(|p| p.metadata.uid.as_ref() == Some(uid)));
    let mut targets: Vec<(&Pod, bool)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .map(|p| {
            let seen = p
                .metadata
                .uid
                .as_ref()
                .is_some_and(|u| known.contains_key(u));
            (p, seen)
        })
        .collect();
    targets.sort_by_key(|(_, seen)| *seen);
    for (pod, _) in targets.into_iter().take(MAX_SCRAPES_PER_RECONCILE) {
        let (Some(uid), Some(host)) = (
            pod.metadata.uid.clone(),
            pod.status.as_ref().and_then(|s| s.host_ip.clone()),
        ) else {
            continue;
        };
        let url = scrape::pod_metrics_url(
            ctx.config.scrape_transport,
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            &host,
            ctx.config.safety_metrics_port,
        );
        match ctx.scraper.fetch(&url).await {
            Ok(text) => {
                let (samples, malformed) = scrape::parse(&text);
                ctx.metrics.scraped(if malformed > 0 {
                    "malformed_lines"
                } else {
                    "ok"
                });
                if let Some(n) = scrape::stop_consumers(&samples, policy) {
                    known.insert(uid, n);
                }
            }
            Err(e) => {
                ctx.metrics.scraped(e.kind());
                tracing::debug!(%url, error = %e, "monitor scrape failed");
            }
        }
    }
    if let Ok(mut m) = ctx.stop_consumers.lock() {
        m.insert(owner_key.to_owned(), known.clone());
    }
    known
}
