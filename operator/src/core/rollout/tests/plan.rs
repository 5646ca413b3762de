//! Resolving `spec.rollout`, and wave membership.

use std::time::Duration;

use robofleet_crds::inference_service::{InconclusiveAction, NoDataPolicy, OnTimeout};
use serde_json::json;

use super::*;

#[test]
fn the_default_rollout_is_a_one_robot_canary_then_the_rest() {
    let p = Plan::from_spec(&RolloutSpec::default()).unwrap();
    assert!(!p.all_at_once);
    assert_eq!(p.waves.len(), 2);
    assert_eq!(p.waves[0].size, WaveSize::Robots(1));
    assert_eq!(p.waves[0].max_unavailable, MaxUnavailable::Count(1));
    assert_eq!(
        p.waves[0].pause,
        Some(PausePlan::For(Duration::from_secs(300)))
    );
    assert_eq!(p.waves[1].size, WaveSize::Percent(100));
    assert_eq!(p.waves[1].max_unavailable, MaxUnavailable::Percent(10));
    assert!(p.analysis.is_none());
    assert!(p.auto_rollback);
    // no gates written: no state gate, but stop locks defer, 30 minutes, Skip
    assert_eq!(p.gates.allow_when, None);
    assert!(p.gates.defer_on_stop);
    assert_eq!(p.gates.defer_timeout, DEFAULT_DEFER_TIMEOUT);
    assert_eq!(p.gates.on_timeout, OnTimeout::Skip);
}

#[test]
fn the_full_example_resolves() {
    let p = plan(json!({
        "strategy": "Waves",
        "waves": [
            {"name": "canary", "robots": 1, "pause": {"duration": "10m"}},
            {"name": "early", "percent": 25, "maxUnavailable": 1, "pause": {"untilApproved": true}},
            {"name": "rest", "percent": 100, "maxUnavailable": "20%"}
        ],
        "analysis": {
            "interval": "30s", "noDataPolicy": "Fail", "inconclusiveAction": "Proceed", "failureLimit": 2,
            "metrics": [
                {"name": "errors", "builtin": "ErrorRatio", "maxRatio": 0.01, "minSamples": 200},
                {"name": "stops", "builtin": "SafetyStopRate", "maxIncreasePerHour": 0.5}
            ]
        },
        "gates": {"robotState": {"allowWhen": ["idle"], "deferTimeout": "1h", "onTimeout": "Fail"}, "safetyStopActive": "Ignore"},
        "preflight": [{"sensorSimTemplate": {"name": "lidar-approach"}}],
        "autoRollback": false
    }));
    assert_eq!(p.waves[1].pause, Some(PausePlan::UntilApproved));
    assert_eq!(p.waves[1].max_unavailable, MaxUnavailable::Count(1));
    assert_eq!(p.waves[2].max_unavailable, MaxUnavailable::Percent(20));
    let a = p.analysis.as_ref().unwrap();
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.no_data, NoDataPolicy::Fail);
    assert_eq!(a.inconclusive, InconclusiveAction::Proceed);
    assert_eq!(a.failure_limit, 2);
    assert!(a.needs_baseline());
    assert_eq!(p.gates.allow_when, Some(vec!["idle".to_owned()]));
    assert!(!p.gates.defer_on_stop);
    assert_eq!(p.gates.defer_timeout, Duration::from_secs(3600));
    assert_eq!(p.gates.on_timeout, OnTimeout::Fail);
    assert_eq!(p.preflight, vec!["lidar-approach"]);
    assert!(!p.auto_rollback);
}

#[test]
fn all_at_once_is_one_unlimited_wave_and_bad_values_are_typed_errors() {
    let p = plan(json!({"strategy": "AllAtOnce"}));
    assert!(p.all_at_once);
    assert_eq!(p.waves.len(), 1);
    assert_eq!(p.waves[0].max_unavailable, MaxUnavailable::Unlimited);
    // the first revision of a Waves service also runs as one wave
    let w = three_waves();
    assert_eq!(w.waves_for(true).len(), 1);
    assert_eq!(w.waves_for(false).len(), 3);
    for (spec, kind) in [
        (
            json!({"waves": [{"name": "a", "percent": 100, "pause": {"duration": "9999999h"}}]}),
            "duration",
        ),
        (
            json!({"waves": [{"name": "a", "percent": 100, "maxUnavailable": "0%"}]}),
            "max_unavailable",
        ),
        (
            json!({"waves": [{"name": "a", "percent": 100, "maxUnavailable": "x"}]}),
            "max_unavailable",
        ),
        (
            json!({"waves": [{"name": "a", "percent": 100, "maxUnavailable": 0}]}),
            "max_unavailable",
        ),
        (json!({"waves": []}), "no_waves"),
        (
            json!({"waves": [{"name": "a", "percent": 100}], "analysis": {"metrics": [{"name": "e", "builtin": "ErrorRatio"}]}}),
            "missing_threshold",
        ),
    ] {
        let s: RolloutSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(Plan::from_spec(&s).map_err(|e| e.kind()), Err(kind));
    }
    // a string count is a count
    let p = plan(json!({"waves": [{"name": "a", "percent": 100, "maxUnavailable": "3"}]}));
    assert_eq!(p.waves[0].max_unavailable, MaxUnavailable::Count(3));
}

#[test]
fn membership_is_a_stable_hash_threshold() {
    // the hash is fixed: sha256("r2/robot-000")[..8], big-endian
    assert_eq!(robot_hash("r2", "robot-000"), robot_hash("r2", "robot-000"));
    assert_ne!(robot_hash("r2", "robot-000"), robot_hash("r3", "robot-000"));
    assert!(below_percent(0, 1));
    assert!(!below_percent(u64::MAX, 99));
    assert!(below_percent(u64::MAX, 100));
    assert!(!below_percent(0, 0));
    // exactly at the threshold is outside: 2^64 / 4 is 25%
    assert!(!below_percent(1 << 62, 25));
    assert!(below_percent((1 << 62) - 1, 25));
    // over a large fleet the waves hold about their share and are nested
    let p = plan(json!({"waves": [
        {"name": "a", "percent": 10}, {"name": "b", "percent": 40}, {"name": "c", "percent": 100}
    ]}));
    let m = Membership {
        waves: &p.waves,
        pins: &[],
        revision: "r7",
    };
    let names: Vec<String> = (0..10_000).map(|i| format!("node-{i}")).collect();
    let mut counts = [0usize; 3];
    for n in &names {
        counts[m.wave_of(n)] += 1;
    }
    assert!((900..1100).contains(&counts[0]), "{counts:?}");
    assert!((2800..3200).contains(&counts[1]), "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 10_000);
    // pinned names win over their hash, in wave order
    let p = plan(json!({"waves": [{"name": "c", "robots": 2}, {"name": "rest", "percent": 100}]}));
    let pins = [robofleet_crds::inference_service::PinnedWave {
        wave: 0,
        robots: vec!["node-5".into()],
    }];
    let m = Membership {
        waves: &p.waves,
        pins: &pins,
        revision: "r7",
    };
    assert_eq!(m.wave_of("node-5"), 0);
    assert_eq!(m.wave_of("node-6"), 1);
    // smallest picks by hash, deterministic and deduplicated
    let picked = smallest("r7", ["b", "a", "c", "a"], 2);
    assert_eq!(picked, smallest("r7", ["c", "a", "b"], 2));
    assert_eq!(picked.len(), 2);
}
