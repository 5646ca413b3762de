//! One scan against the zones: REP 117 classification, laser→zone transform, points per zone,
//! invalid fraction per zone, and the verdict. Pure; the beam/zone coverage is cached per scan
//! geometry because it only changes when the LIDAR's configuration does.

use super::config::{Action, Policy};
use super::geometry::Pt;
use crate::msg::LaserScan;

/// Why a reading is invalid (REP 117), the `kind` label of `robofleet_safety_invalid_ranges_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// NaN: no measurement.
    Nan,
    /// Finite and below `range_min`.
    BelowMin,
    /// Finite and above `range_max`.
    AboveMax,
}

impl InvalidKind {
    /// All kinds, in label order.
    pub const ALL: [InvalidKind; 3] = [
        InvalidKind::Nan,
        InvalidKind::BelowMin,
        InvalidKind::AboveMax,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::Nan => "nan",
            InvalidKind::BelowMin => "below_min",
            InvalidKind::AboveMax => "above_max",
        }
    }
}

/// What one beam reading means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// Something at this range (m); `-Inf` becomes `range_min`.
    Hit(f64),
    /// `+Inf`: nothing within range.
    Clear,
    /// Unusable.
    Invalid(InvalidKind),
}

/// REP 117 classification of a range.
pub fn classify(r: f32, range_min: f32, range_max: f32) -> Reading {
    if r.is_nan() {
        Reading::Invalid(InvalidKind::Nan)
    } else if r == f32::NEG_INFINITY {
        Reading::Hit(f64::from(range_min))
    } else if r == f32::INFINITY {
        Reading::Clear
    } else if r < range_min {
        Reading::Invalid(InvalidKind::BelowMin)
    } else if r > range_max {
        Reading::Invalid(InvalidKind::AboveMax)
    } else {
        Reading::Hit(f64::from(r))
    }
}

/// Why a scan calls for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Enough points in a stop zone.
    Obstacle,
    /// Too many invalid readings through a stop or slowdown zone, or an unusable scan.
    SensorInvalid,
}

/// The scan's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Nothing in any stop or slowdown zone.
    Clear,
    /// A slowdown zone triggered (lowest limit wins).
    Slowdown {
        /// Percent of maximum speed.
        percent: f64,
    },
    /// Stop.
    Stop {
        /// Cause.
        cause: StopCause,
        /// The zone that caused it (`None`: the scan itself is unusable).
        zone: Option<usize>,
    },
}

/// Per-zone result.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ZoneResult {
    /// Points inside.
    pub points: usize,
    /// Nearest point inside, distance from the zone frame's origin.
    pub min_distance: Option<f64>,
    /// Beams that pass through the zone.
    pub covering: usize,
    /// Of those, invalid readings.
    pub invalid: usize,
    /// `points >= minPoints`.
    pub triggered: bool,
    /// Invalid fraction above the limit (or no beam covers the zone).
    pub blinded: bool,
}

/// The result of one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Verdict.
    pub verdict: Verdict,
    /// Per zone, in policy order.
    pub zones: Vec<ZoneResult>,
    /// Nearest valid point in the zone frame, any direction.
    pub min_obstacle_distance: Option<f64>,
    /// Invalid readings by [`InvalidKind`] (same order as [`InvalidKind::ALL`]).
    pub invalid: [u64; 3],
}

#[derive(Debug, Clone, PartialEq)]
struct GeometryKey {
    angle_min: u32,
    angle_increment: u32,
    n: usize,
    range_min: u32,
    range_max: u32,
}

/// Evaluates scans for one policy; keeps the coverage cache.
#[derive(Debug, Clone)]
pub struct Evaluator {
    policy: Policy,
    cache: Option<(GeometryKey, Vec<Vec<bool>>)>,
}

impl Evaluator {
    /// For a validated policy.
    pub fn new(policy: Policy) -> Self {
        Evaluator {
            policy,
            cache: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn unusable(&self) -> Evaluation {
        Evaluation {
            verdict: Verdict::Stop {
                cause: StopCause::SensorInvalid,
                zone: None,
            },
            zones: vec![ZoneResult::default(); self.policy.zones.len()],
            min_obstacle_distance: None,
            invalid: [0; 3],
        }
    }

    /// Evaluates one scan.
    pub fn evaluate(&mut self, scan: &LaserScan) -> Evaluation {
        let n = scan.ranges.len();
        let geometry_ok = n > 0
            && scan.angle_min.is_finite()
            && scan.angle_increment.is_finite()
            && scan.angle_increment != 0.0
            && scan.range_min.is_finite()
            && scan.range_min >= 0.0
            && scan.range_max.is_finite()
            && scan.range_max > scan.range_min;
        if !geometry_ok {
            return self.unusable();
        }
        let angle =
            |i: usize| f64::from(scan.angle_min) + i as f64 * f64::from(scan.angle_increment);
        let key = GeometryKey {
            angle_min: scan.angle_min.to_bits(),
            angle_increment: scan.angle_increment.to_bits(),
            n,
            range_min: scan.range_min.to_bits(),
            range_max: scan.range_max.to_bits(),
        };
        let tf = self.policy.transform;
        if self.cache.as_ref().map(|(k, _)| k) != Some(&key) {
            let (rmin, rmax) = (f64::from(scan.range_min), f64::from(scan.range_max));
            let coverage = self
                .policy
                .zones
                .iter()
                .map(|z| {
                    (0..n)
                        .map(|i| z.shape.beam_crosses(&tf, angle(i), rmin, rmax))
                        .collect()
                })
                .collect();
            self.cache = Some((key, coverage));
        }
        let coverage: &[Vec<bool>] = self
            .cache
            .as_ref()
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&[]);

        let zones = &self.policy.zones;
        let mut results = vec![ZoneResult::default(); zones.len()];
        let mut invalid = [0u64; 3];
        let mut nearest: Option<f64> = None;
        for (i, &r) in scan.ranges.iter().enumerate() {
            match classify(r, scan.range_min, scan.range_max) {
                Reading::Invalid(kind) => {
                    invalid[kind as usize] += 1;
                    for (z, res) in results.iter_mut().enumerate() {
                        if coverage[z][i] {
                            res.invalid += 1;
                        }
                    }
                }
                Reading::Clear => {}
                Reading::Hit(range) => {
                    let p: Pt = tf.beam_point(angle(i), range);
                    let d = p.norm();
                    nearest = Some(nearest.map_or(d, |m| m.min(d)));
                    for (zone, res) in zones.iter().zip(results.iter_mut()) {
                        if zone.shape.contains(p) {
                            res.points += 1;
                            res.min_distance = Some(res.min_distance.map_or(d, |m| m.min(d)));
                        }
                    }
                }
            }
        }
        for ((zone, res), cov) in zones.iter().zip(results.iter_mut()).zip(coverage) {
            res.covering = cov.iter().filter(|c| **c).count();
            res.triggered = res.points >= zone.min_points;
            res.blinded = res.covering == 0
                || res.invalid as f64 / res.covering as f64 > self.policy.max_invalid_fraction;
        }
        Evaluation {
            verdict: verdict(&self.policy, &results),
            zones: results,
            min_obstacle_distance: nearest,
            invalid,
        }
    }
}

fn verdict(policy: &Policy, results: &[ZoneResult]) -> Verdict {
    let zones = || policy.zones.iter().zip(results).enumerate();
    let nearest_stop = zones()
        .filter(|(_, (z, r))| z.action == Action::Stop && r.triggered)
        .min_by(|a, b| {
            let d = |x: &(usize, (_, &ZoneResult))| x.1.1.min_distance.unwrap_or(f64::INFINITY);
            d(a).total_cmp(&d(b))
        });
    if let Some((i, _)) = nearest_stop {
        return Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(i),
        };
    }
    if let Some((i, _)) = zones().find(|(_, (z, r))| z.action != Action::Warn && r.blinded) {
        return Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: Some(i),
        };
    }
    zones()
        .filter(|(_, (z, r))| z.action == Action::Slowdown && r.triggered)
        .map(|(_, (z, _))| z.speed_limit_percent)
        .reduce(f64::min)
        .map_or(Verdict::Clear, |percent| Verdict::Slowdown { percent })
}

#[cfg(test)]
mod tests;
