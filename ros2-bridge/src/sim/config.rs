//! The SensorSim file (what the operator renders from a `SensorSim` spec), validated.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::camera::{CameraConfig, Encoding};
use crate::safety::config::{ConfigError, parse_duration, resolve_topic};

/// The file: the `SensorSim` spec as the CRD writes it (fields the sim does not use, such as
/// `template` and `target`, are ignored), plus `unitsUnderTest.stopTopic` resolved by the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimFile {
    /// The simulated sensor.
    pub sensor: SensorSpec,
    /// Range noise.
    #[serde(default)]
    pub noise: NoiseSpec,
    /// Scripted obstacles.
    #[serde(default)]
    pub scenario: ScenarioSpec,
    /// Injected faults.
    #[serde(default)]
    pub faults: FaultSpec,
    /// What must happen.
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
    /// Run time.
    #[serde(default = "thirty_seconds")]
    pub duration: String,
    /// The units under test.
    #[serde(default)]
    pub units_under_test: UnitsSpec,
}

/// `sensor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SensorSpec {
    /// `lidar2d` (`camera` is not built yet).
    #[serde(rename = "type")]
    pub kind: String,
    /// Topic.
    #[serde(default = "scan_topic")]
    pub topic: String,
    /// header.frame_id.
    #[serde(default = "laser")]
    pub frame_id: String,
    /// Publication rate.
    #[serde(default = "ten")]
    pub rate_hz: f64,
    /// LIDAR geometry.
    #[serde(default)]
    pub lidar: LidarSpec,
    /// Camera settings (`type: camera`).
    #[serde(default)]
    pub camera: Option<CameraSpec>,
}

/// `sensor.camera`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CameraSpec {
    /// Columns.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Rows.
    #[serde(default = "default_height")]
    pub height: u32,
    /// `rgb8`, `bgr8`, `mono8` (`jpeg`/`png` are not built yet).
    #[serde(default = "default_encoding")]
    pub encoding: String,
}

fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_encoding() -> String {
    "rgb8".into()
}

/// `sensor.lidar`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LidarSpec {
    /// Beams per scan, evenly spread over [angleMinDeg, angleMaxDeg).
    #[serde(default = "beams")]
    pub beams: usize,
    /// First beam (degrees).
    #[serde(default = "minus180")]
    pub angle_min_deg: f64,
    /// End of the field of view (degrees, exclusive).
    #[serde(default = "plus180")]
    pub angle_max_deg: f64,
    /// range_min (m).
    #[serde(default = "rmin")]
    pub range_min: f32,
    /// range_max (m).
    #[serde(default = "rmax")]
    pub range_max: f32,
}

impl Default for LidarSpec {
    fn default() -> Self {
        LidarSpec {
            beams: beams(),
            angle_min_deg: minus180(),
            angle_max_deg: plus180(),
            range_min: rmin(),
            range_max: rmax(),
        }
    }
}

fn laser() -> String {
    "laser".into()
}
// Defaults as in the CRD.
fn ten() -> f64 {
    10.0
}
fn scan_topic() -> String {
    "/scan".into()
}
fn thirty_seconds() -> String {
    "30s".into()
}
fn beams() -> usize {
    360
}
fn minus180() -> f64 {
    -180.0
}
fn plus180() -> f64 {
    180.0
}
fn rmin() -> f32 {
    0.05
}
fn rmax() -> f32 {
    30.0
}

/// `noise`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoiseSpec {
    /// Gaussian range noise (m).
    #[serde(default)]
    pub stddev: f64,
    /// Seed.
    #[serde(default)]
    pub seed: u64,
}

/// `scenario`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Obstacles.
    #[serde(default)]
    pub obstacles: Vec<ObstacleSpec>,
}

/// A round obstacle on a fixed bearing, moving radially.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObstacleSpec {
    /// Name (for reports).
    #[serde(default)]
    pub name: Option<String>,
    /// Bearing from the sensor (degrees, 0 = ahead).
    pub bearing_deg: f64,
    /// Distance of its surface at `appearAt` (m).
    pub start_distance: f64,
    /// Approach speed (m/s; negative moves away).
    #[serde(default)]
    pub speed: f64,
    /// Closest it gets (m).
    #[serde(default = "min_distance")]
    pub min_distance: f64,
    /// Diameter (m).
    #[serde(default = "width")]
    pub width: f64,
    /// When it appears (from the scenario start).
    #[serde(default)]
    pub appear_at: Option<String>,
    /// When it disappears.
    #[serde(default)]
    pub disappear_at: Option<String>,
}

fn min_distance() -> f64 {
    0.1
}
fn width() -> f64 {
    0.2
}

/// `faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// Per beam.
    #[serde(default)]
    pub nan_rate: f64,
    /// Per beam.
    #[serde(default)]
    pub neg_inf_rate: f64,
    /// Per scan: not published.
    #[serde(default)]
    pub drop_rate: f64,
    /// Stop publishing after this long.
    #[serde(default)]
    pub stall_after: Option<String>,
    /// Every scan all NaN from this time on (a blinded sensor).
    #[serde(default)]
    pub blind_after: Option<String>,
    /// Camera only: frames with truncated data.
    #[serde(default)]
    pub corrupt_image_rate: Option<f64>,
}

/// One expectation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectSpec {
    /// Name (for reports).
    #[serde(default)]
    pub name: Option<String>,
    /// Camera/detection expectation (not supported yet: rejected).
    #[serde(default)]
    pub max_decode_error_ratio: Option<f64>,
    /// The lock must read stop within this long after the trigger.
    #[serde(default)]
    pub safety_stop_within: Option<String>,
    /// Trigger: the nearest obstacle closer than this (m).
    #[serde(default)]
    pub when_distance_below: Option<f64>,
    /// Trigger: the sensor stalls or is blinded (`faults.stallAfter` / `blindAfter`).
    #[serde(default)]
    pub when_sensor_fault: Option<bool>,
    /// The lock must read clear within this long after the last obstacle left...
    #[serde(default)]
    pub safety_release_within: Option<String>,
    /// ...and not before this long (the monitor's holdTime).
    #[serde(default)]
    pub safety_release_not_before: Option<String>,
}

/// `unitsUnderTest`: the operator resolves the SafetyPolicy reference into `stopTopic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitsSpec {
    /// Stop lock topic of the monitor under test.
    #[serde(default)]
    pub stop_topic: Option<String>,
    /// As in the CRD (informational here).
    #[serde(default)]
    pub safety_policy_ref: Option<serde_yaml::Value>,
    /// As in the CRD (informational here).
    #[serde(default)]
    pub inference_service_ref: Option<serde_yaml::Value>,
    /// As in the CRD (informational here).
    #[serde(default)]
    pub revision: Option<String>,
}

/// A validated expectation.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Stop within `within` of the nearest obstacle crossing `distance`.
    StopWhenCloser {
        /// Deadline.
        within: Duration,
        /// Trigger distance (m).
        distance: f64,
    },
    /// Stop within `within` of the stall/blind fault.
    StopOnFault {
        /// Deadline.
        within: Duration,
    },
    /// Clear between `not_before` and `within` after the last obstacle disappeared.
    Release {
        /// Deadline.
        within: Duration,
        /// Earliest.
        not_before: Duration,
    },
}

/// A validated obstacle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obstacle {
    /// Bearing (rad).
    pub bearing: f64,
    /// Surface distance at appearance (m).
    pub start: f64,
    /// m/s towards the sensor.
    pub speed: f64,
    /// Closest (m).
    pub min: f64,
    /// Radius (m).
    pub radius: f64,
    /// Appearance (s from start).
    pub appear: f64,
    /// Disappearance (s from start).
    pub disappear: f64,
}

/// The validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// `Some` for a camera sensor (frames instead of scans).
    pub camera: Option<CameraConfig>,
    /// Resolved topic.
    pub topic: String,
    /// Frame.
    pub frame_id: String,
    /// Period between scans.
    pub period: Duration,
    /// Beams.
    pub beams: usize,
    /// First beam (rad).
    pub angle_min: f32,
    /// Increment (rad).
    pub angle_increment: f32,
    /// range_min.
    pub range_min: f32,
    /// range_max.
    pub range_max: f32,
    /// Noise.
    pub noise: NoiseSpec,
    /// Obstacles.
    pub obstacles: Vec<Obstacle>,
    /// Per-beam NaN probability.
    pub nan_rate: f64,
    /// Per-beam -Inf probability.
    pub neg_inf_rate: f64,
    /// Per-scan drop probability.
    pub drop_rate: f64,
    /// Stall time (s).
    pub stall_after: Option<f64>,
    /// Blind time (s).
    pub blind_after: Option<f64>,
    /// Expectations.
    pub expect: Vec<Expect>,
    /// Run time.
    pub duration: Duration,
    /// Stop lock to watch.
    pub stop_topic: Option<String>,
}

/// A duration flag, `None` if it does not parse or is zero.
pub fn parse_duration_or(s: &str) -> Option<Duration> {
    parse_duration(s).filter(|d| !d.is_zero())
}

fn dur(field: &'static str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).ok_or_else(|| ConfigError::Duration {
        field,
        value: s.into(),
    })
}

fn secs(field: &'static str, s: &Option<String>) -> Result<Option<f64>, ConfigError> {
    s.as_deref()
        .map(|v| dur(field, v).map(|d| d.as_secs_f64()))
        .transpose()
}

fn rate(what: &str, p: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(ConfigError::Invalid(format!("{what} must be in [0, 1]")))
    }
}

impl SimFile {
    /// Parses YAML or JSON.
    pub fn parse(text: &str) -> Result<SimFile, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Validates and resolves `${ROBOT}`.
    pub fn validate(&self, robot: &str) -> Result<SimConfig, ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        let s = &self.sensor.lidar;
        let camera = match self.sensor.kind.as_str() {
            "lidar2d" => None,
            "camera" => {
                let c = self.sensor.camera.clone().unwrap_or(CameraSpec {
                    width: default_width(),
                    height: default_height(),
                    encoding: default_encoding(),
                });
                let encoding = match c.encoding.as_str() {
                    "rgb8" => Encoding::Rgb8,
                    "bgr8" => Encoding::Bgr8,
                    "mono8" => Encoding::Mono8,
                    other => {
                        return Err(ConfigError::Invalid(format!(
                            "camera encoding {other:?} is not simulated yet (rgb8, bgr8, mono8)"
                        )));
                    }
                };
                if !(16..=4096).contains(&c.width) || !(16..=4096).contains(&c.height) {
                    return bad("camera width and height must be in [16, 4096]");
                }
                Some(CameraConfig {
                    width: c.width,
                    height: c.height,
                    encoding,
                    corrupt_rate: rate(
                        "faults.corruptImageRate",
                        self.faults.corrupt_image_rate.unwrap_or(0.0),
                    )?,
                })
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "sensor.type must be lidar2d or camera, got {other:?}"
                )));
            }
        };
        let rate_hz = self.sensor.rate_hz;
        if !(rate_hz > 0.0 && rate_hz <= 1000.0) || s.beams == 0 || s.beams > 100_000 {
            return bad("sensor.rateHz must be in (0, 1000] and beams in [1, 100000]");
        }
        let fov = s.angle_max_deg - s.angle_min_deg;
        if !(fov > 0.0 && fov <= 360.0 && s.range_min >= 0.0 && s.range_max > s.range_min) {
            return bad("sensor field of view or range limits are inconsistent");
        }
        if !(self.noise.stddev >= 0.0 && self.noise.stddev.is_finite()) {
            return bad("noise.stddev must be >= 0");
        }
        let mut obstacles = Vec::new();
        for o in &self.scenario.obstacles {
            if !(o.start_distance > 0.0
                && o.width > 0.0
                && o.min_distance >= 0.0
                && o.speed.is_finite())
            {
                return bad("obstacles need startDistance > 0, width > 0, minDistance >= 0");
            }
            obstacles.push(Obstacle {
                bearing: o.bearing_deg.to_radians(),
                start: o.start_distance,
                speed: o.speed,
                min: o.min_distance,
                radius: o.width / 2.0,
                appear: secs("appearAt", &o.appear_at)?.unwrap_or(0.0),
                disappear: secs("disappearAt", &o.disappear_at)?.unwrap_or(f64::INFINITY),
            });
        }
        let mut expect = Vec::new();
        for e in &self.expect {
            if e.max_decode_error_ratio.is_some() {
                return bad(
                    "maxDecodeErrorRatio needs the detect bridge under test, which is not built yet",
                );
            }
            if camera.is_some() {
                return bad("a camera sensor cannot have safety expectations");
            }
            let x = match (
                &e.safety_stop_within,
                e.when_distance_below,
                e.when_sensor_fault,
                &e.safety_release_within,
            ) {
                (Some(w), Some(d), None, None) if d > 0.0 => Expect::StopWhenCloser {
                    within: dur("safetyStopWithin", w)?,
                    distance: d,
                },
                (Some(w), None, Some(true), None) => Expect::StopOnFault {
                    within: dur("safetyStopWithin", w)?,
                },
                (None, None, None, Some(w)) => Expect::Release {
                    within: dur("safetyReleaseWithin", w)?,
                    not_before: secs("safetyReleaseNotBefore", &e.safety_release_not_before)?
                        .map_or(Duration::ZERO, Duration::from_secs_f64),
                },
                _ => {
                    return bad(
                        "each expectation is {safetyStopWithin, whenDistanceBelow}, {safetyStopWithin, whenSensorFault: true} or {safetyReleaseWithin[, safetyReleaseNotBefore]}",
                    );
                }
            };
            expect.push(x);
        }
        let stop_topic = self
            .units_under_test
            .stop_topic
            .as_deref()
            .map(|t| resolve_topic(t, robot))
            .transpose()?;
        if !expect.is_empty() && stop_topic.is_none() {
            return bad("safety expectations need unitsUnderTest.stopTopic");
        }
        let n = s.beams as f64;
        Ok(SimConfig {
            camera,
            topic: resolve_topic(&self.sensor.topic, robot)?,
            frame_id: self.sensor.frame_id.clone(),
            period: Duration::from_secs_f64(1.0 / rate_hz),
            beams: s.beams,
            angle_min: s.angle_min_deg.to_radians() as f32,
            angle_increment: (fov / n).to_radians() as f32,
            range_min: s.range_min,
            range_max: s.range_max,
            noise: self.noise,
            obstacles,
            nan_rate: rate("faults.nanRate", self.faults.nan_rate)?,
            neg_inf_rate: rate("faults.negInfRate", self.faults.neg_inf_rate)?,
            drop_rate: rate("faults.dropRate", self.faults.drop_rate)?,
            stall_after: secs("faults.stallAfter", &self.faults.stall_after)?,
            blind_after: secs("faults.blindAfter", &self.faults.blind_after)?,
            expect,
            duration: dur("duration", &self.duration)?,
            stop_topic,
        })
    }
}

#[cfg(test)]
mod tests;
