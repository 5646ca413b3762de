//! Approvals of relaxing SafetyPolicy changes (pure).
//!
//! A change that only tightens applies at once; any other change waits for
//! `robofleet.io/approve=<pendingHash>` while the policy last applied keeps running. Robots that
//! leave the selection while still robots keep their monitor until approved. What was last applied
//! survives an operator restart: the policy in the policy ConfigMap the monitors read, the robots
//! in a record ConfigMap, the last approval acted on in `status.approvedHash`.

use std::collections::BTreeSet;

use robofleet_crds::duration::GoDuration;
use robofleet_crds::safety_policy::{ReleaseMode, SafetyPolicySpec, Zone, ZoneAction};

use super::containment::{self, Region};
use super::policy_file;
use crate::core::naming::short_hash;

/// Annotation approving the pending change: `robofleet.io/approve=<status.pendingHash>`.
pub const APPROVE_ANNOTATION: &str = "robofleet.io/approve";
/// Held robots named in status and messages (the rest are counted).
pub const HELD_SAMPLE: usize = 5;
/// Relaxations spelled out in a message (the rest are counted).
const RELAXATIONS_SHOWN: usize = 5;
/// The monitor's speed limit for a slowdown zone that sets none.
const DEFAULT_SPEED_LIMIT_PERCENT: f64 = 50.0;

/// What the monitors run now, as recovered after any restart.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The policy in the policy file (`robotSelector` and `minEnforcingPercent` are not in it).
    pub spec: SafetyPolicySpec,
    /// Robots whose monitor was approved: selected when the policy was applied or approved, or
    /// joined since (joining only tightens).
    pub robots: BTreeSet<String>,
}

/// What [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// Policy name (part of the policy file).
    pub name: &'a str,
    /// The spec as written now.
    pub spec: &'a SafetyPolicySpec,
    /// What runs now; `None` for the first version, which needs no approval.
    pub applied: Option<&'a Applied>,
    /// Robots the selector picks now.
    pub selected: &'a BTreeSet<String>,
    /// Every robot (Nodes labelled `robofleet.io/robot=true`): one that left the fleet is no
    /// relaxation and keeps nothing.
    pub robots: &'a BTreeSet<String>,
    /// `robofleet.io/approve`, if set.
    pub approve: Option<&'a str>,
    /// `status.approvedHash`: the last approval acted on.
    pub approved_hash: Option<&'a str>,
}

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The policy to write into the policy file.
    pub enforce: SafetyPolicySpec,
    /// Robots that keep or get a monitor (the record to keep).
    pub monitored: BTreeSet<String>,
    /// Of those, robots no longer selected that keep theirs until approved.
    pub held: BTreeSet<String>,
    /// The change waiting for approval.
    pub pending: Option<Pending>,
    /// The new `status.approvedHash`.
    pub approved_hash: Option<String>,
    /// An approval was acted on in this decision.
    pub approved_now: bool,
}

/// A change waiting for approval.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The hash `robofleet.io/approve` must name.
    pub hash: String,
    /// What relaxes in the spec (empty: only robots leave, and the new spec is enforced).
    pub relaxations: Vec<String>,
    /// `robofleet.io/approve` names another hash (stale or wrong): ignored.
    pub ignored_approval: Option<String>,
}

/// Decides what runs: the new spec and selection, or what ran before until approved.
pub fn decide(input: &Input<'_>) -> Decision {
    let Some(applied) = input.applied else {
        return Decision {
            enforce: input.spec.clone(),
            monitored: input.selected.clone(),
            held: BTreeSet::new(),
            pending: None,
            approved_hash: input.approved_hash.map(str::to_owned),
            approved_now: false,
        };
    };
    let relaxed = relaxations(&applied.spec, input.spec);
    let held: BTreeSet<String> = applied
        .robots
        .iter()
        .filter(|r| input.robots.contains(*r) && !input.selected.contains(*r))
        .cloned()
        .collect();
    let apply_all = |approved_hash: Option<String>, approved_now| Decision {
        enforce: input.spec.clone(),
        monitored: input.selected.clone(),
        held: BTreeSet::new(),
        pending: None,
        approved_hash,
        approved_now,
    };
    if relaxed.is_empty() && held.is_empty() {
        return apply_all(input.approved_hash.map(str::to_owned), false);
    }
    let hash = pending_hash(input.name, input.spec, &held, input.approved_hash);
    match input.approve {
        Some(a) if a == hash => apply_all(Some(hash), true),
        approve => Decision {
            // A spec that only tightens applies at once even while robots wait.
            enforce: if relaxed.is_empty() {
                input.spec.clone()
            } else {
                applied.spec.clone()
            },
            monitored: input.selected.union(&held).cloned().collect(),
            held,
            pending: Some(Pending {
                hash,
                relaxations: relaxed,
                ignored_approval: approve
                    .filter(|a| Some(*a) != input.approved_hash)
                    .map(str::to_owned),
            }),
            approved_hash: input.approved_hash.map(str::to_owned),
            approved_now: false,
        },
    }
}

/// The hash a pending change is approved by: the new policy file, the robots it releases, and
/// the last approval acted on (so no earlier approval, left in the annotation, approves a later
/// change that happens to look the same).
pub fn pending_hash(
    name: &str,
    spec: &SafetyPolicySpec,
    released: &BTreeSet<String>,
    approved_hash: Option<&str>,
) -> String {
    let mut text = policy_file(name, spec, None);
    text.push_str("\nreleases:");
    for r in released {
        text.push(' ');
        text.push_str(r);
    }
    text.push_str("\nafter:");
    text.push_str(approved_hash.unwrap_or(""));
    short_hash(text.as_bytes(), 10)
}

impl Decision {
    /// The `ApprovalPending` condition's message: what relaxes, which robots wait, what runs, and
    /// the exact annotation that approves it.
    pub fn pending_message(&self, namespace: &str, name: &str) -> Option<String> {
        let p = self.pending.as_ref()?;
        let mut parts: Vec<String> = Vec::new();
        if !p.relaxations.is_empty() {
            let shown: Vec<&str> = p
                .relaxations
                .iter()
                .take(RELAXATIONS_SHOWN)
                .map(String::as_str)
                .collect();
            let more = p.relaxations.len().saturating_sub(RELAXATIONS_SHOWN);
            parts.push(format!(
                "relaxing change ({}{}); the previous policy stays enforced",
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ));
        } else {
            parts.push("the new policy is enforced (it only tightens)".to_owned());
        }
        if !self.held.is_empty() {
            parts.push(format!(
                "{} robot(s) no longer selected keep their monitor until approved ({})",
                self.held.len(),
                held_sample(&self.held).join(", ")
                    + if self.held.len() > HELD_SAMPLE {
                        ", …"
                    } else {
                        ""
                    }
            ));
        }
        let mut msg = format!(
            "{}; approve with: kubectl annotate safetypolicy {name} -n {namespace} {APPROVE_ANNOTATION}={} --overwrite",
            parts.join("; "),
            p.hash
        );
        if let Some(other) = &p.ignored_approval {
            msg.push_str(&format!(
                " ({APPROVE_ANNOTATION}={other} does not name this change and is ignored)"
            ));
        }
        Some(msg)
    }
}

/// The first [`HELD_SAMPLE`] held robots, by name.
pub fn held_sample(held: &BTreeSet<String>) -> Vec<String> {
    held.iter().take(HELD_SAMPLE).cloned().collect()
}

fn action_name(a: ZoneAction) -> &'static str {
    match a {
        ZoneAction::Stop => "stop",
        ZoneAction::Slowdown => "slowdown",
        ZoneAction::Warn => "warn",
    }
}

fn strength(a: ZoneAction) -> u8 {
    match a {
        ZoneAction::Stop => 2,
        ZoneAction::Slowdown => 1,
        ZoneAction::Warn => 0,
    }
}

/// `new` is longer than `old`; an unparsable value that changed counts as longer.
fn longer(old: &GoDuration, new: &GoDuration) -> bool {
    match (old.get(), new.get()) {
        (Ok(o), Ok(n)) => n > o,
        _ => old != new,
    }
}

/// `new` is shorter than `old`; an unparsable value that changed counts as shorter.
fn shorter(old: &GoDuration, new: &GoDuration) -> bool {
    match (old.get(), new.get()) {
        (Ok(o), Ok(n)) => n < o,
        _ => old != new,
    }
}

/// What a change from `old` to `new` relaxes, in words; empty when it only tightens (or changes
/// nothing the monitor enforces). `robotSelector` and `minEnforcingPercent` are not judged here:
/// robots leaving the selection are handled by [`decide`], and the percentage only shapes status.
pub fn relaxations(old: &SafetyPolicySpec, new: &SafetyPolicySpec) -> Vec<String> {
    let mut out = Vec::new();
    let (os, ns) = (&old.source, &new.source);
    if os.topic != ns.topic {
        out.push(format!("source.topic {} → {}", os.topic.0, ns.topic.0));
    }
    if longer(&os.source_timeout, &ns.source_timeout) {
        out.push(format!(
            "source.sourceTimeout {} → {}",
            os.source_timeout, ns.source_timeout
        ));
    }
    if (os.transform, os.frame) != (ns.transform, ns.frame) {
        // The laser's pose is a calibration: a correction and a mistake look alike.
        out.push("source: the laser's pose (transform or frame) changed".to_owned());
    }
    if ns.max_publishers > os.max_publishers {
        out.push(format!(
            "source.maxPublishers {} → {}",
            os.max_publishers, ns.max_publishers
        ));
    }
    for oz in old.zones.iter().filter(|z| z.action != ZoneAction::Warn) {
        match new.zones.iter().find(|z| z.name == oz.name) {
            None => out.push(format!("zone {} removed", oz.name)),
            Some(nz) => zone_relaxations(oz, nz, &mut out),
        }
    }
    let (oi, ni) = (
        old.invalid_readings.max_invalid_fraction,
        new.invalid_readings.max_invalid_fraction,
    );
    if ni > oi {
        out.push(format!("invalidReadings.maxInvalidFraction {oi} → {ni}"));
    }
    let (or, nr) = (&old.release, &new.release);
    if or.mode == ReleaseMode::Latched && nr.mode == ReleaseMode::Auto {
        out.push("release.mode Latched → Auto".to_owned());
    }
    if or.mode == ReleaseMode::Auto
        && nr.mode == ReleaseMode::Auto
        && shorter(&or.hold_time, &nr.hold_time)
    {
        out.push(format!(
            "release.holdTime {} → {}",
            or.hold_time, nr.hold_time
        ));
    }
    let (oo, no) = (&old.output, &new.output);
    if longer(&oo.heartbeat, &no.heartbeat) {
        out.push(format!(
            "output.heartbeat {} → {}",
            oo.heartbeat, no.heartbeat
        ));
    }
    if oo.stop_topic != no.stop_topic {
        out.push(format!(
            "output.stopTopic {} → {}",
            oo.stop_topic.0, no.stop_topic.0
        ));
    }
    if oo.speed_limit_topic != no.speed_limit_topic {
        out.push(format!(
            "output.speedLimitTopic {} → {}",
            oo.speed_limit_topic.0, no.speed_limit_topic.0
        ));
    }
    let (od, nd) = (&old.diagnostics, &new.diagnostics);
    if od.enabled && !nd.enabled {
        out.push("diagnostics disabled".to_owned());
    } else if od.enabled && od.topic != nd.topic {
        out.push(format!("diagnostics.topic {} → {}", od.topic.0, nd.topic.0));
    }
    out
}

fn zone_relaxations(oz: &Zone, nz: &Zone, out: &mut Vec<String>) {
    let name = &oz.name;
    if strength(nz.action) < strength(oz.action) {
        out.push(format!(
            "zone {name}: action {} → {}",
            action_name(oz.action),
            action_name(nz.action)
        ));
    }
    let contained = match (Region::of_zone(oz), Region::of_zone(nz)) {
        (Some(o), Some(n)) => containment::contains(&n, &o),
        _ => false,
    };
    if !contained {
        out.push(format!(
            "zone {name}: the new zone does not contain the old one"
        ));
    }
    if nz.min_points > oz.min_points {
        out.push(format!(
            "zone {name}: minPoints {} → {}",
            oz.min_points, nz.min_points
        ));
    }
    if oz.action == ZoneAction::Slowdown && nz.action == ZoneAction::Slowdown {
        let limit = |z: &Zone| z.speed_limit_percent.unwrap_or(DEFAULT_SPEED_LIMIT_PERCENT);
        if limit(nz) > limit(oz) {
            out.push(format!(
                "zone {name}: speedLimitPercent {} → {}",
                limit(oz),
                limit(nz)
            ));
        }
    }
}

#[cfg(test)]
#[path = "approval_tests.rs"]
mod tests;
