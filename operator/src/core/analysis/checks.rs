//! One check against the wave's data: the verdict, the observed value and a message.

use robofleet_crds::inference_service::{NoDataPolicy, Verdict};

use super::{
    Check, CheckKind, CheckResult, Inputs, ModelInfo, RobotWindow, histogram_quantile,
    latency_buckets, request_outcomes, wave_stops,
};

fn no_data_verdict(policy: NoDataPolicy) -> Verdict {
    match policy {
        NoDataPolicy::Inconclusive => Verdict::Inconclusive,
        NoDataPolicy::Pass => Verdict::Pass,
        NoDataPolicy::Fail => Verdict::Fail,
    }
}

fn judge(observed: f64, max: f64) -> Verdict {
    // NaN never passes.
    if observed <= max {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

pub(super) fn run(check: &Check, no_data: NoDataPolicy, inputs: &Inputs<'_>) -> CheckResult {
    let name = &check.name;
    let result = |verdict, observed, samples, message: String| CheckResult {
        name: name.clone(),
        verdict,
        observed,
        samples,
        message: format!("{name}: {message}"),
    };
    let nodata = |samples: f64, why: String| {
        let v = no_data_verdict(no_data);
        result(
            v,
            None,
            samples,
            format!("no data ({why}), counted as {v:?}"),
        )
    };
    match &check.kind {
        CheckKind::ErrorRatio {
            max_ratio,
            min_samples,
        } => {
            let (failed, total) = request_outcomes(inputs.window);
            if total < *min_samples as f64 || total <= 0.0 {
                return nodata(
                    total,
                    format!("{total} requests, fewer than minSamples {min_samples}"),
                );
            }
            let ratio = failed / total;
            let v = judge(ratio, *max_ratio);
            let cmp = if v == Verdict::Pass {
                "at most"
            } else {
                "above"
            };
            result(
                v,
                Some(ratio),
                total,
                format!(
                    "{} of {total} requests failed ({}), {cmp} {}",
                    failed,
                    percent(ratio),
                    percent(*max_ratio)
                ),
            )
        }
        CheckKind::Latency {
            quantile,
            max,
            min_samples,
        } => {
            let buckets = latency_buckets(inputs.window);
            let count = buckets
                .iter()
                .find(|b| b.le == f64::INFINITY)
                .map_or(0.0, |b| b.count);
            if count < *min_samples as f64 || count <= 0.0 {
                return nodata(
                    count,
                    format!("{count} requests, fewer than minSamples {min_samples}"),
                );
            }
            let value = histogram_quantile(*quantile, &buckets);
            if value.is_nan() {
                return nodata(count, "the histogram has no +Inf bucket".to_owned());
            }
            let v = judge(value, max.as_secs_f64());
            let cmp = if v == Verdict::Pass {
                "at most"
            } else {
                "above"
            };
            result(
                v,
                Some(value),
                count,
                format!(
                    "{quantile} quantile {} over {count} requests, {cmp} {}",
                    millis(value),
                    millis(max.as_secs_f64())
                ),
            )
        }
        CheckKind::SafetyStopRate {
            max_increase_per_hour,
            min_robot_hours,
        } => {
            let (stops, hours) = wave_stops(inputs.window);
            if hours < *min_robot_hours || hours <= 0.0 {
                return nodata(
                    hours,
                    format!("{hours:.2} robot-hours, fewer than minRobotHours {min_robot_hours}"),
                );
            }
            let rate = stops / hours;
            let base = inputs.baseline.map_or(0.0, |b| b.stops_per_hour);
            let increase = rate - base;
            let v = judge(increase, *max_increase_per_hour);
            let cmp = if v == Verdict::Pass {
                "at most"
            } else {
                "above"
            };
            result(
                v,
                Some(increase),
                hours,
                format!(
                    "{stops} stops in {hours:.2} robot-hours = {rate:.2}/h against a stable \
                     {base:.2}/h: {increase:+.2}/h, {cmp} +{max_increase_per_hour}/h"
                ),
            )
        }
        CheckKind::FallbackRobots { max } => {
            let known: Vec<&ModelInfo> = inputs
                .window
                .inference
                .values()
                .filter_map(RobotWindow::model)
                .collect();
            if known.is_empty() {
                return nodata(0.0, "no robot reported its model yet".to_owned());
            }
            let fallen = known
                .iter()
                .filter(|m| m.fallback || m.execution_provider != inputs.preferred_provider)
                .count() as f64;
            let v = judge(fallen, *max);
            let cmp = if v == Verdict::Pass {
                "at most"
            } else {
                "above"
            };
            result(
                v,
                Some(fallen),
                known.len() as f64,
                format!(
                    "{fallen} of {} robots on a fallback model or execution provider, {cmp} {max}",
                    known.len()
                ),
            )
        }
        CheckKind::Prometheus { max, .. } => match inputs.prometheus.get(name) {
            Some(Ok(value)) => {
                let v = judge(*value, *max);
                let cmp = if v == Verdict::Pass {
                    "at most"
                } else {
                    "above"
                };
                result(
                    v,
                    Some(*value),
                    1.0,
                    format!("the query returned {value}, {cmp} {max}"),
                )
            }
            Some(Err(e)) if e.is_no_data() => nodata(0.0, e.to_string()),
            Some(Err(e)) => result(Verdict::Inconclusive, None, 0.0, e.to_string()),
            None => result(
                Verdict::Inconclusive,
                None,
                0.0,
                "the query was not run".to_owned(),
            ),
        },
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

fn millis(seconds: f64) -> String {
    if seconds.is_infinite() {
        return "+Inf".to_owned();
    }
    format!("{:.1}ms", seconds * 1000.0)
}
