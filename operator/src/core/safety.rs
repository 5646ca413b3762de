//! SafetyPolicy → one ConfigMap per policy (the monitor's policy file) and one monitor pod per
//! selected robot. The pod never carries the policy itself: a policy change rewrites the ConfigMap
//! and the monitor hot-reloads it, so no robot is unmonitored during a change. The pod's revision
//! is a hash of the pod template alone (image, port, priority class, resources).

use std::collections::BTreeMap;

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

/// Hash of what the monitors enforce (`status.activeHash`).
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

/// Computes the new status; returns it and whether it differs from `previous`.
pub fn compute_status(
    previous: Option<&SafetyPolicyStatus>,
    target: Target,
    robots: &[&Robot],
    pods: &[MonitorObservation],
    active_hash: Option<&str>,
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
    status.phase = Some(phase);
    status.common.message = Some(message);
    status.common.observed_generation = generation;
    if let Some(h) = active_hash {
        status.active_hash = Some(h.to_owned());
    }
    let changed = status != before;
    (status, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::naming::pod_name;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use robofleet_crds::SafetyPolicy;
    use robofleet_crds::conditions::find_condition;
    use robofleet_crds::labels;

    fn policy(extra: serde_json::Value) -> SafetyPolicy {
        let mut v = serde_json::json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
            "metadata": {"name": "front", "namespace": "fleet"},
            "spec": {"zones": [{"name": "front", "shape": "sector", "action": "stop",
                                "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.35}]}
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn owner() -> Owner {
        Owner {
            kind: "SafetyPolicy".into(),
            name: "front".into(),
            namespace: "fleet".into(),
            reference: OwnerReference {
                api_version: "robofleet.io/v1alpha1".into(),
                kind: "SafetyPolicy".into(),
                name: "front".into(),
                uid: "u".into(),
                controller: Some(true),
                ..Default::default()
            },
        }
    }

    fn settings() -> MonitorSettings {
        MonitorSettings {
            image: "robofleet/ros2-bridge@sha256:00".into(),
            priority_class: "robofleet-safety-critical".into(),
            metrics_port: 9470,
            memory: "64Mi".into(),
            cpu_request: "50m".into(),
        }
    }

    fn robot(name: &str, ready: bool) -> Robot {
        Robot {
            name: name.into(),
            labels: BTreeMap::from([(labels::ROS_DOMAIN_ID.to_owned(), "7".to_owned())]),
            ready,
        }
    }

    #[test]
    fn the_policy_file_is_the_spec_with_name_and_nonce() {
        let p = policy(serde_json::json!({"robotSelector": {"matchLabels": {"a": "b"}}}));
        let file = policy_file("front", &p.spec, Some("n1"));
        let v: serde_json::Value = serde_json::from_str(&file).unwrap();
        assert_eq!(v["name"], "front");
        assert_eq!(v["resetNonce"], "n1");
        assert_eq!(v["zones"][0]["range"], 0.35);
        assert_eq!(v["output"]["stopTopic"], "/safety/stop");
        assert!(v.get("robotSelector").is_none());
        assert!(v.get("minEnforcingPercent").is_none());
        assert_ne!(
            policy_hash(&file),
            policy_hash(&policy_file("front", &p.spec, None))
        );
    }

    #[test]
    fn reset_nonce_only_from_reset_actions() {
        assert_eq!(reset_nonce(Some("reset@abc")), Some("abc".into()));
        assert_eq!(reset_nonce(Some("reset@")), None);
        assert_eq!(reset_nonce(Some("promote")), None);
        assert_eq!(reset_nonce(None), None);
    }

    #[test]
    fn monitor_pods_follow_the_contract_and_ignore_policy_content() {
        let (spec, rev) = monitor_template(&owner(), &settings());
        let pod = monitor_pod(&owner(), &spec, &rev, &robot("robot-1", true));
        let ps = pod.spec.as_ref().unwrap();
        assert_eq!(ps.host_network, Some(true));
        assert_eq!(ps.automount_service_account_token, Some(false));
        assert_eq!(
            ps.priority_class_name.as_deref(),
            Some("robofleet-safety-critical")
        );
        assert!(
            ps.tolerations
                .as_ref()
                .unwrap()
                .iter()
                .all(|t| t.toleration_seconds.is_none())
        );
        let c = &ps.containers[0];
        let res = c.resources.as_ref().unwrap();
        let limits = res.limits.as_ref().unwrap();
        let requests = res.requests.as_ref().unwrap();
        assert_eq!(limits.get("memory"), requests.get("memory"));
        assert!(limits.get("cpu").is_none() && requests.contains_key("cpu"));
        let args = c.args.as_ref().unwrap();
        assert!(args.contains(&"--config=/etc/robofleet/safety/policy.yaml".to_owned()));
        assert!(args.contains(&"--metrics-addr=$(HOST_IP):9470".to_owned()));
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        let env = c.env.as_ref().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "ROS_DOMAIN_ID" && e.value.as_deref() == Some("7"))
        );
        let name = pod.metadata.name.unwrap();
        assert_eq!(name, pod_name("safety", "front", "robot-1"));
        let l = pod.metadata.labels.unwrap();
        assert_eq!(l.get(labels::REVISION), Some(&rev));
        assert_eq!(
            l.get("app.kubernetes.io/managed-by").map(String::as_str),
            Some("robofleet-operator")
        );
        // The revision depends on the template only: a different policy is the same revision.
        let (_, rev2) = monitor_template(&owner(), &settings());
        assert_eq!(rev, rev2);
        let mut other = settings();
        other.image = "robofleet/ros2-bridge@sha256:11".into();
        assert_ne!(rev, monitor_template(&owner(), &other).1);
    }

    fn claim(key: &str, secs: i64, topic: &str, robots: &[&str]) -> PolicyClaim {
        PolicyClaim {
            key: key.into(),
            created: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
            stop_topic: topic.into(),
            robots: robots.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn the_older_policy_wins_per_robot_and_stop_topic() {
        let old = claim("fleet/a", 10, "/safety/stop", &["r1", "r2"]);
        let new = claim("fleet/b", 20, "/safety/stop", &["r2", "r3"]);
        let other_topic = claim("fleet/c", 5, "/other/stop", &["r1", "r2", "r3"]);
        let all = vec![old.clone(), new.clone(), other_topic];
        assert!(conflicts(&old, &all).is_empty());
        let lost = conflicts(&new, &all);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost.get("r2").map(String::as_str), Some("fleet/a"));
        // Same creation time: the name decides.
        let twin = claim("fleet/0", 10, "/safety/stop", &["r1"]);
        assert_eq!(conflicts(&old, std::slice::from_ref(&twin)).len(), 1);
        assert!(conflicts(&twin, &[old]).is_empty());
        // ${ROBOT} topics resolve per robot before comparing.
        let per_robot = claim("fleet/d", 1, "/${ROBOT}/stop", &["r3"]);
        let literal = claim("fleet/e", 2, "/r3/stop", &["r3"]);
        assert_eq!(conflicts(&literal, &[per_robot]).len(), 1);
    }

    fn target(generation: i64, min_enforcing_percent: u32) -> Target {
        Target {
            generation: Some(generation),
            min_enforcing_percent,
        }
    }

    #[test]
    fn status_counts_and_conditions() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let (r1, r2) = (robot("r1", true), robot("r2", false));
        let robots = [&r1, &r2];
        let pods = [MonitorObservation {
            robot: "r1".into(),
            ready: true,
            failed: false,
            consumers: Some(1),
        }];
        let (s, changed) =
            compute_status(None, target(3, 100), &robots, &pods, Some("h"), None, &now);
        assert!(changed);
        assert_eq!(s.phase, Some(RolloutPhase::Healthy));
        assert_eq!(
            (s.robots.total, s.robots.ready, s.robots.offline),
            (2, 1, 1)
        );
        assert_eq!(s.active_hash.as_deref(), Some("h"));
        assert_eq!(s.common.observed_generation, Some(3));
        let (_, again) = compute_status(
            Some(&s),
            target(3, 100),
            &robots,
            &pods,
            Some("h"),
            None,
            &now,
        );
        assert!(!again, "unchanged observations write nothing");

        let (s, _) = compute_status(None, target(1, 100), &[], &[], None, None, &now);
        let stalled = find_condition(&s.common.conditions, types::STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reasons::NO_MATCHING_ROBOTS)
        );

        let b = Blocker {
            reason: reasons::CONFLICT,
            message: "conflict".into(),
        };
        let (s, _) = compute_status(None, target(1, 100), &robots, &pods, None, Some(b), &now);
        assert_eq!(s.phase, Some(RolloutPhase::Degraded));
        let stalled = find_condition(&s.common.conditions, types::STALLED).unwrap();
        assert_eq!(stalled.reason, reasons::CONFLICT);
    }

    #[test]
    fn monitors_nobody_consumes_are_unconsumed_and_all_unconsumed_is_not_ready() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let (r1, r2) = (robot("r1", true), robot("r2", true));
        let robots = [&r1, &r2];
        let pod = |robot: &str, consumers| MonitorObservation {
            robot: robot.into(),
            ready: true,
            failed: false,
            consumers,
        };
        let pods = [pod("r1", Some(2)), pod("r2", Some(0))];
        let (s, _) = compute_status(None, target(1, 50), &robots, &pods, None, None, &now);
        assert_eq!((s.robots.enforcing, s.robots.unconsumed), (1, 1));
        assert_eq!(s.phase, Some(RolloutPhase::Healthy));
        // 1 of 2 online robots enforcing is short of 100%.
        let (s100, _) = compute_status(None, target(1, 100), &robots, &pods, None, None, &now);
        let ready = find_condition(&s100.common.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, reasons::NOT_ENOUGH_ENFORCING);
        assert_eq!(s100.phase, Some(RolloutPhase::Degraded));
        let pods = [pod("r1", Some(0)), pod("r2", Some(0))];
        let (s, _) = compute_status(Some(&s), target(1, 100), &robots, &pods, None, None, &now);
        let ready = find_condition(&s.common.conditions, types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::NO_STOP_CONSUMER)
        );
        // Not known yet is neither enforcing nor unconsumed.
        let pods = [pod("r1", None), pod("r2", Some(0))];
        let (s, _) = compute_status(Some(&s), target(1, 100), &robots, &pods, None, None, &now);
        assert_eq!((s.robots.enforcing, s.robots.unconsumed), (0, 1));
        assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    }
}
