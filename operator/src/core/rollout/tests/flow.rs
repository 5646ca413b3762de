//! The main path and its failures: first revision, waves, pauses, analysis, completion,
//! supersede, abort memory, model fallback, preflight.

use robofleet_crds::conditions::reasons;
use robofleet_crds::inference_service::{AbortCause, RolloutPhase, RolloutStep};
use serde_json::json;

use super::analysis::{analysed, to_canary_pause};
use super::*;

#[test]
fn the_first_revision_goes_out_all_at_once_and_becomes_stable_when_ready() {
    let mut sim = Sim::new(three_waves(), 5, None, "r1");
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert!(s.all_at_once);
    assert_eq!(s.step, RolloutStep::Updating);
    assert!(
        d.updates.is_empty(),
        "a step that changes state updates nobody"
    );
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_STARTED]);
    assert_eq!(d.phase, RolloutPhase::Progressing);
    // every robot gets a pod at once: creating a pod is not limited by maxUnavailable
    let d = sim.step();
    assert_eq!(d.updates.len(), 5);
    assert!(
        d.updates
            .iter()
            .all(|u| u.kind == UpdateKind::Create && u.to == "r1")
    );
    // not Ready yet: still progressing, not stable
    let d = sim.step();
    assert!(d.updates.is_empty());
    assert_eq!(d.stable, None);
    assert!(!d.ready.status);
    sim.settle();
    let d = sim.step();
    assert_eq!(d.stable.as_deref(), Some("r1"));
    assert_eq!(d.state, None);
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_COMPLETED]);
    let d = sim.step();
    assert_eq!(d.phase, RolloutPhase::Healthy);
    assert_eq!(
        (d.ready, d.reconciling, d.stalled),
        (
            Cond {
                status: true,
                reason: reasons::AVAILABLE
            },
            Cond {
                status: false,
                reason: reasons::ROLLOUT_COMPLETE
            },
            Cond {
                status: false,
                reason: reasons::AS_EXPECTED
            }
        )
    );
    assert_eq!(d.message, "5/5 robots ready at revision r1");
    assert!(sim.events_were_bounded());
}

impl Sim {
    /// No step emitted more than 3 events (never one per robot).
    pub fn events_were_bounded(&self) -> bool {
        self.last.as_ref().is_none_or(|d| d.events.len() <= 3)
    }
}

#[test]
fn waves_go_canary_pause_half_pause_rest_then_stable() {
    let mut sim = Sim::new(three_waves(), 20, Some("r1"), "r2");
    sim.verdict = None; // no analysis configured: pauses just wait
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Updating);
    assert!(!d.state.as_ref().unwrap().all_at_once);
    assert_eq!(d.current_wave, Some(1));
    // the canary wave picks its robot: the smallest hash of all 20
    let d = sim.step();
    let pinned = d.state.as_ref().unwrap().pinned.clone();
    let want = smallest("r2", sim.robots.keys().map(String::as_str), 1);
    assert_eq!(pinned[0].robots, want);
    assert_eq!(sim.reasons(), vec![events::ROBOTS_PICKED]);
    assert!(d.updates.is_empty());
    // then updates exactly that robot
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].robot, want[0]);
    assert_eq!(d.updates[0].kind, UpdateKind::Forward);
    // it is not done until Ready and confirmed
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Updating);
    assert_eq!(d.tally.updating, 1);
    sim.settle();
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(s.step, RolloutStep::Analyzing);
    assert_eq!(s.pause_until, Some(at(600)));
    assert_eq!(sim.reasons(), vec![events::WAVE_UPDATED]);
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(1)));
    // during the pause nothing moves; requeue at the pause's end
    sim.now = 300;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Analyzing);
    assert_eq!(d.requeue_after, Some(std::time::Duration::from_secs(300)));
    assert_eq!(d.phase, RolloutPhase::Progressing);
    assert!(
        d.message.contains("wave 1/3 (canary): 1/20 robots updated"),
        "{}",
        d.message
    );
    sim.now = 600;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 1);
    assert_eq!(sim.reasons(), vec![events::WAVE_STARTED]);
    // wave 2 (50%): robots whose hash is below 50% plus nothing else, 2 at a time
    let members: Vec<String> = sim
        .robots
        .keys()
        .filter(|r| below_percent(robot_hash("r2", r), 50) && **r != want[0])
        .cloned()
        .collect();
    assert!(members.len() > 2, "{members:?}");
    let d = sim.step();
    assert_eq!(d.updates.len(), 2);
    assert!(d.updates.iter().all(|u| members.contains(&u.robot)));
    // the two being replaced are unavailable: nobody else goes until they are Ready
    let d = sim.step();
    assert!(d.updates.is_empty());
    sim.settle();
    let d = sim.step();
    assert_eq!(d.updates.len(), 2.min(members.len() - 2));
    let steps = sim.until_stable("r2", 200);
    assert!(steps > 5);
    assert!(sim.replaced.values().all(|n| *n == 1), "{:?}", sim.replaced);
    assert_eq!(sim.replaced.len(), 20);
}

#[test]
fn a_new_revision_mid_rollout_aborts_the_old_one_and_starts_from_wave_one() {
    let mut sim = to_canary_pause(analysed(), 10);
    sim.now = 600;
    sim.step(); // wave 2 (rest) starts
    sim.step();
    sim.settle();
    let on_r2 = sim.on("r2");
    assert!(on_r2.len() > 2, "{on_r2:?}");
    sim.desired = "r3".into();
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(
        (s.revision.as_str(), s.wave, s.step),
        ("r3", 0, RolloutStep::Updating)
    );
    assert_eq!(d.aborts, vec!["superseded"]);
    assert_eq!(
        sim.reasons(),
        vec![events::ROLLOUT_SUPERSEDED, events::ROLLOUT_STARTED]
    );
    assert_eq!(
        d.aborted, None,
        "a superseded revision is not remembered as aborted"
    );
    assert!(d.updates.is_empty());
    sim.step(); // pins r3's canary
    let canary = sim.status.state.as_ref().unwrap().pinned[0].robots.clone();
    let d = sim.step();
    // r2's robots go back to stable r1, except those that are r3's canary: they go to r3
    for u in &d.updates {
        if canary.contains(&u.robot) {
            assert_eq!(u.to, "r3");
        } else {
            assert_eq!((u.from.as_deref(), u.to.as_str()), (Some("r2"), "r1"));
            assert_eq!(u.kind, UpdateKind::Converge);
        }
    }
    sim.until_stable("r3", 300);
    assert!(sim.on("r2").is_empty());
}

#[test]
fn an_aborted_revision_waits_for_another_revision_or_retry() {
    let mut sim = to_canary_pause(analysed(), 6);
    sim.action = Some("abort@n1".into());
    let d = sim.step();
    assert_eq!(d.aborted.as_deref(), Some("r2"));
    assert_eq!(d.last_action.as_deref(), Some("abort@n1"));
    sim.until_quiet();
    assert!(sim.on("r2").is_empty());
    // the same nonce again does nothing
    let d = sim.step();
    assert!(d.events.is_empty());
    // retry starts it again from scratch
    sim.action = Some("retry@n2".into());
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(
        (s.step, s.wave, s.started_at.clone()),
        (RolloutStep::Updating, 0, sim.now())
    );
    assert_eq!(d.aborted, None);
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_RETRIED]);
    sim.until_stable("r2", 100);

    // the spec naming another revision ends the memory too
    let mut sim = to_canary_pause(analysed(), 6);
    sim.action = Some("abort@n1".into());
    sim.step();
    sim.until_quiet();
    sim.desired = "r3".into();
    let d = sim.step();
    assert_eq!(d.aborted, None);
    assert_eq!(d.state.unwrap().revision, "r3");
    // and going back to the stable revision ends the rollout
    sim.desired = "r1".into();
    let d = sim.step();
    assert_eq!(d.state, None);
    sim.until_quiet();
    assert_eq!(sim.step().phase, RolloutPhase::Healthy);
}

#[test]
fn aborted_memory_without_a_rollout_state_keeps_the_fleet_on_stable() {
    // status.rollout lost but abortedRevision kept: no new rollout, Degraded
    let mut sim = Sim::new(analysed(), 3, Some("r1"), "r2");
    sim.status.aborted = Some("r2".into());
    let d = sim.step();
    assert_eq!(d.state, None);
    assert_eq!(d.phase, RolloutPhase::Degraded);
    assert_eq!(
        d.stalled,
        Cond {
            status: true,
            reason: reasons::ROLLOUT_ABORTED
        }
    );
    assert!(d.updates.is_empty());
}

#[test]
fn a_model_that_falls_back_aborts_in_the_canary_wave() {
    let mut sim = Sim::new(three_waves(), 10, Some("r1"), "r2");
    sim.bad_models.insert("r2".into());
    for _ in 0..3 {
        sim.step();
        sim.settle();
    }
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(
        s.abort.as_ref().map(|a| a.cause),
        Some(AbortCause::ModelLoadFailed)
    );
    assert!(
        s.abort
            .unwrap()
            .message
            .contains("failed to load on 1 updated robot")
    );
    assert_eq!(d.aborts, vec!["model_load_failed"]);
    sim.until_quiet();
    assert!(sim.on("r2").is_empty());
    assert_eq!(
        sim.replaced.values().sum::<u32>(),
        2,
        "one canary, there and back"
    );
}

#[test]
fn preflight_runs_before_wave_one_and_a_failure_aborts() {
    let mut p = three_waves();
    p.preflight = vec!["lidar".into(), "camera".into()];
    let mut sim = Sim::new(p.clone(), 4, Some("r1"), "r2");
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Preflight);
    let req = d.preflight.clone().unwrap();
    assert_eq!(
        (
            req.revision.as_str(),
            req.templates.len(),
            req.since.clone()
        ),
        ("r2", 2, at(0))
    );
    // a child from an earlier attempt does not count
    sim.preflight = vec![
        PreflightChild {
            template: "lidar".into(),
            created: at(-5),
            outcome: SimOutcome::Succeeded,
        },
        PreflightChild {
            template: "camera".into(),
            created: at(1),
            outcome: SimOutcome::Succeeded,
        },
    ];
    sim.now = 2;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Preflight);
    assert!(d.updates.is_empty(), "no robot is touched during preflight");
    assert!(d.message.contains("preflight"), "{}", d.message);
    // promote does not skip it
    sim.action = Some("promote@x".into());
    sim.step();
    assert_eq!(sim.reasons(), vec![events::ACTION_IGNORED]);
    sim.preflight[0].created = at(1);
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Updating);
    assert_eq!(sim.reasons(), vec![events::PREFLIGHT_SUCCEEDED]);

    let mut sim = Sim::new(p, 4, Some("r1"), "r2");
    sim.step();
    sim.preflight = vec![PreflightChild {
        template: "camera".into(),
        created: at(1),
        outcome: SimOutcome::Failed("no stop within 200ms".into()),
    }];
    sim.now = 2;
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(s.abort.unwrap().cause, AbortCause::PreflightFailed);
    assert_eq!(
        d.stalled,
        Cond {
            status: true,
            reason: reasons::PREFLIGHT_FAILED
        }
    );
    assert!(d.message.contains("no robot was updated"), "{}", d.message);
    assert_eq!(d.aborts, vec!["preflight_failed"]);
    // retry runs the preflight again: children older than the retry are stale
    sim.now = 100;
    sim.action = Some("retry@1".into());
    let d = sim.step();
    assert_eq!(d.preflight.unwrap().since, at(100));
}

#[test]
fn all_at_once_strategy_updates_every_robot_without_pause_or_limit() {
    let p = plan(json!({"strategy": "AllAtOnce"}));
    let mut sim = Sim::new(p, 8, Some("r1"), "r2");
    sim.step();
    let d = sim.step();
    assert_eq!(d.updates.len(), 8);
    sim.until_stable("r2", 10);
}

#[test]
fn empty_percent_waves_are_passed_without_a_pause() {
    // with 2 robots a 1% wave is almost surely empty: no pause for nobody
    let p = plan(json!({"waves": [
        {"name": "tiny", "percent": 1, "pause": {"duration": "1h"}},
        {"name": "rest", "percent": 100}
    ]}));
    let mut sim = Sim::new(p, 2, Some("r1"), "r2");
    let empty = sim
        .robots
        .keys()
        .all(|r| !below_percent(robot_hash("r2", r), 1));
    assert!(empty);
    sim.step();
    let d = sim.step();
    assert_eq!(d.state.unwrap().wave, 1);
}

#[test]
fn abort_works_in_every_active_step() {
    // preflight: nothing to roll back
    let mut p = three_waves();
    p.preflight = vec!["lidar".into()];
    let mut sim = Sim::new(p, 3, Some("r1"), "r2");
    sim.step();
    sim.action = Some("abort@1".into());
    let d = sim.step();
    assert_eq!(d.state.unwrap().step, RolloutStep::Aborted);
    assert!(d.message.contains("no robot was updated"), "{}", d.message);
    // updating: the robots already updated come back
    let mut sim = Sim::new(three_waves(), 6, Some("r1"), "r2");
    sim.verdict = None;
    for _ in 0..3 {
        sim.step();
    }
    assert_eq!(sim.on("r2").len(), 1);
    sim.action = Some("abort@1".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Aborted);
    assert_eq!(d.canary, None);
    sim.until_quiet();
    assert!(sim.on("r2").is_empty());
}

#[test]
fn a_last_wave_with_a_pause_completes_after_it() {
    let p = plan(json!({"waves": [
        {"name": "canary", "robots": 1},
        {"name": "rest", "percent": 100, "maxUnavailable": "100%", "pause": {"duration": "1h"}}
    ]}));
    let mut sim = Sim::new(p, 4, Some("r1"), "r2");
    for _ in 0..8 {
        sim.step();
        sim.settle();
    }
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Analyzing);
    assert_eq!(sim.on("r2").len(), 4);
    assert_eq!(
        d.stable.as_deref(),
        Some("r1"),
        "not stable before the pause ends"
    );
    sim.now = 3600;
    let d = sim.step();
    assert_eq!(d.stable.as_deref(), Some("r2"));
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_COMPLETED]);
}
