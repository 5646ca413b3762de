//! `InferenceService`: an ONNX model served on every selected robot by `inference-sidecar`,
//! optionally bridged to ROS 2, and rolled out robot by robot in waves.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{SELECTOR_RULE, Topic};
use crate::duration::GoDuration;
pub use crate::isvc_status::*;
pub use crate::rollout::*;

/// Desired state: which model, how each robot runs it, on which robots, and how a new revision
/// rolls out.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "robofleet.io",
    version = "v1alpha1",
    kind = "InferenceService",
    namespaced,
    status = "InferenceServiceStatus",
    derive = "PartialEq",
    shortname = "isvc",
    shortname = "rfisvc",
    category = "robofleet",
    doc = "An ONNX model served on every selected robot (Nodes labelled robofleet.io/robot=true), rolled out robot by robot in waves with automatic analysis and rollback.",
    validation = kube::core::Rule::new(crate::common::NAME_RULE.0).message(crate::common::NAME_RULE.1),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.model.version", description = "model version label"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.robots.ready", description = "robots serving an approved revision"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.robots.total", description = "selected robots"),
    printcolumn(name = "Updated", type_ = "integer", json_path = ".status.robots.updated", description = "robots on the newest revision"),
    printcolumn(name = "Wave", type_ = "integer", json_path = ".status.currentWave", description = "current wave (1-based)"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// The model to serve. Changing anything here starts a rollout.
    pub model: ModelSpec,
    /// How the sidecar runs the model on each robot. Changing it starts a rollout.
    #[serde(default)]
    pub runtime: RuntimeSpec,
    /// The ROS 2 detection bridge (`ros2-bridge detect`) beside the sidecar. Omit for HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ros: Option<RosSpec>,
    /// Which robots run this service: a label selector over Nodes, always ANDed with
    /// `robofleet.io/robot=true`. Omit to select every robot; when present it must not be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": SELECTOR_RULE, "message": "spec.robotSelector must set matchLabels or matchExpressions; omit it to select every robot"}]))]
    pub robot_selector: Option<LabelSelector>,
    /// How a new revision reaches the robots. Omitted: a one-robot canary with a 5 minute pause,
    /// then the rest at most 10% of robots at a time. Once written, it replaces that default
    /// whole: list the waves too (strategy `Waves` needs at least one).
    #[serde(default = "default_rollout")]
    pub rollout: RolloutSpec,
    /// `true` stops the rollout where it is (robots keep what they run). Git-visible; wins over the
    /// resume verb.
    #[serde(default)]
    pub paused: bool,
}

/// The model file and how to feed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.uri.startsWith('file:///') || self.uri.startsWith('http://') || self.uri.startsWith('https://')",
     "message": "spec.model.uri must start with file:///, http:// or https://"},
    {"rule": "self.sha256.matches('^[0-9a-f]{64}$')",
     "message": "spec.model.sha256 must be 64 lowercase hex characters (the SHA-256 of the model file)"},
]))]
pub struct ModelSpec {
    /// Where the sidecar downloads the model from: `file:///path` (on the robot), `http://` or
    /// `https://`. Credentials, if any, come from a Secret referenced by the pod, never from here.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// SHA-256 of the model file, 64 lowercase hex characters. The sidecar refuses a file that
    /// does not match, and the robot keeps its previous model.
    #[schemars(length(min = 64, max = 64))]
    pub sha256: String,
    /// A free label for people and metrics (`model_version` label), e.g. `2026.11-yolov8n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub version: Option<String>,
    /// Model format. Only `onnx` today.
    #[serde(default)]
    pub format: ModelFormat,
    /// How images become the input tensor.
    #[serde(default)]
    pub preprocess: Preprocess,
    /// How the output tensor becomes detections. Omit for raw tensors (Open Inference Protocol only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<Postprocess>,
    /// Inferences run before the robot reports Ready.
    #[serde(default)]
    pub warmup: Warmup,
}

/// Model file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// ONNX, run by ONNX Runtime.
    #[default]
    Onnx,
}

/// Image to tensor: `tensor = ((pixel * scale) - mean) / std` per channel, after letterboxing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "size(self.mean) == size(self.std)",
     "message": "spec.model.preprocess.mean and std must have the same length (1 for all channels, or 3)"},
    {"rule": "self.std.all(s, s > 0.0)",
     "message": "spec.model.preprocess.std values must be greater than 0"},
]))]
pub struct Preprocess {
    /// Channel order the model expects.
    #[serde(default)]
    pub color_order: ColorOrder,
    /// Multiplier applied to 0..255 pixel values first (default 1/255 maps them to 0..1).
    #[serde(default = "default_scale")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub scale: f64,
    /// Per-channel mean subtracted after scaling: one value for all channels, or three.
    #[serde(default = "default_mean")]
    #[schemars(length(min = 1, max = 3))]
    pub mean: Vec<f64>,
    /// Per-channel divisor applied last: one value, or three; each greater than 0.
    #[serde(default = "default_std")]
    #[schemars(length(min = 1, max = 3))]
    pub std: Vec<f64>,
    /// Where a letterboxed image sits in the model input.
    #[serde(default)]
    pub letterbox: Letterbox,
    /// Pixel value (0..255) of the letterbox padding.
    #[serde(default = "default_pad")]
    #[schemars(range(min = 0, max = 255))]
    pub pad_value: u32,
    /// How the letterboxed size (`side × scale`) becomes whole pixels: `round` (halves to even,
    /// as ultralytics does) or `floor` (truncation, as OpenCV-based pipelines such as ddddocr do).
    #[serde(default)]
    pub resize_rounding: ResizeRounding,
}

impl Default for Preprocess {
    fn default() -> Self {
        Self {
            color_order: ColorOrder::default(),
            scale: default_scale(),
            mean: default_mean(),
            std: default_std(),
            letterbox: Letterbox::default(),
            pad_value: default_pad(),
            resize_rounding: ResizeRounding::default(),
        }
    }
}

/// Rounding of the letterboxed image size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResizeRounding {
    /// Nearest, halves to even.
    #[default]
    Round,
    /// Truncate.
    Floor,
}

/// Channel order of the model input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV order).
    Bgr,
}

/// Placement of a resized image inside the model input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Letterbox {
    /// Centered, padding split on both sides (YOLO default).
    #[default]
    Center,
    /// At the top-left corner, padding right and bottom.
    TopLeft,
}

/// Output tensor to detections (boxes in input-image pixels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.strides) || self.strides.all(s, s > 0)",
     "message": "spec.model.postprocess.strides must be positive"},
]))]
pub struct Postprocess {
    /// Output layout of the model.
    pub layout: PostprocessLayout,
    /// Class names by class id (index 0 first). Empty means ids only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 63)))]
    pub classes: Vec<String>,
    /// Detections below this confidence (0..1) are dropped.
    #[serde(default = "default_confidence")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    /// IoU (0..1) above which non-maximum suppression drops the weaker box.
    #[serde(default = "default_iou")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub iou: f64,
    /// Feature-map strides in input pixels for anchor-free layouts (YOLOX); empty means the
    /// layout's default (8, 16, 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub strides: Vec<u32>,
}

/// Output tensor layouts the sidecar decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PostprocessLayout {
    /// `[1, 4 + classes, anchors]`.
    Yolov8,
    /// `[1, anchors, 5 + classes]` with objectness.
    Yolov5,
    /// `[1, anchors, 5 + classes]`, grid-relative, decoded with `strides`.
    Yolox,
}

/// Warm-up before Ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Warmup {
    /// Inferences on a blank input before the readiness probe turns true (0 disables warm-up).
    #[serde(default = "default_warmup_iterations")]
    #[schemars(range(min = 0, max = 100))]
    pub iterations: u32,
}

impl Default for Warmup {
    fn default() -> Self {
        Self {
            iterations: default_warmup_iterations(),
        }
    }
}

/// How `inference-sidecar` runs on each robot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.batching) || duration(self.batching.maxQueueDelay) < duration(self.requestTimeout)",
     "message": "spec.runtime.batching.maxQueueDelay must be shorter than spec.runtime.requestTimeout"},
    {"rule": "!self.executionProviders.exists(p, p == 'CPU') || self.executionProviders[size(self.executionProviders) - 1] == 'CPU'",
     "message": "spec.runtime.executionProviders: CPU, when listed, must be last (providers are tried in order)"},
    {"rule": "self.ports.inference != self.ports.metrics && self.ports.inference != self.ports.bridgeMetrics && self.ports.metrics != self.ports.bridgeMetrics",
     "message": "spec.runtime.ports.inference, metrics and bridgeMetrics must all differ"},
]))]
pub struct RuntimeSpec {
    /// Name of an entry in the operator's image allow-list (Helm value `images`); omit for the
    /// allow-list's default. Image references themselves are never accepted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub image: Option<String>,
    /// ONNX Runtime execution providers, tried in order; each falls back to the next only with a
    /// reported `ExecutionProviderFallback` condition.
    #[serde(default = "default_providers")]
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub execution_providers: Vec<ExecutionProvider>,
    /// Threads per inference. Omit to use the pod's CPU request (rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub intra_op_threads: Option<u32>,
    /// Inferences computed at the same time (worker threads).
    #[serde(default = "default_max_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrency: u32,
    /// Requests that may wait for a worker; more are answered 429 at once.
    #[serde(default = "default_max_queue")]
    #[schemars(range(min = 0, max = 4096))]
    pub max_queue: u32,
    /// Dynamic batching. Omit to run one request at a time (required for fixed-batch models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Deadline of one request, queue time included (Go duration, e.g. `500ms`). An expired
    /// request is dropped and counted `timeout`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: GoDuration,
    /// Largest accepted request body in bytes (default 64 MiB); larger ones get 413.
    #[serde(default = "default_max_request_bytes")]
    #[schemars(range(min = 1024, max = 1073741824))]
    pub max_request_bytes: u64,
    /// CPU and memory of the sidecar container. GPUs go in `gpuResource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// RuntimeClass of the robot pod (e.g. `nvidia`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub runtime_class_name: Option<String>,
    /// An extended resource to request, e.g. `nvidia.com/gpu` count 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_resource: Option<GpuResource>,
    /// The node-local model cache.
    #[serde(default)]
    pub model_cache: ModelCache,
    /// Ports on the robot (pods share the robot's network). Give each InferenceService on the same
    /// robots its own ports.
    #[serde(default)]
    pub ports: Ports,
}

impl Default for RuntimeSpec {
    fn default() -> Self {
        Self {
            image: None,
            execution_providers: default_providers(),
            intra_op_threads: None,
            max_concurrency: default_max_concurrency(),
            max_queue: default_max_queue(),
            batching: None,
            request_timeout: default_request_timeout(),
            max_request_bytes: default_max_request_bytes(),
            resources: None,
            runtime_class_name: None,
            gpu_resource: None,
            model_cache: ModelCache::default(),
            ports: Ports::default(),
        }
    }
}

/// An ONNX Runtime execution provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExecutionProvider {
    /// NVIDIA TensorRT.
    TensorRT,
    /// NVIDIA CUDA.
    #[serde(rename = "CUDA")]
    Cuda,
    /// The CPU (always available).
    #[serde(rename = "CPU")]
    Cpu,
}

/// Dynamic batching: requests waiting together are run as one batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batching {
    /// Largest batch (at least 1).
    #[schemars(range(min = 1, max = 256))]
    pub max_batch_size: u32,
    /// Longest a request waits for others to fill a batch (Go duration); must be shorter than
    /// `requestTimeout`.
    #[serde(default = "default_max_queue_delay")]
    pub max_queue_delay: GoDuration,
}

/// An extended resource requested by the sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuResource {
    /// Resource name, e.g. `nvidia.com/gpu`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9.-]+/[a-zA-Z0-9._-]+$")
    )]
    pub name: String,
    /// How many.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 16))]
    pub count: u32,
}

/// Node-local model cache (a hostPath under the operator's allowed prefix).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.hostPath.startsWith('/') && !self.hostPath.contains('..')",
     "message": "spec.runtime.modelCache.hostPath must be an absolute path without '..'"},
]))]
pub struct ModelCache {
    /// Directory on the robot; must lie under the prefix the cluster admin allowed.
    #[serde(default = "default_cache_path")]
    #[schemars(length(min = 1, max = 256))]
    pub host_path: String,
    /// Largest total size of cached models in bytes (default 10 GiB).
    #[serde(default = "default_cache_bytes")]
    #[schemars(range(min = 1048576))]
    pub max_bytes: u64,
    /// Models kept per service (the current and the previous one at least).
    #[serde(default = "default_keep")]
    #[schemars(range(min = 2, max = 8))]
    pub keep: u32,
}

impl Default for ModelCache {
    fn default() -> Self {
        Self {
            host_path: default_cache_path(),
            max_bytes: default_cache_bytes(),
            keep: default_keep(),
        }
    }
}

/// Ports of the robot pod (host network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// Inference API port (HTTP, Open Inference Protocol), bound to 127.0.0.1 only. Default 8000,
    /// as Triton.
    #[serde(default = "default_inference_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub inference: u16,
    /// `/metrics` and health port, bound to the robot's address. Default 8002, as Triton.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub metrics: u16,
    /// `/metrics` and health port of the ROS 2 detection bridge (when `spec.ros` is enabled), on
    /// the robot's address. Default 8003.
    #[serde(default = "default_bridge_metrics_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub bridge_metrics: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            inference: default_inference_port(),
            metrics: default_metrics_port(),
            bridge_metrics: default_bridge_metrics_port(),
        }
    }
}

/// The ROS 2 detection bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.inputTopic != self.outputTopic",
     "message": "spec.ros.inputTopic and outputTopic must differ"},
]))]
pub struct RosSpec {
    /// Run the bridge.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Camera topic (`sensor_msgs/Image` or `CompressedImage`); `${ROBOT}` is the Node name.
    #[serde(default = "default_input_topic")]
    pub input_topic: Topic,
    /// Type of the camera topic.
    #[serde(default)]
    pub input_type: ImageMessage,
    /// Detections topic (`vision_msgs/Detection2DArray`, stamped with the image's header).
    #[serde(default = "default_output_topic")]
    pub output_topic: Topic,
    /// ROS domain ID when the Node has no `robofleet.io/ros-domain-id` label (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 232))]
    pub domain_id: Option<u32>,
    /// QoS of the subscription (publishers are Reliable, KeepLast(1)).
    #[serde(default)]
    pub qos: Qos,
}

/// Camera message type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImageMessage {
    /// `sensor_msgs/Image` (raw pixels, sent to the sidecar without re-encoding).
    #[default]
    Image,
    /// `sensor_msgs/CompressedImage` (JPEG or PNG).
    CompressedImage,
}

/// Subscription QoS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Qos {
    /// `BestEffort` matches every publisher; `Reliable` only reliable ones.
    #[serde(default)]
    pub reliability: Reliability,
    /// KeepLast depth; stale frames are dropped, not queued.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 100))]
    pub depth: u32,
}

impl Default for Qos {
    fn default() -> Self {
        Self {
            reliability: Reliability::default(),
            depth: 1,
        }
    }
}

/// DDS reliability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Reliability {
    /// Best effort.
    #[default]
    BestEffort,
    /// Reliable.
    Reliable,
}

fn default_rollout() -> RolloutSpec {
    RolloutSpec::default()
}
fn default_scale() -> f64 {
    1.0 / 255.0
}
fn default_mean() -> Vec<f64> {
    vec![0.0]
}
fn default_std() -> Vec<f64> {
    vec![1.0]
}
fn default_pad() -> u32 {
    114
}
fn default_confidence() -> f64 {
    0.25
}
fn default_iou() -> f64 {
    0.45
}
fn default_warmup_iterations() -> u32 {
    1
}
fn default_providers() -> Vec<ExecutionProvider> {
    vec![ExecutionProvider::Cpu]
}
fn default_max_concurrency() -> u32 {
    1
}
fn default_max_queue() -> u32 {
    64
}
fn default_request_timeout() -> GoDuration {
    GoDuration::from("1s")
}
fn default_max_queue_delay() -> GoDuration {
    GoDuration::from("5ms")
}
fn default_max_request_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_one() -> u32 {
    1
}
fn default_cache_path() -> String {
    "/var/lib/robofleet/models".to_owned()
}
fn default_cache_bytes() -> u64 {
    10 * 1024 * 1024 * 1024
}
fn default_keep() -> u32 {
    2
}
fn default_inference_port() -> u16 {
    8000
}
fn default_metrics_port() -> u16 {
    8002
}
fn default_bridge_metrics_port() -> u16 {
    8003
}
fn default_true() -> bool {
    true
}
fn default_input_topic() -> Topic {
    Topic::new("/camera/image_raw")
}
fn default_output_topic() -> Topic {
    Topic::new("/detections")
}
