//! SafetyPolicy → one ConfigMap per policy (the monitor's policy file) and one monitor pod per
//! selected robot. The pod never carries the policy itself: a policy change rewrites the ConfigMap
//! and the monitor hot-reloads it, so no robot is unmonitored during a change. The pod's revision
//! is a hash of the pod template alone (image, port, priority class, resources).
//!
//! Relaxing changes wait for approval ([`approval`], with the zone geometry in [`containment`]);
//! what was applied survives restarts in the policy ConfigMap and a record ConfigMap of the
//! approved robots. [`transitions`] picks the Events a status change deserves.

pub mod approval;
pub mod containment;
pub mod transitions;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, Pod,
    PodSpec, Probe, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use robofleet_crds::conditions::{DesiredCondition, reasons, set_condition, types};
use robofleet_crds::rollout::RolloutPhase;
use robofleet_crds::safety_policy::{SafetyPolicySpec, SafetyPolicyStatus};

use super::isvc::{
    Owner, child_labels, pin_to_robot, restricted_security_context, robot_tolerations,
};
use super::naming::short_hash;
use super::robots::Robot;
use super::status::Blocker;

/// Directory the policy ConfigMap is mounted at.
pub const CONFIG_DIR: &str = "/etc/robofleet/safety";
/// Key (file name) of the policy in the ConfigMap.
pub const CONFIG_KEY: &str = "policy.yaml";
/// Container name of the monitor.
pub const MONITOR_CONTAINER: &str = "safety-monitor";
/// Annotation carrying verbs (`reset@<nonce>`).
pub const ACTION_ANNOTATION: &str = "robofleet.io/action";

/// How monitor pods are rendered (from the operator's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorSettings {
    /// The bridge image (from the allow-list).
    pub image: String,
    /// PriorityClass of monitor pods.
    pub priority_class: String,
    /// Port of /metrics, /healthz, /readyz on the robot's address.
    pub metrics_port: u16,
    /// Memory request and limit (equal, so the monitor is never the first to be OOM-killed).
    pub memory: String,
    /// CPU request; no CPU limit (CFS throttling would delay stops).
    pub cpu_request: String,
}

/// Name of the policy's ConfigMap.
pub fn config_map_name(policy: &str) -> String {
    format!("safety-{policy}")
}

/// The nonce of a `reset@<nonce>` action annotation, if that is what it says.
pub fn reset_nonce(action: Option<&str>) -> Option<String> {
    action
        .and_then(|a| a.strip_prefix("reset@"))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// The reset nonce the policy file carries: the one `robofleet.io/action` asks for, else the one
/// last acknowledged (`status.lastAction`). The file keeps the acknowledged nonce, so a monitor
/// (which resets only when the nonce changes, and takes the one it starts with as given) never
/// sees the same reset twice.
pub fn relay_nonce(action: Option<&str>, last_action: Option<&str>) -> Option<String> {
    reset_nonce(action).or_else(|| reset_nonce(last_action))
}

/// Name of the record of the robots whose monitors are approved (not mounted by any pod). It
/// must not start with `safety-`: a policy named `<policy>-approved` would own that ConfigMap.
pub fn record_name(policy: &str) -> String {
    format!("approved-safety-{policy}")
}

/// Key of the robot list (one name per line) in the record.
pub const RECORD_KEY: &str = "robots";

/// The record ConfigMap of approved robots.
pub fn record_config_map(owner: &Owner, robots: &BTreeSet<String>) -> ConfigMap {
    let list: Vec<&str> = robots.iter().map(String::as_str).collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(record_name(&owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(child_labels(owner, "safety-record")),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(RECORD_KEY.to_owned(), list.join("\n"))])),
        ..Default::default()
    }
}

/// The robots a record names.
pub fn parse_record(cm: &ConfigMap) -> BTreeSet<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(RECORD_KEY))
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The policy file a ConfigMap holds, if any.
pub fn file_of(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get(CONFIG_KEY).map(String::as_str)
}

/// The policy a policy file enforces (the inverse of [`policy_file`], without `robotSelector` and
/// with the default `minEnforcingPercent`); `None` if it does not parse.
pub fn parse_policy_file(file: &str) -> Option<SafetyPolicySpec> {
    let mut value: serde_json::Value = serde_json::from_str(file).ok()?;
    let map = value.as_object_mut()?;
    map.remove("name");
    map.remove("resetNonce");
    serde_json::from_value(value).ok()
}

/// The policy file the monitor reads: the spec's own layout plus `name` (the metrics label) and
/// the reset nonce. JSON is YAML, and serialisation order is fixed by the types.
pub fn policy_file(name: &str, spec: &SafetyPolicySpec, nonce: Option<&str>) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        // Operator-only fields; the monitor does not read them.
        map.remove("robotSelector");
        map.remove("minEnforcingPercent");
        map.insert("name".into(), name.into());
        if let Some(n) = nonce {
            map.insert("resetNonce".into(), n.into());
        }
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Hash of a policy file (`status.activeHash` hashes the file without the reset nonce, so a reset
/// is no policy change).
pub fn policy_hash(file: &str) -> String {
    short_hash(file.as_bytes(), 10)
}

/// The ConfigMap holding the policy file.
pub fn config_map(owner: &Owner, file: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(child_labels(owner, "safety-policy")),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), file)])),
        ..Default::default()
    }
}

/// The robot-independent monitor pod spec and its revision (hash of the spec; no policy content).
pub fn monitor_template(owner: &Owner, s: &MonitorSettings) -> (PodSpec, String) {
    let port = i32::from(s.metrics_port);
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = Container {
        name: MONITOR_CONTAINER.into(),
        image: Some(s.image.clone()),
        args: Some(vec![
            "safety".into(),
            format!("--config={CONFIG_DIR}/{CONFIG_KEY}"),
            format!("--metrics-addr=$(HOST_IP):{}", s.metrics_port),
            "--robot=$(ROBOT)".into(),
        ]),
        env: Some(vec![
            field("HOST_IP", "status.hostIP"),
            field("ROBOT", "spec.nodeName"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: port,
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(s.cpu_request.clone())),
                ("memory".to_owned(), Quantity(s.memory.clone())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(s.memory.clone()),
            )])),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "policy".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        security_context: Some(restricted_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let spec = PodSpec {
        host_network: Some(true),
        automount_service_account_token: Some(false),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        priority_class_name: Some(s.priority_class.clone()),
        containers: vec![container],
        restart_policy: Some("Always".into()),
        termination_grace_period_seconds: Some(10),
        tolerations: Some(robot_tolerations()),
        volumes: Some(vec![Volume {
            name: "policy".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&owner.name),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let revision = short_hash(&serde_json::to_vec(&spec).unwrap_or_default(), 10);
    (spec, revision)
}

/// The monitor pod of `robot`.
pub fn monitor_pod(owner: &Owner, template: &PodSpec, revision: &str, robot: &Robot) -> Pod {
    let domain = robot.ros_domain_id().unwrap_or(0);
    pin_to_robot(
        owner,
        "safety",
        "safety-monitor",
        template.clone(),
        revision,
        robot,
        domain,
    )
}

/// Another policy as the conflict check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyClaim {
    /// `namespace/name`.
    pub key: String,
    /// Creation time (older wins).
    pub created: Option<Time>,
    /// The stop topic as written (`${ROBOT}` unresolved).
    pub stop_topic: String,
    /// The robots it selects.
    pub robots: Vec<String>,
}

fn resolve(topic: &str, robot: &str) -> String {
    topic.replace("${ROBOT}", robot)
}

/// The robots `me` loses to an older policy (one policy per robot and stop topic), with the
/// winner's key: older by creationTimestamp, then by `namespace/name`.
pub fn conflicts(me: &PolicyClaim, others: &[PolicyClaim]) -> BTreeMap<String, String> {
    let older = |o: &PolicyClaim| (&o.created, &o.key) < (&me.created, &me.key);
    let mut lost = BTreeMap::new();
    for other in others.iter().filter(|o| o.key != me.key && older(o)) {
        for robot in &me.robots {
            let same_topic = resolve(&other.stop_topic, robot) == resolve(&me.stop_topic, robot);
            if same_topic && other.robots.contains(robot) {
                lost.entry(robot.clone())
                    .or_insert_with(|| other.key.clone());
            }
        }
    }
    lost
}

/// The robots of `wanted` that another policy still holds (no longer selects, but keeps its
/// monitor until its owner approves the release) on the same stop topic, with that policy's key.
/// They wait: two monitors must never publish one robot's stop lock. `others` pairs each other
/// policy's claim with the robots its record names.
pub fn held_elsewhere(
    me: &PolicyClaim,
    wanted: &[String],
    others: &[(PolicyClaim, BTreeSet<String>)],
) -> BTreeMap<String, String> {
    let mut held = BTreeMap::new();
    for (other, record) in others.iter().filter(|(o, _)| o.key != me.key) {
        for robot in wanted {
            let holds = record.contains(robot) && !other.robots.contains(robot);
            if holds && resolve(&other.stop_topic, robot) == resolve(&me.stop_topic, robot) {
                held.entry(robot.clone())
                    .or_insert_with(|| other.key.clone());
            }
        }
    }
    held
}

/// What the operator saw of one monitor pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorObservation {
    /// Node the pod runs on.
    pub robot: String,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Its phase is Failed or a container keeps crashing.
    pub failed: bool,
    /// Subscribers of its stop lock, as last scraped (`None`: not known yet).
    pub consumers: Option<u32>,
}

/// What the status is judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.minEnforcingPercent`: share of online robots that must be enforcing for Ready.
    pub min_enforcing_percent: u32,
}

/// What runs and what waits, as status reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Enforcement<'a> {
    /// Hash of the policy the monitors enforce (`None`: nothing was applied; keep the last).
    pub active_hash: Option<&'a str>,
    /// The change waiting for approval: its hash and the `ApprovalPending` message.
    pub pending: Option<(&'a str, &'a str)>,
    /// The last approval acted on (`None`: keep the last).
    pub approved_hash: Option<&'a str>,
    /// Robots no longer selected that keep their monitor until approved.
    pub held: Option<&'a BTreeSet<String>>,
    /// The reset acknowledged now (`reset@<nonce>`; `None`: keep the last).
    pub last_action: Option<&'a str>,
}

/// Computes the new status; returns it and whether it differs from `previous`.
pub fn compute_status(
    previous: Option<&SafetyPolicyStatus>,
    target: Target,
    robots: &[&Robot],
    pods: &[MonitorObservation],
    enforcement: &Enforcement<'_>,
    blocker: Option<Blocker>,
    now: &Time,
) -> (SafetyPolicyStatus, bool) {
    let generation = target.generation;
    let mut status = previous.cloned().unwrap_or_default();
    let before = status.clone();
    let selected = |p: &&MonitorObservation| robots.iter().any(|r| r.name == p.robot);
    let c = &mut status.robots;
    c.total = robots.len() as u32;
    c.offline = robots.iter().filter(|r| !r.ready).count() as u32;
    c.ready = pods.iter().filter(selected).filter(|p| p.ready).count() as u32;
    c.failed = pods.iter().filter(selected).filter(|p| p.failed).count() as u32;
    let ready_with = |f: fn(u32) -> bool| {
        pods.iter()
            .filter(selected)
            .filter(|p| p.ready && p.consumers.is_some_and(f))
            .count() as u32
    };
    c.enforcing = ready_with(|n| n > 0);
    c.unconsumed = ready_with(|n| n == 0);
    // Every ready monitor is known and none has a consumer: nothing would stop the robots.
    let none_consumed = c.ready > 0 && c.unconsumed == c.ready;
    // Judged only once every ready monitor's consumers are known.
    let online = c.total.saturating_sub(c.offline);
    let short_of_enforcing = c.enforcing + c.unconsumed == c.ready
        && u64::from(c.enforcing) * 100
            < u64::from(target.min_enforcing_percent) * u64::from(online);
    let online_unready = robots
        .iter()
        .filter(|r| r.ready)
        .filter(|r| !pods.iter().any(|p| p.robot == r.name && p.ready))
        .count();
    let summary = format!(
        "{}/{} monitors ready{}{}",
        c.ready,
        c.total,
        if c.offline > 0 {
            format!(", {} offline", c.offline)
        } else {
            String::new()
        },
        if c.failed > 0 {
            format!(", {} failed", c.failed)
        } else {
            String::new()
        },
    ) + &format!(", {} enforcing, {} unconsumed", c.enforcing, c.unconsumed);
    let all_ready = c.total > 0 && online_unready == 0;
    let (phase, ready, reconciling, stalled, message) = if let Some(b) = blocker {
        let m = format!("{}; {summary}", b.message);
        let r = b.reason;
        (
            RolloutPhase::Degraded,
            (all_ready, r),
            (false, r),
            (true, r),
            m,
        )
    } else if robots.is_empty() {
        let r = reasons::NO_MATCHING_ROBOTS;
        let m = "the robot selector matches no robot (robots are Nodes labelled robofleet.io/robot=true)";
        (
            RolloutPhase::Degraded,
            (false, r),
            (false, r),
            (true, r),
            m.to_owned(),
        )
    } else if none_consumed {
        let m = format!(
            "{summary}: nothing subscribes to the stop lock on any robot; configure the robots' \
             twist_mux (or another consumer) to lock on it"
        );
        (
            RolloutPhase::Degraded,
            (false, reasons::NO_STOP_CONSUMER),
            (false, reasons::NO_STOP_CONSUMER),
            (false, reasons::AS_EXPECTED),
            m,
        )
    } else if all_ready && short_of_enforcing {
        let m = format!(
            "{summary}: fewer than {}% of the online robots enforce the policy (their stop lock has \
             no consumer)",
            target.min_enforcing_percent
        );
        let r = reasons::NOT_ENOUGH_ENFORCING;
        (
            RolloutPhase::Degraded,
            (false, r),
            (false, r),
            (false, reasons::AS_EXPECTED),
            m,
        )
    } else if all_ready {
        (
            RolloutPhase::Healthy,
            (true, reasons::AVAILABLE),
            (false, reasons::ROLLOUT_COMPLETE),
            (false, reasons::AS_EXPECTED),
            summary,
        )
    } else {
        let r = reasons::ROLLOUT_IN_PROGRESS;
        (
            RolloutPhase::Progressing,
            (false, r),
            (true, r),
            (false, reasons::AS_EXPECTED),
            summary,
        )
    };
    for (type_, (value, reason)) in [
        (types::READY, ready),
        (types::RECONCILING, reconciling),
        (types::STALLED, stalled),
    ] {
        let reason = if type_ == types::READY && value {
            reasons::AVAILABLE
        } else {
            reason
        };
        set_condition(
            &mut status.common.conditions,
            DesiredCondition {
                type_,
                status: value,
                reason,
                message: message.clone(),
            },
            generation,
            now,
        );
    }
    let (pending, approval_message) = match enforcement.pending {
        Some((_, m)) => (true, m.to_owned()),
        None => (false, "no relaxing change waits for approval".to_owned()),
    };
    set_condition(
        &mut status.common.conditions,
        DesiredCondition {
            type_: types::APPROVAL_PENDING,
            status: pending,
            reason: if pending {
                reasons::APPROVAL_REQUIRED
            } else {
                reasons::AS_EXPECTED
            },
            message: approval_message,
        },
        generation,
        now,
    );
    let message = match enforcement.pending {
        Some((hash, _)) => format!(
            "{message}; a relaxing change waits for {}={hash} (see condition ApprovalPending)",
            approval::APPROVE_ANNOTATION
        ),
        None => message,
    };
    status.phase = Some(phase);
    status.common.message = Some(message);
    status.common.observed_generation = generation;
    if let Some(h) = enforcement.active_hash {
        status.active_hash = Some(h.to_owned());
    }
    status.pending_hash = enforcement.pending.map(|(h, _)| h.to_owned());
    if let Some(h) = enforcement.approved_hash {
        status.approved_hash = Some(h.to_owned());
    }
    let held = enforcement.held.cloned().unwrap_or_default();
    status.robots.held = held.len() as u32;
    status.held_robots = approval::held_sample(&held);
    if let Some(a) = enforcement.last_action {
        status.last_action = Some(a.to_owned());
    }
    let changed = status != before;
    (status, changed)
}

#[cfg(test)]
mod tests;
