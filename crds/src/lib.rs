//! robofleet's API: the custom resources fleet engineers write, and the names every robofleet
//! component agrees on.
//!
//! Three kinds in `robofleet.io/v1alpha1`, one module each: [`InferenceService`] (a model served on
//! robots and rolled out in waves), [`SafetyPolicy`] (zones enforced by a safety monitor) and
//! [`SensorSim`] (a sandboxed sensor simulation with expectations). Validation lives in the CRD
//! schema (OpenAPI plus CEL `x-kubernetes-validations`), so the API server refuses bad specs at
//! `kubectl apply`; durations are Go-style strings checked by a `pattern` and parsed identically by
//! [`duration::parse`]. [`conditions`] holds the status contract the three kinds share.
//! [`generate`] turns the types into CRD YAML and a reference page; the `crdgen` binary writes
//! them to `deploy/crds/` and `docs/reference/crds.md`. [`validate`] checks what the schema cannot
//! (duration overflow) for the operator's validate step. The crate also holds the API group and the
//! label keys placed on robots and children, so the operator, tests and tools spell them once.

pub mod common;
pub mod conditions;
pub mod duration;
pub mod generate;
pub mod inference_service;
mod isvc_status;
pub mod rollout;
pub mod safety_policy;
pub mod sensor_sim;
pub mod validate;

pub use conditions::ResourceStatus;
pub use duration::GoDuration;
pub use inference_service::{InferenceService, InferenceServiceSpec, InferenceServiceStatus};
pub use safety_policy::{SafetyPolicy, SafetyPolicySpec, SafetyPolicyStatus};
pub use sensor_sim::{SensorSim, SensorSimSpec, SensorSimStatus};

/// API group of every robofleet custom resource.
pub const GROUP: &str = "robofleet.io";
/// API version served by this release.
pub const VERSION: &str = "v1alpha1";

/// Label keys robofleet reads on Nodes and Namespaces, and writes on the children it owns.
pub mod labels {
    /// A Node is a robot iff it carries this label with value `"true"`.
    pub const ROBOT: &str = "robofleet.io/robot";
    /// Marks simulated robots (the only robots a `SensorSim` may target).
    pub const SIMULATED: &str = "robofleet.io/simulated";
    /// The robot's ROS 2 domain ID (an integer as a string).
    pub const ROS_DOMAIN_ID: &str = "robofleet.io/ros-domain-id";
    /// The robot's operating state in lower case (`idle`, `charging`, `busy`, ...), used to gate updates.
    pub const STATE: &str = "robofleet.io/state";
    /// Namespaces where robot workloads may be created carry this label with value `"true"`.
    pub const ROBOT_WORKLOADS: &str = "robofleet.io/robot-workloads";
    /// Kind of the custom resource that owns a child object.
    pub const OWNER_KIND: &str = "robofleet.io/owner-kind";
    /// Name of the custom resource that owns a child object.
    pub const OWNER: &str = "robofleet.io/owner";
    /// Revision hash of the pod template a child runs.
    pub const REVISION: &str = "robofleet.io/revision";
    /// Standard zone label used to spread and group robots.
    pub const ZONE: &str = "topology.kubernetes.io/zone";
}

/// Annotations people (or Argo CD actions, or `kubectl robofleet`) set on robofleet resources.
pub mod annotations {
    /// One-shot verb `<verb>@<nonce>`, acknowledged in `status.lastAction`. InferenceService:
    /// `pause`, `resume`, `promote`, `promote-full`, `abort`, `retry`; SafetyPolicy: `reset`.
    pub const ACTION: &str = "robofleet.io/action";
    /// SafetyPolicy: approves the pending (relaxing) policy with this hash.
    pub const APPROVE: &str = "robofleet.io/approve";

    /// The `robofleet.io/action` value for `verb` with `nonce`.
    pub fn action(verb: &str, nonce: &str) -> String {
        format!("{verb}@{nonce}")
    }

    /// Splits a `robofleet.io/action` value into `(verb, nonce)`; `None` unless both are non-empty.
    pub fn parse_action(value: &str) -> Option<(&str, &str)> {
        let (verb, nonce) = value.trim().split_once('@')?;
        (!verb.is_empty() && !nonce.is_empty()).then_some((verb, nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_need_verb_and_nonce() {
        let v = annotations::action("promote-full", "a1b2");
        assert_eq!(v, "promote-full@a1b2");
        assert_eq!(
            annotations::parse_action(&v),
            Some(("promote-full", "a1b2"))
        );
        assert_eq!(annotations::parse_action("pause"), None);
        assert_eq!(annotations::parse_action("@n"), None);
        assert_eq!(annotations::parse_action("pause@"), None);
    }

    #[test]
    fn label_keys_are_valid_qualified_names() {
        for key in [
            labels::ROBOT,
            labels::SIMULATED,
            labels::ROS_DOMAIN_ID,
            labels::STATE,
            labels::ROBOT_WORKLOADS,
            labels::OWNER_KIND,
            labels::OWNER,
            labels::REVISION,
        ] {
            let (prefix, name) = key.split_once('/').expect("prefixed");
            assert_eq!(prefix, GROUP, "{key}");
            assert!(!name.is_empty() && name.len() <= 63, "{key}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{key}"
            );
        }
    }
}
