use super::*;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use robofleet_crds::SensorSim;
use robofleet_crds::conditions::{find_condition, is_true};

fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid time"))
}

fn sim(extra: serde_json::Value) -> SensorSimSpec {
    let mut spec = serde_json::json!({
        "sensor": {"type": "lidar2d", "topic": "/scan"},
        "expect": [
            {"name": "stops", "safetyStopWithin": "200ms", "whenDistanceBelow": 0.35},
            {"safetyReleaseWithin": "2s"}
        ],
        "unitsUnderTest": {"safetyPolicyRef": {"name": "warehouse"}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    let obj: SensorSim = serde_json::from_value(serde_json::json!({
        "apiVersion": "robofleet.io/v1alpha1", "kind": "SensorSim",
        "metadata": {"name": "approach", "namespace": "fleet"},
        "spec": spec,
    }))
    .expect("valid SensorSim");
    obj.spec
}

fn owner() -> Owner {
    Owner {
        kind: "SensorSim".into(),
        name: "approach".into(),
        namespace: "fleet".into(),
        reference: OwnerReference {
            api_version: "robofleet.io/v1alpha1".into(),
            kind: "SensorSim".into(),
            name: "approach".into(),
            uid: "u1".into(),
            controller: Some(true),
            ..Default::default()
        },
    }
}

fn settings() -> SimSettings {
    SimSettings {
        image: "robofleet/ros2-bridge@sha256:00".into(),
        sandbox_domain_id: 42,
    }
}

fn robot(name: &str, simulated: bool) -> Robot {
    let mut labels = BTreeMap::from([
        (labels::ROBOT.to_owned(), "true".to_owned()),
        (labels::ROS_DOMAIN_ID.to_owned(), "7".to_owned()),
    ]);
    if simulated {
        labels.insert(labels::SIMULATED.into(), "true".into());
    }
    Robot {
        name: name.into(),
        labels,
        ready: true,
    }
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .rev()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[test]
fn sim_file_is_the_spec_plus_the_resolved_stop_topic_without_operator_fields() {
    let spec = sim(serde_json::json!({"template": false, "target": {"mode": "Sandbox"}}));
    let file: serde_json::Value =
        serde_json::from_str(&sim_file(&spec, Some("/safety/stop"))).unwrap();
    assert!(file.get("template").is_none());
    assert!(file.get("target").is_none());
    assert_eq!(file["unitsUnderTest"]["stopTopic"], "/safety/stop");
    assert_eq!(
        file["unitsUnderTest"]["safetyPolicyRef"]["name"],
        "warehouse"
    );
    assert_eq!(file["expect"][0]["safetyStopWithin"], "200ms");
    assert_eq!(file["sensor"]["topic"], "/scan");
    // without a policy no stop topic is invented
    let file: serde_json::Value = serde_json::from_str(&sim_file(&spec, None)).unwrap();
    assert!(file["unitsUnderTest"].get("stopTopic").is_none());
}

#[test]
fn sandbox_pod_is_isolated_off_robots_with_the_monitor_beside_the_sim() {
    let units = Units {
        monitor: Some(MonitorUnit {
            policy: "warehouse".into(),
            stop_topic: "/safety/stop".into(),
        }),
        inference: None,
    };
    let pod = sandbox_pod(&owner(), &settings(), &units);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.host_network, Some(false), "own network namespace");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let term = &spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms[0];
    let req = &term.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (req.key.as_str(), req.operator.as_str()),
        (labels::ROBOT, "NotIn")
    );
    assert_eq!(req.values.as_deref(), Some(&["true".to_owned()][..]));
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [SIM_CONTAINER, safety::MONITOR_CONTAINER]);
    let monitor = &spec.containers[1];
    let args = monitor.args.as_ref().unwrap();
    assert!(args.contains(&format!("--metrics-addr=127.0.0.1:{SANDBOX_MONITOR_PORT}")));
    assert!(!args.iter().any(|a| a.contains("HOST_IP")));
    for c in &spec.containers {
        assert_eq!(env(c, "ROS_DOMAIN_ID"), Some("42"), "{}", c.name);
        assert_eq!(env(c, "ROS_AUTOMATIC_DISCOVERY_RANGE"), Some("LOCALHOST"));
    }
    let vols: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.config_map.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(vols, ["sim-approach", "safety-warehouse"]);
    let sim_args = spec.containers[0].args.as_ref().unwrap();
    assert!(sim_args.contains(&"--result=/dev/termination-log".to_owned()));
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some(pod_name("sim", "approach", SANDBOX).as_str())
    );
    assert!(
        pod.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key(labels::REVISION)
    );
}

#[test]
fn sandbox_pod_takes_the_inference_revision_without_host_ports_or_probes() {
    let template = PodSpec {
        containers: vec![Container {
            name: "inference-sidecar".into(),
            image: Some("robofleet/inference-sidecar@sha256:00".into()),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                container_port: 8080,
                host_port: Some(8080),
                ..Default::default()
            }]),
            readiness_probe: Some(Default::default()),
            args: Some(vec!["--admin-listen=$(HOST_IP):8002".into()]),
            ..Default::default()
        }],
        volumes: Some(vec![Volume {
            name: "models".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let units = Units {
        monitor: None,
        inference: Some(template),
    };
    let pod = sandbox_pod(&owner(), &settings(), &units);
    let spec = pod.spec.unwrap();
    let sidecar = &spec.containers[1];
    assert_eq!(sidecar.name, "inference-sidecar");
    assert!(sidecar.readiness_probe.is_none());
    assert_eq!(
        sidecar.args.as_deref(),
        Some(&["--admin-listen=127.0.0.1:8002".to_owned()][..]),
        "no host address inside the sandbox"
    );
    assert_eq!(sidecar.ports.as_ref().unwrap()[0].host_port, None);
    assert_eq!(env(sidecar, "ROS_DOMAIN_ID"), Some("42"));
    assert!(spec.volumes.unwrap().iter().any(|v| v.name == "models"));
}

#[test]
fn robot_pod_runs_the_sim_alone_on_the_robots_graph() {
    let pod = robot_pod(&owner(), &settings(), &robot("robot-001", true));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(env(&spec.containers[0], "ROS_DOMAIN_ID"), Some("7"));
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some(pod_name("sim", "approach", "robot-001").as_str())
    );
}

#[test]
fn only_simulated_robots_are_safe_targets() {
    let (a, b, c) = (
        robot("robot-000", true),
        robot("robot-001", false),
        robot("robot-002", true),
    );
    assert_eq!(unsafe_targets(&[&a, &b, &c]), ["robot-001"]);
    assert!(unsafe_targets(&[&a, &c]).is_empty());
}

fn exited(code: i32, message: Option<&str>) -> SimState {
    SimState::Exited {
        exit_code: code,
        message: message.map(str::to_owned),
        finished: Some(at(200)),
    }
}

const PASSED: &str = r#"{"phase":"Succeeded","passed":true,"error":null,"messagesPublished":150,
 "faultsInjected":{"nan":3,"negInf":0,"drop":2,"stall":0,"blind":0,"corruptImage":0},
 "assertions":[{"name":"safetyStopWithin 200ms whenDistanceBelow 0.35","passed":true,"observedSeconds":0.037,"distanceAtStop":0.33,"message":"stopped"},
               {"name":"safetyReleaseWithin 2s notBefore 0s","passed":true,"observedSeconds":1.1,"distanceAtStop":null,"message":"released"}],
 "durationSeconds":10.0,"lockSamples":120}"#;

const FAILED: &str = r#"{"phase":"Failed","passed":false,"error":null,"messagesPublished":150,
 "faultsInjected":{"nan":0},
 "assertions":[{"name":"safetyStopWithin 200ms whenDistanceBelow 0.35","passed":false,"observedSeconds":null,"distanceAtStop":null,"message":"never stopped"},
               {"name":"safetyReleaseWithin 2s notBefore 0s","passed":true,"observedSeconds":1.0,"distanceAtStop":null,"message":"released"}]}"#;

#[test]
fn a_run_goes_pending_running_succeeded_from_the_real_exit_code() {
    let spec = sim(serde_json::json!({}));
    let plan = Plan::Run { pods: 1 };
    let (s, changed) = compute_status(None, &spec, Some(1), &plan, &[], &at(100));
    assert!(changed);
    assert_eq!(s.phase, Some(SimPhase::Pending));
    assert!(is_true(&s.common.conditions, types::RECONCILING));

    let running = [(SANDBOX.to_owned(), SimState::Running(Some(at(101))))];
    let (s, changed) = compute_status(Some(&s), &spec, Some(1), &plan, &running, &at(102));
    assert!(changed);
    assert_eq!(s.phase, Some(SimPhase::Running));
    assert_eq!(s.start_time, Some(at(101)));
    // the same observation again writes nothing
    let (_, changed) = compute_status(Some(&s), &spec, Some(1), &plan, &running, &at(103));
    assert!(!changed);

    let done = [(SANDBOX.to_owned(), exited(0, Some(PASSED)))];
    let (s, changed) = compute_status(Some(&s), &spec, Some(1), &plan, &done, &at(201));
    assert!(changed);
    assert_eq!(s.phase, Some(SimPhase::Succeeded));
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(s.messages_published, 150);
    assert_eq!(s.faults_injected, 5);
    assert_eq!(s.completion_time, Some(at(200)));
    assert_eq!(s.assertions.len(), 2);
    assert_eq!(s.assertions[0].name, "stops", "the spec's name wins");
    assert_eq!(s.assertions[1].name, "expect-1");
    assert!(
        s.assertions[0].observed.contains("37ms"),
        "{:?}",
        s.assertions[0]
    );
    assert!(s.assertions[0].observed.contains("0.33m"));
    assert!(is_true(&s.common.conditions, types::READY));
    assert!(!is_true(&s.common.conditions, types::RECONCILING));
    assert!(finished(Some(&s), Some(1)));

    // once finished, the pods going away changes nothing for this generation
    let (again, changed) = compute_status(Some(&s), &spec, Some(1), &plan, &[], &at(300));
    assert!(!changed);
    assert_eq!(again, s);
    // a new generation is a new run
    let (next, changed) = compute_status(Some(&s), &spec, Some(2), &plan, &[], &at(300));
    assert!(changed);
    assert_eq!(next.phase, Some(SimPhase::Pending));
    assert_eq!(next.exit_code, None);
    assert!(next.assertions.is_empty());
}

#[test]
fn a_failed_expectation_or_a_crash_is_failed_with_the_reason() {
    let spec = sim(serde_json::json!({}));
    let plan = Plan::Run { pods: 1 };
    let (s, _) = compute_status(
        None,
        &spec,
        Some(1),
        &plan,
        &[(SANDBOX.into(), exited(1, Some(FAILED)))],
        &at(100),
    );
    assert_eq!(s.phase, Some(SimPhase::Failed));
    assert_eq!(s.exit_code, Some(1));
    let msg = s.common.message.clone().unwrap();
    assert!(msg.contains("never stopped"), "{msg}");
    assert!(!s.assertions[0].passed);
    let stalled = find_condition(&s.common.conditions, types::STALLED).unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::FAILED)
    );

    // a crash writes log lines, not JSON: Failed from the exit code, no assertions invented
    let (s, _) = compute_status(
        None,
        &spec,
        Some(1),
        &plan,
        &[(SANDBOX.into(), exited(2, Some("thread 'main' panicked")))],
        &at(100),
    );
    assert_eq!(s.phase, Some(SimPhase::Failed));
    assert_eq!(s.exit_code, Some(2));
    assert!(s.assertions.is_empty());
    assert!(s.common.message.unwrap().contains("no result"));
}

#[test]
fn a_result_cut_at_the_termination_message_limit_is_not_trusted() {
    assert!(parse_result(PASSED).is_some());
    assert!(parse_result(&PASSED[..PASSED.len() / 2]).is_none());
    assert!(parse_result("").is_none());
}

#[test]
fn on_robots_every_sim_must_pass_and_the_failing_robot_is_named() {
    let spec = sim(serde_json::json!({}));
    let plan = Plan::Run { pods: 2 };
    let half = [
        ("robot-000".to_owned(), exited(0, Some(PASSED))),
        ("robot-001".to_owned(), SimState::Running(None)),
    ];
    let (s, _) = compute_status(None, &spec, Some(1), &plan, &half, &at(100));
    assert_eq!(s.phase, Some(SimPhase::Running));
    assert!(s.common.message.as_ref().unwrap().contains("1/2"));
    let done = [
        ("robot-000".to_owned(), exited(0, Some(PASSED))),
        ("robot-001".to_owned(), exited(1, Some(FAILED))),
    ];
    let (s, _) = compute_status(Some(&s), &spec, Some(1), &plan, &done, &at(110));
    assert_eq!(s.phase, Some(SimPhase::Failed));
    assert_eq!(s.messages_published, 300);
    let msg = s.common.message.unwrap();
    assert!(msg.contains("robot-001") && msg.contains("1/2"), "{msg}");
    assert!(
        !s.assertions[0].passed,
        "the failing robot's assertions are shown"
    );
}

#[test]
fn templates_never_run_and_blocked_sims_say_why() {
    let spec = sim(serde_json::json!({"template": true}));
    let (s, _) = compute_status(None, &spec, Some(1), &Plan::Template, &[], &at(1));
    assert_eq!(s.phase, Some(SimPhase::Pending));
    assert!(!is_true(&s.common.conditions, types::RECONCILING));
    assert!(!is_true(&s.common.conditions, types::STALLED));
    let blocked = Plan::Blocked(Blocker {
        reason: reasons::UNSAFE_TARGET,
        message: "robot-001 is not labelled robofleet.io/simulated=true".into(),
    });
    let (s, _) = compute_status(None, &spec, Some(1), &blocked, &[], &at(1));
    assert_eq!(s.phase, Some(SimPhase::Failed));
    let stalled = find_condition(&s.common.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.reason, reasons::UNSAFE_TARGET);
    assert!(
        !finished(Some(&s), Some(1)),
        "a refused sim may still run once fixed"
    );
}

fn pod_with(state: ContainerState) -> Pod {
    Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![
                ContainerStatus {
                    name: safety::MONITOR_CONTAINER.into(),
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ContainerStatus {
                    name: SIM_CONTAINER.into(),
                    state: Some(state),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_sim_containers_state_is_read_not_the_pods() {
    assert_eq!(sim_state(&Pod::default()), SimState::Waiting);
    let p = pod_with(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 1,
            message: Some("x".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        sim_state(&p),
        SimState::Exited {
            exit_code: 1,
            message: Some("x".into()),
            finished: None
        }
    );
    let p = pod_with(ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(at(5)),
        }),
        ..Default::default()
    });
    assert_eq!(sim_state(&p), SimState::Running(Some(at(5))));
}
