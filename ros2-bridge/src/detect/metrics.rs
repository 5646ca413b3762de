//! `robofleet_detect_*`: the detection bridge's own series. They are deliberately not the
//! sidecar's `robofleet_detection_images_total`: both run on the same robot and are scraped
//! together, so sharing a name would count every frame twice. Every outcome is pre-registered at
//! zero so that rates and ratios exist before the first failure.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::frame::Outcome;

/// `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// [`Outcome::as_str`].
    pub outcome: &'static str,
}

/// The bridge's series.
#[derive(Clone)]
pub struct DetectMetrics {
    /// Camera frames by what became of them.
    pub frames: Family<OutcomeLabel, Counter>,
    /// From a frame's arrival to the publication of its detections.
    pub latency: Histogram,
    /// Requests to the sidecar under way.
    pub in_flight: Gauge,
    /// Detections published.
    pub detections: Counter,
}

/// Latency buckets: a frame period at 30 Hz is 33 ms; a CPU detector takes 5–100 ms.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.033, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
];

impl DetectMetrics {
    /// Registers under `robofleet_detect_`.
    pub fn register(registry: &mut Registry) -> DetectMetrics {
        let m = DetectMetrics {
            frames: Family::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
            in_flight: Gauge::default(),
            detections: Counter::default(),
        };
        for o in Outcome::ALL {
            let _ = m.frames.get_or_create(&OutcomeLabel {
                outcome: o.as_str(),
            });
        }
        let r = registry.sub_registry_with_prefix("robofleet_detect");
        r.register(
            "frames",
            "Camera frames by outcome (ok, stale, corrupt, unsupported, rejected, timeout, unavailable, error)",
            m.frames.clone(),
        );
        r.register(
            "latency_seconds",
            "From a camera frame's arrival to the publication of its detections",
            m.latency.clone(),
        );
        r.register(
            "in_flight_requests",
            "Requests to the sidecar under way",
            m.in_flight.clone(),
        );
        r.register("detections", "Detections published", m.detections.clone());
        m
    }

    /// Counts one frame.
    pub fn frame(&self, outcome: Outcome) {
        self.frames
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }
}
