//! The status contract shared by all three kinds: condition types, the closed set of reasons, the
//! reusable [`ResourceStatus`] block, and [`set_condition`], which moves `lastTransitionTime` only
//! when a condition's status flips.
//!
//! Polarity: only `Ready` is positive (`True` is good). `Reconciling=True` means work is in
//! progress; `Stalled=True` means the operator cannot make progress without a change from a person
//! (the object is then `Degraded`, or `Failed` for a SensorSim).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types written by the operator.
pub mod types {
    /// Availability: the selected robots serve an approved revision (positive polarity).
    pub const READY: &str = "Ready";
    /// Progress: a rollout, wave or sim run is under way. `False` with reason `Paused` when paused.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot proceed without a change to the spec or the cluster.
    pub const STALLED: &str = "Stalled";
    /// Some robots run a slower execution provider than the first one listed.
    pub const EXECUTION_PROVIDER_FALLBACK: &str = "ExecutionProviderFallback";
    /// A SafetyPolicy change that relaxes safety waits for `robofleet.io/approve`.
    pub const APPROVAL_PENDING: &str = "ApprovalPending";
    /// A SafetyPolicy selects robots by labels a kubelet may set on its own Node.
    pub const SELF_SETTABLE_SELECTOR: &str = "SelfSettableSelector";

    /// Every condition type, for tests and docs.
    pub const ALL: &[&str] = &[
        READY,
        RECONCILING,
        STALLED,
        EXECUTION_PROVIDER_FALLBACK,
        APPROVAL_PENDING,
        SELF_SETTABLE_SELECTOR,
    ];
}

/// The closed set of condition `reason`s (CamelCase, as `metav1.Condition` requires).
pub mod reasons {
    /// Ready: the selected robots serve an approved revision.
    pub const AVAILABLE: &str = "Available";
    /// Nothing unusual (typically on `Stalled=False`).
    pub const AS_EXPECTED: &str = "AsExpected";
    /// A rollout is moving robots to a new revision.
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    /// The rollout finished; every selected robot runs the stable revision.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// Paused by `spec.paused` or the pause verb.
    pub const PAUSED: &str = "Paused";
    /// A wave waits for `robofleet.io/action: promote@...` or `untilApproved` approval.
    pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
    /// The model failed to download, verify, load or warm up.
    pub const MODEL_LOAD_FAILED: &str = "ModelLoadFailed";
    /// The spec passed the API server but cannot be honoured (for example a duration overflow).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The spec uses a field this operator version does not implement.
    pub const UNSUPPORTED_FIELD: &str = "UnsupportedField";
    /// The rollout was aborted and updated robots returned to the stable revision.
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    /// Analysis found a threshold exceeded.
    pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
    /// The preflight SensorSim of a new revision did not succeed.
    pub const PREFLIGHT_FAILED: &str = "PreflightFailed";
    /// A robot's sensor topic stopped or became stale.
    pub const SENSOR_STALE: &str = "SensorStale";
    /// A LIDAR reports too many invalid readings in a zone.
    pub const SENSOR_INVALID: &str = "SensorInvalid";
    /// More publishers than `source.maxPublishers` on the scan topic.
    pub const UNEXPECTED_PUBLISHER: &str = "UnexpectedPublisher";
    /// The robot selector matches no robot.
    pub const NO_MATCHING_ROBOTS: &str = "NoMatchingRobots";
    /// The namespace lacks `robofleet.io/robot-workloads=true`.
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// The runtime image is not in the operator's allow-list.
    pub const IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";
    /// Another resource already claims the same robots (e.g. the same stop topic).
    pub const CONFLICT: &str = "Conflict";
    /// A SensorSim targets robots that are not labelled `robofleet.io/simulated=true`.
    pub const UNSAFE_TARGET: &str = "UnsafeTarget";
    /// No robot has a consumer of the stop lock.
    pub const NO_STOP_CONSUMER: &str = "NoStopConsumer";
    /// Some robots fell back to a slower execution provider.
    pub const PROVIDER_FALLBACK: &str = "ProviderFallback";
    /// A relaxing SafetyPolicy change waits for approval.
    pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
    /// The selector uses labels a kubelet can set on its own Node.
    pub const SELF_SETTABLE_LABELS: &str = "SelfSettableLabels";
    /// Fewer robots enforce the policy than `minEnforcingPercent`.
    pub const NOT_ENOUGH_ENFORCING: &str = "NotEnoughEnforcing";
    /// A SensorSim template never runs by itself.
    pub const TEMPLATE: &str = "Template";
    /// The sim runs.
    pub const RUNNING: &str = "Running";
    /// The sim finished and every expectation held.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The sim finished and an expectation failed, or the sim crashed.
    pub const FAILED: &str = "Failed";

    /// Every reason, for tests and docs.
    pub const ALL: &[&str] = &[
        AVAILABLE,
        AS_EXPECTED,
        ROLLOUT_IN_PROGRESS,
        ROLLOUT_COMPLETE,
        PAUSED,
        AWAITING_PROMOTION,
        MODEL_LOAD_FAILED,
        INVALID_SPEC,
        UNSUPPORTED_FIELD,
        ROLLOUT_ABORTED,
        ANALYSIS_FAILED,
        PREFLIGHT_FAILED,
        SENSOR_STALE,
        SENSOR_INVALID,
        UNEXPECTED_PUBLISHER,
        NO_MATCHING_ROBOTS,
        NAMESPACE_NOT_ALLOWED,
        IMAGE_NOT_ALLOWED,
        CONFLICT,
        UNSAFE_TARGET,
        NO_STOP_CONSUMER,
        PROVIDER_FALLBACK,
        APPROVAL_REQUIRED,
        SELF_SETTABLE_LABELS,
        NOT_ENOUGH_ENFORCING,
        TEMPLATE,
        RUNNING,
        SUCCEEDED,
        FAILED,
    ];
}

/// The status fields every robofleet kind shares (each kind adds its `phase` and counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` this status describes; written in the same patch as `phase` and
    /// `conditions`, so tools can tell a stale status from a current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One line for people: what is happening and, when something is wrong, what to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard conditions: `Ready` (positive polarity), `Reconciling`, `Stalled` (both negative
    /// polarity: `True` means not done / stuck), plus kind-specific ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A condition as the operator wants it; [`set_condition`] turns it into a `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition<'a> {
    /// Condition type (one of [`types`]).
    pub type_: &'a str,
    /// `true` for `"True"`, `false` for `"False"`.
    pub status: bool,
    /// CamelCase reason (one of [`reasons`]).
    pub reason: &'a str,
    /// Human-readable detail.
    pub message: String,
}

/// Sets a condition in `conditions`. `lastTransitionTime` becomes `now` only when the condition is
/// new or its status flips; reason, message and `observedGeneration` are updated in place. Returns
/// whether anything changed (so status is written only on change).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: DesiredCondition<'_>,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = if desired.status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            let mut changed = false;
            if existing.status != status {
                existing.status = status.to_owned();
                existing.last_transition_time = now.clone();
                changed = true;
            }
            if existing.reason != desired.reason {
                existing.reason = desired.reason.to_owned();
                changed = true;
            }
            if existing.message != desired.message {
                existing.message = desired.message;
                changed = true;
            }
            if existing.observed_generation != observed_generation {
                existing.observed_generation = observed_generation;
                changed = true;
            }
            changed
        }
        None => {
            conditions.push(Condition {
                type_: desired.type_.to_owned(),
                status: status.to_owned(),
                reason: desired.reason.to_owned(),
                message: desired.message,
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Finds a condition by type.
pub fn find_condition<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition exists with status `"True"`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid time"))
    }

    fn ready(status: bool, reason: &str, message: &str) -> DesiredCondition<'static> {
        DesiredCondition {
            type_: types::READY,
            status,
            reason: if reason == reasons::AVAILABLE {
                reasons::AVAILABLE
            } else {
                reasons::NO_MATCHING_ROBOTS
            },
            message: message.to_owned(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            ready(true, reasons::AVAILABLE, "3/3"),
            Some(1),
            &at(100)
        ));
        assert_eq!(cs[0].last_transition_time, at(100));
        // same status, same everything: no change at all
        assert!(!set_condition(
            &mut cs,
            ready(true, reasons::AVAILABLE, "3/3"),
            Some(1),
            &at(200)
        ));
        // same status, new message and generation: changed, but the transition time stays
        assert!(set_condition(
            &mut cs,
            ready(true, reasons::AVAILABLE, "4/4"),
            Some(2),
            &at(300)
        ));
        assert_eq!(cs[0].last_transition_time, at(100));
        assert_eq!(cs[0].message, "4/4");
        assert_eq!(cs[0].observed_generation, Some(2));
        // status flips: the transition time moves
        assert!(set_condition(
            &mut cs,
            ready(false, "x", "none match"),
            Some(2),
            &at(400)
        ));
        assert_eq!(cs[0].last_transition_time, at(400));
        assert_eq!(cs[0].status, "False");
        assert_eq!(cs[0].reason, reasons::NO_MATCHING_ROBOTS);
        assert_eq!(cs.len(), 1);
        assert!(!is_true(&cs, types::READY));
    }

    #[test]
    fn conditions_of_different_types_are_kept_apart() {
        let mut cs = Vec::new();
        set_condition(&mut cs, ready(true, reasons::AVAILABLE, ""), None, &at(1));
        let stalled = DesiredCondition {
            type_: types::STALLED,
            status: false,
            reason: reasons::AS_EXPECTED,
            message: String::new(),
        };
        set_condition(&mut cs, stalled, None, &at(2));
        assert_eq!(cs.len(), 2);
        assert!(is_true(&cs, types::READY));
        assert_eq!(
            find_condition(&cs, types::STALLED).map(|c| c.status.as_str()),
            Some("False")
        );
        assert!(find_condition(&cs, types::RECONCILING).is_none());
    }

    #[test]
    fn reasons_and_types_are_unique_camel_case() {
        for list in [reasons::ALL, types::ALL] {
            let mut seen = std::collections::BTreeSet::new();
            for r in list {
                assert!(seen.insert(*r), "duplicate {r}");
                assert!(
                    r.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                    "{r}"
                );
                assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
                assert!(r.len() <= 64);
            }
        }
    }
}
