//! The rollout state machine of an InferenceService: which robot runs which revision, which
//! robots to update now, and what status says. Pure and deterministic: [`step`] takes the
//! resolved spec, the persisted state from status, what the operator observed and `now`, and
//! returns a [`Decision`]; the same input always gives the same decision.
//!
//! # Interface (for the InferenceService controller)
//!
//! Every reconcile, after fetching and validating:
//!
//! 1. [`Plan::from_spec`]`(&spec.rollout)`; an error is `Stalled`/`InvalidSpec`.
//! 2. Build one [`RobotObservation`] per **selected** robot (Node Ready, `robofleet.io/state`
//!    label, the bridge's `robofleet_robot_state` where scraped, the monitors' stop lock, and
//!    its pod: revision label, Ready, deletion timestamp, creation time, and what the sidecar
//!    confirmed loading: [`Loaded`]).
//! 3. If [`analysis_due`] is true, scrape [`analysis_robots`] into the service's
//!    [`WaveWindow`](crate::core::analysis::WaveWindow) and [`evaluate`](crate::core::analysis::evaluate)
//!    a report. Keep feeding the window from the same robots while the step is `Updating`,
//!    `Analyzing` or `AwaitingApproval` (a monitor's first scrape is its baseline).
//! 4. If [`baseline_wanted`] is true, scrape the monitors of [`stable_sample`] once and pass
//!    [`baseline`](crate::core::analysis::baseline) of them.
//! 5. Call [`step`] with the state read from **current** status (after a status write, do not act
//!    on an object older than the one written: compare `resourceVersion`).
//! 6. Write status first: `status.rollout = decision.state`, `stableRevision` from
//!    `decision.stable`, `canaryRevision` from `decision.canary`, `abortedRevision`,
//!    `lastAction`, `currentWave`, `waves`, `phase`, the three conditions, `message` (the lead
//!    merges blockers such as `NamespaceNotAllowed`, which win). Then act on
//!    `decision.updates` (delete the pod at `from`, wait until it is gone, create the pod at `to`;
//!    `from: None` only creates), ensure `decision.preflight` children, emit `decision.events`,
//!    count `decision.aborts` in `robofleet_operator_rollout_aborts_total{reason}` and set
//!    `robofleet_operator_rollout_robots{state}` from `decision.tally`; requeue after
//!    `decision.requeue_after`.
//!
//! A step that changes the persisted state never updates a robot: updates are only derived from
//! a state that was already written to status and read back. So a crash between the status write
//! and the pod operations, or between two steps, never updates a robot twice or skips one: the
//! next step derives the same targets from the same state and the pods it observes.
//!
//! Semantics, with every decision the product contract leaves open: `docs/rollouts.md`.

pub mod clock;
mod fleet;
mod machine;
mod plan;
mod progress;
mod report;
mod verbs;
mod waves;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::inference_service::{RolloutPhase, RolloutState, StopBaseline, WaveStatus};

pub use fleet::{analysis_robots, stable_sample};
pub use machine::{analysis_due, baseline_wanted};
pub use plan::{
    AnalysisPlan, DEFAULT_DEFER_TIMEOUT, GatePlan, MaxUnavailable, PausePlan, Plan, PlanError,
    WavePlan, WaveSize,
};
pub use waves::{Membership, below_percent, robot_hash, smallest};

use crate::core::analysis::AnalysisReport;

/// Most robots of a wave scraped for its analysis (the smallest hashes).
pub const MAX_ANALYSIS_ROBOTS: usize = 200;
/// Stable robots sampled for the safety-stop baseline.
pub const STABLE_SAMPLE: usize = 20;

/// What the sidecar of a robot's pod confirmed loading (from `robofleet_model_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// Not scraped yet: the robot counts as updated only once this is known.
    Unknown,
    /// The requested model.
    Requested,
    /// The fallback (stable) model: the requested one failed to download, verify, load or warm
    /// up.
    Fallback,
}

/// A robot's pod as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    /// Its `robofleet.io/revision` label.
    pub revision: String,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It has a deletion timestamp (being replaced).
    pub terminating: bool,
    /// Its creation time.
    pub created: Time,
    /// What its sidecar confirmed.
    pub loaded: Loaded,
}

/// One selected robot as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct RobotObservation {
    /// Node name.
    pub name: String,
    /// The Node is Ready (an offline robot is never updated and never blocks).
    pub online: bool,
    /// Its `robofleet.io/state` label.
    pub state_label: Option<String>,
    /// The state its bridge reports (`robofleet_robot_state`), where configured and scraped.
    pub state_reported: Option<String>,
    /// Its safety stop lock: `Some(true)` engaged, `None` unknown (no monitor).
    pub stop_lock: Option<bool>,
    /// Its pod of this service, if any.
    pub pod: Option<PodState>,
}

/// A preflight SensorSim child as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct PreflightChild {
    /// The template it was made from.
    pub template: String,
    /// Its creation time (a child older than the attempt belongs to an earlier one).
    pub created: Time,
    /// Its outcome.
    pub outcome: SimOutcome,
}

/// Outcome of a SensorSim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimOutcome {
    /// Not finished.
    Running,
    /// Every expectation held.
    Succeeded,
    /// Failed, with its message.
    Failed(String),
}

/// Everything [`step`] decides from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The resolved `spec.rollout`.
    pub plan: &'a Plan,
    /// `spec.paused`.
    pub spec_paused: bool,
    /// The revision the spec renders (hash).
    pub desired: &'a str,
    /// `status.stableRevision.hash`; `None` before the first revision became stable.
    pub stable: Option<&'a str>,
    /// `status.rollout`.
    pub state: Option<&'a RolloutState>,
    /// `status.abortedRevision`.
    pub aborted: Option<&'a str>,
    /// `status.lastAction`.
    pub last_action: Option<&'a str>,
    /// The `robofleet.io/action` annotation.
    pub action: Option<&'a str>,
    /// `status.waves` (verdicts of earlier waves are kept).
    pub previous_waves: &'a [WaveStatus],
    /// The selected robots.
    pub robots: &'a [RobotObservation],
    /// An analysis taken because [`analysis_due`] said so.
    pub analysis: Option<&'a AnalysisReport>,
    /// A baseline measured because [`baseline_wanted`] said so.
    pub baseline: Option<&'a StopBaseline>,
    /// The preflight children of the rollout's revision.
    pub preflight: &'a [PreflightChild],
}

/// Why a robot's update waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeferReason {
    /// Its stop lock is engaged.
    StopLock,
    /// Its state is not allowed (the state, or `unknown`).
    State(String),
    /// `spec.paused` or the pause action.
    Paused,
}

/// How a robot's pod changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// No pod yet: create one.
    Create,
    /// To the revision being rolled out.
    Forward,
    /// Back to stable from an aborted revision (gates ignored).
    Rollback,
    /// To stable from another revision (a superseded rollout, a robot that was away).
    Converge,
}

/// One robot to update now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Node name.
    pub robot: String,
    /// The revision its pod runs (`None`: it has no pod).
    pub from: Option<String>,
    /// The revision it gets.
    pub to: String,
    /// Why.
    pub kind: UpdateKind,
}

/// A robot whose update waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// Node name.
    pub robot: String,
    /// Why.
    pub reason: DeferReason,
}

/// A condition as decided: status and reason (a constant from
/// `robofleet_crds::conditions::reasons`); the message is [`Decision::message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond {
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
}

/// A Kubernetes Event to emit (one per transition, never one per robot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutEvent {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// CamelCase reason (see [`events`]).
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// Event reasons.
pub mod events {
    /// A rollout of a new revision started.
    pub const ROLLOUT_STARTED: &str = "RolloutStarted";
    /// The preflight SensorSims succeeded.
    pub const PREFLIGHT_SUCCEEDED: &str = "PreflightSucceeded";
    /// A wave started updating robots.
    pub const WAVE_STARTED: &str = "WaveStarted";
    /// A `robots` wave picked its robots.
    pub const ROBOTS_PICKED: &str = "RobotsPicked";
    /// A wave is updated and pauses.
    pub const WAVE_UPDATED: &str = "WaveUpdated";
    /// A wave waits for the promote action.
    pub const AWAITING_PROMOTION: &str = "AwaitingPromotion";
    /// An analysis passed (after another verdict).
    pub const ANALYSIS_PASSED: &str = "AnalysisPassed";
    /// An analysis failed.
    pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
    /// An analysis was inconclusive (after another verdict).
    pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
    /// The rollout is held (pause action, inconclusive, failure without autoRollback).
    pub const ROLLOUT_HELD: &str = "RolloutHeld";
    /// The resume action.
    pub const ROLLOUT_RESUMED: &str = "RolloutResumed";
    /// The promote or promote-full action.
    pub const ROLLOUT_PROMOTED: &str = "RolloutPromoted";
    /// Deferred robots outlived `deferTimeout`.
    pub const DEFER_TIMEOUT: &str = "DeferTimeout";
    /// The revision became stable.
    pub const ROLLOUT_COMPLETED: &str = "RolloutCompleted";
    /// The rollout was aborted.
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    /// A new revision replaced the one being rolled out.
    pub const ROLLOUT_SUPERSEDED: &str = "RolloutSuperseded";
    /// The retry action restarted an aborted revision.
    pub const ROLLOUT_RETRIED: &str = "RolloutRetried";
    /// An action was acknowledged but had nothing to do.
    pub const ACTION_IGNORED: &str = "ActionIgnored";
}

/// Robots by rollout state, for `robofleet_operator_rollout_robots{state}` and the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Selected robots.
    pub total: u32,
    /// Online robots on the stable revision, Ready.
    pub stable: u32,
    /// Online robots on the rollout's revision, Ready and confirmed.
    pub canary: u32,
    /// Online robots being replaced or not Ready.
    pub updating: u32,
    /// Online robots waiting for a gate.
    pub deferred: u32,
    /// Robots whose Node is not Ready.
    pub offline: u32,
    /// Robots on the rollout's revision whose loaded model is not confirmed yet.
    pub unobserved: u32,
    /// Online robots on another revision, waiting for their turn.
    pub pending: u32,
}

/// What to ask of the I/O layer about analysis, for the next reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnalysisRequest {
    /// Robots whose sidecars and monitors feed the wave window now.
    pub robots: Vec<String>,
    /// An analysis is due now.
    pub due: bool,
    /// A baseline is wanted: scrape the monitors of `stable_sample` once.
    pub baseline_wanted: bool,
    /// Stable robots for the baseline.
    pub stable_sample: Vec<String>,
}

/// Preflight children to ensure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightRequest {
    /// The revision under test (children are `<template>-<revision>`).
    pub revision: String,
    /// The templates.
    pub templates: Vec<String>,
    /// Children created before this belong to an earlier attempt: delete and recreate them.
    pub since: Time,
}

/// The outcome of one [`step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `status.rollout` to persist (`None`: no rollout).
    pub state: Option<RolloutState>,
    /// `status.stableRevision` hash.
    pub stable: Option<String>,
    /// The revision being rolled out (for `status.canaryRevision`); `None` when none is (or it
    /// was aborted).
    pub canary: Option<String>,
    /// `status.abortedRevision`.
    pub aborted: Option<String>,
    /// `status.lastAction`.
    pub last_action: Option<String>,
    /// The revision each robot should run given its wave, by robot (robots absent: leave as is).
    pub targets: Vec<(String, String)>,
    /// Robots to update now (empty whenever the persisted state changed in this step).
    pub updates: Vec<Update>,
    /// Robots whose update waits.
    pub deferred: Vec<Deferral>,
    /// `status.phase`.
    pub phase: RolloutPhase,
    /// `Ready`.
    pub ready: Cond,
    /// `Reconciling`.
    pub reconciling: Cond,
    /// `Stalled`.
    pub stalled: Cond,
    /// `status.message` (and the conditions' message).
    pub message: String,
    /// `status.currentWave` (1-based).
    pub current_wave: Option<u32>,
    /// `status.waves`.
    pub waves: Vec<WaveStatus>,
    /// Robots by state.
    pub tally: Tally,
    /// Events to emit.
    pub events: Vec<RolloutEvent>,
    /// `robofleet_operator_rollout_aborts_total{reason}` increments.
    pub aborts: Vec<&'static str>,
    /// Analysis requests for the next reconcile.
    pub analysis: AnalysisRequest,
    /// Preflight children to ensure.
    pub preflight: Option<PreflightRequest>,
    /// Reconcile again after this long at the latest (timers: pauses, analyses, deferTimeout;
    /// at least one second).
    pub requeue_after: Option<Duration>,
}

/// Decides one step of the rollout. Pure: the same input and `now` give the same decision.
pub fn step(input: &Input<'_>, now: &Time) -> Decision {
    machine::Machine::new(input, now).run()
}
