//! `InferenceService.status`: aggregate robot counts, the stable and canary revisions, the
//! per-wave summary and the last failure. Never one entry per robot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::ResourceStatus;
use crate::rollout::{RolloutPhase, Verdict, WaveStatus};

/// Observed state of an InferenceService (aggregate counts only, never one entry per robot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceStatus {
    /// `observedGeneration`, `message` and `conditions` (see the status contract).
    #[serde(flatten)]
    pub common: ResourceStatus,
    /// `Pending`, `Progressing`, `Paused`, `Healthy` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// The revision robots return to on rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<RevisionRef>,
    /// The revision being rolled out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<RevisionRef>,
    /// Hash of the last aborted revision; not retried until the spec changes or `retry` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_revision: Option<String>,
    /// Robot counts.
    #[serde(default)]
    pub robots: RobotCounts,
    /// Current wave, 1-based; absent when no rollout runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<u32>,
    /// One summary per wave of the current rollout, with its last analysis verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// The most recent robot failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<LastFailure>,
    /// The last `robofleet.io/action` annotation acknowledged (`<verb>@<nonce>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
    /// The rollout under way, or the last aborted one: everything a restarted operator needs to
    /// resume it from status and the cluster alone (bounded: never one entry per robot of the
    /// fleet). Absent when no rollout runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,
}

/// The persisted state of one rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// Hash of the revision being rolled out.
    #[schemars(length(max = 64))]
    pub revision: String,
    /// When this rollout (or its latest retry) started.
    pub started_at: Time,
    /// All robots in one wave: the service's first revision, or strategy `AllAtOnce`.
    #[serde(default)]
    pub all_at_once: bool,
    /// Where the rollout is.
    pub step: RolloutStep,
    /// Current wave, a 0-based index into `spec.rollout.waves` (`status.currentWave` is 1-based).
    #[serde(default)]
    pub wave: u32,
    /// When the current wave started updating robots (its `deferTimeout` counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_started_at: Option<Time>,
    /// When every robot of the current wave was updated and its pause began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_started_at: Option<Time>,
    /// End of the current wave's timed pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<Time>,
    /// When the last analysis of the current wave was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_at: Option<Time>,
    /// Verdict of the last analysis of the current wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<Verdict>,
    /// Failed analyses in a row in the current wave (a pass resets it; inconclusive keeps it).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Why the rollout is held (paused by an action, inconclusive, or failed without
    /// `autoRollback`); `spec.paused` is not recorded here, it is read from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<RolloutHold>,
    /// The promote action skipped the current wave's pause and analysis.
    #[serde(default)]
    pub promoted: bool,
    /// The promote-full action: every remaining robot, no more pauses or analyses.
    #[serde(default)]
    pub full: bool,
    /// Robots picked by each `robots: N` wave when it started (at most N names per wave).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub pinned: Vec<PinnedWave>,
    /// Safety stops per robot-hour of a sample of stable robots, frozen when the wave started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<StopBaseline>,
    /// The preflight SensorSims of this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightState>,
    /// Why the rollout was aborted (step `Aborted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<RolloutAbort>,
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutStep {
    /// The preflight SensorSims run in the sandbox; no robot is touched yet.
    Preflight,
    /// The current wave's robots are being updated.
    Updating,
    /// The current wave is updated; its timed pause runs and analyses are taken.
    Analyzing,
    /// The current wave is updated; it waits for the promote action (analyses still run).
    AwaitingApproval,
    /// Aborted: updated robots return to the stable revision (with `autoRollback` or the abort
    /// action); the revision is not retried until the spec names another or the retry action.
    Aborted,
}

/// Why a rollout is held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutHold {
    /// The cause.
    pub reason: HoldReason,
    /// Detail for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Causes of a held rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HoldReason {
    /// The pause action.
    Paused,
    /// An inconclusive analysis at the end of a pause with `inconclusiveAction: Pause`.
    Inconclusive,
    /// `failureLimit` failed analyses with `autoRollback: false`.
    AnalysisFailed,
    /// The model fell back on an updated robot with `autoRollback: false`.
    ModelLoadFailed,
}

/// The robots a `robots: N` wave picked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedWave {
    /// 0-based wave index.
    pub wave: u32,
    /// Node names (at most the wave's `robots`).
    #[schemars(length(max = 100), inner(length(max = 253)))]
    pub robots: Vec<String>,
}

/// The stable robots' safety stop rate, frozen at a wave's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopBaseline {
    /// Safety stops per robot-hour.
    pub stops_per_hour: f64,
    /// Robot-hours it was measured over (0: no stable robot could be measured; the baseline is
    /// then 0 stops per hour).
    pub robot_hours: f64,
    /// When it was measured.
    pub measured_at: Time,
}

/// The preflight SensorSims of a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightState {
    /// When this attempt started; children created earlier belong to an earlier attempt.
    pub started_at: Time,
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: PreflightPhase,
    /// Which SensorSim failed and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// Phase of a rollout's preflight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PreflightPhase {
    /// At least one SensorSim has not finished.
    Running,
    /// Every SensorSim succeeded.
    Succeeded,
    /// A SensorSim failed.
    Failed,
}

/// Why a rollout was aborted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAbort {
    /// The cause.
    pub cause: AbortCause,
    /// What happened and what to change in git.
    #[schemars(length(max = 1024))]
    pub message: String,
    /// When.
    pub at: Time,
}

/// Causes of an aborted rollout (also the `reason` label of
/// `robofleet_operator_rollout_aborts_total`, in snake case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AbortCause {
    /// `failureLimit` consecutive failed analyses.
    AnalysisFailed,
    /// An inconclusive analysis with `inconclusiveAction: Abort`.
    Inconclusive,
    /// The model fell back to the stable one on an updated robot (download, verify, load or
    /// warm-up failed).
    ModelLoadFailed,
    /// A preflight SensorSim failed.
    PreflightFailed,
    /// Robots stayed deferred past `deferTimeout` with `onTimeout: Fail`.
    DeferTimeout,
    /// The abort action.
    Action,
}

impl AbortCause {
    /// Bounded snake-case label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::AnalysisFailed => "analysis_failed",
            Self::Inconclusive => "inconclusive",
            Self::ModelLoadFailed => "model_load_failed",
            Self::PreflightFailed => "preflight_failed",
            Self::DeferTimeout => "defer_timeout",
            Self::Action => "action",
        }
    }
}

/// A revision: a hash of the rendered per-robot pod template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRef {
    /// Name of the ControllerRevision holding the rendered template.
    pub name: String,
    /// Template hash (also the `robofleet.io/revision` label).
    pub hash: String,
    /// The model of this revision.
    pub model: ModelRef,
}

/// The identity of a model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    /// Model URI.
    pub uri: String,
    /// Model SHA-256.
    pub sha256: String,
    /// Model version label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Robot counts; hysteresis keeps one failed scrape from flipping them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobotCounts {
    /// Selected robots.
    #[serde(default)]
    pub total: u32,
    /// Robots whose pod is Ready on an approved revision.
    #[serde(default)]
    pub ready: u32,
    /// Robots on the newest revision.
    #[serde(default)]
    pub updated: u32,
    /// Robots waiting for their turn.
    #[serde(default)]
    pub pending: u32,
    /// Robots skipped for now because of their state (e.g. `busy`).
    #[serde(default)]
    pub deferred: u32,
    /// Robots whose Node is not Ready; they converge when they return.
    #[serde(default)]
    pub offline: u32,
    /// Robots whose pod failed.
    #[serde(default)]
    pub failed: u32,
    /// Updated robots whose loaded revision is not yet confirmed.
    #[serde(default)]
    pub unobserved: u32,
}

/// The most recent robot failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    /// Node name of the robot.
    pub robot: String,
    /// CamelCase reason.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// When.
    pub time: Time,
}
