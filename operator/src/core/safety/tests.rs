use super::*;
use crate::core::naming::pod_name;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use robofleet_crds::SafetyPolicy;
use robofleet_crds::conditions::find_condition;
use robofleet_crds::labels;
use std::collections::BTreeSet;

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

fn active(hash: &str) -> Enforcement<'_> {
    Enforcement {
        active_hash: Some(hash),
        ..Default::default()
    }
}

fn none() -> Enforcement<'static> {
    Enforcement::default()
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
    let (s, changed) = compute_status(
        None,
        target(3, 100),
        &robots,
        &pods,
        &active("h"),
        None,
        &now,
    );
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
        &active("h"),
        None,
        &now,
    );
    assert!(!again, "unchanged observations write nothing");

    let (s, _) = compute_status(None, target(1, 100), &[], &[], &none(), None, &now);
    let stalled = find_condition(&s.common.conditions, types::STALLED).unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::NO_MATCHING_ROBOTS)
    );

    let b = Blocker {
        reason: reasons::CONFLICT,
        message: "conflict".into(),
    };
    let (s, _) = compute_status(None, target(1, 100), &robots, &pods, &none(), Some(b), &now);
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
    let (s, _) = compute_status(None, target(1, 50), &robots, &pods, &none(), None, &now);
    assert_eq!((s.robots.enforcing, s.robots.unconsumed), (1, 1));
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    // 1 of 2 online robots enforcing is short of 100%.
    let (s100, _) = compute_status(None, target(1, 100), &robots, &pods, &none(), None, &now);
    let ready = find_condition(&s100.common.conditions, types::READY).unwrap();
    assert_eq!(ready.reason, reasons::NOT_ENOUGH_ENFORCING);
    assert_eq!(s100.phase, Some(RolloutPhase::Degraded));
    let pods = [pod("r1", Some(0)), pod("r2", Some(0))];
    let (s, _) = compute_status(
        Some(&s),
        target(1, 100),
        &robots,
        &pods,
        &none(),
        None,
        &now,
    );
    let ready = find_condition(&s.common.conditions, types::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::NO_STOP_CONSUMER)
    );
    // Not known yet is neither enforcing nor unconsumed.
    let pods = [pod("r1", None), pod("r2", Some(0))];
    let (s, _) = compute_status(
        Some(&s),
        target(1, 100),
        &robots,
        &pods,
        &none(),
        None,
        &now,
    );
    assert_eq!((s.robots.enforcing, s.robots.unconsumed), (0, 1));
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
}

#[test]
fn a_pending_change_keeps_the_policy_healthy_and_says_how_to_approve() {
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
    let r1 = robot("r1", true);
    let pods = [MonitorObservation {
        robot: "r1".into(),
        ready: true,
        failed: false,
        consumers: Some(1),
    }];
    let held: BTreeSet<String> = (0..7).map(|i| format!("held-{i}")).collect();
    let e = Enforcement {
        active_hash: Some("old"),
        pending: Some(("abc", "relaxing change (x); approve with: …")),
        approved_hash: None,
        held: Some(&held),
        last_action: Some("reset@n1"),
    };
    let (s, _) = compute_status(None, target(2, 100), &[&r1], &pods, &e, None, &now);
    assert_eq!(
        s.phase,
        Some(RolloutPhase::Healthy),
        "not Paused, not Degraded"
    );
    let c = find_condition(&s.common.conditions, types::APPROVAL_PENDING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", reasons::APPROVAL_REQUIRED)
    );
    assert!(c.message.contains("approve with"));
    assert!(
        s.common
            .message
            .as_deref()
            .unwrap()
            .contains("robofleet.io/approve=abc")
    );
    assert_eq!(s.pending_hash.as_deref(), Some("abc"));
    assert_eq!(s.active_hash.as_deref(), Some("old"));
    assert_eq!(s.robots.held, 7);
    assert_eq!(s.held_robots.len(), approval::HELD_SAMPLE);
    assert_eq!(s.robots.total, 1, "held robots are not selected robots");
    assert_eq!(s.last_action.as_deref(), Some("reset@n1"));
    // Approved: the condition turns False, the hash is kept, the held robots are gone.
    let e = Enforcement {
        active_hash: Some("new"),
        approved_hash: Some("abc"),
        ..Default::default()
    };
    let (s, _) = compute_status(Some(&s), target(2, 100), &[&r1], &pods, &e, None, &now);
    let c = find_condition(&s.common.conditions, types::APPROVAL_PENDING).unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(s.pending_hash, None);
    assert_eq!(s.approved_hash.as_deref(), Some("abc"));
    assert_eq!((s.robots.held, s.held_robots.len()), (0, 0));
    assert_eq!(s.last_action.as_deref(), Some("reset@n1"), "kept");
}

#[test]
fn the_reset_nonce_relayed_is_the_new_one_or_the_acknowledged_one() {
    assert_eq!(
        relay_nonce(Some("reset@b"), Some("reset@a")),
        Some("b".into())
    );
    assert_eq!(relay_nonce(None, Some("reset@a")), Some("a".into()));
    assert_eq!(relay_nonce(Some("promote@x"), None), None);
    assert_eq!(relay_nonce(None, None), None);
}

#[test]
fn the_record_and_the_policy_file_read_back() {
    let robots: BTreeSet<String> = ["robot-1", "robot-2"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let cm = record_config_map(&owner(), &robots);
    assert_eq!(cm.metadata.name.as_deref(), Some("approved-safety-front"));
    // No policy's own ConfigMap can be another policy's record.
    for other in [
        "front-approved",
        "approved",
        "approved-safety-front",
        "front.approved",
    ] {
        assert_ne!(config_map_name(other), record_name("front"));
        assert_ne!(record_name(other), config_map_name("front"));
    }
    assert_eq!(parse_record(&cm), robots);
    let p = policy(serde_json::json!({
        "release": {"mode": "Latched", "holdTime": "2s"},
        "source": {"topic": "/scan", "sourceTimeout": "300ms",
                   "transform": {"position": [0.1, -0.05], "yawDeg": 12.5}},
    }));
    let file = policy_file("front", &p.spec, Some("n9"));
    let back = parse_policy_file(&file).unwrap();
    assert_eq!(back, p.spec);
    assert_eq!(policy_file("front", &back, Some("n9")), file);
    assert_eq!(parse_policy_file("not json"), None);
}

#[test]
fn robots_another_policy_still_holds_wait() {
    let me = claim("fleet/b", 20, "/safety/stop", &["r1", "r2", "r3"]);
    // fleet/a no longer selects r1 and r2 but holds r1 (in its record) pending approval.
    let a = claim("fleet/a", 10, "/safety/stop", &["r9"]);
    let other_topic = claim("fleet/c", 5, "/other/stop", &[]);
    let record = |names: &[&str]| {
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let others = vec![(a, record(&["r1", "r9"])), (other_topic, record(&["r2"]))];
    let wanted = vec!["r1".to_owned(), "r2".to_owned(), "r3".to_owned()];
    let held = held_elsewhere(&me, &wanted, &others);
    assert_eq!(held.len(), 1);
    assert_eq!(held.get("r1").map(String::as_str), Some("fleet/a"));
}
