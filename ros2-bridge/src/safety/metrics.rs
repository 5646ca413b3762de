//! `robofleet_safety_*`: one struct, registered once, shared with the ROS thread.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// `{policy}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// Policy name.
    pub policy: String,
}

/// `{policy, zone, action}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// Policy name.
    pub policy: String,
    /// Zone name.
    pub zone: String,
    /// `stop`, `slowdown`, `warn`.
    pub action: &'static str,
}

/// `{policy, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Policy name.
    pub policy: String,
    /// Stop reason (closed set).
    pub reason: &'static str,
}

/// `{kind}` / `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Value.
    pub kind: &'static str,
}

/// `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// Value.
    pub outcome: &'static str,
}

/// The safety monitor's series.
#[derive(Clone)]
pub struct SafetyMetrics {
    /// Nearest valid point (m).
    pub min_obstacle_distance: Family<PolicyLabel, Gauge<f64, AtomicU64>>,
    /// 1 while the lock says stop.
    pub stop_active: Family<PolicyLabel, Gauge>,
    /// Matched subscribers of the lock.
    pub stop_consumers: Family<PolicyLabel, Gauge>,
    /// Matched publishers on the scan topic.
    pub scan_publishers: Family<PolicyLabel, Gauge>,
    /// Zone activations (rising edges).
    pub alerts: Family<AlertLabels, Counter>,
    /// Transitions to stop, by reason (the SafetyStopRate analysis counts these).
    pub stops: Family<ReasonLabels, Counter>,
    /// REP 117 invalid readings.
    pub invalid_ranges: Family<KindLabel, Counter>,
    /// Scan receipt to stop publication.
    pub reaction: Histogram,
    /// Age of the last evaluation.
    pub scan_age: Gauge<f64, AtomicU64>,
    /// Config reloads by outcome.
    pub reloads: Family<OutcomeLabel, Counter>,
}

/// Reaction buckets: sub-millisecond resolution where the target is.
pub const REACTION_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0,
];

impl SafetyMetrics {
    /// Registers under `robofleet_safety_`.
    pub fn register(registry: &mut Registry) -> SafetyMetrics {
        let m = SafetyMetrics {
            min_obstacle_distance: Family::default(),
            stop_active: Family::default(),
            stop_consumers: Family::default(),
            scan_publishers: Family::default(),
            alerts: Family::default(),
            stops: Family::default(),
            invalid_ranges: Family::default(),
            reaction: Histogram::new(REACTION_BUCKETS),
            scan_age: Gauge::default(),
            reloads: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("robofleet_safety");
        r.register(
            "min_obstacle_distance_meters",
            "Nearest valid LIDAR point in the zone frame",
            m.min_obstacle_distance.clone(),
        );
        r.register(
            "stop_active",
            "1 while the stop lock says stop",
            m.stop_active.clone(),
        );
        r.register(
            "stop_consumers",
            "Matched subscribers of the stop lock",
            m.stop_consumers.clone(),
        );
        r.register(
            "scan_publishers",
            "Matched publishers on the scan topic",
            m.scan_publishers.clone(),
        );
        r.register("alerts", "Zone activations", m.alerts.clone());
        r.register(
            "stops",
            "Transitions of the lock to stop, by reason",
            m.stops.clone(),
        );
        r.register(
            "invalid_ranges",
            "REP 117 invalid range readings",
            m.invalid_ranges.clone(),
        );
        r.register(
            "reaction_duration_seconds",
            "From scan receipt to publication of the resulting stop",
            m.reaction.clone(),
        );
        r.register(
            "scan_age_seconds",
            "Age of the last evaluated scan (monotonic)",
            m.scan_age.clone(),
        );
        r.register(
            "config_reloads",
            "Policy reloads from the mounted file",
            m.reloads.clone(),
        );
        m
    }
}
