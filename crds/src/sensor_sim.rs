//! `SensorSim`: a simulated LIDAR or camera stream with scripted obstacles and injected faults,
//! run in a sandbox (never on a live robot's ROS graph) against units under test, with
//! expectations that decide whether it Succeeded.
//!
//! Geometry is in the sensor's frame (`frameId`): bearings in degrees, counter-clockwise, 0 =
//! straight ahead (REP 103 x axis); distances in meters.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{LocalRef, SELECTOR_RULE, Topic};
use crate::conditions::ResourceStatus;
use crate::duration::GoDuration;

/// Desired state: the simulated sensor, its scenario and faults, what is tested, and what must hold.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "robofleet.io",
    version = "v1alpha1",
    kind = "SensorSim",
    namespaced,
    status = "SensorSimStatus",
    derive = "PartialEq",
    shortname = "sim",
    shortname = "rfsim",
    category = "robofleet",
    doc = "A simulated LIDAR or camera stream with scripted obstacles and injected faults, run in a sandbox against units under test (a SafetyPolicy's monitor, an InferenceService revision), with expectations.",
    validation = kube::core::Rule::new(crate::common::NAME_RULE.0).message(crate::common::NAME_RULE.1),
    printcolumn(name = "Sensor", type_ = "string", json_path = ".spec.sensor.type"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.mode"),
    printcolumn(name = "Template", type_ = "boolean", json_path = ".spec.template"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1)
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.faults) || self.sensor.type == 'camera' || !has(self.faults.corruptImageRate)",
     "message": "spec.faults.corruptImageRate applies only to sensor.type camera"},
    {"rule": "!has(self.faults) || self.sensor.type == 'lidar2d' || (!has(self.faults.nanRate) && !has(self.faults.negInfRate) && !has(self.faults.blindAfter))",
     "message": "spec.faults.nanRate, negInfRate and blindAfter apply only to sensor.type lidar2d"},
    {"rule": "!has(self.expect) || !self.expect.exists(e, has(e.safetyStopWithin) || has(e.safetyReleaseWithin)) || (has(self.unitsUnderTest) && has(self.unitsUnderTest.safetyPolicyRef)) || self.template",
     "message": "spec.expect: safety expectations (safetyStopWithin, safetyReleaseWithin) need spec.unitsUnderTest.safetyPolicyRef (or template: true, filled in by a rollout preflight)"},
    {"rule": "!has(self.expect) || !self.expect.exists(e, has(e.whenSensorFault) && e.whenSensorFault) || (has(self.faults) && (has(self.faults.stallAfter) || has(self.faults.blindAfter)))",
     "message": "spec.expect: whenSensorFault needs spec.faults.stallAfter or blindAfter"},
    {"rule": "!has(self.expect) || !self.expect.exists(e, has(e.maxDecodeErrorRatio)) || self.sensor.type == 'camera'",
     "message": "spec.expect: maxDecodeErrorRatio applies only to sensor.type camera"},
]))]
pub struct SensorSimSpec {
    /// `true`: never runs by itself; a rollout `preflight` copies it as `<name>-<revision>` with
    /// the candidate revision as unit under test.
    #[serde(default)]
    pub template: bool,
    /// The simulated sensor. `type` cannot change after creation.
    pub sensor: Sensor,
    /// Gaussian noise added to every reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Noise>,
    /// Scripted obstacles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    /// Injected faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
    /// What must hold for the run to succeed; each is reported with its observed value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub expect: Vec<Expectation>,
    /// How long the sim publishes (Go duration).
    #[serde(default = "default_duration")]
    pub duration: GoDuration,
    /// What runs beside the sim in its pod and is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_under_test: Option<UnitsUnderTest>,
    /// Where the sim runs: the sandbox (default) or simulated robots.
    #[serde(default)]
    pub target: Target,
}

/// The simulated sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == oldSelf.type",
     "message": "spec.sensor.type is immutable: create a new SensorSim instead"},
    {"rule": "self.type == 'lidar2d' || !has(self.lidar)",
     "message": "spec.sensor.lidar applies only to type lidar2d"},
    {"rule": "self.type == 'camera' || !has(self.camera)",
     "message": "spec.sensor.camera applies only to type camera"},
    {"rule": "self.type == 'camera' || self.rateHz <= 100.0",
     "message": "spec.sensor.rateHz must be at most 100 for lidar2d"},
]))]
pub struct Sensor {
    /// `lidar2d` (`sensor_msgs/LaserScan`) or `camera` (`sensor_msgs/Image`/`CompressedImage`).
    #[serde(rename = "type")]
    pub type_: SensorType,
    /// Topic to publish on (inside the sandbox); `${ROBOT}` is the Node name.
    #[serde(default = "default_topic")]
    pub topic: Topic,
    /// `header.frame_id` of the messages.
    #[serde(default = "default_frame")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_/]*$")
    )]
    pub frame_id: String,
    /// Messages per second (greater than 0; at most 100 for lidar2d, 120 for cameras).
    #[serde(default = "default_rate")]
    #[schemars(range(min = 0.0, max = 120.0), extend("exclusiveMinimum" = true))]
    pub rate_hz: f64,
    /// LIDAR geometry (lidar2d only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lidar: Option<Lidar>,
    /// Camera geometry (camera only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<Camera>,
}

/// Sensor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SensorType {
    /// A planar LIDAR.
    Lidar2d,
    /// A camera.
    Camera,
}

/// LaserScan geometry. Bearings in degrees, counter-clockwise, 0 = straight ahead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.angleMinDeg < self.angleMaxDeg", "message": "spec.sensor.lidar.angleMinDeg must be less than angleMaxDeg"},
    {"rule": "self.rangeMin < self.rangeMax", "message": "spec.sensor.lidar.rangeMin must be less than rangeMax"},
]))]
pub struct Lidar {
    /// Beams per scan, evenly spread over `[angleMinDeg, angleMaxDeg)`.
    #[serde(default = "default_beams")]
    #[schemars(range(min = 1, max = 4096))]
    pub beams: u32,
    /// Bearing of the first beam in degrees (-180..180; LaserScan `angle_min`, in radians there).
    #[serde(default = "default_angle_min")]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub angle_min_deg: f64,
    /// End of the field of view in degrees (exclusive).
    #[serde(default = "default_angle_max")]
    #[schemars(range(min = -180.0, max = 180.0))]
    pub angle_max_deg: f64,
    /// Shortest valid range in meters (LaserScan `range_min`).
    #[serde(default = "default_range_min")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub range_min: f64,
    /// Longest valid range in meters (LaserScan `range_max`).
    #[serde(default = "default_range_max")]
    #[schemars(range(min = 0.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub range_max: f64,
}

/// Camera geometry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Camera {
    /// Width in pixels.
    #[serde(default = "default_width")]
    #[schemars(range(min = 16, max = 4096))]
    pub width: u32,
    /// Height in pixels.
    #[serde(default = "default_height")]
    #[schemars(range(min = 16, max = 4096))]
    pub height: u32,
    /// `sensor_msgs/Image` encoding, or `jpeg`/`png` for `CompressedImage`.
    #[serde(default)]
    pub encoding: CameraEncoding,
}

/// Camera encodings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CameraEncoding {
    /// Raw RGB, 8 bits per channel.
    #[default]
    Rgb8,
    /// Raw BGR.
    Bgr8,
    /// Raw grey.
    Mono8,
    /// `CompressedImage`, JPEG.
    Jpeg,
    /// `CompressedImage`, PNG.
    Png,
}

/// Noise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Noise {
    /// Standard deviation: meters for lidar2d ranges, 0..255 intensity levels for cameras.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 255.0))]
    pub stddev: f64,
    /// Random seed; the same seed gives the same stream.
    #[serde(default)]
    pub seed: u64,
}

/// Scripted scenario.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.obstacles) || self.obstacles.all(o, self.obstacles.exists_one(x, x.name == o.name))",
     "message": "spec.scenario.obstacles: obstacle names must be unique"},
]))]
pub struct Scenario {
    /// Obstacles, at most 32: range returns for lidar2d, filled coloured squares for camera
    /// (`tests/fixtures/camera/README.md` has the geometry).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub obstacles: Vec<Obstacle>,
}

/// A round obstacle on a fixed bearing, moving along it (toward the sensor when `speed` > 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.disappearAt) || duration(self.appearAt) < duration(self.disappearAt)",
     "message": "spec.scenario.obstacles[]: appearAt must be before disappearAt"},
    {"rule": "self.minDistance <= self.startDistance",
     "message": "spec.scenario.obstacles[]: minDistance must not exceed startDistance"},
]))]
pub struct Obstacle {
    /// Obstacle name (used in assertion results).
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Bearing from the sensor in degrees (-180..180), counter-clockwise, 0 = straight ahead.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub bearing_deg: f64,
    /// Distance in meters from the sensor to the obstacle's surface at `appearAt`.
    #[schemars(range(min = 0.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub start_distance: f64,
    /// Approach speed in meters per second (positive comes closer, negative moves away).
    #[serde(default)]
    #[schemars(range(min = -20.0, max = 20.0))]
    pub speed: f64,
    /// Closest distance in meters it comes to (it stops there).
    #[serde(default = "default_min_distance")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_distance: f64,
    /// Diameter in meters.
    #[serde(default = "default_obstacle_width")]
    #[schemars(range(min = 0.0, max = 10.0), extend("exclusiveMinimum" = true))]
    pub width: f64,
    /// When it appears, from the start of the run (Go duration).
    #[serde(default = "default_zero")]
    pub appear_at: GoDuration,
    /// When it disappears; omit to keep it to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_at: Option<GoDuration>,
}

/// Injected faults; rates are probabilities per reading (lidar) or per message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Share (0..1) of lidar readings replaced by NaN (invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub nan_rate: Option<f64>,
    /// Share (0..1) of lidar readings replaced by -Inf (an obstacle at range_min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub neg_inf_rate: Option<f64>,
    /// Share (0..1) of messages not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub drop_rate: Option<f64>,
    /// Stop publishing after this long (Go duration): a stalled sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<GoDuration>,
    /// Every lidar reading NaN from this time on (Go duration): a blinded sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind_after: Option<GoDuration>,
    /// Share (0..1) of camera messages with corrupt image data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub corrupt_image_rate: Option<f64>,
}

/// One expectation: exactly one of `safetyStopWithin` (with one trigger), `safetyReleaseWithin`
/// or `maxDecodeErrorRatio`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.safetyStopWithin), has(self.safetyReleaseWithin), has(self.maxDecodeErrorRatio)].filter(x, x).size() == 1",
     "message": "spec.expect[]: set exactly one of safetyStopWithin, safetyReleaseWithin or maxDecodeErrorRatio"},
    {"rule": "has(self.safetyStopWithin) ? (has(self.whenDistanceBelow) != (has(self.whenSensorFault) && self.whenSensorFault)) : (!has(self.whenDistanceBelow) && !has(self.whenSensorFault))",
     "message": "spec.expect[]: safetyStopWithin takes exactly one trigger, whenDistanceBelow or whenSensorFault: true (and only it takes them)"},
    {"rule": "!has(self.safetyReleaseNotBefore) || (has(self.safetyReleaseWithin) && duration(self.safetyReleaseNotBefore) < duration(self.safetyReleaseWithin))",
     "message": "spec.expect[]: safetyReleaseNotBefore needs safetyReleaseWithin and must be shorter"},
]))]
pub struct Expectation {
    /// Name used in the status (default: derived from the kind of expectation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// The stop lock reads `true` (stop) within this time (Go duration) after the trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_stop_within: Option<GoDuration>,
    /// Trigger: the nearest obstacle comes closer than this many meters to the sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub when_distance_below: Option<f64>,
    /// Trigger: the sensor stalls or is blinded (`faults.stallAfter` / `blindAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_sensor_fault: Option<bool>,
    /// The stop lock reads `false` (clear) within this time after the last obstacle left the zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_release_within: Option<GoDuration>,
    /// ...and not before this time (the policy's `release.holdTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_release_not_before: Option<GoDuration>,
    /// Camera: highest share (0..1) of frames the detection bridge may fail to decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_decode_error_ratio: Option<f64>,
}

/// The units under test, run as containers of the sim's pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.safetyPolicyRef) || has(self.inferenceServiceRef)",
     "message": "spec.unitsUnderTest must name a safetyPolicyRef, an inferenceServiceRef, or both"},
    {"rule": "!has(self.revision) || has(self.inferenceServiceRef)",
     "message": "spec.unitsUnderTest.revision needs inferenceServiceRef"},
]))]
pub struct UnitsUnderTest {
    /// A SafetyPolicy whose monitor is rendered into the sim's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_policy_ref: Option<LocalRef>,
    /// An InferenceService whose sidecar and detect bridge are rendered into the sim's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_service_ref: Option<LocalRef>,
    /// Revision hash of the InferenceService to test; omit for its stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), regex(pattern = r"^[a-z0-9]+$"))]
    pub revision: Option<String>,
}

/// Where the sim runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.mode == 'Robots') == has(self.robotSelector)",
     "message": "spec.target.robotSelector is required with mode Robots and not allowed with mode Sandbox"},
]))]
pub struct Target {
    /// `Sandbox` (default): one pod on a non-robot node, its own network namespace, discovery on
    /// localhost only. `Robots`: on robots selected by `robotSelector` that are labelled
    /// `robofleet.io/simulated=true` (others make the sim `Stalled`, `UnsafeTarget`).
    #[serde(default)]
    pub mode: TargetMode,
    /// Simulated robots to run on (mode `Robots` only); ANDed with `robofleet.io/robot=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": SELECTOR_RULE, "message": "spec.target.robotSelector must set matchLabels or matchExpressions"}]))]
    pub robot_selector: Option<LabelSelector>,
}

/// Target mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TargetMode {
    /// An isolated pod, never on a robot's ROS graph.
    #[default]
    Sandbox,
    /// Simulated robots only.
    Robots,
}

/// Observed state of a SensorSim (Job-like).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SensorSimStatus {
    /// `observedGeneration`, `message` and `conditions` (see the status contract).
    #[serde(flatten)]
    pub common: ResourceStatus,
    /// `Pending`, `Running`, `Succeeded` or `Failed` (from the sim's real exit code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SimPhase>,
    /// When the sim started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Exit code of the sim container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Messages published.
    #[serde(default)]
    pub messages_published: u64,
    /// Faults injected.
    #[serde(default)]
    pub faults_injected: u64,
    /// Each expectation with its observed value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<AssertionResult>,
}

/// SensorSim phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SimPhase {
    /// Not started (or a template).
    Pending,
    /// Publishing.
    Running,
    /// Exited 0 and every expectation held.
    Succeeded,
    /// An expectation failed or the sim crashed.
    Failed,
}

/// Outcome of one expectation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssertionResult {
    /// Expectation name.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was expected, e.g. `stop within 200ms below 0.35m`.
    #[serde(default)]
    pub expected: String,
    /// What was observed, e.g. `stop after 37ms`.
    #[serde(default)]
    pub observed: String,
}

fn default_duration() -> GoDuration {
    GoDuration::from("30s")
}
fn default_topic() -> Topic {
    Topic::new("/scan")
}
fn default_frame() -> String {
    "laser".to_owned()
}
fn default_rate() -> f64 {
    10.0
}
fn default_beams() -> u32 {
    360
}
fn default_angle_min() -> f64 {
    -180.0
}
fn default_angle_max() -> f64 {
    180.0
}
fn default_range_min() -> f64 {
    0.05
}
fn default_range_max() -> f64 {
    30.0
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_min_distance() -> f64 {
    0.1
}
fn default_obstacle_width() -> f64 {
    0.2
}
fn default_zero() -> GoDuration {
    GoDuration::from("0s")
}
