//! The policy file's sections exactly as they are written (serde), before validation.

use serde::{Deserialize, Serialize};

/// The config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyFile {
    /// Policy name, used as the `policy` metric label.
    #[serde(default = "default_name")]
    pub name: String,
    /// The LIDAR source.
    #[serde(default)]
    pub source: SourceSpec,
    /// Zones, evaluated on every scan.
    pub zones: Vec<ZoneSpec>,
    /// REP 117 invalid-reading rules.
    #[serde(default)]
    pub invalid_readings: InvalidSpec,
    /// How a stop is released.
    #[serde(default)]
    pub release: ReleaseSpec,
    /// Output topics and heartbeat.
    #[serde(default)]
    pub output: OutputSpec,
    /// Diagnostics output.
    #[serde(default)]
    pub diagnostics: DiagnosticsSpec,
    /// The reset verb relayed by the operator: a new value releases a Latched stop (if clear).
    #[serde(default)]
    pub reset_nonce: Option<String>,
}

pub(super) fn default_name() -> String {
    "default".into()
}

/// `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// LaserScan topic (may contain `${ROBOT}`).
    #[serde(default = "default_scan_topic")]
    pub topic: String,
    /// Older evaluations than this are stale: stop.
    #[serde(default = "default_source_timeout")]
    pub source_timeout: String,
    /// More publishers than this on the topic is a stop (`UnexpectedPublisher`).
    #[serde(default = "one")]
    pub max_publishers: usize,
    /// Laser pose in base_link (zones are in base_link).
    #[serde(default)]
    pub transform: Option<TransformSpec>,
    /// `laser`: zones are in the laser frame and `transform` must be absent.
    #[serde(default)]
    pub frame: Option<String>,
}

fn one() -> usize {
    1
}

fn default_scan_topic() -> String {
    "/scan".into()
}

fn default_source_timeout() -> String {
    "200ms".into()
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec {
            topic: default_scan_topic(),
            source_timeout: default_source_timeout(),
            max_publishers: 1,
            transform: None,
            frame: None,
        }
    }
}

/// `source.transform`: the laser's pose in base_link, as the CRD writes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformSpec {
    /// Laser origin in base_link (m).
    #[serde(default)]
    pub position: PointSpec,
    /// Laser heading in base_link (degrees, counter-clockwise).
    #[serde(default)]
    pub yaw_deg: f64,
}

/// A point in a zone definition: `[x, y]` as the CRD writes it, or `{x: .., y: ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct PointSpec {
    /// m.
    pub x: f64,
    /// m.
    pub y: f64,
}

impl<'de> Deserialize<'de> for PointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Pair([f64; 2]),
            Map { x: f64, y: f64 },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Pair([x, y]) | Repr::Map { x, y } => PointSpec { x, y },
        })
    }
}

/// What a zone does when enough points fall in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Engage the stop lock.
    Stop,
    /// Publish a speed limit.
    Slowdown,
    /// Count and log only.
    Warn,
}

impl Action {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Slowdown => "slowdown",
            Action::Warn => "warn",
        }
    }
}

/// A zone's shape parameters, tagged by `shape`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "shape",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum ShapeSpec {
    /// Around the frame origin, from `minAngleDeg` to `maxAngleDeg` (counter-clockwise, 0 = ahead).
    Sector {
        /// Outer radius (m).
        range: f64,
        /// Inner radius (m).
        #[serde(default)]
        min_range: f64,
        /// First bearing (degrees).
        min_angle_deg: f64,
        /// Last bearing (degrees).
        max_angle_deg: f64,
    },
    /// A disc.
    Circle {
        /// m.
        radius: f64,
        /// Centre, default the origin.
        #[serde(default)]
        center: PointSpec,
    },
    /// A simple polygon.
    Polygon {
        /// Vertices, at least 3.
        points: Vec<PointSpec>,
    },
}

/// One zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneSpec {
    /// Unique name, the `zone` metric label.
    pub name: String,
    /// Geometry.
    #[serde(flatten)]
    pub shape: ShapeSpec,
    /// Action.
    pub action: Action,
    /// Points needed inside before the zone triggers (noise filter).
    #[serde(default = "one")]
    pub min_points: usize,
    /// Slowdown zones: the limit published as a percentage of maximum speed.
    #[serde(default)]
    pub speed_limit_percent: Option<f64>,
}

/// `invalidReadings`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvalidSpec {
    /// Above this fraction of invalid beams through a stop or slowdown zone: stop, `SensorInvalid`.
    pub max_invalid_fraction: f64,
}

impl Default for InvalidSpec {
    fn default() -> Self {
        InvalidSpec {
            max_invalid_fraction: 0.5,
        }
    }
}

/// `release.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseMode {
    /// Clear after `holdTime` of fresh clear scans.
    Auto,
    /// Stay stopped until the reset verb.
    Latched,
}

/// `release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Mode.
    pub mode: ReleaseMode,
    /// Clear time needed before an Auto release.
    pub hold_time: String,
}

impl Default for ReleaseSpec {
    fn default() -> Self {
        ReleaseSpec {
            mode: ReleaseMode::Auto,
            hold_time: "1s".into(),
        }
    }
}

/// `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    /// Stop lock topic (`std_msgs/Bool`, `true` = stop).
    #[serde(default = "default_stop_topic")]
    pub stop_topic: String,
    /// Republish period of the lock.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: String,
    /// `nav2_msgs/SpeedLimit` topic for slowdown zones.
    #[serde(default)]
    pub speed_limit_topic: Option<String>,
}

pub(super) fn default_heartbeat() -> String {
    "100ms".into()
}

fn default_stop_topic() -> String {
    "/safety/stop".into()
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            stop_topic: default_stop_topic(),
            heartbeat: default_heartbeat(),
            speed_limit_topic: None,
        }
    }
}

/// `diagnostics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiagnosticsSpec {
    /// Publish `diagnostic_msgs/DiagnosticArray`.
    pub enabled: bool,
    /// Topic.
    pub topic: String,
}

impl Default for DiagnosticsSpec {
    fn default() -> Self {
        DiagnosticsSpec {
            enabled: true,
            topic: "/diagnostics".into(),
        }
    }
}
