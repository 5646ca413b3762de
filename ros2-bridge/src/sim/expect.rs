//! Judging the expectations against what the sim observed on the stop lock. Pure.

use serde::Serialize;

use super::config::{Expect, SimConfig};
use super::scene::{first_closer_than, nearest};

/// One judged expectation, as written to the result file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assertion {
    /// Which expectation.
    pub name: String,
    /// Verdict.
    pub passed: bool,
    /// Observed reaction (s) from the trigger, if any.
    pub observed_seconds: Option<f64>,
    /// Nearest obstacle when the lock read stop (m), for distance expectations.
    pub distance_at_stop: Option<f64>,
    /// Explanation.
    pub message: String,
}

/// The lock value in force at `t`: the latest sample at or before it.
fn state_at(samples: &[(f64, bool)], t: f64) -> Option<bool> {
    samples
        .iter()
        .take_while(|(ts, _)| *ts <= t)
        .last()
        .map(|(_, v)| *v)
}

/// The first time at or after `t` that the lock reads `value`.
fn first_at_or_after(samples: &[(f64, bool)], t: f64, value: bool) -> Option<f64> {
    if state_at(samples, t) == Some(value) {
        return Some(t);
    }
    samples
        .iter()
        .find(|(ts, v)| *ts > t && *v == value)
        .map(|(ts, _)| *ts)
}

/// Judges every expectation. `samples` are (seconds since the scenario start, lock value) in
/// receipt order; `ran` is how long the scenario ran.
pub fn judge(cfg: &SimConfig, samples: &[(f64, bool)], ran: f64) -> Vec<Assertion> {
    cfg.expect
        .iter()
        .map(|e| match *e {
            Expect::StopWhenCloser { within, distance } => {
                let name = format!("safetyStopWithin {within:?} whenDistanceBelow {distance}");
                match first_closer_than(&cfg.obstacles, distance).filter(|t| *t < ran) {
                    None => Assertion {
                        name,
                        passed: false,
                        observed_seconds: None,
                        distance_at_stop: None,
                        message: format!(
                            "no obstacle came closer than {distance} m during the run"
                        ),
                    },
                    Some(trigger) => {
                        stop_after(samples, trigger, within.as_secs_f64(), name, |t| {
                            nearest(&cfg.obstacles, t)
                        })
                    }
                }
            }
            Expect::StopOnFault { within } => {
                let name = format!("safetyStopWithin {within:?} whenSensorFault");
                match [cfg.stall_after, cfg.blind_after]
                    .into_iter()
                    .flatten()
                    .reduce(f64::min)
                    .filter(|t| *t < ran)
                {
                    None => Assertion {
                        name,
                        passed: false,
                        observed_seconds: None,
                        distance_at_stop: None,
                        message: "no stall or blind fault happened during the run".into(),
                    },
                    Some(trigger) => {
                        stop_after(samples, trigger, within.as_secs_f64(), name, |_| None)
                    }
                }
            }
            Expect::Release { within, not_before } => {
                let name = format!("safetyReleaseWithin {within:?} notBefore {not_before:?}");
                let gone = cfg
                    .obstacles
                    .iter()
                    .map(|o| o.disappear)
                    .filter(|t| t.is_finite())
                    .reduce(f64::max);
                match gone.filter(|t| *t < ran) {
                    None => Assertion {
                        name,
                        passed: false,
                        observed_seconds: None,
                        distance_at_stop: None,
                        message: "no obstacle disappeared during the run".into(),
                    },
                    Some(trigger) => match first_at_or_after(samples, trigger, false) {
                        Some(t) => {
                            let dt = t - trigger;
                            let ok =
                                dt <= within.as_secs_f64() && dt + 1e-9 >= not_before.as_secs_f64();
                            Assertion {
                                name,
                                passed: ok,
                                observed_seconds: Some(dt),
                                distance_at_stop: None,
                                message: format!("released {dt:.3} s after the last obstacle left"),
                            }
                        }
                        None => Assertion {
                            name,
                            passed: false,
                            observed_seconds: None,
                            distance_at_stop: None,
                            message: "the lock never released".into(),
                        },
                    },
                }
            }
        })
        .collect()
}

fn stop_after(
    samples: &[(f64, bool)],
    trigger: f64,
    within: f64,
    name: String,
    distance: impl Fn(f64) -> Option<f64>,
) -> Assertion {
    match first_at_or_after(samples, trigger, true) {
        Some(t) => {
            let dt = t - trigger;
            Assertion {
                name,
                passed: dt <= within,
                observed_seconds: Some(dt),
                distance_at_stop: distance(t),
                message: format!("stop {:.1} ms after the trigger", dt * 1e3),
            }
        }
        None => Assertion {
            name,
            passed: false,
            observed_seconds: None,
            distance_at_stop: None,
            message: "the lock never read stop after the trigger".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimFile;

    fn cfg() -> SimConfig {
        SimFile::parse(
            "sensor: {type: lidar2d, topic: /scan}\nduration: 6s\nunitsUnderTest: {stopTopic: /stop}\n\
             scenario: {obstacles: [{bearingDeg: 0, startDistance: 2.0, speed: 1.0, minDistance: 0.2, disappearAt: 3s}]}\n\
             faults: {stallAfter: 5s}\n\
             expect:\n  - {safetyStopWithin: 200ms, whenDistanceBelow: 0.35}\n  - {safetyReleaseWithin: 1500ms, safetyReleaseNotBefore: 1s}\n  - {safetyStopWithin: 300ms, whenSensorFault: true}\n",
        )
        .expect("parse")
        .validate("r")
        .expect("valid")
    }

    #[test]
    fn a_good_monitor_passes() {
        // Clear after start-up, stop 50 ms after the 0.35 m crossing (1.65 s), release 1.1 s after
        // the obstacle left (3 s), stop 250 ms after the stall (5 s).
        let samples = [
            (0.1, false),
            (1.70, true),
            (2.0, true),
            (4.1, false),
            (5.25, true),
        ];
        let a = judge(&cfg(), &samples, 6.0);
        assert!(a.iter().all(|x| x.passed), "{a:#?}");
        assert!((a[0].observed_seconds.expect("observed") - 0.05).abs() < 1e-6);
        assert!(a[0].distance_at_stop.expect("distance") < 0.35);
    }

    #[test]
    fn late_stop_early_release_and_missing_release_fail() {
        let late = [(0.1, false), (1.95, true), (3.2, false)];
        let a = judge(&cfg(), &late, 6.0);
        assert!(!a[0].passed, "300 ms is too late");
        assert!(!a[1].passed, "released before holdTime");
        assert!(!a[2].passed, "no stop after the stall");
        let never = [(0.1, false), (1.7, true)];
        let a = judge(&cfg(), &never, 6.0);
        assert!(a[0].passed && !a[1].passed);
        assert_eq!(a[1].message, "the lock never released");
    }

    #[test]
    fn already_stopped_counts_as_immediate() {
        let a = judge(&cfg(), &[(0.0, true)], 6.0);
        assert_eq!(a[0].observed_seconds, Some(0.0));
        assert!(a[0].passed);
    }

    #[test]
    fn triggers_after_the_run_fail_clearly() {
        let a = judge(&cfg(), &[(0.1, false)], 1.0);
        assert!(a.iter().all(|x| !x.passed));
        assert!(a[0].message.contains("no obstacle came closer"));
    }
}
