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
    /// Metrics judged on the robots of each wave during its pause; `failureLimit` consecutive
    /// failed analyses abort the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Which robots may be updated now: robot-state and safety-stop gates defer the others
    /// (rollbacks ignore gates). Omitted: no robot-state gate; robots whose stop lock is engaged
    /// are still deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<Gates>,
    /// SensorSim templates run in the sandbox against each new revision before wave 1; a failed
    /// preflight aborts the rollout with reason `PreflightFailed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub preflight: Vec<Preflight>,
    /// When the rollout is aborted (failed analysis, a model that does not load, a failed
    /// preflight, the abort action), return every updated robot to the stable revision (default
    /// `true`). `false`: a failed analysis or model load stops the rollout where it is
    /// (`Degraded`, `AnalysisFailed` or `ModelLoadFailed`) and waits for the abort, resume or
    /// promote action; the abort action always rolls back.
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
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
            auto_rollback: true,
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
    /// This many more robots (1-100): the smallest hashes among the robots that are online, in an
    /// allowed state and in no earlier wave when the wave starts. Their names are recorded in
    /// status, so re-reconciles never reshuffle them. Excludes `percent`; use `percent` for large
    /// waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub robots: Option<u32>,
    /// Cumulative share of the selected robots updated by the end of this wave (1-100).
    /// Excludes `robots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<u32>,
    /// Robots of this wave updated at the same time: a count (`1`) or a percentage of the wave's
    /// robots (`20%`, rounded down, at least 1). Default 1. Replacing a robot's pod counts as
    /// unavailable until the new one is Ready; offline robots do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_unavailable_schema")]
    pub max_unavailable: Option<IntOrString>,
    /// Wait after the wave is updated, analysing every `analysis.interval`, before the next wave.
    /// A wave without a pause is not analysed: the next wave starts as soon as it is updated.
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
    /// Wait this long (Go duration, e.g. `10m`), analysing all the while; the next wave starts
    /// when it has elapsed and the last analysis passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
    /// Wait for `robofleet.io/action: promote@<nonce>` (needs the `promote` verb), analysing all
    /// the while (a failed analysis still aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_approved: Option<bool>,
}

/// Analysis of each wave against its thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.metrics.all(c, self.metrics.exists_one(x, x.name == c.name))",
     "message": "spec.rollout.analysis.metrics: metric names must be unique"},
]))]
pub struct Analysis {
    /// Time between two analyses of a wave (Go duration).
    #[serde(default = "default_interval")]
    pub interval: GoDuration,
    /// What a metric with fewer samples than its minimum means: `Inconclusive` (default), `Pass`
    /// or `Fail`. No data is an outcome, never silently a pass.
    #[serde(default)]
    pub no_data_policy: NoDataPolicy,
    /// What an inconclusive analysis at the end of a wave's pause does: `Pause` (default: wait for
    /// the resume or promote action), `Proceed` (start the next wave) or `Abort`.
    #[serde(default)]
    pub inconclusive_action: InconclusiveAction,
    /// Consecutive failed analyses in a wave that abort the rollout.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_limit: u32,
    /// The metrics; every one must pass.
    #[schemars(length(min = 1, max = 16))]
    pub metrics: Vec<AnalysisCheck>,
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

/// What an inconclusive analysis does at the end of a wave's pause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InconclusiveAction {
    /// Pause the rollout (`Paused`) until the resume or promote action.
    #[default]
    Pause,
    /// Start the next wave.
    Proceed,
    /// Abort the rollout.
    Abort,
}

/// One typed check; each metric takes exactly its own threshold field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.builtin) != has(self.prometheus)",
     "message": "spec.rollout.analysis.metrics[]: set exactly one of builtin or prometheus"},
    {"rule": "(has(self.builtin) && self.builtin == 'ErrorRatio') == has(self.maxRatio)",
     "message": "spec.rollout.analysis.metrics[]: maxRatio is the threshold of (and only of) builtin ErrorRatio"},
    {"rule": "(has(self.builtin) && self.builtin == 'LatencyP99') == has(self.maxLatency)",
     "message": "spec.rollout.analysis.metrics[]: maxLatency is the threshold of (and only of) builtin LatencyP99"},
    {"rule": "(has(self.builtin) && self.builtin == 'SafetyStopRate') == has(self.maxIncreasePerHour)",
     "message": "spec.rollout.analysis.metrics[]: maxIncreasePerHour is the threshold of (and only of) builtin SafetyStopRate"},
    {"rule": "(has(self.prometheus) || (has(self.builtin) && self.builtin == 'FallbackRobots')) == has(self.maxValue)",
     "message": "spec.rollout.analysis.metrics[]: maxValue is the threshold of (and only of) builtin FallbackRobots and prometheus queries"},
    {"rule": "!has(self.quantile) || (has(self.builtin) && self.builtin == 'LatencyP99')",
     "message": "spec.rollout.analysis.metrics[]: quantile applies only to builtin LatencyP99"},
    {"rule": "!has(self.minSamples) || (has(self.builtin) && (self.builtin == 'ErrorRatio' || self.builtin == 'LatencyP99'))",
     "message": "spec.rollout.analysis.metrics[]: minSamples (a request count) applies only to builtin ErrorRatio and LatencyP99"},
    {"rule": "!has(self.minRobotHours) || (has(self.builtin) && self.builtin == 'SafetyStopRate')",
     "message": "spec.rollout.analysis.metrics[]: minRobotHours applies only to builtin SafetyStopRate"},
]))]
pub struct AnalysisCheck {
    /// Metric name, unique in the analysis.
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A metric the operator computes itself from the wave's robots, since each was updated.
    /// Excludes `prometheus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinMetric>,
    /// A PromQL query answered by a Prometheus server (one number; threshold `maxValue`).
    /// Excludes `builtin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQuery>,
    /// ErrorRatio: highest share (0..1) of `error`, `rejected` and `timeout` requests among all
    /// requests but `invalid` ones (those are the client's fault and excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_ratio: Option<f64>,
    /// LatencyP99: highest request latency at `quantile` (Go duration, e.g. `80ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<GoDuration>,
    /// LatencyP99: the quantile judged (greater than 0, at most 1; default 0.99), computed from
    /// the histogram bucket deltas summed over the wave's robots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true))]
    pub quantile: Option<f64>,
    /// SafetyStopRate: highest increase of safety stops per robot-hour on the wave's robots over
    /// the stable robots' rate, frozen when the wave starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_increase_per_hour: Option<f64>,
    /// FallbackRobots: most robots of the wave allowed to run the fallback model or a fallback
    /// execution provider. Prometheus: highest value the query may return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<f64>,
    /// ErrorRatio and LatencyP99: fewer requests than this on the wave's robots is no data
    /// (`noDataPolicy`). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub min_samples: Option<u64>,
    /// SafetyStopRate: fewer robot-hours observed on the wave's robots than this is no data
    /// (`noDataPolicy`). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100000.0))]
    pub min_robot_hours: Option<f64>,
}

/// Metrics the operator computes itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuiltinMetric {
    /// Share of failed inference requests (threshold `maxRatio`).
    ErrorRatio,
    /// Request latency at a quantile, 0.99 unless `quantile` says otherwise (threshold
    /// `maxLatency`).
    LatencyP99,
    /// Safety stops per robot-hour above the stable baseline (threshold `maxIncreasePerHour`).
    SafetyStopRate,
    /// Robots on a fallback model or execution provider (threshold `maxValue`).
    FallbackRobots,
}

/// A PromQL query sent to the Prometheus HTTP API (`GET <address>/api/v1/query`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.address.startsWith('http://') || self.address.startsWith('https://')",
     "message": "spec.rollout.analysis.metrics[].prometheus.address must start with http:// or https://"},
]))]
pub struct PrometheusQuery {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 1, max = 2048))]
    pub address: String,
    /// An instant query returning one number: a scalar or a vector with exactly one series. No
    /// series is no data; several series or NaN fail the measurement as inconclusive.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
}

/// Gates: which robots may be updated now. Rollbacks ignore them (the running model is judged
/// bad).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Update robots only in these states; others are deferred. Omit to update robots in any
    /// state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot_state: Option<RobotStateGate>,
    /// `Defer` (default): never update a robot whose safety stop lock is engaged
    /// (`robofleet_safety_stop_active` of its monitors); `Ignore`: update it anyway.
    #[serde(default)]
    pub safety_stop_active: SafetyStopGate,
}

/// The robot-state gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobotStateGate {
    /// States (the Node label `robofleet.io/state`, lowercase) in which a robot may be updated,
    /// e.g. `[idle, charging]`. A robot with no known state is deferred.
    #[serde(default = "default_states")]
    #[schemars(
        length(min = 1, max = 16),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
        )
    )]
    pub allow_when: Vec<String>,
    /// Also read the state from this ROS topic (exported by the bridge as
    /// `robofleet_robot_state`); a robot is allowed only when every known source says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<Topic>,
    /// How long a wave waits for its deferred robots, counted from the wave's start (Go
    /// duration). Also bounds the wait for robots whose stop lock is engaged.
    #[serde(default = "default_defer_timeout")]
    pub defer_timeout: GoDuration,
    /// What happens to robots still deferred after `deferTimeout`: `Skip` (default: the wave goes
    /// on without them; they are updated when they become allowed), `Force` (update them anyway,
    /// except a robot whose stop lock is engaged, which is skipped) or `Fail` (abort the
    /// rollout).
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

/// What happens to robots still deferred after `deferTimeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnTimeout {
    /// The wave goes on without them; they are updated when they become allowed.
    #[default]
    Skip,
    /// Update them although their state is not allowed (never through an engaged stop lock).
    Force,
    /// Abort the rollout.
    Fail,
}

/// Whether an engaged safety stop lock defers a robot's update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SafetyStopGate {
    /// Never update a robot whose stop lock is engaged.
    #[default]
    Defer,
    /// Update it anyway.
    Ignore,
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
fn default_defer_timeout() -> GoDuration {
    GoDuration::from("30m")
}
fn default_true() -> bool {
    true
}
