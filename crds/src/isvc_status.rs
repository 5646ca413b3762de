//! `InferenceService.status`: aggregate robot counts, the stable and canary revisions, the
//! per-wave summary and the last failure. Never one entry per robot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::ResourceStatus;
use crate::rollout::{RolloutPhase, WaveStatus};

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
