//! `InferenceService.spec.rollout`: waves of robots, pauses, analysis with typed thresholds,
//! robot-state gates and preflight SensorSims; and the rollout's status summary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, Topic};
use crate::duration::GoDuration;

/// How a new revision reaches the robots. The first revision of a service always goes out to all
/// robots at once (nothing is stable yet); the strategy applies from the second one on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.strategy == 'Waves' ? (has(self.waves) && size(self.waves) > 0) : (!has(self.waves) || size(self.waves) == 0)",
     "message": "spec.rollout.waves: strategy Waves needs at least one wave; strategy AllAtOnce takes none"},
    {"rule": "!has(self.waves) || size(self.waves) == 0 || (has(self.waves[size(self.waves) - 1].percent) && self.waves[size(self.waves) - 1].percent == 100)",
     "message": "spec.rollout.waves: the last wave must be percent: 100"},
    {"rule": "!has(self.waves) || self.waves.filter(w, has(w.percent)).map(w, w.percent).isSorted() && self.waves.filter(w, has(w.percent)).all(w, self.waves.filter(x, has(x.percent) && x.percent == w.percent).size() == 1)",
     "message": "spec.rollout.waves: percent must strictly increase from wave to wave"},
    {"rule": "!has(self.waves) || self.waves.all(w, self.waves.exists_one(x, x.name == w.name))",
     "message": "spec.rollout.waves: wave names must be unique"},
]))]
pub struct RolloutSpec {
    /// `Waves` (default): robot by robot, wave by wave. `AllAtOnce`: every robot in one step.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Waves in order (strategy `Waves` only). A robot is in wave k iff its hash for this revision
    /// falls below the cumulative percent of wave k, so re-reconciles never reshuffle robots.
    /// Percentages strictly increase and the last wave is `percent: 100`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub waves: Vec<Wave>,
    /// Metrics checks on the robots of each wave; a failed check rolls the wave back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Robot-state gates: robots in other states are deferred (rollbacks ignore gates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Gates>,
    /// SensorSim templates run in the sandbox against each new revision before wave 1; a failed
    /// preflight aborts the rollout with reason `PreflightFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub preflight: Vec<Preflight>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: RolloutStrategy::Waves,
            waves: vec![
                Wave {
                    name: "canary".into(),
                    robots: Some(1),
                    percent: None,
                    max_unavailable: None,
                    pause: Some(Pause {
                        duration: Some(GoDuration::from("5m")),
                        until_approved: None,
                    }),
                },
                Wave {
                    name: "rest".into(),
                    robots: None,
                    percent: Some(100),
                    max_unavailable: Some(IntOrString::String("10%".into())),
                    pause: None,
                },
            ],
            analysis: None,
            gates: None,
            preflight: Vec::new(),
        }
    }
}

/// Rollout strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutStrategy {
    /// Wave by wave.
    #[default]
    Waves,
    /// All robots in one step (still limited by robots going offline, never by analysis).
    AllAtOnce,
}

/// One wave: a set of robots given by a count or a cumulative percentage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.robots) != has(self.percent)",
     "message": "spec.rollout.waves[]: set exactly one of robots (a count) or percent (cumulative, 1-100)"},
    {"rule": "!has(self.maxUnavailable) || string(self.maxUnavailable).matches('^([1-9][0-9]{0,3}|(100|[1-9][0-9]?)%)$')",
     "message": "spec.rollout.waves[].maxUnavailable must be a count (1-9999) or a percentage (1%-100%)"},
]))]
pub struct Wave {
    /// Wave name, unique in the rollout (lowercase letters, digits, `-`).
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// This many more robots (the smallest hashes among eligible robots). Excludes `percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub robots: Option<u32>,
    /// Cumulative share of the selected robots updated by the end of this wave (1-100).
    /// Excludes `robots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<u32>,
    /// Robots of this wave updated at the same time: a count (`1`) or a percentage of the wave
    /// (`20%`). Default 1. Replacing a robot's pod counts as unavailable until the new one is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_unavailable_schema")]
    pub max_unavailable: Option<IntOrString>,
    /// Wait after the wave is updated and analysed, before the next wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// A pause between waves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.duration) != (has(self.untilApproved) && self.untilApproved)",
     "message": "spec.rollout.waves[].pause: set exactly one of duration or untilApproved: true"},
]))]
pub struct Pause {
    /// Wait this long (Go duration, e.g. `10m`), analysing all the while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
    /// Wait for `robofleet.io/action: promote@<nonce>` (needs the `promote` verb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_approved: Option<bool>,
}

/// Analysis of each wave against its thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.checks.all(c, self.checks.exists_one(x, x.name == c.name))",
     "message": "spec.rollout.analysis.checks: check names must be unique"},
]))]
pub struct Analysis {
    /// Time between two analyses of a wave (Go duration).
    #[serde(default = "default_interval")]
    pub interval: GoDuration,
    /// What a check with no samples means: `Inconclusive` (wait, default), `Pass` or `Fail`.
    #[serde(default)]
    pub no_data_policy: NoDataPolicy,
    /// Consecutive failed analyses that abort the rollout.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_limit: u32,
    /// The checks; every one must pass.
    #[schemars(length(min = 1, max = 16))]
    pub checks: Vec<AnalysisCheck>,
}

/// What a check with no data means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NoDataPolicy {
    /// Neither pass nor fail: keep waiting.
    #[default]
    Inconclusive,
    /// Count as passed.
    Pass,
    /// Count as failed.
    Fail,
}

/// One typed check; each metric takes exactly its own threshold field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.metric == 'ErrorRatio') == has(self.maxRatio)",
     "message": "spec.rollout.analysis.checks[]: maxRatio is the threshold of (and only of) metric ErrorRatio"},
    {"rule": "(self.metric == 'Latency') == has(self.maxLatency)",
     "message": "spec.rollout.analysis.checks[]: maxLatency is the threshold of (and only of) metric Latency"},
    {"rule": "(self.metric == 'SafetyStopRate') == has(self.maxIncreasePerHour)",
     "message": "spec.rollout.analysis.checks[]: maxIncreasePerHour is the threshold of (and only of) metric SafetyStopRate"},
    {"rule": "(self.metric == 'FallbackRobots') == has(self.maxValue)",
     "message": "spec.rollout.analysis.checks[]: maxValue is the threshold of (and only of) metric FallbackRobots"},
    {"rule": "self.metric == 'Latency' || !has(self.quantile)",
     "message": "spec.rollout.analysis.checks[]: quantile applies only to metric Latency"},
]))]
pub struct AnalysisCheck {
    /// Check name, unique in the analysis.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What is measured on the wave's robots since each was updated.
    pub metric: AnalysisMetric,
    /// ErrorRatio: highest share (0..1) of `error`, `rejected` and `timeout` requests
    /// (`invalid` requests are the client's fault and excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_ratio: Option<f64>,
    /// Latency: highest request latency at `quantile` (Go duration, e.g. `50ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<GoDuration>,
    /// Latency: the quantile (greater than 0, at most 1; default 0.99), computed from summed histogram buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true))]
    pub quantile: Option<f64>,
    /// SafetyStopRate: highest increase of safety stops per robot-hour over the stable baseline
    /// frozen at the wave's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_increase_per_hour: Option<f64>,
    /// FallbackRobots: most robots of the wave allowed to run the fallback model or a fallback
    /// execution provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_value: Option<f64>,
}

/// Metrics an analysis can check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisMetric {
    /// Share of failed inference requests (threshold `maxRatio`).
    ErrorRatio,
    /// Request latency quantile (threshold `maxLatency`, `quantile`).
    Latency,
    /// Safety stops per robot-hour above the stable baseline (threshold `maxIncreasePerHour`).
    SafetyStopRate,
    /// Robots on a fallback model or execution provider (threshold `maxValue`).
    FallbackRobots,
}

/// Robot-state gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Values of the Node label `robofleet.io/state` (lowercase) in which a robot may be updated,
    /// e.g. `[idle, charging]`. Robots in other states are deferred.
    #[serde(default = "default_states")]
    #[schemars(
        length(min = 1, max = 16),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
        )
    )]
    pub allowed_states: Vec<String>,
    /// Also read the state from this ROS topic (exported by the bridge as `robofleet_robot_state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<Topic>,
}

/// A SensorSim run against each new revision before wave 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preflight {
    /// A SensorSim in this namespace with `template: true`; its child `<template>-<revision>`
    /// runs with the candidate revision as unit under test.
    pub sensor_sim_template: LocalRef,
}

/// Phase of an InferenceService or SafetyPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Nothing observed yet.
    Pending,
    /// A rollout or convergence is under way.
    Progressing,
    /// Paused (`spec.paused` or the pause verb).
    Paused,
    /// Every selected robot serves the stable revision.
    Healthy,
    /// Stalled or rolled back; the message says what to change.
    Degraded,
}

/// Summary of one wave of the current rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    /// Wave name.
    pub name: String,
    /// Robots in the wave.
    #[serde(default)]
    pub robots: u32,
    /// Robots of the wave on the new revision.
    #[serde(default)]
    pub updated: u32,
    /// Last analysis verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Detail of the verdict (which check, observed value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the last analysis ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzed_at: Option<Time>,
}

/// Analysis verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A check failed.
    Fail,
    /// Not enough data yet.
    Inconclusive,
}

fn max_unavailable_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "maxLength": 4,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    })
}

fn default_interval() -> GoDuration {
    GoDuration::from("30s")
}
fn default_failure_limit() -> u32 {
    1
}
fn default_states() -> Vec<String> {
    vec!["idle".into(), "charging".into()]
}
