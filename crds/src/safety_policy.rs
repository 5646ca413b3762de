//! `SafetyPolicy`: stop, slow-down and warn zones around each selected robot, enforced by the
//! safety monitor (`ros2-bridge safety`) that watches the robot's LIDAR and publishes a stop lock.
//!
//! Frames follow REP 103: x forward, y left; angles are in degrees, counter-clockwise, 0 = ahead
//! (as the monitor's policy file and `--sector-deg` flag write them).
//! Zones are in `base_link` unless `source.frame` is `laser`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Point2, SELECTOR_RULE, Topic};
use crate::conditions::ResourceStatus;
use crate::duration::GoDuration;
use crate::rollout::RolloutPhase;

/// Desired state: which robots, which scan, which zones, and how the monitor stops and releases.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "robofleet.io",
    version = "v1alpha1",
    kind = "SafetyPolicy",
    namespaced,
    status = "SafetyPolicyStatus",
    derive = "PartialEq",
    shortname = "sp",
    shortname = "rfsafety",
    category = "robofleet",
    doc = "Stop, slow-down and warn zones around each selected robot, enforced by a safety monitor that watches the robot's LIDAR and publishes a stop lock (std_msgs/Bool, true = stop). A software monitor, not certified safety equipment.",
    validation = kube::core::Rule::new(crate::common::NAME_RULE.0).message(crate::common::NAME_RULE.1),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Enforcing", type_ = "integer", json_path = ".status.robots.enforcing", description = "robots whose stop lock has a consumer"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.robots.total", description = "selected robots"),
    printcolumn(name = "Pending", type_ = "string", json_path = ".status.pendingHash", description = "relaxing change waiting for robofleet.io/approve=<this hash>"),
    printcolumn(name = "Stop-Topic", type_ = "string", json_path = ".spec.output.stopTopic", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1)
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.output.heartbeat) < duration(self.source.sourceTimeout)",
     "message": "spec.output.heartbeat must be shorter than spec.source.sourceTimeout (the lock is recomputed every heartbeat)"},
    {"rule": "self.zones.all(z, self.zones.exists_one(x, x.name == z.name))",
     "message": "spec.zones: zone names must be unique"},
    {"rule": "self.zones.all(a, self.zones.all(b, !(a.shape == 'sector' && b.shape == 'sector' && a.minAngleDeg == b.minAngleDeg && a.maxAngleDeg == b.maxAngleDeg && ((a.action == 'stop' && b.action != 'stop') || (a.action == 'slowdown' && b.action == 'warn'))) || a.range < b.range))",
     "message": "spec.zones: sectors on the same angles must keep range(stop) < range(slowdown) < range(warn)"},
]))]
pub struct SafetyPolicySpec {
    /// Which robots are monitored: a label selector over Nodes, ANDed with `robofleet.io/robot=true`.
    /// Prefer labels under `node-restriction.kubernetes.io/` (a kubelet cannot set them on itself).
    /// Omit to select every robot; when present it must not be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": SELECTOR_RULE, "message": "spec.robotSelector must set matchLabels or matchExpressions; omit it to select every robot"}]))]
    pub robot_selector: Option<LabelSelector>,
    /// The LIDAR scan the monitor watches.
    #[serde(default)]
    pub source: Source,
    /// Zones (1-32). A reading inside a zone triggers the zone's action.
    #[schemars(length(min = 1, max = 32))]
    pub zones: Vec<Zone>,
    /// How invalid readings (NaN, out of `[range_min, range_max]`) are treated.
    #[serde(default)]
    pub invalid_readings: InvalidReadings,
    /// When a stop is released.
    #[serde(default)]
    pub release: Release,
    /// What the monitor publishes.
    #[serde(default)]
    pub output: Output,
    /// `diagnostic_msgs/DiagnosticArray` publishing.
    #[serde(default)]
    pub diagnostics: Diagnostics,
    /// Share (0-100) of online selected robots that must be enforcing (monitor running and its
    /// stop lock consumed) for the policy to be Ready.
    #[serde(default = "default_hundred")]
    #[schemars(range(min = 0, max = 100))]
    pub min_enforcing_percent: u32,
}

/// The LIDAR scan source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.transform) != has(self.frame)",
     "message": "spec.source: set exactly one of transform (the laser's pose in base_link) or frame: laser (zones in the laser frame)"},
]))]
pub struct Source {
    /// `sensor_msgs/LaserScan` topic (subscribed best-effort); `${ROBOT}` is the Node name.
    #[serde(default = "default_scan_topic")]
    pub topic: Topic,
    /// Stop unless a clear evaluation is younger than this (Go duration; age measured on the
    /// monitor's monotonic clock at receipt, not from `header.stamp`).
    #[serde(default = "default_source_timeout")]
    pub source_timeout: GoDuration,
    /// Pose of the laser in `base_link`; zones are then in `base_link`. Excludes `frame`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform2D>,
    /// `laser`: zones are in the laser's own frame. Excludes `transform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<SourceFrame>,
    /// More publishers than this on the topic is a stop with reason `UnexpectedPublisher`
    /// (a replayed bag or a sim must not feed a live monitor).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 8))]
    pub max_publishers: u32,
}

impl Default for Source {
    fn default() -> Self {
        Self {
            topic: default_scan_topic(),
            source_timeout: default_source_timeout(),
            transform: None,
            frame: Some(SourceFrame::Laser),
            max_publishers: 1,
        }
    }
}

/// The laser's pose in `base_link`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transform2D {
    /// `[x, y]` of the laser in meters from `base_link`'s origin (x forward, y left).
    #[serde(default)]
    pub position: Point2,
    /// Rotation of the laser in degrees (-180..180), counter-clockwise from `base_link`'s x axis.
    #[serde(default)]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub yaw_deg: f64,
}

/// Frame of the zones when no transform is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFrame {
    /// The laser's own frame (the scan's `header.frame_id`).
    Laser,
}

/// A zone: a shape and an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.shape == 'sector') == (has(self.minAngleDeg) && has(self.maxAngleDeg) && has(self.range))",
     "message": "spec.zones[]: shape sector needs minAngleDeg, maxAngleDeg and range, and only sectors take them"},
    {"rule": "!has(self.minAngleDeg) || !has(self.maxAngleDeg) || self.minAngleDeg < self.maxAngleDeg",
     "message": "spec.zones[]: minAngleDeg must be less than maxAngleDeg"},
    {"rule": "!has(self.minRange) || (self.shape == 'sector' && has(self.range) && self.minRange < self.range)",
     "message": "spec.zones[]: minRange applies only to sectors and must be less than range"},
    {"rule": "(self.shape == 'polygon') == has(self.points)",
     "message": "spec.zones[]: shape polygon needs points (3-64), and only polygons take them"},
    {"rule": "(self.shape == 'circle') == has(self.radius) && (self.shape == 'circle' || !has(self.center))",
     "message": "spec.zones[]: shape circle needs radius (and may set center); only circles take them"},
    {"rule": "self.action == 'slowdown' || !has(self.speedLimitPercent)",
     "message": "spec.zones[]: speedLimitPercent applies only to action slowdown"},
]))]
pub struct Zone {
    /// Zone name, unique in the policy (used in metrics and diagnostics).
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `sector` (minAngleDeg, maxAngleDeg, range, minRange), `polygon` (points) or `circle`
    /// (radius, center).
    pub shape: ZoneShape,
    /// `stop` publishes the stop lock, `slowdown` a `nav2_msgs/SpeedLimit`, `warn` only counts.
    pub action: ZoneAction,
    /// Readings inside the zone needed to trigger it (filters single-beam noise).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 100))]
    pub min_points: u32,
    /// Sector: first bearing in degrees (-180..180), counter-clockwise, 0 = straight ahead
    /// (the frame's x axis), 90 = left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub min_angle_deg: Option<f64>,
    /// Sector: last bearing in degrees, greater than `minAngleDeg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub max_angle_deg: Option<f64>,
    /// Sector: outer radius in meters from the frame's origin (greater than 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub range: Option<f64>,
    /// Sector: inner radius in meters (default 0: the sector reaches the origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_range: Option<f64>,
    /// Polygon: 3-64 vertices `[x, y]` in meters, in order (either winding), not
    /// self-intersecting, e.g. `[[0.5, 0.3], [0.5, -0.3], [-0.3, -0.3], [-0.3, 0.3]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 64))]
    pub points: Option<Vec<Point2>>,
    /// Circle: radius in meters around the frame's origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub radius: Option<f64>,
    /// Circle: centre `[x, y]` in meters (default the frame's origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<Point2>,
    /// Slowdown: speed limit as a percentage (1-100) of the robot's maximum speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub speed_limit_percent: Option<f64>,
}

/// Zone shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneShape {
    /// A sector (annular with `minRange`) around the origin: bearings and a range.
    Sector,
    /// A polygon.
    Polygon,
    /// A circle around the origin.
    Circle,
}

/// Zone action, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ZoneAction {
    /// Publish `true` on the stop lock.
    Stop,
    /// Publish a speed limit.
    Slowdown,
    /// Count and log only.
    Warn,
}

/// Invalid readings (REP 117: NaN and out-of-range are invalid, `-Inf` is an obstacle at
/// `range_min`, `+Inf` is clear).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvalidReadings {
    /// Above this share (0..1) of invalid readings in a zone the monitor stops with reason
    /// `SensorInvalid`: a blinded LIDAR is not a clear LIDAR.
    #[serde(default = "default_invalid_fraction")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_invalid_fraction: f64,
}

impl Default for InvalidReadings {
    fn default() -> Self {
        Self {
            max_invalid_fraction: default_invalid_fraction(),
        }
    }
}

/// Stop release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// `Auto`: clear after `holdTime` of clear scans. `Latched`: stay stopped until the `reset`
    /// verb (`robofleet.io/action: reset@<nonce>`).
    #[serde(default)]
    pub mode: ReleaseMode,
    /// Clear scans needed before an `Auto` release (Go duration).
    #[serde(default = "default_hold_time")]
    pub hold_time: GoDuration,
}

impl Default for Release {
    fn default() -> Self {
        Self {
            mode: ReleaseMode::Auto,
            hold_time: default_hold_time(),
        }
    }
}

/// Release mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReleaseMode {
    /// Release after `holdTime` of clear scans.
    #[default]
    Auto,
    /// Release only on the reset verb.
    Latched,
}

/// Monitor outputs. Every publisher is Reliable, KeepLast(1); the stop lock is also
/// TransientLocal. Consumers must treat a silent lock as stop (twist_mux lock `timeout` > 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.stopTopic != self.speedLimitTopic",
     "message": "spec.output.stopTopic and speedLimitTopic must differ"},
]))]
pub struct Output {
    /// `std_msgs/Bool` stop lock; `data: true` means stop. One policy per (robot, stopTopic).
    #[serde(default = "default_stop_topic")]
    pub stop_topic: Topic,
    /// `nav2_msgs/SpeedLimit` topic for slowdown zones.
    #[serde(default = "default_speed_limit_topic")]
    pub speed_limit_topic: Topic,
    /// Republish interval of the current state (Go duration); changes are published at once.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: GoDuration,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            stop_topic: default_stop_topic(),
            speed_limit_topic: default_speed_limit_topic(),
            heartbeat: default_heartbeat(),
        }
    }
}

/// Diagnostics publishing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    /// Publish `diagnostic_msgs/DiagnosticArray`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Diagnostics topic.
    #[serde(default = "default_diagnostics_topic")]
    pub topic: Topic,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self {
            enabled: true,
            topic: default_diagnostics_topic(),
        }
    }
}

/// Observed state of a SafetyPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyPolicyStatus {
    /// `observedGeneration`, `message` and `conditions` (see the status contract).
    #[serde(flatten)]
    pub common: ResourceStatus,
    /// `Pending`, `Progressing`, `Healthy` or `Degraded` (never `Paused`: a suspended policy
    /// would block Argo CD sync waves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Hash of the policy the monitors enforce (the policy file without the reset nonce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_hash: Option<String>,
    /// Hash of a relaxing change waiting for `robofleet.io/approve=<hash>` (the condition
    /// `ApprovalPending` says what relaxes). It covers the new policy, the robots it would release
    /// and the last approval, so an old approval never approves a new change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_hash: Option<String>,
    /// The last approval the operator acted on (a `pendingHash` that `robofleet.io/approve`
    /// named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_hash: Option<String>,
    /// Robot counts.
    #[serde(default)]
    pub robots: SafetyRobotCounts,
    /// Up to 5 of the held robots (`robots.held`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub held_robots: Vec<String>,
    /// The last `robofleet.io/action` acknowledged (`reset@<nonce>`): relayed into the policy file
    /// the monitors hot-reload. A nonce already acknowledged is not relayed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
}

/// Robot counts of a SafetyPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyRobotCounts {
    /// Selected robots.
    #[serde(default)]
    pub total: u32,
    /// Robots whose monitor is Ready (fresh scans).
    #[serde(default)]
    pub ready: u32,
    /// Ready robots whose stop lock has at least one subscriber.
    #[serde(default)]
    pub enforcing: u32,
    /// Ready robots whose stop lock nobody consumes.
    #[serde(default)]
    pub unconsumed: u32,
    /// Robots currently stopped by this policy.
    #[serde(default)]
    pub stopped: u32,
    /// Robots whose Node is not Ready.
    #[serde(default)]
    pub offline: u32,
    /// Robots whose monitor pod failed.
    #[serde(default)]
    pub failed: u32,
    /// Robots no longer selected (selector change or relabel) whose monitor stays until the
    /// change is approved; not counted in `total`.
    #[serde(default)]
    pub held: u32,
}

fn default_hundred() -> u32 {
    100
}
fn default_one() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_scan_topic() -> Topic {
    Topic::new("/scan")
}
fn default_source_timeout() -> GoDuration {
    GoDuration::from("200ms")
}
fn default_invalid_fraction() -> f64 {
    0.1
}
fn default_hold_time() -> GoDuration {
    GoDuration::from("1s")
}
fn default_stop_topic() -> Topic {
    Topic::new("/safety/stop")
}
fn default_speed_limit_topic() -> Topic {
    Topic::new("/speed_limit")
}
fn default_heartbeat() -> GoDuration {
    GoDuration::from("100ms")
}
fn default_diagnostics_topic() -> Topic {
    Topic::new("/diagnostics")
}
