//! Crashes and restarts at any step: no robot is updated twice, none is skipped, and
//! `maxUnavailable` holds, whatever the fleet does meanwhile.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use robofleet_crds::inference_service::{RolloutStep, Verdict};
use serde_json::json;

use super::*;

fn analysed_three() -> Plan {
    plan(json!({
        "waves": [
            {"name": "canary", "robots": 2, "pause": {"duration": "5m"}},
            {"name": "half", "percent": 50, "maxUnavailable": 3, "pause": {"duration": "5m"}},
            {"name": "rest", "percent": 100, "maxUnavailable": "30%"}
        ],
        "analysis": {"interval": "1m", "metrics": [
            {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01}
        ]},
        "gates": {"robotState": {"allowWhen": ["idle"], "deferTimeout": "20m", "onTimeout": "Skip"}}
    }))
}

impl Sim {
    /// Online robots not Ready, by wave of the current rollout, never above the wave's
    /// `maxUnavailable`. Robots in `flapped` went offline at some point: one that leaves while
    /// being replaced frees its budget and comes back unavailable, beyond the operator's control,
    /// so they are left out.
    fn assert_within_max_unavailable(&self, flapped: &BTreeSet<String>) {
        let Some(s) = &self.status.state else {
            return;
        };
        let waves = self.plan.waves_for(s.all_at_once);
        let m = Membership {
            waves,
            pins: &s.pinned,
            revision: &s.revision,
        };
        let mut members: BTreeMap<usize, usize> = BTreeMap::new();
        let mut down: BTreeMap<usize, usize> = BTreeMap::new();
        for r in self.robots.values() {
            let w = m.wave_of(&r.name);
            *members.entry(w).or_default() += 1;
            if r.online && !flapped.contains(&r.name) && !r.pod.as_ref().is_some_and(|p| p.ready) {
                *down.entry(w).or_default() += 1;
            }
        }
        for (w, n) in down {
            let limit = waves[w].max_unavailable.of(members[&w]);
            assert!(n <= limit, "wave {w}: {n} unavailable > {limit}");
        }
    }
}

#[test]
fn a_restart_at_every_step_updates_no_robot_twice() {
    // crash after every status write (updates lost) every other step, and between delete and
    // create every third: the rollout still finishes with each robot replaced exactly once
    let mut sim = Sim::new(analysed_three(), 15, Some("r1"), "r2");
    let mut steps = Vec::new();
    for i in 0..400 {
        sim.drop_updates = i % 2 == 1;
        sim.delete_only = i % 3 == 2;
        let d = sim.step();
        steps.push(d.state.as_ref().map(|s| (s.wave, s.step)));
        sim.assert_within_max_unavailable(&BTreeSet::new());
        sim.settle();
        sim.now += 30;
        if d.stable.as_deref() == Some("r2") && sim.on("r2").len() == 15 {
            break;
        }
    }
    assert_eq!(
        sim.status.stable.as_deref(),
        Some("r2"),
        "{:?}",
        sim.last.as_ref().map(|d| &d.message)
    );
    assert_eq!(sim.on("r2").len(), 15);
    assert!(sim.replaced.values().all(|n| *n == 1), "{:?}", sim.replaced);
    assert_eq!(sim.replaced.len(), 15);
    // every step of the machine was passed through
    for want in [RolloutStep::Updating, RolloutStep::Analyzing] {
        for wave in 0..2 {
            assert!(steps.contains(&Some((wave, want))), "{wave} {want:?}");
        }
    }
}

#[test]
fn a_state_read_back_at_each_step_resumes_the_same_wave() {
    // the same status read by two operators (the old one crashed after writing it) decides the
    // same: serialise, deserialise, step, at every point of a rollout
    let mut sim = Sim::new(analysed_three(), 12, Some("r1"), "r2");
    for _ in 0..200 {
        let now = sim.now();
        let state = sim.status.state.clone();
        let json = serde_json::to_string(&state).unwrap();
        let back: Option<robofleet_crds::inference_service::RolloutState> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let robots: Vec<RobotObservation> = sim.robots.values().cloned().collect();
        let mk = |st: Option<&robofleet_crds::inference_service::RolloutState>| {
            let input = Input {
                plan: &sim.plan,
                spec_paused: false,
                desired: "r2",
                stable: sim.status.stable.as_deref(),
                state: st,
                aborted: None,
                last_action: None,
                action: None,
                previous_waves: &sim.status.waves,
                robots: &robots,
                analysis: None,
                baseline: None,
                preflight: &[],
            };
            step(&input, &now)
        };
        assert_eq!(mk(state.as_ref()), mk(back.as_ref()));
        sim.step();
        sim.settle();
        sim.now += 45;
        if sim.status.stable.as_deref() == Some("r2") {
            return;
        }
    }
    panic!("never finished");
}

#[derive(Clone, Debug)]
enum Event {
    /// Toggle a robot's Node Ready.
    Online(usize),
    /// Toggle a robot between idle and busy.
    Busy(usize),
    /// A crash after the status write: this step's updates are lost.
    Crash,
    /// A crash between deleting and creating the pods of this step.
    DeleteOnly,
    /// Pods become Ready.
    Settle,
    /// Time passes.
    Wait(i64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..40).prop_map(Event::Online),
        (0usize..40).prop_map(Event::Busy),
        Just(Event::Crash),
        Just(Event::DeleteOnly),
        Just(Event::Settle),
        Just(Event::Settle),
        (1i64..900).prop_map(Event::Wait),
    ]
}

fn plans() -> impl Strategy<Value = Plan> {
    prop_oneof![
        Just(analysed_three()),
        Just(three_waves()),
        Just(plan(json!({"waves": [
            {"name": "a", "percent": 20, "maxUnavailable": "50%", "pause": {"duration": "2m"}},
            {"name": "b", "robots": 3, "maxUnavailable": 2},
            {"name": "c", "percent": 100, "maxUnavailable": 4}
        ], "gates": {"robotState": {"allowWhen": ["idle"], "deferTimeout": "10m", "onTimeout": "Force"}}}))),
        Just(plan(json!({"strategy": "AllAtOnce"}))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever robots do (offline, busy) and wherever the operator crashes, no robot is
    /// replaced twice, `maxUnavailable` holds, and once the fleet is calm the rollout ends with
    /// every robot on the new revision.
    #[test]
    fn no_robot_is_updated_twice_and_none_is_skipped(
        robots in 1usize..40,
        plan in plans(),
        events in proptest::collection::vec(event(), 0..120),
    ) {
        let mut sim = Sim::new(plan, robots, Some("r1"), "r2");
        let mut flapped = BTreeSet::new();
        for e in events {
            sim.drop_updates = false;
            sim.delete_only = false;
            match e {
                Event::Online(i) if i < robots => {
                    flapped.insert(name(i));
                    let r = sim.robot(i);
                    r.online = !r.online;
                }
                Event::Busy(i) if i < robots => {
                    let r = sim.robot(i);
                    r.state_label = Some(if r.state_label.as_deref() == Some("busy") { "idle" } else { "busy" }.into());
                }
                Event::Crash => sim.drop_updates = true,
                Event::DeleteOnly => sim.delete_only = true,
                Event::Settle => sim.settle(),
                Event::Wait(s) => sim.now += s,
                _ => {}
            }
            sim.step();
            sim.assert_within_max_unavailable(&flapped);
            prop_assert!(sim.replaced.values().all(|n| *n <= 1), "{:?}", sim.replaced);
        }
        // calm: everyone online and idle, no crashes
        sim.drop_updates = false;
        sim.delete_only = false;
        for i in 0..robots {
            let r = sim.robot(i);
            r.online = true;
            r.state_label = Some("idle".into());
        }
        sim.until_stable("r2", 400);
        prop_assert!(sim.replaced.values().all(|n| *n == 1), "{:?}", sim.replaced);
        prop_assert_eq!(sim.replaced.len(), robots);
        // the analysis always passed: nothing was aborted
        prop_assert!(sim.status.aborted.is_none());
        prop_assert_eq!(sim.verdict, Some(Verdict::Pass));
    }
}
