//! Pauses and analysis: cadence, verdicts, failureLimit, inconclusiveAction, approval pauses,
//! the safety-stop baseline, holds.

use robofleet_crds::conditions::reasons;
use robofleet_crds::inference_service::{
    AbortCause, HoldReason, RolloutPhase, RolloutStep, StopBaseline, Verdict,
};
use serde_json::json;

use super::*;

pub(super) fn analysed() -> Plan {
    plan(json!({
        "waves": [
            {"name": "canary", "robots": 2, "pause": {"duration": "10m"}},
            {"name": "rest", "percent": 100, "maxUnavailable": "50%"}
        ],
        "analysis": {"interval": "1m", "failureLimit": 2, "metrics": [
            {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01}
        ]}
    }))
}

/// Drives a fresh rollout of r2 over r1 to the canary wave's pause.
pub(super) fn to_canary_pause(plan: Plan, robots: usize) -> Sim {
    let mut sim = Sim::new(plan, robots, Some("r1"), "r2");
    for _ in 0..10 {
        sim.step();
        sim.settle();
        if sim.status.state.as_ref().unwrap().step == RolloutStep::Analyzing {
            return sim;
        }
    }
    panic!("no pause: {:?}", sim.last.as_ref().unwrap().message);
}

#[test]
fn analysis_runs_each_interval_during_the_pause_and_a_pass_ends_it() {
    let mut sim = to_canary_pause(analysed(), 10);
    let plan = sim.plan.clone();
    let state = sim.status.state.clone();
    // the first analysis is due one interval after the pause began
    assert!(!analysis_due(&plan, state.as_ref(), false, &at(59)));
    assert!(analysis_due(&plan, state.as_ref(), false, &at(60)));
    assert!(
        !analysis_due(&plan, state.as_ref(), true, &at(60)),
        "not while paused"
    );
    sim.now = 60;
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(
        (s.last_verdict, s.last_analysis_at.clone()),
        (Some(Verdict::Pass), Some(at(60)))
    );
    assert_eq!(sim.reasons(), vec![events::ANALYSIS_PASSED]);
    assert_eq!(d.waves[0].verdict, Some(Verdict::Pass));
    assert_eq!(d.waves[0].message.as_deref(), Some("errors: Pass"));
    assert_eq!(d.analysis.robots.len(), 2);
    // the next one an interval later, and the same verdict makes no new Event
    assert!(!analysis_due(&plan, d.state.as_ref(), false, &at(119)));
    sim.now = 120;
    sim.step();
    assert!(sim.reasons().is_empty());
    // the pass at the pause's end moves on
    sim.now = 600;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 1);
    // the earlier wave keeps its verdict in status.waves
    let d2 = sim.step();
    assert_eq!(d2.waves[0].verdict, Some(Verdict::Pass));
    assert_eq!(d2.waves[1].verdict, None);
    sim.until_stable("r2", 100);
}

#[test]
fn failure_limit_consecutive_failures_abort_and_roll_back() {
    let mut sim = to_canary_pause(analysed(), 10);
    let canary = sim.on("r2");
    assert_eq!(canary.len(), 2);
    sim.verdict = Some(Verdict::Fail);
    sim.now = 60;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().consecutive_failures, 1);
    assert_eq!(sim.reasons(), vec![events::ANALYSIS_FAILED]);
    // a pass in between resets the count
    sim.verdict = Some(Verdict::Pass);
    sim.now = 120;
    assert_eq!(sim.step().state.unwrap().consecutive_failures, 0);
    // inconclusive keeps it
    sim.verdict = Some(Verdict::Fail);
    sim.now = 180;
    sim.step();
    sim.verdict = Some(Verdict::Inconclusive);
    sim.now = 240;
    assert_eq!(sim.step().state.unwrap().consecutive_failures, 1);
    sim.verdict = Some(Verdict::Fail);
    sim.now = 300;
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(s.step, RolloutStep::Aborted);
    assert_eq!(s.abort.as_ref().unwrap().cause, AbortCause::AnalysisFailed);
    assert_eq!(d.aborted.as_deref(), Some("r2"));
    assert_eq!(d.aborts, vec!["analysis_failed"]);
    assert_eq!(
        sim.reasons(),
        vec![events::ANALYSIS_FAILED, events::ROLLOUT_ABORTED]
    );
    assert_eq!(d.phase, RolloutPhase::Degraded);
    assert_eq!(
        d.stalled,
        Cond {
            status: true,
            reason: reasons::ROLLOUT_ABORTED
        }
    );
    assert!(d.message.contains("Change spec.model"), "{}", d.message);
    assert!(d.updates.is_empty());
    // the canary robots go back to r1 one at a time (the canary wave's maxUnavailable), even
    // busy ones (rollbacks ignore gates)
    for r in sim.robots.values_mut() {
        r.state_label = Some("busy".into());
    }
    let d = sim.step();
    assert_eq!(
        d.reconciling,
        Cond {
            status: true,
            reason: reasons::ROLLOUT_ABORTED
        }
    );
    assert_eq!(d.updates.len(), 1);
    assert_eq!(
        (
            d.updates[0].kind,
            d.updates[0].from.as_deref(),
            d.updates[0].to.as_str()
        ),
        (UpdateKind::Rollback, Some("r2"), "r1")
    );
    assert!(d.message.contains("still returning"), "{}", d.message);
    sim.settle();
    let d = sim.step();
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].kind, UpdateKind::Rollback);
    sim.settle();
    let d = sim.step();
    assert!(sim.on("r2").is_empty());
    for r in &canary {
        assert_eq!(sim.history[r], vec!["r1", "r2", "r1"]);
    }
    assert_eq!(d.phase, RolloutPhase::Degraded);
    assert!(!d.reconciling.status);
    assert!(d.ready.status);
    // the aborted revision is not retried while the spec names it
    for _ in 0..5 {
        sim.now += 600;
        let d = sim.step();
        assert!(d.updates.is_empty());
        assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Aborted);
    }
}

#[test]
fn without_auto_rollback_a_failure_holds_the_rollout_where_it_is() {
    let mut p = analysed();
    p.auto_rollback = false;
    p.analysis.as_mut().unwrap().failure_limit = 1;
    let mut sim = to_canary_pause(p, 10);
    sim.verdict = Some(Verdict::Fail);
    sim.now = 60;
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(s.hold.as_ref().unwrap().reason, HoldReason::AnalysisFailed);
    assert_eq!(s.step, RolloutStep::Analyzing);
    assert_eq!(d.phase, RolloutPhase::Degraded);
    assert_eq!(
        d.stalled,
        Cond {
            status: true,
            reason: reasons::ANALYSIS_FAILED
        }
    );
    assert_eq!(
        d.reconciling,
        Cond {
            status: false,
            reason: reasons::ANALYSIS_FAILED
        }
    );
    assert!(d.aborts.is_empty());
    sim.now = 1000;
    let d = sim.step();
    assert!(d.updates.is_empty() && d.state.unwrap().wave == 0);
    assert_eq!(sim.on("r2").len(), 2, "robots keep what they run");
    // the abort action rolls back
    sim.action = Some("abort@1".into());
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().step, RolloutStep::Aborted);
    assert_eq!(d.aborts, vec!["action"]);
    sim.until_quiet();
    assert!(sim.on("r2").is_empty());
}

impl Sim {
    /// Cycles until a step updates nobody.
    pub fn until_quiet(&mut self) {
        for _ in 0..100 {
            self.settle();
            if self.step().updates.is_empty() {
                return;
            }
        }
        panic!("never quiet");
    }
}

#[test]
fn inconclusive_at_the_pause_end_follows_inconclusive_action() {
    // Pause (default): held, Paused, Reconciling=False/Paused; resume analyses again
    let mut sim = to_canary_pause(analysed(), 10);
    sim.verdict = Some(Verdict::Inconclusive);
    sim.now = 600;
    let d = sim.step();
    let s = d.state.clone().unwrap();
    assert_eq!(s.last_verdict, Some(Verdict::Inconclusive));
    // the verdict and the hold come in one step
    assert_eq!(s.hold.as_ref().unwrap().reason, HoldReason::Inconclusive);
    assert_eq!(d.phase, RolloutPhase::Paused);
    assert_eq!(
        d.reconciling,
        Cond {
            status: false,
            reason: reasons::PAUSED
        }
    );
    assert!(sim.reasons().contains(&events::ROLLOUT_HELD));
    sim.now = 900;
    assert!(!analysis_due(
        &sim.plan,
        sim.status.state.as_ref(),
        false,
        &at(900)
    ));
    assert_eq!(sim.step().state.unwrap().wave, 0);
    sim.action = Some("resume@a".into());
    sim.step();
    assert_eq!(sim.reasons(), vec![events::ROLLOUT_RESUMED]);
    sim.verdict = Some(Verdict::Pass);
    sim.now = 960;
    let d = sim.step();
    assert_eq!(d.state.unwrap().wave, 1, "a pass after resume goes on");

    // Proceed
    let mut p = analysed();
    p.analysis.as_mut().unwrap().inconclusive =
        robofleet_crds::inference_service::InconclusiveAction::Proceed;
    let mut sim = to_canary_pause(p, 10);
    sim.verdict = Some(Verdict::Inconclusive);
    sim.now = 600;
    assert_eq!(sim.step().state.unwrap().wave, 1);

    // Abort
    let mut p = analysed();
    p.analysis.as_mut().unwrap().inconclusive =
        robofleet_crds::inference_service::InconclusiveAction::Abort;
    let mut sim = to_canary_pause(p, 10);
    sim.verdict = Some(Verdict::Inconclusive);
    sim.now = 600;
    let d = sim.step();
    assert_eq!(
        d.state.unwrap().abort.unwrap().cause,
        AbortCause::Inconclusive
    );
    assert_eq!(d.aborts, vec!["inconclusive"]);
}

#[test]
fn no_analysis_taken_means_no_verdict_and_the_wave_waits() {
    let mut sim = to_canary_pause(analysed(), 10);
    sim.verdict = None;
    sim.now = 10_000;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 0);
    assert!(d.analysis.due);
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_secs(1)),
        "never a hot loop"
    );
}

#[test]
fn a_short_pause_is_analysed_at_its_end() {
    let p = plan(json!({
        "waves": [
            {"name": "canary", "robots": 1, "pause": {"duration": "20s"}},
            {"name": "rest", "percent": 100}
        ],
        "analysis": {"interval": "1m", "metrics": [
            {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01}
        ]}
    }));
    let mut sim = to_canary_pause(p, 3);
    assert!(!analysis_due(
        &sim.plan,
        sim.status.state.as_ref(),
        false,
        &at(19)
    ));
    sim.now = 20;
    let d = sim.step();
    assert_eq!(
        d.state.unwrap().wave,
        1,
        "analysed and passed at the end of the 20s pause"
    );
}

#[test]
fn an_approval_pause_waits_for_promote_and_still_analyses() {
    let p = plan(json!({
        "waves": [
            {"name": "canary", "robots": 1, "pause": {"untilApproved": true}},
            {"name": "rest", "percent": 100}
        ],
        "analysis": {"interval": "1m", "metrics": [
            {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01}
        ]}
    }));
    let mut sim = Sim::new(p, 4, Some("r1"), "r2");
    for _ in 0..4 {
        sim.step();
        sim.settle();
    }
    let d = sim.step();
    assert_eq!(
        d.state.as_ref().unwrap().step,
        RolloutStep::AwaitingApproval
    );
    assert_eq!(d.phase, RolloutPhase::Paused);
    assert_eq!(
        d.reconciling,
        Cond {
            status: false,
            reason: reasons::AWAITING_PROMOTION
        }
    );
    assert!(
        d.message.ends_with("waiting for the promote action"),
        "{}",
        d.message
    );
    sim.now = 3600;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().last_verdict, Some(Verdict::Pass));
    assert_eq!(
        d.state.as_ref().unwrap().step,
        RolloutStep::AwaitingApproval
    );
    // a failure still aborts (failureLimit 1 by default)
    sim.verdict = Some(Verdict::Fail);
    sim.now = 3660;
    let d = sim.step();
    assert_eq!(d.state.unwrap().step, RolloutStep::Aborted);
}

#[test]
fn the_stable_baseline_is_frozen_per_wave_from_a_stable_sample() {
    let p = plan(json!({
        "waves": [
            {"name": "canary", "robots": 1, "pause": {"duration": "10m"}},
            {"name": "rest", "percent": 100, "maxUnavailable": "100%", "pause": {"duration": "10m"}}
        ],
        "analysis": {"interval": "1m", "metrics": [
            {"name": "stops", "builtin": "SafetyStopRate", "maxIncreasePerHour": 0.5}
        ]}
    }));
    let mut sim = Sim::new(p, 30, Some("r1"), "r2");
    let d = sim.step();
    assert!(d.analysis.baseline_wanted);
    // the sample: online stable robots, at most 20, none of the rollout's started waves
    assert_eq!(d.analysis.stable_sample.len(), 20);
    let base = |v: f64| StopBaseline {
        stops_per_hour: v,
        robot_hours: 400.0,
        measured_at: at(0),
    };
    sim.baseline = Some(base(0.25));
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().baseline, Some(base(0.25)));
    assert!(d.updates.is_empty(), "storing it is a state change");
    assert!(!d.analysis.baseline_wanted);
    // it stays frozen: a new measurement is not taken
    sim.baseline = Some(base(9.0));
    let d = sim.step();
    let canary = d.state.as_ref().unwrap().pinned[0].robots[0].clone();
    sim.step();
    sim.settle();
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().baseline, Some(base(0.25)));
    assert_eq!(d.analysis.robots, vec![canary.clone()]);
    // the next wave freezes its own
    sim.now = 600;
    let d = sim.step();
    assert_eq!(d.state.as_ref().unwrap().wave, 1);
    assert_eq!(d.state.as_ref().unwrap().baseline, None);
    assert!(d.analysis.baseline_wanted);
    assert!(!d.analysis.stable_sample.contains(&canary));
    let d = sim.step();
    assert_eq!(d.state.unwrap().baseline, Some(base(9.0)));
}

#[test]
fn without_auto_rollback_a_fallback_model_holds_as_model_load_failed() {
    let mut p = three_waves();
    p.auto_rollback = false;
    let mut sim = Sim::new(p, 6, Some("r1"), "r2");
    sim.bad_models.insert("r2".into());
    for _ in 0..3 {
        sim.step();
        sim.settle();
    }
    let d = sim.step();
    let hold = d.state.as_ref().unwrap().hold.clone().unwrap();
    assert_eq!(hold.reason, HoldReason::ModelLoadFailed);
    assert!(hold.message.contains("autoRollback is false"));
    assert_eq!(d.phase, RolloutPhase::Degraded);
    assert_eq!(
        d.stalled,
        Cond {
            status: true,
            reason: reasons::MODEL_LOAD_FAILED
        }
    );
    assert!(d.aborts.is_empty());
    // held: no more robots, no repeated Events
    sim.now = 3600;
    let d = sim.step();
    assert!(d.updates.is_empty() && d.events.is_empty());
    assert_eq!(sim.on("r2").len(), 1);
}
