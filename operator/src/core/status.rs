//! InferenceService status from observations: counts, phase, conditions and message. Pure: the
//! caller passes what it saw and `now`; the result says whether anything changed, so status is
//! written only on change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::conditions::{DesiredCondition, reasons, set_condition, types};
use robofleet_crds::inference_service::{InferenceServiceStatus, LastFailure};
use robofleet_crds::rollout::RolloutPhase;

use super::robots::Robot;

/// What the operator saw of one robot pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodObservation {
    /// Node the pod is bound to.
    pub robot: String,
    /// Its `robofleet.io/revision` label.
    pub revision: String,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Its phase is Failed.
    pub failed: bool,
    /// What its sidecar confirmed: `Some(reason)` when it serves the fallback model because the
    /// requested one failed (reason as the sidecar counted it, may be empty).
    pub fell_back: Option<String>,
    /// Set when a container keeps failing (CrashLoopBackOff or repeated restarts): what it said.
    pub crashing: Option<String>,
}

/// Why the operator cannot place the resource at all (Stalled, Degraded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Condition reason (a constant from `robofleet_crds::conditions::reasons`).
    pub reason: &'static str,
    /// What to change, for people.
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// `metadata.generation` of the resource.
    pub generation: Option<i64>,
    /// The robots the resource selects.
    pub robots: &'a [&'a Robot],
    /// The pods it owns.
    pub pods: &'a [PodObservation],
    /// The revision every selected robot should run.
    pub revision: Option<&'a str>,
    /// Set when the resource cannot be placed.
    pub blocker: Option<Blocker>,
    /// The requested model, for messages (`uri`).
    pub model_uri: &'a str,
}

/// Computes the new status from `previous` and the observations; returns it and whether it differs.
pub fn compute(
    previous: Option<&InferenceServiceStatus>,
    observed: &Observed<'_>,
    now: &Time,
) -> (InferenceServiceStatus, bool) {
    let mut status = previous.cloned().unwrap_or_default();
    let before = status.clone();
    let generation = observed.generation;
    let robots = observed.robots;
    let counts = &mut status.robots;
    counts.total = robots.len() as u32;
    counts.offline = robots.iter().filter(|r| !r.ready).count() as u32;
    let current = |p: &&PodObservation| Some(p.revision.as_str()) == observed.revision;
    let selected = |p: &&PodObservation| robots.iter().any(|r| r.name == p.robot);
    counts.updated = observed
        .pods
        .iter()
        .filter(selected)
        .filter(current)
        .count() as u32;
    counts.ready = observed
        .pods
        .iter()
        .filter(selected)
        .filter(current)
        .filter(|p| p.ready)
        .count() as u32;
    counts.failed = observed
        .pods
        .iter()
        .filter(selected)
        .filter(|p| p.failed)
        .count() as u32;
    counts.pending = counts.total.saturating_sub(counts.updated);
    let fell_back: Vec<&PodObservation> = observed
        .pods
        .iter()
        .filter(selected)
        .filter(current)
        .filter(|p| p.fell_back.is_some())
        .collect();
    let crashing: Vec<&PodObservation> = observed
        .pods
        .iter()
        .filter(selected)
        .filter(current)
        .filter(|p| p.crashing.is_some())
        .collect();
    counts.failed += (fell_back.len() + crashing.len()) as u32;
    // The most recent failure, kept until a newer one replaces it (never one entry per robot).
    let failure = fell_back
        .first()
        .map(|p| {
            let why = p
                .fell_back
                .as_deref()
                .filter(|r| !r.is_empty())
                .unwrap_or("unknown");
            (
                p.robot.clone(),
                reasons::MODEL_LOAD_FAILED,
                format!("model failed to load ({why}); serving the fallback"),
            )
        })
        .or_else(|| {
            crashing.first().map(|p| {
                (
                    p.robot.clone(),
                    "CrashLoopBackOff",
                    p.crashing.clone().unwrap_or_default(),
                )
            })
        });
    if let Some((robot, reason, message)) = failure {
        let same = status
            .last_failure
            .as_ref()
            .is_some_and(|f| f.robot == robot && f.reason == reason && f.message == message);
        if !same {
            status.last_failure = Some(LastFailure {
                robot,
                reason: reason.to_owned(),
                message,
                time: now.clone(),
            });
        }
    }
    // Offline robots never hold the resource in Progressing: they converge when they come back.
    let online_not_ready = robots
        .iter()
        .filter(|r| r.ready)
        .filter(|r| {
            !observed
                .pods
                .iter()
                .any(|p| p.robot == r.name && p.ready && current(&p))
        })
        .count();

    let (phase, ready, reconciling, stalled, message) = if let Some(b) = &observed.blocker {
        (
            RolloutPhase::Degraded,
            (false, b.reason),
            (false, b.reason),
            (true, b.reason),
            b.message.clone(),
        )
    } else if !fell_back.is_empty() {
        let mut reasons_seen: Vec<&str> = fell_back
            .iter()
            .filter_map(|p| p.fell_back.as_deref())
            .filter(|r| !r.is_empty())
            .collect();
        reasons_seen.sort_unstable();
        reasons_seen.dedup();
        let m = format!(
            "model {} failed to load on {}/{} updated robots (reason: {}); they serve the fallback \
             model. Fix spec.model (uri and sha256) in git",
            observed.model_uri,
            fell_back.len(),
            status.robots.updated,
            if reasons_seen.is_empty() {
                "unknown".to_owned()
            } else {
                reasons_seen.join(", ")
            },
        );
        (
            RolloutPhase::Degraded,
            (counts_ready_all_online(&status), reasons::MODEL_LOAD_FAILED),
            (false, reasons::MODEL_LOAD_FAILED),
            (true, reasons::MODEL_LOAD_FAILED),
            m,
        )
    } else if robots.is_empty() {
        let m = "the robot selector matches no robot (robots are Nodes labelled robofleet.io/robot=true)";
        (
            RolloutPhase::Degraded,
            (false, reasons::NO_MATCHING_ROBOTS),
            (false, reasons::NO_MATCHING_ROBOTS),
            (true, reasons::NO_MATCHING_ROBOTS),
            m.to_owned(),
        )
    } else if online_not_ready == 0 {
        (
            RolloutPhase::Healthy,
            (true, reasons::AVAILABLE),
            (false, reasons::ROLLOUT_COMPLETE),
            (false, reasons::AS_EXPECTED),
            summary(&status, observed.revision),
        )
    } else {
        (
            RolloutPhase::Progressing,
            (
                counts_ready_all_online(&status),
                reasons::ROLLOUT_IN_PROGRESS,
            ),
            (true, reasons::ROLLOUT_IN_PROGRESS),
            (false, reasons::AS_EXPECTED),
            summary(&status, observed.revision),
        )
    };
    let conds = &mut status.common.conditions;
    for (type_, (value, reason)) in [
        (types::READY, ready),
        (types::RECONCILING, reconciling),
        (types::STALLED, stalled),
    ] {
        let reason = if type_ == types::READY && value {
            reasons::AVAILABLE
        } else {
            reason
        };
        set_condition(
            conds,
            DesiredCondition {
                type_,
                status: value,
                reason,
                message: message.clone(),
            },
            generation,
            now,
        );
    }
    status.phase = Some(phase);
    status.common.message = Some(message);
    status.common.observed_generation = generation;
    let changed = status != before;
    (status, changed)
}

fn counts_ready_all_online(status: &InferenceServiceStatus) -> bool {
    let c = &status.robots;
    c.ready >= c.total.saturating_sub(c.offline) && c.total > 0
}

fn summary(status: &InferenceServiceStatus, revision: Option<&str>) -> String {
    let c = &status.robots;
    let mut m = format!(
        "{}/{} robots ready at revision {}",
        c.ready,
        c.total,
        revision.unwrap_or("-")
    );
    if c.offline > 0 {
        m.push_str(&format!(", {} offline", c.offline));
    }
    if c.failed > 0 {
        m.push_str(&format!(", {} failed", c.failed));
    }
    if let Some(f) = &status.last_failure {
        m.push_str(&format!("; last failure on {}: {}", f.robot, f.message));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use robofleet_crds::conditions::find_condition;

    fn robot(name: &str, ready: bool) -> Robot {
        Robot {
            name: name.into(),
            labels: Default::default(),
            ready,
        }
    }
    fn pod(robot: &str, rev: &str, ready: bool) -> PodObservation {
        PodObservation {
            robot: robot.into(),
            revision: rev.into(),
            ready,
            failed: false,
            fell_back: None,
            crashing: None,
        }
    }
    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }
    fn cond<'s>(s: &'s InferenceServiceStatus, t: &str) -> (&'s str, &'s str) {
        let c = find_condition(&s.common.conditions, t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn all_online_robots_ready_is_healthy_and_offline_robots_do_not_block() {
        let (a, b, c) = (robot("a", true), robot("b", true), robot("c", false));
        let robots = [&a, &b, &c];
        let pods = [
            pod("a", "r1", true),
            pod("b", "r1", true),
            pod("c", "r1", false),
        ];
        let obs = Observed {
            generation: Some(3),
            robots: &robots,
            pods: &pods,
            revision: Some("r1"),
            blocker: None,
            model_uri: "file:///m.onnx",
        };
        let (s, changed) = compute(None, &obs, &now());
        assert!(changed);
        assert_eq!(s.phase, Some(RolloutPhase::Healthy));
        assert_eq!(
            (
                s.robots.total,
                s.robots.ready,
                s.robots.offline,
                s.robots.updated
            ),
            (3, 2, 1, 3)
        );
        assert_eq!(cond(&s, types::READY), ("True", reasons::AVAILABLE));
        assert_eq!(cond(&s, types::STALLED), ("False", reasons::AS_EXPECTED));
        assert!(s.common.message.as_deref().unwrap().contains("1 offline"));
        assert_eq!(s.common.observed_generation, Some(3));
        // the same observations again change nothing, so nothing is written
        let (_, changed) = compute(Some(&s), &obs, &now());
        assert!(!changed);
    }

    #[test]
    fn pods_at_an_old_revision_are_progressing() {
        let (a, b) = (robot("a", true), robot("b", true));
        let robots = [&a, &b];
        let pods = [pod("a", "r2", true), pod("b", "r1", true)];
        let obs = Observed {
            generation: Some(4),
            robots: &robots,
            pods: &pods,
            revision: Some("r2"),
            blocker: None,
            model_uri: "file:///m.onnx",
        };
        let (s, _) = compute(None, &obs, &now());
        assert_eq!(s.phase, Some(RolloutPhase::Progressing));
        assert_eq!((s.robots.updated, s.robots.pending), (1, 1));
        assert_eq!(
            cond(&s, types::RECONCILING),
            ("True", reasons::ROLLOUT_IN_PROGRESS)
        );
    }

    #[test]
    fn a_fallback_on_an_updated_robot_is_model_load_failed() {
        let (a, b) = (robot("a", true), robot("b", true));
        let robots = [&a, &b];
        let mut bad = pod("a", "r2", true);
        bad.fell_back = Some("verify".into());
        let pods = [bad, pod("b", "r2", true)];
        let obs = Observed {
            generation: Some(5),
            robots: &robots,
            pods: &pods,
            revision: Some("r2"),
            blocker: None,
            model_uri: "file:///m.onnx",
        };
        let (s, _) = compute(None, &obs, &now());
        assert_eq!(s.phase, Some(RolloutPhase::Degraded));
        assert_eq!(
            cond(&s, types::STALLED),
            ("True", reasons::MODEL_LOAD_FAILED)
        );
        let m = s.common.message.unwrap();
        assert!(
            m.contains("file:///m.onnx") && m.contains("1/2") && m.contains("verify"),
            "{m}"
        );
        assert_eq!(s.robots.failed, 1);
    }

    #[test]
    fn crash_looping_pods_are_counted_and_named_in_last_failure() {
        let (a, b) = (robot("a", true), robot("b", true));
        let robots = [&a, &b];
        let mut bad = pod("b", "r1", false);
        bad.crashing = Some("container sidecar exited with code 1: model not found".into());
        let pods = [pod("a", "r1", true), bad];
        let obs = Observed {
            generation: Some(1),
            robots: &robots,
            pods: &pods,
            revision: Some("r1"),
            blocker: None,
            model_uri: "file:///m.onnx",
        };
        let (s, _) = compute(None, &obs, &now());
        assert_eq!(s.phase, Some(RolloutPhase::Progressing));
        assert_eq!(s.robots.failed, 1);
        let f = s.last_failure.clone().unwrap();
        assert_eq!(
            (f.robot.as_str(), f.reason.as_str()),
            ("b", "CrashLoopBackOff")
        );
        assert!(
            s.common
                .message
                .clone()
                .unwrap()
                .contains("model not found")
        );
        // the same failure again does not move its time: nothing to write
        let (_, changed) = compute(Some(&s), &obs, &now());
        assert!(!changed);
    }

    #[test]
    fn no_robots_and_blockers_stall() {
        let obs = Observed {
            generation: Some(1),
            robots: &[],
            pods: &[],
            revision: Some("r1"),
            blocker: None,
            model_uri: "file:///m.onnx",
        };
        let (s, _) = compute(None, &obs, &now());
        assert_eq!(s.phase, Some(RolloutPhase::Degraded));
        assert_eq!(
            cond(&s, types::STALLED),
            ("True", reasons::NO_MATCHING_ROBOTS)
        );
        let a = robot("a", true);
        let robots = [&a];
        let blocker = Blocker {
            reason: reasons::NAMESPACE_NOT_ALLOWED,
            message: "label the namespace".into(),
        };
        let obs = Observed {
            generation: Some(1),
            robots: &robots,
            pods: &[],
            revision: None,
            blocker: Some(blocker),
            model_uri: "file:///m.onnx",
        };
        let (s, _) = compute(None, &obs, &now());
        assert_eq!(
            cond(&s, types::STALLED),
            ("True", reasons::NAMESPACE_NOT_ALLOWED)
        );
        assert_eq!(cond(&s, types::READY).0, "False");
        assert_eq!(s.common.message.as_deref(), Some("label the namespace"));
    }
}
