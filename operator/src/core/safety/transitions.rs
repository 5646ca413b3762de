//! Which Kubernetes Events a status change deserves (pure): one per transition of the policy as a
//! whole (phase and its reason, a change waiting for approval, an approval acted on, a reset
//! relayed), never one per robot.
//!
//! The event recorder aggregates Events with the same reason and action into one series that
//! keeps the first note, so the notes of approval and reset Events point at status instead of
//! carrying a hash or nonce that a later Event of the series would contradict.

use robofleet_crds::conditions::{reasons, types};
use robofleet_crds::safety_policy::SafetyPolicyStatus;

/// An Event to publish about the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Warning (something needs a person) or Normal.
    pub warning: bool,
    /// CamelCase reason (`Healthy`, `Conflict`, `NoStopConsumer`, `ApprovalPending`, …).
    pub reason: String,
    /// What the operator did, CamelCase.
    pub action: String,
    /// The human message (at most 1 kB).
    pub note: String,
}

/// Event reasons beyond the condition reasons.
pub mod event_reasons {
    /// A relaxing change (or robots leaving the selection) waits for approval.
    pub const APPROVAL_PENDING: &str = "ApprovalPending";
    /// An approval was acted on: the change applies.
    pub const APPROVED: &str = "Approved";
    /// A pending change no longer needs approval (reverted, or it now only tightens).
    pub const APPROVAL_WITHDRAWN: &str = "ApprovalWithdrawn";
    /// A `reset@<nonce>` was relayed to the monitors.
    pub const RESET_RELAYED: &str = "ResetRelayed";
}

/// The policy's state as one word: the Stalled reason, else a Ready=False reason that is not
/// just progress, else the phase.
fn state(s: &SafetyPolicyStatus) -> Option<(String, bool)> {
    let phase = s.phase.map(|p| format!("{p:?}"))?;
    let cond = |t: &str| s.common.conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = cond(types::STALLED).filter(|c| c.status == "True") {
        return Some((c.reason.clone(), true));
    }
    if let Some(c) = cond(types::READY).filter(|c| {
        c.status == "False"
            && c.reason != reasons::ROLLOUT_IN_PROGRESS
            && c.reason != reasons::AVAILABLE
    }) {
        return Some((c.reason.clone(), true));
    }
    Some((phase, false))
}

fn clip(s: String) -> String {
    s.chars().take(1000).collect()
}

/// The Events for a status going from `old` to `new`.
pub fn transitions(old: Option<&SafetyPolicyStatus>, new: &SafetyPolicyStatus) -> Vec<Transition> {
    let mut out = Vec::new();
    let before = old.and_then(state);
    if let Some((reason, warning)) = state(new).filter(|s| Some(s) != before.as_ref()) {
        let phase = new.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        out.push(Transition {
            warning,
            reason,
            action: format!("Became{phase}"),
            note: clip(new.common.message.clone().unwrap_or_default()),
        });
    }
    let old_pending = old.and_then(|s| s.pending_hash.as_deref());
    let old_approved = old.and_then(|s| s.approved_hash.as_deref());
    let approved = new
        .approved_hash
        .as_deref()
        .filter(|h| Some(*h) != old_approved);
    if approved.is_some() {
        out.push(Transition {
            warning: false,
            reason: event_reasons::APPROVED.into(),
            action: "ApplyApproved".into(),
            note: "an approved change applies (status.approvedHash names it)".into(),
        });
    }
    match (old_pending, new.pending_hash.as_deref()) {
        (o, Some(n)) if o != Some(n) => out.push(Transition {
            warning: false,
            reason: event_reasons::APPROVAL_PENDING.into(),
            action: "AwaitApproval".into(),
            note:
                "a relaxing change waits for robofleet.io/approve=<status.pendingHash> while the \
                   previous policy stays enforced; condition ApprovalPending says what relaxes"
                    .into(),
        }),
        (Some(_), None) if approved.is_none() => out.push(Transition {
            warning: false,
            reason: event_reasons::APPROVAL_WITHDRAWN.into(),
            action: "WithdrawPending".into(),
            note: "a pending change no longer waits: it was reverted or only tightens now".into(),
        }),
        _ => {}
    }
    let relayed = new
        .last_action
        .as_deref()
        .filter(|a| Some(*a) != old.and_then(|s| s.last_action.as_deref()));
    if relayed.is_some() {
        out.push(Transition {
            warning: false,
            reason: event_reasons::RESET_RELAYED.into(),
            action: "RelayReset".into(),
            note: "a reset was relayed to the monitors in the policy file (status.lastAction \
                   names it)"
                .into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use robofleet_crds::rollout::RolloutPhase;

    fn status(phase: RolloutPhase, conds: &[(&str, &str, &str)]) -> SafetyPolicyStatus {
        let mut s = SafetyPolicyStatus {
            phase: Some(phase),
            ..Default::default()
        };
        s.common.message = Some("m".into());
        s.common.conditions = conds
            .iter()
            .map(|(t, st, r)| Condition {
                type_: (*t).into(),
                status: (*st).into(),
                reason: (*r).into(),
                message: format!("{t} message"),
                observed_generation: None,
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            })
            .collect();
        s
    }

    fn healthy() -> SafetyPolicyStatus {
        status(
            RolloutPhase::Healthy,
            &[
                ("Ready", "True", "Available"),
                ("Stalled", "False", "AsExpected"),
            ],
        )
    }

    fn reasons_of(t: &[Transition]) -> Vec<&str> {
        t.iter().map(|t| t.reason.as_str()).collect()
    }

    #[test]
    fn one_event_per_transition_and_none_without_one() {
        let h = healthy();
        assert_eq!(reasons_of(&transitions(None, &h)), vec!["Healthy"]);
        assert!(transitions(Some(&h), &h).is_empty());
        let conflict = status(
            RolloutPhase::Degraded,
            &[
                ("Ready", "True", "Available"),
                ("Stalled", "True", "Conflict"),
            ],
        );
        let t = transitions(Some(&h), &conflict);
        assert_eq!(reasons_of(&t), vec!["Conflict"]);
        assert!(t[0].warning);
        let no_consumer = status(
            RolloutPhase::Degraded,
            &[
                ("Ready", "False", "NoStopConsumer"),
                ("Stalled", "False", "AsExpected"),
            ],
        );
        assert_eq!(
            reasons_of(&transitions(Some(&conflict), &no_consumer)),
            vec!["NoStopConsumer"]
        );
        // Counts changing inside a phase are no transition.
        let mut more = h.clone();
        more.robots.ready = 7;
        assert!(transitions(Some(&h), &more).is_empty());
    }

    #[test]
    fn approvals_and_resets() {
        let h = healthy();
        let mut pending = healthy();
        pending.pending_hash = Some("abc".into());
        pending.common.conditions.push(Condition {
            type_: "ApprovalPending".into(),
            status: "True".into(),
            reason: "ApprovalRequired".into(),
            message: "relaxing change (x); approve with: …".into(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        });
        let t = transitions(Some(&h), &pending);
        assert_eq!(reasons_of(&t), vec!["ApprovalPending"]);
        assert!(!t[0].warning && t[0].note.contains("status.pendingHash"));
        // Same pending hash again: nothing; a new one: one more.
        assert!(transitions(Some(&pending), &pending).is_empty());
        let mut other = pending.clone();
        other.pending_hash = Some("def".into());
        assert_eq!(
            reasons_of(&transitions(Some(&pending), &other)),
            vec!["ApprovalPending"]
        );
        let mut approved = h.clone();
        approved.approved_hash = Some("def".into());
        assert_eq!(
            reasons_of(&transitions(Some(&other), &approved)),
            vec!["Approved"]
        );
        assert_eq!(
            reasons_of(&transitions(Some(&other), &h)),
            vec!["ApprovalWithdrawn"]
        );
        let mut reset = h.clone();
        reset.last_action = Some("reset@1".into());
        let t = transitions(Some(&h), &reset);
        assert_eq!(reasons_of(&t), vec!["ResetRelayed"]);
        assert!(transitions(Some(&reset), &reset).is_empty());
    }
}
