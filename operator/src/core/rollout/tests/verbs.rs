//! One-shot actions and `spec.paused`.

use robofleet_crds::conditions::reasons;
use robofleet_crds::inference_service::{HoldReason, RolloutPhase, RolloutStep, Verdict};

use serde_json::json;

use super::analysis::to_canary_pause;
use super::*;

fn analysed() -> Plan {
    plan(json!({
        "waves": [
            {"name": "canary", "robots": 1, "pause": {"duration": "10m"}},
            {"name": "early", "percent": 50, "maxUnavailable": "100%", "pause": {"untilApproved": true}},
            {"name": "rest", "percent": 100, "maxUnavailable": "100%"}
        ],
        "analysis": {"interval": "1m", "metrics": [
            {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01}
        ]}
    }))
}

#[test]
fn a_nonce_is_acted_on_once_and_acknowledged() {
    let mut sim = to_canary_pause(analysed(), 8);
    sim.action = Some("pause@1".into());
    let d = sim.step();
    assert_eq!(d.last_action.as_deref(), Some("pause@1"));
    assert_eq!(d.state.unwrap().hold.unwrap().reason, HoldReason::Paused);
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_HELD]);
    // the same value again: nothing, even after a resume
    sim.step();
    assert!(sim.reasons().is_empty());
    sim.action = Some("resume@2".into());
    assert_eq!(sim.step().state.unwrap().hold, None);
    sim.action = Some("pause@1".into());
    let d = sim.step();
    // only lastAction is remembered: an older value after another action is a new request
    assert_eq!(d.state.unwrap().hold.unwrap().reason, HoldReason::Paused);
}

#[test]
fn pause_freezes_forward_motion_and_reports_paused() {
    let mut sim = to_canary_pause(analysed(), 8);
    sim.action = Some("pause@a".into());
    sim.step();
    sim.now = 3600;
    let d = sim.step();
    assert_eq!(
        d.state.as_ref().unwrap().wave,
        0,
        "the pause is over but the rollout is held"
    );
    assert!(!d.analysis.due, "no analysis while paused");
    assert_eq!(d.phase, RolloutPhase::Paused);
    assert_eq!(
        d.reconciling,
        Cond {
            status: false,
            reason: reasons::PAUSED
        }
    );
    assert!(d.ready.status, "paused is still available");
    assert!(
        d.message.starts_with("paused (paused by the pause action"),
        "{}",
        d.message
    );
    sim.action = Some("resume@b".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().last_analysis_at, Some(at(3600)));
    sim.now = 3660;
    assert_eq!(sim.step().state.unwrap().wave, 1);
}

#[test]
fn spec_paused_wins_over_resume_and_promote() {
    let mut sim = to_canary_pause(analysed(), 8);
    sim.spec_paused = true;
    sim.now = 3600;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 0);
    assert_eq!(d.phase, RolloutPhase::Paused);
    assert!(
        d.message.starts_with("paused (spec.paused is true)"),
        "{}",
        d.message
    );
    for verb in ["resume@1", "promote@2", "promote-full@3"] {
        sim.action = Some(verb.into());
        let d = sim.step();
        assert_eq!(d.last_action.as_deref(), Some(verb), "acknowledged");
        assert_eq!(sim.reasons(), vec![events::ACTION_IGNORED], "{verb}");
        assert!(
            sim.last.as_ref().unwrap().events[0]
                .message
                .contains("spec.paused")
        );
        assert_eq!(d.state.unwrap().wave, 0);
    }
    // a verb pause plus spec.paused: resume clears the verb's hold, spec.paused still holds
    sim.action = Some("pause@4".into());
    sim.step();
    sim.action = Some("resume@5".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().hold, None);
    assert!(
        sim.last.as_ref().unwrap().events[0]
            .message
            .contains("spec.paused is still true")
    );
    assert_eq!(d.phase, RolloutPhase::Paused);
    sim.spec_paused = false;
    // resumed: the next analysis is due one interval later and its pass ends the pause
    sim.now = 3660;
    let d = sim.step();
    assert_eq!(d.state.unwrap().wave, 1);
}

#[test]
fn spec_paused_holds_updates_to_the_new_revision_but_not_rollbacks() {
    let mut sim = Sim::new(analysed(), 6, Some("r1"), "r2");
    sim.spec_paused = true;
    sim.step();
    let d = sim.step();
    assert!(
        d.state.as_ref().unwrap().pinned.is_empty(),
        "frozen before picking"
    );
    assert!(d.updates.is_empty());
    // abort while paused still rolls back
    let mut sim = to_canary_pause(analysed(), 6);
    sim.spec_paused = true;
    sim.action = Some("abort@x".into());
    sim.step();
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].kind, UpdateKind::Rollback);
}

#[test]
fn promote_skips_the_current_pause_and_analysis() {
    // during the pause: next wave now
    let mut sim = to_canary_pause(analysed(), 8);
    sim.verdict = Some(Verdict::Fail);
    sim.action = Some("promote@1".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 1);
    assert_eq!(
        sim.reasons(),
        vec![events::ROLLOUT_PROMOTED, events::WAVE_STARTED]
    );
    // at an approval pause
    for _ in 0..5 {
        sim.step();
        sim.settle();
    }
    let d = sim.step();
    assert_eq!(
        d.state.as_ref().unwrap().step,
        RolloutStep::AwaitingApproval
    );
    sim.verdict = Some(Verdict::Pass);
    sim.action = Some("promote@2".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 2);
    // while updating: the wave goes on without its pause once updated
    let mut sim = Sim::new(analysed(), 8, Some("r1"), "r2");
    sim.step();
    sim.action = Some("promote@3".into());
    let d = sim.step();
    assert!(d.state.as_ref().unwrap().promoted);
    for _ in 0..4 {
        sim.step();
        sim.settle();
    }
    let s = sim.status.state.clone().unwrap();
    assert_eq!(
        (s.wave, s.step, s.promoted),
        (1, RolloutStep::Updating, false)
    );
}

#[test]
fn promote_full_goes_to_every_robot_without_more_pauses() {
    let mut sim = to_canary_pause(analysed(), 10);
    sim.action = Some("promote-full@1".into());
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert!(s.full);
    assert_eq!((s.wave, s.step), (2, RolloutStep::Updating));
    let d = sim.step();
    assert_eq!(
        d.updates.len(),
        9,
        "every other robot, within each wave's maxUnavailable"
    );
    sim.until_stable("r2", 20);
    assert!(sim.replaced.values().all(|n| *n == 1));
}

#[test]
fn abort_rolls_back_and_retry_needs_the_aborted_revision() {
    let mut sim = Sim::new(analysed(), 4, Some("r1"), "r1");
    // nothing to retry yet
    sim.action = Some("retry@0".into());
    sim.step();
    assert_eq!(sim.reasons(), vec![events::ACTION_IGNORED]);
    let mut sim = to_canary_pause(analysed(), 4);
    sim.action = Some("abort@1".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Aborted);
    assert_eq!(d.aborts, vec!["action"]);
    // abort again: nothing in progress
    sim.action = Some("abort@2".into());
    sim.step();
    assert_eq!(sim.reasons(), vec![events::ACTION_IGNORED]);
    sim.action = Some("retry@3".into());
    let d = sim.step();
    assert_eq!(d.state.unwrap().step, RolloutStep::Updating);
}

#[test]
fn malformed_and_unknown_actions_are_acknowledged_and_ignored() {
    let mut sim = to_canary_pause(analysed(), 4);
    for (raw, why) in [
        ("pause", "<verb>@<nonce>"),
        ("dance@1", "unknown verb"),
        ("@x", "<verb>@<nonce>"),
    ] {
        sim.action = Some(raw.into());
        let d = sim.step();
        assert_eq!(d.last_action.as_deref(), Some(raw));
        let e = &sim.last.as_ref().unwrap().events;
        assert_eq!(e.len(), 1);
        assert!(e[0].warning && e[0].message.contains(why), "{e:?}");
        assert!(d.state.unwrap().hold.is_none());
    }
    // resume with nothing paused
    sim.action = Some("resume@9".into());
    sim.step();
    assert!(
        sim.last.as_ref().unwrap().events[0]
            .message
            .contains("not paused")
    );
    // pause with no rollout
    let mut sim = Sim::new(analysed(), 2, Some("r1"), "r1");
    sim.action = Some("pause@1".into());
    let d = sim.step();
    assert!(d.events[0].message.contains("no rollout"));
    assert_eq!(d.phase, RolloutPhase::Healthy);
}
