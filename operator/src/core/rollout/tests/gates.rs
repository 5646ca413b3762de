//! Gates, deferTimeout, maxUnavailable, offline robots, robots joining, pinning.

use robofleet_crds::inference_service::{AbortCause, RolloutStep};
use serde_json::json;

use super::*;

/// One 100% wave (maxUnavailable 100%) with a robot-state gate.
fn gated(on_timeout: &str) -> Plan {
    plan(json!({
        "waves": [{"name": "all", "percent": 100, "maxUnavailable": "100%"}],
        "gates": {"robotState": {"allowWhen": ["idle", "charging"], "deferTimeout": "30m", "onTimeout": on_timeout}}
    }))
}

#[test]
fn a_busy_robot_is_deferred_and_updated_when_idle() {
    let mut sim = Sim::new(gated("Skip"), 4, Some("r1"), "r2");
    sim.robot(1).state_label = Some("busy".into());
    sim.robot(2).state_label = Some("charging".into());
    sim.step();
    let d = sim.step();
    let updated: Vec<&str> = d.updates.iter().map(|u| u.robot.as_str()).collect();
    assert_eq!(updated, vec!["robot-000", "robot-002", "robot-003"]);
    assert_eq!(
        d.deferred,
        vec![Deferral {
            robot: name(1),
            reason: DeferReason::State("busy".into())
        }]
    );
    sim.settle();
    let d = sim.step();
    // the wave waits for it (before deferTimeout)
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Updating);
    assert_eq!(d.tally.deferred, 1);
    assert!(d.message.contains("1 deferred (busy: 1)"), "{}", d.message);
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(30)));
    sim.robot(1).state_label = Some("idle".into());
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].robot, name(1));
    sim.until_stable("r2", 10);
}

#[test]
fn the_bridge_reported_state_must_agree_and_an_unknown_state_defers() {
    let mut sim = Sim::new(gated("Skip"), 3, Some("r1"), "r2");
    sim.robot(0).state_reported = Some("busy".into());
    sim.robot(1).state_label = None;
    sim.robot(2).state_label = Some("IDLE".into());
    sim.robot(2).state_reported = Some("idle".into());
    sim.step();
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].robot, name(2));
    let reasons: Vec<DeferReason> = d.deferred.iter().map(|x| x.reason.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            DeferReason::State("busy".into()),
            DeferReason::State("unknown".into())
        ]
    );
}

#[test]
fn an_engaged_stop_lock_defers_unless_ignored() {
    let mut sim = Sim::new(gated("Skip"), 3, Some("r1"), "r2");
    sim.robot(0).stop_lock = Some(true);
    sim.robot(1).stop_lock = None; // no monitor: not deferred
    sim.step();
    let d = sim.step();
    assert_eq!(d.updates.len(), 2);
    assert_eq!(
        d.deferred,
        vec![Deferral {
            robot: name(0),
            reason: DeferReason::StopLock
        }]
    );
    assert!(sim.last.as_ref().unwrap().message.contains("stop lock: 1"));
    // without any gates configured the stop lock still defers (safetyStopActive: Defer)
    let mut sim = Sim::new(
        plan(json!({"waves": [{"name": "all", "percent": 100, "maxUnavailable": "100%"}]})),
        2,
        Some("r1"),
        "r2",
    );
    sim.robot(0).stop_lock = Some(true);
    sim.robot(0).state_label = Some("busy".into());
    sim.step();
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.deferred[0].reason, DeferReason::StopLock);
    // Ignore
    let mut sim = Sim::new(
        plan(
            json!({"waves": [{"name": "all", "percent": 100, "maxUnavailable": "100%"}], "gates": {"safetyStopActive": "Ignore"}}),
        ),
        2,
        Some("r1"),
        "r2",
    );
    sim.robot(0).stop_lock = Some(true);
    sim.step();
    assert_eq!(sim.step().updates.len(), 2);
}

/// Robot 0 busy, robot 1 stop-locked, robot 2 idle, until past deferTimeout.
fn stuck(on_timeout: &str) -> Sim {
    let mut sim = Sim::new(gated(on_timeout), 3, Some("r1"), "r2");
    sim.robot(0).state_label = Some("busy".into());
    sim.robot(1).stop_lock = Some(true);
    sim.step();
    sim.step();
    sim.settle();
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Updating);
    // requeue at the deadline, at the latest
    assert!(d.requeue_after.unwrap() <= std::time::Duration::from_secs(30));
    sim.now = 30 * 60;
    sim
}

#[test]
fn defer_timeout_skip_goes_on_and_the_skipped_robot_converges_later() {
    let mut sim = stuck("Skip");
    let d = sim.step();
    // stable: the rollout is done without them; they are still deferred
    assert_eq!(d.stable.as_deref(), Some("r2"));
    assert_eq!(d.state, None);
    let d = sim.step();
    assert_eq!(
        d.phase,
        robofleet_crds::inference_service::RolloutPhase::Healthy
    );
    assert_eq!(d.deferred.len(), 2);
    assert!(d.message.contains("2 deferred"), "{}", d.message);
    sim.robot(0).state_label = Some("idle".into());
    sim.robot(1).stop_lock = Some(false);
    let d = sim.step();
    assert_eq!(d.updates.len(), 2);
    assert!(
        d.updates
            .iter()
            .all(|u| u.kind == UpdateKind::Converge && u.to == "r2")
    );
}

#[test]
fn defer_timeout_force_updates_busy_robots_but_never_through_a_stop_lock() {
    let mut sim = stuck("Force");
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].robot, name(0));
    assert_eq!(
        d.deferred,
        vec![Deferral {
            robot: name(1),
            reason: DeferReason::StopLock
        }]
    );
    sim.settle();
    let d = sim.step();
    assert_eq!(d.stable.as_deref(), Some("r2"));
}

#[test]
fn defer_timeout_fail_aborts() {
    let mut sim = stuck("Fail");
    let d = sim.step();
    let s = d.state.unwrap();
    assert_eq!(s.abort.as_ref().unwrap().cause, AbortCause::DeferTimeout);
    assert!(s.abort.unwrap().message.contains("robot-000, robot-001"));
    assert_eq!(d.aborts, vec!["defer_timeout"]);
}

#[test]
fn max_unavailable_counts_robots_being_replaced_and_spares_unavailable_ones() {
    let p = plan(json!({"waves": [{"name": "all", "percent": 100, "maxUnavailable": 2}]}));
    let mut sim = Sim::new(p, 6, Some("r1"), "r2");
    // robot 5's pod is not Ready (crash-looping on r1): replacing it costs no availability
    sim.robot(5).pod.as_mut().unwrap().ready = false;
    sim.step();
    let d = sim.step();
    // one already unavailable => one more fits in 2
    let updated: Vec<&str> = d.updates.iter().map(|u| u.robot.as_str()).collect();
    assert_eq!(updated.len(), 2, "{updated:?}");
    assert!(updated.contains(&"robot-005"));
    // both being replaced: nothing more
    assert!(sim.step().updates.is_empty());
    sim.settle();
    assert_eq!(sim.step().updates.len(), 2);
    // the hard limit is never exceeded
    sim.until_stable("r2", 20);
    assert!(sim.replaced.values().all(|n| *n == 1));
}

#[test]
fn percent_max_unavailable_rounds_down_with_at_least_one() {
    assert_eq!(MaxUnavailable::Percent(20).of(19), 3);
    assert_eq!(MaxUnavailable::Percent(20).of(4), 1);
    assert_eq!(MaxUnavailable::Percent(100).of(7), 7);
    assert_eq!(MaxUnavailable::Count(3).of(1), 3);
    assert_eq!(MaxUnavailable::Unlimited.of(0), usize::MAX);
}

#[test]
fn offline_robots_never_block_and_get_their_wave_s_revision_when_back() {
    let mut sim = Sim::new(three_waves(), 12, Some("r1"), "r2");
    sim.verdict = None;
    sim.step();
    sim.step();
    let canary = sim.status.state.as_ref().unwrap().pinned[0].robots[0].clone();
    let idx = |n: &str| n.trim_start_matches("robot-").parse::<usize>().unwrap();
    // a robot of the second wave and one of the last go offline before their turn
    let second = sim
        .robots
        .keys()
        .find(|r| **r != canary && below_percent(robot_hash("r2", r), 50))
        .cloned()
        .unwrap();
    let last = sim
        .robots
        .keys()
        .find(|r| !below_percent(robot_hash("r2", r), 50) && **r != canary)
        .cloned()
        .unwrap();
    sim.robot(idx(&second)).online = false;
    sim.robot(idx(&last)).online = false;
    // the rollout completes without them
    sim.until_stable("r2", 200);
    assert_eq!(sim.robots[&second].pod.as_ref().unwrap().revision, "r1");
    let d = sim.step();
    assert_eq!(d.tally.offline, 2);
    assert_eq!(
        d.phase,
        robofleet_crds::inference_service::RolloutPhase::Healthy
    );
    assert!(d.message.contains("2 offline"));
    // back online: they converge to the new stable
    sim.robot(idx(&second)).online = true;
    sim.robot(idx(&last)).online = true;
    let d = sim.step();
    // both fit in the last wave's maxUnavailable (25% of 12 = 3)
    let back: Vec<&str> = d.updates.iter().map(|u| u.robot.as_str()).collect();
    assert_eq!(back.len(), 2, "{back:?}");
    assert!(
        d.updates
            .iter()
            .all(|u| u.kind == UpdateKind::Converge && u.to == "r2")
    );
}

#[test]
fn a_robot_back_online_mid_rollout_gets_the_revision_its_wave_says() {
    let mut sim = Sim::new(three_waves(), 12, Some("r1"), "r2");
    sim.verdict = None;
    sim.step();
    sim.step();
    let canary = sim.status.state.as_ref().unwrap().pinned[0].robots[0].clone();
    let idx = |n: &str| n.trim_start_matches("robot-").parse::<usize>().unwrap();
    sim.robot(idx(&canary)).online = false;
    // the canary wave has no online robot left: it completes (nobody to wait for)
    let d = sim.step();
    assert!(d.updates.is_empty());
    sim.now = 600;
    // paused 10 minutes with nobody, then wave 2
    for _ in 0..3 {
        sim.step();
        sim.now += 600;
    }
    assert!(sim.status.state.as_ref().unwrap().wave >= 1);
    sim.robot(idx(&canary)).online = true;
    let d = sim.step();
    let u = d.updates.iter().find(|u| u.robot == canary).unwrap();
    assert_eq!((u.kind, u.to.as_str()), (UpdateKind::Forward, "r2"));
    // a robot of a later wave that comes back stays on stable
    let later = sim
        .robots
        .keys()
        .find(|r| !below_percent(robot_hash("r2", r), 50) && **r != canary)
        .cloned()
        .unwrap();
    assert!(d.targets.contains(&(later, "r1".to_owned())));
}

#[test]
fn robots_joining_mid_rollout_follow_their_hash_and_pins_never_move() {
    let mut sim = Sim::new(three_waves(), 10, Some("r1"), "r2");
    sim.verdict = None;
    sim.step();
    sim.step();
    let pinned = sim.status.state.as_ref().unwrap().pinned.clone();
    // many robots join: whatever their hashes, the canary stays
    for i in 10..40 {
        sim.robots.insert(
            name(i),
            RobotObservation {
                name: name(i),
                online: true,
                state_label: Some("idle".into()),
                state_reported: None,
                stop_lock: None,
                pod: None,
            },
        );
    }
    for _ in 0..5 {
        sim.step();
        sim.settle();
    }
    assert_eq!(sim.status.state.as_ref().unwrap().pinned, pinned);
    // during the canary pause the joiners got pods: stable r1 (their wave has not started)
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Analyzing);
    for i in 10..40 {
        assert_eq!(
            sim.robots[&name(i)].pod.as_ref().unwrap().revision,
            "r1",
            "{}",
            name(i)
        );
    }
    // in wave 2, a robot joining with a hash below 50% gets r2 at once; others r1
    sim.now = 600;
    sim.step();
    let mut joiners = (40..80).map(name);
    let low = joiners
        .clone()
        .find(|r| below_percent(robot_hash("r2", r), 50))
        .unwrap();
    let high = joiners
        .find(|r| !below_percent(robot_hash("r2", r), 50))
        .unwrap();
    for r in [&low, &high] {
        sim.robots.insert(
            r.clone(),
            RobotObservation {
                name: r.clone(),
                online: true,
                state_label: Some("idle".into()),
                state_reported: None,
                stop_lock: None,
                pod: None,
            },
        );
    }
    let d = sim.step();
    let create = |r: &str| {
        d.updates
            .iter()
            .find(|u| u.robot == r)
            .map(|u| (u.kind, u.to.clone()))
    };
    assert_eq!(create(&low), Some((UpdateKind::Create, "r2".into())));
    assert_eq!(create(&high), Some((UpdateKind::Create, "r1".into())));
    sim.until_stable("r2", 300);
    assert_eq!(sim.status.stable.as_deref(), Some("r2"));
}

#[test]
fn a_robots_wave_picks_only_eligible_robots_and_waits_when_none_is() {
    let mut sim = Sim::new(gated("Skip"), 3, Some("r1"), "r2");
    sim.plan = plan(json!({
        "waves": [{"name": "canary", "robots": 2}, {"name": "rest", "percent": 100}],
        "gates": {"robotState": {"allowWhen": ["idle"], "deferTimeout": "30m", "onTimeout": "Skip"}}
    }));
    for i in 0..3 {
        sim.robot(i).state_label = Some("busy".into());
    }
    sim.step();
    let d = sim.step();
    assert!(
        d.state.as_ref().unwrap().pinned.is_empty(),
        "nobody eligible: wait"
    );
    sim.robot(2).state_label = Some("idle".into());
    sim.robot(1).online = false;
    let d = sim.step();
    let pinned = &d.state.as_ref().unwrap().pinned[0];
    assert_eq!(
        pinned.robots,
        vec![name(2)],
        "only the eligible robot, fewer than N"
    );
    // past the timeout with nobody eligible, Skip pins nobody
    let mut sim = Sim::new(gated("Skip"), 2, Some("r1"), "r2");
    sim.plan = plan(json!({
        "waves": [{"name": "canary", "robots": 1}, {"name": "rest", "percent": 100}],
        "gates": {"robotState": {"allowWhen": ["idle"], "onTimeout": "Force"}}
    }));
    sim.robot(0).state_label = Some("busy".into());
    sim.robot(1).state_label = Some("busy".into());
    sim.robot(1).stop_lock = Some(true);
    sim.step();
    sim.step();
    sim.now = 3600;
    let d = sim.step();
    assert_eq!(
        d.state.unwrap().pinned[0].robots,
        vec![name(0)],
        "Force ignores the state, never a stop lock"
    );
}
