//! Analysis of a rollout wave: pure arithmetic on what the robots' `/metrics` said.
//!
//! # Interface (for the InferenceService controller)
//!
//! 1. Once per spec: [`Check::from_spec`] resolves each `spec.rollout.analysis.metrics[]` into a
//!    typed [`Check`] (defaults applied: `minSamples` 100, `minRobotHours` 1, `quantile` 0.99).
//! 2. While a wave is analysed (`rollout::Decision::analysis` says which robots), keep one
//!    [`WaveWindow`] per InferenceService in memory (start a new one when
//!    [`WaveWindow::is_for`] is false) and feed it every scrape: the sidecar of each analysed robot
//!    with [`WaveWindow::observe_sidecar`] (a new pod starts at 0, so its first snapshot is its
//!    whole delta), the robot's safety monitor with [`WaveWindow::observe_monitor`] (it predates
//!    the update: its first snapshot is the baseline). Counter resets are handled.
//! 3. When the rollout asks for a baseline (`Decision::analysis.baseline_wanted`), scrape the
//!    stable sample's monitors once and pass [`baseline`] of them to the next rollout step; it is
//!    frozen in `status.rollout.baseline`.
//! 4. Run each `prometheus` check's query ([`query_url`], then [`parse_query_response`] on the
//!    body, or [`PromQueryError::Transport`]) and call [`evaluate`]; hand the [`AnalysisReport`]
//!    to the rollout step.
//!
//! Metrics read (names as the components expose them):
//! `robofleet_inference_requests_total{outcome}` (ErrorRatio: `error + rejected + timeout` over
//! every outcome but `invalid`), `robofleet_inference_request_duration_seconds_bucket{le}`
//! (LatencyP99: bucket deltas summed over the robots, then `histogram_quantile`),
//! `robofleet_safety_stops_total{reason}` of the safety monitors (SafetyStopRate: every
//! transition of the stop lock to stop except `Startup` and `Shutdown`, which are the monitor's
//! own life cycle, per robot-hour), `robofleet_model_info{fallback,execution_provider}`
//! (FallbackRobots). Each check gives a [`CheckResult`]: verdict, observed value, samples and a
//! message; fewer samples than the minimum is no data, judged by `noDataPolicy`.

mod checks;
mod prom;
mod quantile;
mod window;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::duration::DurationError;
use robofleet_crds::inference_service::{
    AnalysisCheck, BuiltinMetric, NoDataPolicy, StopBaseline, Verdict,
};

pub use prom::{PromQueryError, parse_query_response, query_url};
pub use quantile::{Bucket, histogram_quantile};
pub use window::{Counter, ModelInfo, Origin, RobotWindow, SeriesKey, WaveWindow};

use crate::scrape::Sample;

/// Inference requests by outcome (sidecar).
pub const REQUESTS_TOTAL: &str = "robofleet_inference_requests_total";
/// Request latency histogram buckets (sidecar).
pub const DURATION_BUCKET: &str = "robofleet_inference_request_duration_seconds_bucket";
/// Transitions of the stop lock to stop, by reason (safety monitor).
pub const STOPS_TOTAL: &str = "robofleet_safety_stops_total";
/// The served model (sidecar).
pub const MODEL_INFO: &str = "robofleet_model_info";
/// 1 while a monitor's stop lock says stop.
pub const STOP_ACTIVE: &str = "robofleet_safety_stop_active";
/// The robot's state from its ROS state topic (bridge).
pub const ROBOT_STATE: &str = "robofleet_robot_state";

/// Outcomes that count as failed requests.
const FAILED_OUTCOMES: [&str; 3] = ["error", "rejected", "timeout"];
/// Stop reasons that are the monitor's own life cycle, not the robot's behaviour.
const LIFECYCLE_STOPS: [&str; 2] = ["Startup", "Shutdown"];

/// Default `minSamples` of ErrorRatio and LatencyP99.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;
/// Default `minRobotHours` of SafetyStopRate.
pub const DEFAULT_MIN_ROBOT_HOURS: f64 = 1.0;
/// Default quantile of LatencyP99.
pub const DEFAULT_QUANTILE: f64 = 0.99;

/// A check as the analysis runs it: thresholds typed, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Name from the spec.
    pub name: String,
    /// What is measured and its threshold.
    pub kind: CheckKind,
}

/// What a check measures.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Failed share of requests.
    ErrorRatio {
        /// Highest passing ratio.
        max_ratio: f64,
        /// Fewer requests is no data.
        min_samples: u64,
    },
    /// Latency at a quantile.
    Latency {
        /// The quantile.
        quantile: f64,
        /// Highest passing latency.
        max: Duration,
        /// Fewer requests is no data.
        min_samples: u64,
    },
    /// Stops per robot-hour above the baseline.
    SafetyStopRate {
        /// Highest passing increase.
        max_increase_per_hour: f64,
        /// Fewer robot-hours is no data.
        min_robot_hours: f64,
    },
    /// Robots on a fallback model or execution provider.
    FallbackRobots {
        /// Most robots allowed.
        max: f64,
    },
    /// A PromQL query.
    Prometheus {
        /// Server base URL.
        address: String,
        /// The query.
        query: String,
        /// Highest passing value.
        max: f64,
    },
}

/// Why a check in the spec cannot be run (the CRD's rules make these unreachable for specs the
/// API server admitted, except a duration overflow).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A threshold field is missing.
    #[error("spec.rollout.analysis.metrics {0}: {1} is required")]
    MissingThreshold(String, &'static str),
    /// Neither `builtin` nor `prometheus`.
    #[error("spec.rollout.analysis.metrics {0}: set builtin or prometheus")]
    NoSource(String),
    /// `maxLatency` does not parse.
    #[error("spec.rollout.analysis.metrics {0}: maxLatency: {1}")]
    Duration(String, DurationError),
}

impl CheckError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingThreshold(..) => "missing_threshold",
            Self::NoSource(_) => "no_source",
            Self::Duration(..) => "duration",
        }
    }
}

impl Check {
    /// Resolves one `spec.rollout.analysis.metrics[]` entry.
    pub fn from_spec(spec: &AnalysisCheck) -> Result<Self, CheckError> {
        let name = spec.name.clone();
        let need = |v: Option<f64>, field: &'static str| {
            v.ok_or_else(|| CheckError::MissingThreshold(name.clone(), field))
        };
        let kind = match (&spec.builtin, &spec.prometheus) {
            (Some(BuiltinMetric::ErrorRatio), _) => CheckKind::ErrorRatio {
                max_ratio: need(spec.max_ratio, "maxRatio")?,
                min_samples: spec.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES),
            },
            (Some(BuiltinMetric::LatencyP99), _) => {
                let text = spec
                    .max_latency
                    .as_ref()
                    .ok_or_else(|| CheckError::MissingThreshold(name.clone(), "maxLatency"))?;
                CheckKind::Latency {
                    quantile: spec.quantile.unwrap_or(DEFAULT_QUANTILE),
                    max: text
                        .get()
                        .map_err(|e| CheckError::Duration(name.clone(), e))?,
                    min_samples: spec.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES),
                }
            }
            (Some(BuiltinMetric::SafetyStopRate), _) => CheckKind::SafetyStopRate {
                max_increase_per_hour: need(spec.max_increase_per_hour, "maxIncreasePerHour")?,
                min_robot_hours: spec.min_robot_hours.unwrap_or(DEFAULT_MIN_ROBOT_HOURS),
            },
            (Some(BuiltinMetric::FallbackRobots), _) => CheckKind::FallbackRobots {
                max: need(spec.max_value, "maxValue")?,
            },
            (None, Some(p)) => CheckKind::Prometheus {
                address: p.address.clone(),
                query: p.query.clone(),
                max: need(spec.max_value, "maxValue")?,
            },
            (None, None) => return Err(CheckError::NoSource(name)),
        };
        Ok(Self { name, kind })
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// Check name.
    pub name: String,
    /// Pass, Fail or Inconclusive.
    pub verdict: Verdict,
    /// The measured value (ratio, seconds, stops per robot-hour above baseline, robots, query
    /// value); `None` when nothing could be measured.
    pub observed: Option<f64>,
    /// Requests (ErrorRatio, LatencyP99), robot-hours (SafetyStopRate), robots with a known
    /// model (FallbackRobots), 1 or 0 (prometheus).
    pub samples: f64,
    /// One line for people.
    pub message: String,
}

/// One analysis of a wave.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisReport {
    /// When it was taken.
    pub at: Time,
    /// Fail if any check failed, else Inconclusive if any was, else Pass.
    pub verdict: Verdict,
    /// Every check, in spec order.
    pub checks: Vec<CheckResult>,
}

impl AnalysisReport {
    /// The messages that decided the verdict (the failed checks, else the inconclusive ones,
    /// else all), joined for status and Events.
    pub fn summary(&self) -> String {
        let deciding: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.verdict == self.verdict)
            .map(|c| c.message.as_str())
            .collect();
        deciding.join("; ")
    }
}

/// What [`evaluate`] needs besides the checks.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The wave's accumulated counters.
    pub window: &'a WaveWindow,
    /// The stable baseline frozen for this wave (`status.rollout.baseline`); `None` compares
    /// with 0 stops per hour.
    pub baseline: Option<&'a StopBaseline>,
    /// The first execution provider of the spec, as the sidecar labels it (`cpu`, `cuda`,
    /// `tensorrt`): any other means a provider fallback.
    pub preferred_provider: &'a str,
    /// Results of the prometheus queries, by check name (missing: not run, inconclusive).
    pub prometheus: &'a BTreeMap<String, Result<f64, PromQueryError>>,
}

/// Runs every check and combines the verdicts.
pub fn evaluate(
    checks: &[Check],
    no_data: NoDataPolicy,
    inputs: &Inputs<'_>,
    at: &Time,
) -> AnalysisReport {
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| checks::run(c, no_data, inputs))
        .collect();
    let verdict = if results.iter().any(|r| r.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if results.iter().any(|r| r.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    AnalysisReport {
        at: at.clone(),
        verdict,
        checks: results,
    }
}

/// `(failed, total)` requests of the wave: failed = `error + rejected + timeout`, total = every
/// outcome but `invalid`.
pub fn request_outcomes(window: &WaveWindow) -> (f64, f64) {
    let mut failed = 0.0;
    let mut total = 0.0;
    for robot in window.inference.values() {
        for (labels, delta) in robot.deltas(REQUESTS_TOTAL) {
            let outcome = labels.get("outcome").map(String::as_str).unwrap_or("");
            if outcome == "invalid" {
                continue;
            }
            total += delta;
            if FAILED_OUTCOMES.contains(&outcome) {
                failed += delta;
            }
        }
    }
    (failed, total)
}

/// The wave's latency histogram: bucket deltas summed by `le` over every robot (and every
/// model label).
pub fn latency_buckets(window: &WaveWindow) -> Vec<Bucket> {
    let mut by_le: Vec<Bucket> = Vec::new();
    for robot in window.inference.values() {
        for (labels, delta) in robot.deltas(DURATION_BUCKET) {
            let Some(le) = labels.get("le").and_then(|l| parse_le(l)) else {
                continue;
            };
            match by_le.iter_mut().find(|b| b.le == le) {
                Some(b) => b.count += delta,
                None => by_le.push(Bucket { le, count: delta }),
            }
        }
    }
    by_le.sort_by(|a, b| a.le.total_cmp(&b.le));
    by_le
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        t => t.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// `(stops, robot-hours)` of the wave's robots since each was updated.
pub fn wave_stops(window: &WaveWindow) -> (f64, f64) {
    let mut stops = 0.0;
    let mut hours = 0.0;
    for robot in window.safety.values() {
        stops += robot
            .deltas(STOPS_TOTAL)
            .filter(|(labels, _)| !is_lifecycle_stop(labels))
            .map(|(_, d)| d)
            .sum::<f64>();
        hours += robot.hours();
    }
    (stops, hours)
}

fn is_lifecycle_stop(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get("reason")
        .is_some_and(|r| LIFECYCLE_STOPS.contains(&r.as_str()))
}

/// Safety stops a monitor counted in its life (every reason but `Startup` and `Shutdown`).
pub fn lifetime_stops(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == STOPS_TOTAL && !is_lifecycle_stop(&s.labels))
        .filter(|s| s.value.is_finite() && s.value >= 0.0)
        .map(|s| s.value)
        .sum()
}

/// One stable robot's monitor, for the baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StableSample {
    /// [`lifetime_stops`] of its monitor.
    pub stops: f64,
    /// Hours its monitor has been running (since the container started).
    pub hours: f64,
}

/// The stable robots' stop rate: their stops over their monitors' running time, summed (a
/// rate per robot-hour over the sample's whole life, so a single scrape measures it). No
/// robot-hours gives 0 stops per hour, and the SafetyStopRate check then compares against 0.
pub fn baseline(samples: &[StableSample], at: &Time) -> StopBaseline {
    let usable = samples
        .iter()
        .filter(|s| s.stops.is_finite() && s.hours.is_finite() && s.hours > 0.0);
    let (stops, hours) = usable.fold((0.0, 0.0), |(s, h), x| (s + x.stops, h + x.hours));
    StopBaseline {
        stops_per_hour: if hours > 0.0 { stops / hours } else { 0.0 },
        robot_hours: hours,
        measured_at: at.clone(),
    }
}

/// Whether any of a monitor's stop locks is engaged (`robofleet_safety_stop_active` = 1);
/// `None` when the page has no such gauge.
pub fn stop_lock_engaged(samples: &[Sample]) -> Option<bool> {
    let mut seen = false;
    for s in samples.iter().filter(|s| s.name == STOP_ACTIVE) {
        seen = true;
        if s.value >= 1.0 {
            return Some(true);
        }
    }
    seen.then_some(false)
}

/// The state a bridge reports (`robofleet_robot_state{state}` = 1), if any.
pub fn reported_state(samples: &[Sample]) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == ROBOT_STATE && s.value == 1.0)
        .and_then(|s| s.labels.get("state").cloned())
}
