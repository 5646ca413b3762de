//! The sidecar's Prometheus metrics, named as `product.md` names them. Every label value is
//! bounded by configuration (model name and version, sha256, execution provider) or by a closed
//! set in code (outcome, failure reason).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a request ended. `invalid` is the client's fault and is excluded from the error ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// answered with outputs
    success,
    /// the server or the model failed
    error,
    /// a bad request (4xx other than 429)
    invalid,
    /// refused because the queue was full, or the server was not ready or draining
    rejected,
    /// the deadline passed before the model ran or answered
    timeout,
}

/// `{model, model_version}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModelLabels {
    /// served model name
    pub model: String,
    /// free version label from the configuration
    pub model_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    model_version: String,
    outcome: Outcome,
}

/// `robofleet_model_info` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModelInfoLabels {
    /// served model name
    pub model: String,
    /// version label
    pub model_version: String,
    /// sha256 of the loaded file
    pub sha256: String,
    /// the execution provider that took the model (`cpu`, `cuda`, `tensorrt`)
    pub execution_provider: String,
    /// `"true"` when the fallback model is served
    pub fallback: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DetectionLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// Seconds: 100 µs to 10 s, dense around the tens of milliseconds robots care about.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05,
    0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// All metrics of one sidecar process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<ModelLabels>,
    /// time from accept to dequeue
    pub queue_duration: Histogram,
    /// time in the model
    pub compute_duration: Histogram,
    /// requests per model run
    pub batch_size: Histogram,
    /// requests waiting in the queue
    pub queue_depth: Gauge,
    /// requests accepted and not yet answered
    pub in_flight: Gauge,
    model_loaded: Family<ModelLabels, Gauge>,
    model_info: Family<ModelInfoLabels, Gauge>,
    /// time to fetch, load and warm a model
    pub model_load_duration: Histogram,
    model_load_failures: Family<ReasonLabels, Counter>,
    detection_images: Family<DetectionLabels, Counter>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            queue_duration: latency_histogram(),
            compute_duration: latency_histogram(),
            batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            model_loaded: Family::default(),
            model_info: Family::default(),
            model_load_duration: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            model_load_failures: Family::default(),
            detection_images: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "robofleet_inference_requests",
            "Inference requests by outcome (success, error, invalid, rejected, timeout)",
            m.requests.clone(),
        );
        registry.register(
            "robofleet_inference_request_duration_seconds",
            "Time from accepting an inference request to its answer (requests that reached the queue)",
            m.request_duration.clone(),
        );
        registry.register(
            "robofleet_inference_queue_duration_seconds",
            "Time requests waited in the queue",
            m.queue_duration.clone(),
        );
        registry.register(
            "robofleet_inference_compute_duration_seconds",
            "Time spent running the model, per run",
            m.compute_duration.clone(),
        );
        registry.register(
            "robofleet_inference_batch_size",
            "Requests per model run",
            m.batch_size.clone(),
        );
        registry.register(
            "robofleet_inference_queue_depth",
            "Requests waiting in the queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "robofleet_inference_in_flight_requests",
            "Inference requests accepted and not yet answered",
            m.in_flight.clone(),
        );
        registry.register(
            "robofleet_model_loaded",
            "1 while the model is loaded, warm and served",
            m.model_loaded.clone(),
        );
        registry.register(
            "robofleet_model_info",
            "The served model: sha256, execution provider and whether it is the fallback",
            m.model_info.clone(),
        );
        registry.register(
            "robofleet_model_load_duration_seconds",
            "Time to fetch, verify, load and warm up a model",
            m.model_load_duration.clone(),
        );
        registry.register(
            "robofleet_model_load_failures",
            "Model fetch, verify, load or warm-up failures by reason",
            m.model_load_failures.clone(),
        );
        registry.register(
            "robofleet_detection_images",
            "Images sent to /v1/detect by outcome (ok, corrupt, unsupported)",
            m.detection_images.clone(),
        );
        for outcome in ["ok", "corrupt", "unsupported"] {
            let _ = m
                .detection_images
                .get_or_create(&DetectionLabels { outcome });
        }
        Arc::new(Self { registry, ..m })
    }

    /// Counts an image sent for detection: `ok`, `corrupt` or `unsupported`.
    pub fn detection_image(&self, outcome: &'static str) {
        self.detection_images
            .get_or_create(&DetectionLabels { outcome })
            .inc();
    }

    /// Counts a finished request.
    pub fn request(&self, model: &ModelLabels, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.model.clone(),
                model_version: model.model_version.clone(),
                outcome,
            })
            .inc();
    }

    /// Records the latency of a request that reached the queue.
    pub fn request_duration(&self, model: &ModelLabels, seconds: f64) {
        self.request_duration.get_or_create(model).observe(seconds);
    }

    /// Counts a failed model load.
    pub fn load_failure(&self, reason: &'static str) {
        self.model_load_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Marks a model as served (and clears any other).
    pub fn model_served(&self, info: &ModelInfoLabels) {
        self.model_loaded.clear();
        self.model_info.clear();
        self.model_loaded
            .get_or_create(&ModelLabels {
                model: info.model.clone(),
                model_version: info.model_version.clone(),
            })
            .set(1);
        self.model_info.get_or_create(info).set(1);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_product_contract() {
        let m = Metrics::new();
        let model = ModelLabels {
            model: "m".into(),
            model_version: "v1".into(),
        };
        m.request(&model, Outcome::success);
        m.request_duration(&model, 0.01);
        m.load_failure("verify");
        m.model_served(&ModelInfoLabels {
            model: "m".into(),
            model_version: "v1".into(),
            sha256: "ab".into(),
            execution_provider: "cpu".into(),
            fallback: "false".into(),
        });
        let text = m.encode().unwrap();
        for needle in [
            r#"robofleet_inference_requests_total{model="m",model_version="v1",outcome="success"} 1"#,
            r#"robofleet_inference_request_duration_seconds_count{model="m",model_version="v1"} 1"#,
            "robofleet_inference_queue_duration_seconds_bucket",
            "robofleet_inference_compute_duration_seconds_bucket",
            "robofleet_inference_batch_size_bucket",
            "robofleet_inference_queue_depth 0",
            "robofleet_inference_in_flight_requests 0",
            r#"robofleet_model_loaded{model="m",model_version="v1"} 1"#,
            r#"robofleet_model_info{model="m",model_version="v1",sha256="ab",execution_provider="cpu",fallback="false"} 1"#,
            "robofleet_model_load_duration_seconds_bucket",
            r#"robofleet_model_load_failures_total{reason="verify"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
