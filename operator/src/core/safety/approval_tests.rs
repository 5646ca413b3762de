use super::*;
use crate::core::safety::{parse_policy_file, policy_file};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "source": {"topic": "/scan", "sourceTimeout": "200ms", "frame": "laser", "maxPublishers": 2},
        "zones": [
            {"name": "front", "shape": "sector", "action": "stop",
             "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.5, "minPoints": 2},
            {"name": "slow", "shape": "circle", "action": "slowdown", "radius": 1.0,
             "speedLimitPercent": 40},
            {"name": "look", "shape": "circle", "action": "warn", "radius": 2.0},
        ],
        "invalidReadings": {"maxInvalidFraction": 0.1},
        "release": {"mode": "Auto", "holdTime": "1s"},
        "output": {"stopTopic": "/safety/stop", "speedLimitTopic": "/speed_limit", "heartbeat": "100ms"},
        "diagnostics": {"enabled": true, "topic": "/diagnostics"},
    })
}

fn spec(v: &Value) -> SafetyPolicySpec {
    serde_json::from_value(v.clone()).unwrap()
}

/// `base()` with `path` (JSON pointer) set to `value`.
fn with(path: &str, value: Value) -> SafetyPolicySpec {
    let mut v = base();
    *v.pointer_mut(path).unwrap_or_else(|| panic!("no {path}")) = value;
    spec(&v)
}

fn changed(f: impl FnOnce(&mut Value)) -> SafetyPolicySpec {
    let mut v = base();
    f(&mut v);
    spec(&v)
}

/// (the change, relaxes?)
fn field_table() -> Vec<(&'static str, SafetyPolicySpec, bool)> {
    let sector = |range: f64| {
        json!({"name": "front", "shape": "sector", "action": "stop",
               "minAngleDeg": -30, "maxAngleDeg": 30, "range": range, "minPoints": 2})
    };
    vec![
        ("nothing", spec(&base()), false),
        (
            "sourceTimeout shorter",
            with("/source/sourceTimeout", json!("150ms")),
            false,
        ),
        (
            "sourceTimeout longer",
            with("/source/sourceTimeout", json!("0.3s")),
            true,
        ),
        (
            "sourceTimeout same, other spelling",
            with("/source/sourceTimeout", json!("0.2s")),
            false,
        ),
        ("source topic", with("/source/topic", json!("/scan2")), true),
        (
            "laser frame to a transform",
            changed(|v| {
                v["source"].as_object_mut().unwrap().remove("frame");
                v["source"]["transform"] = json!({"position": [0.1, 0.0], "yawDeg": 0});
            }),
            true,
        ),
        (
            "maxPublishers more",
            with("/source/maxPublishers", json!(3)),
            true,
        ),
        (
            "maxPublishers fewer",
            with("/source/maxPublishers", json!(1)),
            false,
        ),
        ("stop zone grows", with("/zones/0", sector(0.6)), false),
        ("stop zone shrinks", with("/zones/0", sector(0.4)), true),
        (
            "stop zone becomes a circle around it",
            with(
                "/zones/0",
                json!({"name": "front", "shape": "circle", "action": "stop", "radius": 0.5, "minPoints": 2}),
            ),
            false,
        ),
        (
            "stop zone becomes a polygon that misses its tip",
            with(
                "/zones/0",
                json!({"name": "front", "shape": "polygon", "action": "stop", "minPoints": 2,
                       "points": [[0, 0], [0.45, 0.3], [0.45, -0.3]]}),
            ),
            true,
        ),
        (
            "stop zone removed",
            changed(|v| {
                v["zones"].as_array_mut().unwrap().remove(0);
            }),
            true,
        ),
        (
            "stop zone renamed",
            with("/zones/0/name", json!("ahead")),
            true,
        ),
        (
            "warn zone removed",
            changed(|v| {
                v["zones"].as_array_mut().unwrap().remove(2);
            }),
            false,
        ),
        (
            "warn zone shrinks",
            with("/zones/2/radius", json!(0.5)),
            false,
        ),
        (
            "zone added",
            changed(|v| {
                v["zones"].as_array_mut().unwrap().push(
                    json!({"name": "back", "shape": "circle", "action": "stop", "radius": 0.2}),
                );
            }),
            false,
        ),
        (
            "stop to slowdown",
            with("/zones/0/action", json!("slowdown")),
            true,
        ),
        (
            "slowdown to stop",
            changed(|v| {
                v["zones"][1]["action"] = json!("stop");
                v["zones"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("speedLimitPercent");
            }),
            false,
        ),
        (
            "slowdown to warn",
            changed(|v| {
                v["zones"][1]["action"] = json!("warn");
                v["zones"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("speedLimitPercent");
            }),
            true,
        ),
        (
            "warn to stop",
            with("/zones/2/action", json!("stop")),
            false,
        ),
        ("minPoints more", with("/zones/0/minPoints", json!(3)), true),
        (
            "minPoints fewer",
            with("/zones/0/minPoints", json!(1)),
            false,
        ),
        (
            "speed limit higher",
            with("/zones/1/speedLimitPercent", json!(60)),
            true,
        ),
        (
            "speed limit lower",
            with("/zones/1/speedLimitPercent", json!(20)),
            false,
        ),
        (
            "speed limit unset (the monitor's 50)",
            changed(|v| {
                v["zones"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("speedLimitPercent");
            }),
            true,
        ),
        (
            "maxInvalidFraction larger",
            with("/invalidReadings/maxInvalidFraction", json!(0.2)),
            true,
        ),
        (
            "maxInvalidFraction smaller",
            with("/invalidReadings/maxInvalidFraction", json!(0.05)),
            false,
        ),
        (
            "Auto to Latched",
            with("/release/mode", json!("Latched")),
            false,
        ),
        (
            "holdTime longer",
            with("/release/holdTime", json!("2s")),
            false,
        ),
        (
            "holdTime shorter",
            with("/release/holdTime", json!("500ms")),
            true,
        ),
        (
            "heartbeat faster",
            with("/output/heartbeat", json!("50ms")),
            false,
        ),
        (
            "heartbeat slower",
            with("/output/heartbeat", json!("150ms")),
            true,
        ),
        (
            "stop topic",
            with("/output/stopTopic", json!("/other/stop")),
            true,
        ),
        (
            "speed limit topic",
            with("/output/speedLimitTopic", json!("/other/limit")),
            true,
        ),
        (
            "diagnostics off",
            with("/diagnostics/enabled", json!(false)),
            true,
        ),
        (
            "diagnostics topic",
            with("/diagnostics/topic", json!("/diag2")),
            true,
        ),
        (
            "selector and minEnforcingPercent only",
            changed(|v| {
                v["robotSelector"] = json!({"matchLabels": {"a": "b"}});
                v["minEnforcingPercent"] = json!(10);
            }),
            false,
        ),
    ]
}

#[test]
fn each_field_tightens_or_relaxes() {
    let old = spec(&base());
    let mut wrong = Vec::new();
    for (what, new, relaxes) in field_table() {
        let r = relaxations(&old, &new);
        if r.is_empty() == relaxes {
            wrong.push(format!("{what}: {r:?}"));
        }
    }
    assert!(wrong.is_empty(), "misjudged: {wrong:#?}");
}

#[test]
fn latched_to_auto_relaxes_and_holdtime_is_moot_while_latched() {
    let latched = with("/release/mode", json!("Latched"));
    let r = relaxations(&latched, &spec(&base()));
    assert_eq!(r, vec!["release.mode Latched → Auto".to_owned()]);
    let mut shorter_latched = base();
    shorter_latched["release"] = json!({"mode": "Latched", "holdTime": "100ms"});
    assert!(relaxations(&latched, &spec(&shorter_latched)).is_empty());
}

#[test]
fn relaxations_say_what_changed() {
    let r = relaxations(
        &spec(&base()),
        &with("/source/sourceTimeout", json!("500ms")),
    );
    assert_eq!(r, vec!["source.sourceTimeout 200ms → 500ms".to_owned()]);
    let r = relaxations(&spec(&base()), &with("/zones/0/minPoints", json!(4)));
    assert_eq!(r, vec!["zone front: minPoints 2 → 4".to_owned()]);
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

struct World {
    spec: SafetyPolicySpec,
    applied: Option<Applied>,
    selected: BTreeSet<String>,
    robots: BTreeSet<String>,
    approve: Option<String>,
    approved_hash: Option<String>,
}

impl World {
    fn new() -> Self {
        World {
            spec: spec(&base()),
            applied: Some(Applied {
                spec: spec(&base()),
                robots: set(&["r1", "r2"]),
            }),
            selected: set(&["r1", "r2"]),
            robots: set(&["r1", "r2", "r3"]),
            approve: None,
            approved_hash: None,
        }
    }

    fn decide(&self) -> Decision {
        decide(&Input {
            name: "front",
            spec: &self.spec,
            applied: self.applied.as_ref(),
            selected: &self.selected,
            robots: &self.robots,
            approve: self.approve.as_deref(),
            approved_hash: self.approved_hash.as_deref(),
        })
    }

    /// What the controller does with a decision: the record and the status it keeps.
    fn keep(&mut self, d: &Decision) {
        self.applied = Some(Applied {
            spec: d.enforce.clone(),
            robots: d.monitored.clone(),
        });
        self.approved_hash = d.approved_hash.clone();
    }
}

fn relaxed() -> SafetyPolicySpec {
    with("/zones/0/minPoints", json!(5))
}

#[test]
fn the_first_version_needs_no_approval() {
    let mut w = World::new();
    w.applied = None;
    w.spec = relaxed();
    let d = w.decide();
    assert_eq!(d.enforce, relaxed());
    assert_eq!(d.monitored, set(&["r1", "r2"]));
    assert!(d.pending.is_none() && !d.approved_now);
}

#[test]
fn a_tightening_applies_at_once() {
    let mut w = World::new();
    w.spec = with("/zones/0/minPoints", json!(1));
    let d = w.decide();
    assert_eq!(d.enforce, w.spec);
    assert!(d.pending.is_none());
}

#[test]
fn a_relaxation_waits_for_the_right_hash() {
    let mut w = World::new();
    w.spec = relaxed();
    let d = w.decide();
    let pending = d.pending.clone().expect("pending");
    assert_eq!(d.enforce, spec(&base()), "the old policy keeps running");
    assert_eq!(
        pending.relaxations,
        vec!["zone front: minPoints 2 → 5".to_owned()]
    );
    let msg = d.pending_message("fleet", "front").unwrap();
    assert!(
        msg.contains(&format!(
            "kubectl annotate safetypolicy front -n fleet robofleet.io/approve={} --overwrite",
            pending.hash
        )),
        "{msg}"
    );
    assert!(msg.contains("minPoints 2 → 5") && msg.contains("previous policy stays enforced"));
    w.keep(&d);

    // A wrong hash is ignored, and said so.
    w.approve = Some("0123456789".into());
    let d = w.decide();
    assert_eq!(d.enforce, spec(&base()));
    assert_eq!(d.pending.as_ref().unwrap().hash, pending.hash);
    assert_eq!(
        d.pending.as_ref().unwrap().ignored_approval.as_deref(),
        Some("0123456789")
    );
    assert!(
        d.pending_message("fleet", "front")
            .unwrap()
            .contains("is ignored")
    );

    // The right one applies it.
    w.approve = Some(pending.hash.clone());
    let d = w.decide();
    assert!(d.approved_now && d.pending.is_none());
    assert_eq!(d.enforce, relaxed());
    assert_eq!(d.approved_hash.as_deref(), Some(pending.hash.as_str()));
    w.keep(&d);

    // Settled: the annotation left in place changes nothing.
    let d = w.decide();
    assert!(!d.approved_now && d.pending.is_none());
    assert_eq!(d.enforce, relaxed());
}

#[test]
fn a_new_spec_while_pending_needs_its_own_approval() {
    let mut w = World::new();
    w.spec = relaxed();
    let first = w.decide().pending.unwrap().hash;
    w.spec = with("/zones/0/minPoints", json!(6));
    w.approve = Some(first.clone());
    let d = w.decide();
    let second = d.pending.as_ref().unwrap().hash.clone();
    assert_ne!(first, second);
    assert_eq!(d.enforce, spec(&base()), "a stale approval applies nothing");
    // Back to the applied spec: nothing is pending any more.
    w.spec = spec(&base());
    assert!(w.decide().pending.is_none());
}

#[test]
fn an_approval_left_in_place_never_approves_a_later_change() {
    let mut w = World::new();
    w.spec = relaxed();
    let h = w.decide().pending.unwrap().hash;
    w.approve = Some(h.clone());
    let d = w.decide();
    w.keep(&d);
    // Tighten back, then relax the same way again: the same target, a new hash.
    w.spec = spec(&base());
    let d = w.decide();
    assert!(d.pending.is_none());
    w.keep(&d);
    w.spec = relaxed();
    let d = w.decide();
    let p = d.pending.as_ref().expect("pending again");
    assert_ne!(p.hash, h);
    assert_eq!(
        p.ignored_approval, None,
        "the old approval is not 'wrong', just spent"
    );
    assert_eq!(d.enforce, spec(&base()));
}

#[test]
fn robots_leaving_keep_their_monitor_until_approved() {
    let mut w = World::new();
    // r2 relabelled out, r3 joins; the spec tightens meanwhile.
    w.selected = set(&["r1", "r3"]);
    w.spec = with("/zones/0/minPoints", json!(1));
    let d = w.decide();
    assert_eq!(d.held, set(&["r2"]));
    assert_eq!(d.monitored, set(&["r1", "r2", "r3"]));
    assert_eq!(
        d.enforce, w.spec,
        "a tightening spec applies even while robots wait"
    );
    let p = d.pending.clone().unwrap();
    assert!(p.relaxations.is_empty());
    let msg = d.pending_message("fleet", "front").unwrap();
    assert!(msg.contains("1 robot(s) no longer selected keep their monitor until approved (r2)"));
    assert!(msg.contains("the new policy is enforced"));
    w.keep(&d);
    // Still held on the next reconcile (the record now names r1, r2, r3).
    let again = w.decide();
    assert_eq!(again.pending.as_ref().map(|p| &p.hash), Some(&p.hash));
    w.approve = Some(p.hash);
    let d = w.decide();
    assert!(d.approved_now);
    assert_eq!(d.monitored, set(&["r1", "r3"]));
    assert!(d.held.is_empty());
}

#[test]
fn a_robot_leaving_the_fleet_is_no_relaxation() {
    let mut w = World::new();
    w.selected = set(&["r1"]);
    w.robots = set(&["r1", "r3"]); // r2's Node is gone or no longer a robot
    let d = w.decide();
    assert!(d.pending.is_none());
    assert_eq!(d.monitored, set(&["r1"]));
}

#[test]
fn held_robots_are_sampled() {
    let mut w = World::new();
    let many: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    w.robots = many.iter().cloned().collect();
    w.applied.as_mut().unwrap().robots = w.robots.clone();
    w.selected = set(&["r00"]);
    let d = w.decide();
    assert_eq!(d.held.len(), 11);
    assert_eq!(held_sample(&d.held).len(), HELD_SAMPLE);
    assert!(
        d.pending_message("ns", "p")
            .unwrap()
            .contains("11 robot(s)")
    );
}

#[test]
fn a_restart_recovers_the_same_pending_change() {
    let mut w = World::new();
    w.spec = relaxed();
    w.selected = set(&["r1"]);
    let before = w.decide();
    // What survives: the policy file in the ConfigMap (with a reset nonce in it), the record of
    // robots, status.approvedHash.
    let file = policy_file("front", &before.enforce, Some("n-1"));
    let recovered = Applied {
        spec: parse_policy_file(&file).expect("the policy file parses back"),
        robots: before.monitored.clone(),
    };
    assert_eq!(recovered.spec, spec(&base()));
    w.applied = Some(recovered);
    let after = w.decide();
    assert_eq!(after, before);
}
