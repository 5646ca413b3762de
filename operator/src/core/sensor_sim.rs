//! SensorSim → one run of `ros2-bridge sensor-sim` with its units under test, Job-like.
//!
//! - `template: true`: never runs (a rollout preflight copies it).
//! - `target: Sandbox` (default): ONE pod on a node that is not a robot, without hostNetwork (its
//!   own network namespace, so its DDS traffic cannot reach any robot's graph whatever the domain
//!   ID), discovery on localhost, with the units under test as containers of the same pod: the
//!   named SafetyPolicy's monitor (reading that policy's ConfigMap, i.e. what the robots enforce)
//!   and/or the named InferenceService revision's containers.
//! - `target: Robots`: one sim pod per selected robot, only if every selected robot is labelled
//!   `robofleet.io/simulated=true` (else `UnsafeTarget`, nothing runs); the units under test are
//!   what already runs on those robots.
//!
//! A run belongs to one `metadata.generation`: once the sim container of every pod has exited the
//! phase is final for that generation (from the real exit codes) and the pods are deleted. A spec
//! change starts a new run. The sim writes its JSON result to its termination message, which is
//! where the assertions in status come from.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, Pod, PodSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use robofleet_crds::conditions::{DesiredCondition, reasons, set_condition, types};
use robofleet_crds::labels;
use robofleet_crds::sensor_sim::{AssertionResult, SensorSimSpec, SensorSimStatus, SimPhase};
use serde::Deserialize;

use super::isvc::{
    Owner, child_labels, pin_to_robot, restricted_security_context, robot_tolerations,
};
use super::naming::{pod_name, short_hash};
use super::robots::Robot;
use super::safety;
use super::status::Blocker;

/// Container name of the sim.
pub const SIM_CONTAINER: &str = "sensor-sim";
/// Directory the sim file is mounted at.
pub const CONFIG_DIR: &str = "/etc/robofleet/sim";
/// Key (file name) of the sim file in its ConfigMap.
pub const CONFIG_KEY: &str = "sim.yaml";
/// Port of the sandboxed monitor's metrics (inside the pod's own network namespace).
pub const SANDBOX_MONITOR_PORT: u16 = 9470;
/// Label on sandbox pods (the pod-name suffix is the hash of this word).
pub const SANDBOX: &str = "sandbox";

/// Name of the sim's ConfigMap.
pub fn config_map_name(sim: &str) -> String {
    format!("sim-{sim}")
}

/// How sim pods are rendered (from the operator's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSettings {
    /// The bridge image (from the allow-list); runs the sim and the sandboxed monitor.
    pub image: String,
    /// ROS domain of sandbox pods (isolated by their network namespace in any case).
    pub sandbox_domain_id: u16,
}

/// The safety monitor under test, resolved from `unitsUnderTest.safetyPolicyRef`.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorUnit {
    /// The SafetyPolicy's name (its ConfigMap holds the policy file the robots enforce).
    pub policy: String,
    /// Its stop topic, `${ROBOT}` unexpanded (the sim expands it like the monitor does).
    pub stop_topic: String,
}

/// The units under test of a sandbox run, resolved by the controller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Units {
    /// The safety monitor, if a policy is named.
    pub monitor: Option<MonitorUnit>,
    /// The InferenceService revision's pod template, if a service is named.
    pub inference: Option<PodSpec>,
}

/// The sim file the bridge reads: the spec as the CRD writes it, minus what only the operator
/// reads, plus `unitsUnderTest.stopTopic`.
pub fn sim_file(spec: &SensorSimSpec, stop_topic: Option<&str>) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("template");
        map.remove("target");
        let units = map
            .entry("unitsUnderTest")
            .or_insert_with(|| serde_json::json!({}));
        if let (Some(u), Some(t)) = (units.as_object_mut(), stop_topic) {
            u.insert("stopTopic".into(), t.into());
        }
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// The ConfigMap holding the sim file.
pub fn config_map(owner: &Owner, file: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&owner.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(child_labels(owner, "sensor-sim")),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), file)])),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sim_container(image: &str) -> Container {
    Container {
        name: SIM_CONTAINER.into(),
        image: Some(image.to_owned()),
        args: Some(vec![
            "sensor-sim".into(),
            format!("--config={CONFIG_DIR}/{CONFIG_KEY}"),
            "--result=/dev/termination-log".into(),
            "--robot=$(ROBOT)".into(),
        ]),
        env: Some(vec![field_env("ROBOT", "spec.nodeName")]),
        volume_mounts: Some(vec![VolumeMount {
            name: "sim".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        security_context: Some(restricted_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn config_volume(name: &str, config_map: String) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn revision_of(spec: &PodSpec) -> String {
    short_hash(&serde_json::to_vec(spec).unwrap_or_default(), 10)
}

/// The sandbox pod: the sim and the units under test in one pod with its own network namespace,
/// on a node without `robofleet.io/robot=true`.
pub fn sandbox_pod(owner: &Owner, s: &SimSettings, units: &Units) -> Pod {
    let mut containers = vec![sim_container(&s.image)];
    let mut volumes = vec![config_volume("sim", config_map_name(&owner.name))];
    if let Some(m) = &units.monitor {
        let policy_owner = Owner {
            name: m.policy.clone(),
            ..owner.clone()
        };
        let settings = safety::MonitorSettings {
            image: s.image.clone(),
            priority_class: String::new(),
            metrics_port: SANDBOX_MONITOR_PORT,
            memory: "64Mi".into(),
            cpu_request: "50m".into(),
        };
        let (template, _) = safety::monitor_template(&policy_owner, &settings);
        for mut c in template.containers {
            // The pod's own loopback: no host address exists in its network namespace.
            for a in c.args.iter_mut().flatten() {
                if a.starts_with("--metrics-addr=") {
                    *a = format!("--metrics-addr=127.0.0.1:{SANDBOX_MONITOR_PORT}");
                }
            }
            c.env
                .get_or_insert_with(Vec::new)
                .retain(|e| e.name != "HOST_IP");
            c.readiness_probe = None;
            containers.push(c);
        }
        volumes.extend(template.volumes.into_iter().flatten());
    }
    if let Some(t) = &units.inference {
        for mut c in t.containers.clone() {
            // The pod's own loopback: no host address exists in its network namespace.
            for a in c.args.iter_mut().flatten() {
                *a = a.replace("$(HOST_IP)", "127.0.0.1");
            }
            c.env
                .get_or_insert_with(Vec::new)
                .retain(|e| e.name != "HOST_IP");
            c.readiness_probe = None;
            c.liveness_probe = None;
            c.startup_probe = None;
            for p in c.ports.iter_mut().flatten() {
                p.host_port = None;
            }
            containers.push(c);
        }
        for v in t.volumes.iter().flatten() {
            if !volumes.iter().any(|x| x.name == v.name) {
                volumes.push(v.clone());
            }
        }
    }
    for c in &mut containers {
        let env = c.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != "ROS_DOMAIN_ID");
        env.push(EnvVar {
            name: "ROS_DOMAIN_ID".into(),
            value: Some(s.sandbox_domain_id.to_string()),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "ROS_AUTOMATIC_DISCOVERY_RANGE".into(),
            value: Some("LOCALHOST".into()),
            ..Default::default()
        });
    }
    let mut spec = PodSpec {
        host_network: Some(false),
        automount_service_account_token: Some(false),
        containers,
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(10),
        tolerations: Some(robot_tolerations()),
        volumes: Some(volumes),
        affinity: Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: labels::ROBOT.into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["true".into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let revision = revision_of(&spec);
    let mut pod_labels = child_labels(owner, "sensor-sim");
    pod_labels.insert(labels::REVISION.to_owned(), revision);
    spec.affinity.get_or_insert_with(Default::default);
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name("sim", &owner.name, SANDBOX)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(pod_labels),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The sim pod on a simulated robot: the sim alone on the robot's own graph (hostNetwork, the
/// robot's ROS domain); the units under test are what already runs there.
pub fn robot_pod(owner: &Owner, s: &SimSettings, robot: &Robot) -> Pod {
    let spec = PodSpec {
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        automount_service_account_token: Some(false),
        containers: vec![sim_container(&s.image)],
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(10),
        tolerations: Some(robot_tolerations()),
        volumes: Some(vec![config_volume("sim", config_map_name(&owner.name))]),
        ..Default::default()
    };
    let revision = revision_of(&spec);
    let domain = robot.ros_domain_id().unwrap_or(0);
    pin_to_robot(owner, "sim", "sensor-sim", spec, &revision, robot, domain)
}

/// Robots selected by `target.robotSelector` that are not labelled `robofleet.io/simulated=true`
/// (a sim must never publish into a real robot's graph).
pub fn unsafe_targets<'r>(selected: &[&'r Robot]) -> Vec<&'r str> {
    selected
        .iter()
        .filter(|r| r.labels.get(labels::SIMULATED).map(String::as_str) != Some("true"))
        .map(|r| r.name.as_str())
        .collect()
}

/// What one sim pod's sim container is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum SimState {
    /// Not started yet (pod pending, image pulling, container waiting).
    Waiting,
    /// Running since.
    Running(Option<Time>),
    /// Exited.
    Exited {
        /// The real exit code.
        exit_code: i32,
        /// The termination message (the sim's JSON result, or its last log lines).
        message: Option<String>,
        /// When it exited.
        finished: Option<Time>,
    },
}

/// The sim container's state in `pod`.
pub fn sim_state(pod: &Pod) -> SimState {
    let st = pod.status.as_ref();
    let cs = st
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == SIM_CONTAINER));
    let Some(state) = cs.and_then(|c| c.state.as_ref()) else {
        return SimState::Waiting;
    };
    if let Some(t) = &state.terminated {
        return SimState::Exited {
            exit_code: t.exit_code,
            message: t.message.clone(),
            finished: t.finished_at.clone(),
        };
    }
    if let Some(r) = &state.running {
        return SimState::Running(r.started_at.clone());
    }
    SimState::Waiting
}

/// The sim's result file (`ros2-bridge sensor-sim --result`), as far as status needs it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResultFile {
    /// All expectations held.
    pub passed: bool,
    /// Why the run failed, if it did not complete.
    pub error: Option<String>,
    /// Messages published.
    pub messages_published: u64,
    /// Faults injected, by kind.
    pub faults_injected: BTreeMap<String, u64>,
    /// Each expectation.
    pub assertions: Vec<ResultAssertion>,
}

/// One judged expectation in the result file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResultAssertion {
    /// What was expected (the sim names it after the expectation).
    pub name: String,
    /// Verdict.
    pub passed: bool,
    /// Reaction time from the trigger, seconds.
    pub observed_seconds: Option<f64>,
    /// Nearest obstacle when the lock read stop, meters.
    pub distance_at_stop: Option<f64>,
    /// Explanation.
    pub message: String,
}

/// Parses a termination message; `None` if it is not the sim's result (a crash's log lines, or
/// a message cut at the 4 KiB termination-message limit).
pub fn parse_result(message: &str) -> Option<ResultFile> {
    serde_json::from_str(message.trim()).ok()
}

/// What the controller decided before looking at pods.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// `template: true`: never runs by itself.
    Template,
    /// Cannot run (namespace, image, unsafe target, missing unit...).
    Blocked(Blocker),
    /// Runs as `pods` pods.
    Run {
        /// How many sim pods the run has.
        pods: usize,
    },
}

/// Whether the status already holds the final result of this generation's run.
pub fn finished(status: Option<&SensorSimStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.common.observed_generation == generation
            && s.exit_code.is_some()
            && matches!(s.phase, Some(SimPhase::Succeeded | SimPhase::Failed))
    })
}

fn fmt_observed(a: &ResultAssertion) -> String {
    let mut parts = Vec::new();
    if let Some(s) = a.observed_seconds {
        parts.push(format!("after {:.0}ms", s * 1000.0));
    }
    if let Some(d) = a.distance_at_stop {
        parts.push(format!("at {d:.2}m"));
    }
    if parts.is_empty() {
        a.message.clone()
    } else {
        format!("{}: {}", parts.join(" "), a.message)
    }
}

/// Names the spec gives its expectations (by position), for the status.
fn assertion_name(spec: &SensorSimSpec, i: usize, fallback: &str) -> String {
    spec.expect
        .get(i)
        .and_then(|e| e.name.clone())
        .unwrap_or_else(|| fallback.to_owned())
}

/// The status for this generation. `states` are the sim states of the run's current pods (by
/// robot or `sandbox`). Returns the status and whether it differs from `prev`.
pub fn compute_status(
    prev: Option<&SensorSimStatus>,
    spec: &SensorSimSpec,
    generation: Option<i64>,
    plan: &Plan,
    states: &[(String, SimState)],
    now: &Time,
) -> (SensorSimStatus, bool) {
    if finished(prev, generation) {
        let s = prev.cloned().unwrap_or_default();
        return (s, false);
    }
    let mut s = prev.cloned().unwrap_or_default();
    if s.common.observed_generation != generation {
        // A new run: nothing of the old one carries over except the conditions' history.
        s = SensorSimStatus {
            common: s.common.clone(),
            ..Default::default()
        };
    }
    s.common.observed_generation = generation;
    let (phase, ready, reconciling, stalled, message) = match plan {
        Plan::Template => (
            SimPhase::Pending,
            (false, reasons::TEMPLATE),
            (false, reasons::TEMPLATE),
            (false, reasons::AS_EXPECTED),
            "template: runs only as a rollout preflight (copied as <name>-<revision>)".to_owned(),
        ),
        Plan::Blocked(b) => (
            SimPhase::Failed,
            (false, b.reason),
            (false, b.reason),
            (true, b.reason),
            b.message.clone(),
        ),
        Plan::Run { pods } => {
            let exited: Vec<(&String, i32, Option<ResultFile>, Option<&Time>)> = states
                .iter()
                .filter_map(|(who, st)| match st {
                    SimState::Exited {
                        exit_code,
                        message,
                        finished,
                    } => Some((
                        who,
                        *exit_code,
                        message.as_deref().and_then(parse_result),
                        finished.as_ref(),
                    )),
                    _ => None,
                })
                .collect();
            let started = states.iter().find_map(|(_, st)| match st {
                SimState::Running(t) => Some(t.clone().unwrap_or_else(|| now.clone())),
                _ => None,
            });
            if s.start_time.is_none() {
                s.start_time = started
                    .clone()
                    .or_else(|| (!exited.is_empty()).then(|| now.clone()));
            }
            if *pods > 0 && exited.len() >= *pods {
                let failed: Vec<_> = exited.iter().filter(|e| e.1 != 0).collect();
                let code = failed.first().map_or(0, |e| e.1);
                s.exit_code = Some(code);
                s.completion_time = Some(
                    exited
                        .iter()
                        .filter_map(|e| e.3.cloned())
                        .max_by_key(|t| t.0)
                        .unwrap_or_else(|| now.clone()),
                );
                s.messages_published = exited
                    .iter()
                    .filter_map(|e| e.2.as_ref())
                    .map(|r| r.messages_published)
                    .sum();
                s.faults_injected = exited
                    .iter()
                    .filter_map(|e| e.2.as_ref())
                    .flat_map(|r| r.faults_injected.values())
                    .sum();
                // The failing robot's assertions tell the story; else the first robot's.
                let shown = failed
                    .iter()
                    .find(|e| e.2.is_some())
                    .copied()
                    .or_else(|| exited.iter().find(|e| e.2.is_some()));
                s.assertions = shown
                    .and_then(|e| e.2.as_ref())
                    .map(|r| {
                        r.assertions
                            .iter()
                            .enumerate()
                            .map(|(i, a)| AssertionResult {
                                name: assertion_name(spec, i, &format!("expect-{i}")),
                                passed: a.passed,
                                expected: a.name.clone(),
                                observed: fmt_observed(a),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let where_ = |who: &str| {
                    if *pods > 1 {
                        format!(" on {who}")
                    } else {
                        String::new()
                    }
                };
                if let Some(f) = failed.first() {
                    let why =
                        f.2.as_ref()
                            .and_then(|r| {
                                r.error.clone().or_else(|| {
                                    r.assertions
                                        .iter()
                                        .find(|a| !a.passed)
                                        .map(|a| format!("{}: {}", a.name, a.message))
                                })
                            })
                            .unwrap_or_else(|| "no result written (crashed?)".into());
                    (
                        SimPhase::Failed,
                        (false, reasons::FAILED),
                        (false, reasons::FAILED),
                        (true, reasons::FAILED),
                        format!(
                            "sim exited {}{} ({}/{} failed): {why}",
                            f.1,
                            where_(f.0),
                            failed.len(),
                            exited.len()
                        ),
                    )
                } else {
                    let n = s.assertions.len();
                    (
                        SimPhase::Succeeded,
                        (true, reasons::SUCCEEDED),
                        (false, reasons::SUCCEEDED),
                        (false, reasons::AS_EXPECTED),
                        format!(
                            "succeeded: {n} expectation(s) held, {} messages published",
                            s.messages_published
                        ),
                    )
                }
            } else if started.is_some() || !exited.is_empty() {
                (
                    SimPhase::Running,
                    (false, reasons::RUNNING),
                    (true, reasons::RUNNING),
                    (false, reasons::AS_EXPECTED),
                    format!("running: {}/{pods} sim(s) finished", exited.len()),
                )
            } else {
                (
                    SimPhase::Pending,
                    (false, reasons::RUNNING),
                    (true, reasons::RUNNING),
                    (false, reasons::AS_EXPECTED),
                    format!("starting {pods} sim pod(s)"),
                )
            }
        }
    };
    s.phase = Some(phase);
    s.common.message = Some(message.clone());
    for (type_, (status, reason)) in [
        (types::READY, ready),
        (types::RECONCILING, reconciling),
        (types::STALLED, stalled),
    ] {
        set_condition(
            &mut s.common.conditions,
            DesiredCondition {
                type_,
                status,
                reason,
                message: message.clone(),
            },
            generation,
            now,
        );
    }
    let changed = prev != Some(&s);
    (s, changed)
}

#[cfg(test)]
#[path = "sensor_sim_tests.rs"]
mod tests;
