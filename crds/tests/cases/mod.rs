//! The table of invalid-spec cases, shared by the cluster tests (`tests/tests/crds.rs`, where the
//! API server is the judge) and the CEL-only unit test (`crds/tests/cel.rs`, quick feedback with
//! kube-cel). Each case breaks one value of an example in `docs/reference/examples/` and names
//! the message the API server must answer with; its accepted twin differs only in that value.

#![allow(dead_code)] // each including test crate uses a different part
#![allow(clippy::expect_used)] // test helpers may panic with context

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example from `docs/reference/examples/`, as JSON.
pub fn example(name: &str) -> Value {
    let path = repo().join("docs/reference/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `base` with the case's good (`bad == false`) or bad value applied.
pub fn variant(case: &Case, bad: bool) -> Value {
    let mut v = example(case.base);
    set(
        &mut v,
        case.at,
        if bad {
            case.bad.clone()
        } else {
            case.good.clone()
        },
    );
    v
}

/// What a case proves, for the coverage check.
#[derive(Clone, Debug)]
pub enum Covers {
    /// The CEL rule whose message is `expect`.
    Rule,
    /// The enum at this schema path.
    Enum(&'static str),
    /// The required field at this schema path.
    Required(&'static str),
    /// A type or range check.
    Other,
}

/// One refusing case and its accepted twin: `base` with the value at `at` (a JSON pointer) set
/// to `good` (accepted) or `bad` (refused with a message containing `expect`); `None` removes.
pub struct Case {
    pub base: &'static str,
    pub at: &'static str,
    pub good: Option<Value>,
    pub bad: Option<Value>,
    pub expect: &'static str,
    pub covers: Covers,
}

pub fn cel(
    base: &'static str,
    at: &'static str,
    good: Option<Value>,
    bad: Option<Value>,
    msg: &'static str,
) -> Case {
    Case {
        base,
        at,
        good,
        bad,
        expect: msg,
        covers: Covers::Rule,
    }
}

pub fn enum_(base: &'static str, at: &'static str, good: Value, path: &'static str) -> Case {
    Case {
        base,
        at,
        good: Some(good),
        bad: Some(json!("NotAValue")),
        expect: "Unsupported value",
        covers: Covers::Enum(path),
    }
}

pub fn required(base: &'static str, at: &'static str, good: Value, path: &'static str) -> Case {
    Case {
        base,
        at,
        good: Some(good),
        bad: None,
        expect: "Required value",
        covers: Covers::Required(path),
    }
}

pub fn other(
    base: &'static str,
    at: &'static str,
    good: Value,
    bad: Value,
    expect: &'static str,
) -> Case {
    Case {
        base,
        at,
        good: Some(good),
        bad: Some(bad),
        expect,
        covers: Covers::Other,
    }
}

/// Sets (or with `None` removes) the value at a JSON pointer, creating objects on the way and
/// appending when the index equals the array's length.
pub fn set(root: &mut Value, pointer: &str, value: Option<Value>) {
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let (last, parents) = parts.split_last().expect("non-empty pointer");
    let mut node = root;
    for p in parents {
        node = match node {
            Value::Array(items) => &mut items[p.parse::<usize>().expect("index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("object")
                    .entry(p.to_string())
                    .or_insert(json!({}))
            }
        };
    }
    match (node, value) {
        (Value::Array(items), v) => {
            let i: usize = last.parse().expect("index");
            match v {
                Some(v) if i == items.len() => items.push(v),
                Some(v) => items[i] = v,
                None => {
                    items.remove(i);
                }
            }
        }
        (Value::Object(map), Some(v)) => {
            map.insert(last.to_string(), v);
        }
        (Value::Object(map), None) => {
            map.remove(*last);
        }
        (other, _) => panic!("cannot set {pointer} in {other}"),
    }
}

pub const IS: &str = "inferenceservice.yaml";
pub const SP: &str = "safetypolicy.yaml";
pub const SIM: &str = "sensorsim.yaml";
pub const CAM: &str = "sensorsim-camera.yaml";
pub const SIM_MIN: &str = "sensorsim-minimal.yaml";
pub const NAME_MSG: &str = "metadata.name must be at most 40 characters, so the names and labels of the pods robofleet creates stay within 63";

#[rustfmt::skip] // a table reads best one case per line
pub fn cases() -> Vec<Case> {
    let long = json!("a".repeat(41));
    let ok_name = json!("a".repeat(40));
    let sha = "9b74c9897bac770ffc029102a200c5de0d5a2b8f6d1e3c4b5a69788776655443";
    vec![
        // ---- InferenceService: CEL rules
        cel(IS, "/metadata/name", Some(ok_name.clone()), Some(long.clone()), NAME_MSG),
        cel(IS, "/spec/model/uri", Some(json!("file:///models/x.onnx")), Some(json!("ftp://models/x.onnx")), "spec.model.uri must start with file:///, http:// or https://"),
        cel(IS, "/spec/model/sha256", Some(json!(sha)), Some(json!(sha.to_uppercase())), "spec.model.sha256 must be 64 lowercase hex characters (the SHA-256 of the model file)"),
        cel(IS, "/spec/model/postprocess/strides", Some(json!([8, 16, 32])), Some(json!([8, 0, 32])), "spec.model.postprocess.strides must be positive"),
        cel(IS, "/spec/model/preprocess/mean", Some(json!([0.0])), Some(json!([0.0, 0.0, 0.0])), "spec.model.preprocess.mean and std must have the same length (1 for all channels, or 3)"),
        cel(IS, "/spec/model/preprocess/std", Some(json!([1.0])), Some(json!([0.0])), "spec.model.preprocess.std values must be greater than 0"),
        cel(IS, "/spec/robotSelector", Some(json!({"matchLabels": {"a": "b"}})), Some(json!({})), "spec.robotSelector must set matchLabels or matchExpressions; omit it to select every robot"),
        cel(IS, "/spec/rollout/strategy", Some(json!("Waves")), Some(json!("AllAtOnce")), "spec.rollout.waves: strategy Waves needs at least one wave; strategy AllAtOnce takes none"),
        cel(IS, "/spec/rollout/waves/2/percent", Some(json!(100)), Some(json!(90)), "spec.rollout.waves: the last wave must be percent: 100"),
        cel(IS, "/spec/rollout/waves/1/percent", Some(json!(25)), Some(json!(100)), "spec.rollout.waves: percent must strictly increase from wave to wave"),
        cel(IS, "/spec/rollout/waves/1/name", Some(json!("early")), Some(json!("canary")), "spec.rollout.waves: wave names must be unique"),
        cel(IS, "/spec/rollout/analysis/metrics/1/name", Some(json!("p99")), Some(json!("errors")), "spec.rollout.analysis.metrics: metric names must be unique"),
        cel(IS, "/spec/rollout/analysis/metrics/3/prometheus", None, Some(json!({"address": "http://prometheus:9090", "query": "vector(0)"})), "spec.rollout.analysis.metrics[]: set exactly one of builtin or prometheus"),
        cel(IS, "/spec/rollout/analysis/metrics/0/maxRatio", Some(json!(0.01)), None, "spec.rollout.analysis.metrics[]: maxRatio is the threshold of (and only of) builtin ErrorRatio"),
        cel(IS, "/spec/rollout/analysis/metrics/1/maxLatency", Some(json!("80ms")), None, "spec.rollout.analysis.metrics[]: maxLatency is the threshold of (and only of) builtin LatencyP99"),
        cel(IS, "/spec/rollout/analysis/metrics/2/maxIncreasePerHour", Some(json!(0.5)), None, "spec.rollout.analysis.metrics[]: maxIncreasePerHour is the threshold of (and only of) builtin SafetyStopRate"),
        cel(IS, "/spec/rollout/analysis/metrics/3/maxValue", Some(json!(0)), None, "spec.rollout.analysis.metrics[]: maxValue is the threshold of (and only of) builtin FallbackRobots and prometheus queries"),
        cel(IS, "/spec/rollout/analysis/metrics/4/maxValue", Some(json!(6)), None, "spec.rollout.analysis.metrics[]: maxValue is the threshold of (and only of) builtin FallbackRobots and prometheus queries"),
        cel(IS, "/spec/rollout/analysis/metrics/0/quantile", None, Some(json!(0.9)), "spec.rollout.analysis.metrics[]: quantile applies only to builtin LatencyP99"),
        cel(IS, "/spec/rollout/analysis/metrics/3/minSamples", None, Some(json!(10)), "spec.rollout.analysis.metrics[]: minSamples (a request count) applies only to builtin ErrorRatio and LatencyP99"),
        cel(IS, "/spec/rollout/analysis/metrics/0/minRobotHours", None, Some(json!(1)), "spec.rollout.analysis.metrics[]: minRobotHours applies only to builtin SafetyStopRate"),
        cel(IS, "/spec/rollout/analysis/metrics/4/prometheus/address", Some(json!("https://prometheus:9090")), Some(json!("prometheus:9090")), "spec.rollout.analysis.metrics[].prometheus.address must start with http:// or https://"),
        cel(IS, "/spec/rollout/waves/0/percent", None, Some(json!(10)), "spec.rollout.waves[]: set exactly one of robots (a count) or percent (cumulative, 1-100)"),
        cel(IS, "/spec/rollout/waves/1/maxUnavailable", Some(json!(1)), Some(json!(0)), "spec.rollout.waves[].maxUnavailable must be a count (1-9999) or a percentage (1%-100%)"),
        cel(IS, "/spec/rollout/waves/2/maxUnavailable", Some(json!("20%")), Some(json!("0%")), "spec.rollout.waves[].maxUnavailable must be a count (1-9999) or a percentage (1%-100%)"),
        cel(IS, "/spec/rollout/waves/2/maxUnavailable", Some(json!("20%")), Some(json!("101%")), "spec.rollout.waves[].maxUnavailable must be a count (1-9999) or a percentage (1%-100%)"),
        cel(IS, "/spec/rollout/waves/2/maxUnavailable", Some(json!(5)), Some(json!(10000)), "spec.rollout.waves[].maxUnavailable must be a count (1-9999) or a percentage (1%-100%)"),
        cel(IS, "/spec/rollout/waves/0/pause/untilApproved", None, Some(json!(true)), "spec.rollout.waves[].pause: set exactly one of duration or untilApproved: true"),
        cel(IS, "/spec/ros/outputTopic", Some(json!("/${ROBOT}/detections")), Some(json!("/${ROBOT}/front_camera/image_raw")), "spec.ros.inputTopic and outputTopic must differ"),
        cel(IS, "/spec/runtime/batching/maxQueueDelay", Some(json!("4ms")), Some(json!("250ms")), "spec.runtime.batching.maxQueueDelay must be shorter than spec.runtime.requestTimeout"),
        cel(IS, "/spec/runtime/executionProviders", Some(json!(["CUDA", "CPU"])), Some(json!(["CPU", "CUDA"])), "spec.runtime.executionProviders: CPU, when listed, must be last (providers are tried in order)"),
        cel(IS, "/spec/runtime/ports/metrics", Some(json!(8002)), Some(json!(8000)), "spec.runtime.ports.inference, metrics and bridgeMetrics must all differ"),
        cel(IS, "/spec/runtime/ports/bridgeMetrics", None, Some(json!(8002)), "spec.runtime.ports.inference, metrics and bridgeMetrics must all differ"),
        cel(IS, "/spec/runtime/modelCache/hostPath", Some(json!("/var/lib/robofleet/models")), Some(json!("var/lib/models")), "spec.runtime.modelCache.hostPath must be an absolute path without '..'"),
        cel(IS, "/spec/runtime/modelCache/hostPath", Some(json!("/var/lib/robofleet/models")), Some(json!("/var/lib/robofleet/../../etc")), "spec.runtime.modelCache.hostPath must be an absolute path without '..'"),
        // ---- InferenceService: enums
        enum_(IS, "/spec/model/format", json!("onnx"), "spec.model.format"),
        enum_(IS, "/spec/model/postprocess/layout", json!("yolov8"), "spec.model.postprocess.layout"),
        enum_(IS, "/spec/model/preprocess/colorOrder", json!("bgr"), "spec.model.preprocess.colorOrder"),
        enum_(IS, "/spec/model/preprocess/letterbox", json!("topLeft"), "spec.model.preprocess.letterbox"),
        enum_(IS, "/spec/model/preprocess/resizeRounding", json!("floor"), "spec.model.preprocess.resizeRounding"),
        enum_(IS, "/spec/rollout/analysis/metrics/0/builtin", json!("ErrorRatio"), "spec.rollout.analysis.metrics[].builtin"),
        enum_(IS, "/spec/rollout/analysis/noDataPolicy", json!("Fail"), "spec.rollout.analysis.noDataPolicy"),
        enum_(IS, "/spec/rollout/analysis/inconclusiveAction", json!("Proceed"), "spec.rollout.analysis.inconclusiveAction"),
        enum_(IS, "/spec/rollout/gates/robotState/onTimeout", json!("Force"), "spec.rollout.gates.robotState.onTimeout"),
        enum_(IS, "/spec/rollout/gates/safetyStopActive", json!("Ignore"), "spec.rollout.gates.safetyStopActive"),
        enum_(IS, "/spec/rollout/strategy", json!("Waves"), "spec.rollout.strategy"),
        enum_(IS, "/spec/ros/inputType", json!("CompressedImage"), "spec.ros.inputType"),
        enum_(IS, "/spec/ros/qos/reliability", json!("Reliable"), "spec.ros.qos.reliability"),
        enum_(IS, "/spec/runtime/executionProviders/0", json!("TensorRT"), "spec.runtime.executionProviders[]"),
        // ---- InferenceService: required fields
        required(IS, "/spec/model", json!({"uri": "https://m/x.onnx", "sha256": sha}), "spec.model"),
        required(IS, "/spec/model/uri", json!("https://m/x.onnx"), "spec.model.uri"),
        required(IS, "/spec/model/sha256", json!(sha), "spec.model.sha256"),
        required(IS, "/spec/model/postprocess/layout", json!("yolox"), "spec.model.postprocess.layout"),
        required(IS, "/spec/rollout/analysis/metrics", json!([{"name": "e", "builtin": "ErrorRatio", "maxRatio": 0.1}]), "spec.rollout.analysis.metrics"),
        required(IS, "/spec/rollout/analysis/metrics/0/name", json!("errors"), "spec.rollout.analysis.metrics[].name"),
        required(IS, "/spec/rollout/analysis/metrics/4/prometheus/address", json!("http://prometheus:9090"), "spec.rollout.analysis.metrics[].prometheus.address"),
        required(IS, "/spec/rollout/analysis/metrics/4/prometheus/query", json!("vector(1)"), "spec.rollout.analysis.metrics[].prometheus.query"),
        required(IS, "/spec/rollout/preflight/0/sensorSimTemplate", json!({"name": "camera-smoke"}), "spec.rollout.preflight[].sensorSimTemplate"),
        required(IS, "/spec/rollout/preflight/0/sensorSimTemplate/name", json!("camera-smoke"), "spec.rollout.preflight[].sensorSimTemplate.name"),
        required(IS, "/spec/rollout/waves/0/name", json!("canary"), "spec.rollout.waves[].name"),
        required(IS, "/spec/runtime/batching/maxBatchSize", json!(4), "spec.runtime.batching.maxBatchSize"),
        required(IS, "/spec/runtime/gpuResource/name", json!("nvidia.com/gpu"), "spec.runtime.gpuResource.name"),
        // ---- InferenceService: types and ranges
        other(IS, "/spec/paused", json!(false), json!("no"), "spec.paused: Invalid value: \"string\": spec.paused in body must be of type boolean"),
        other(IS, "/spec/runtime/maxConcurrency", json!(64), json!(65), "spec.runtime.maxConcurrency: Invalid value: 65: spec.runtime.maxConcurrency in body should be less than or equal to 64"),
        other(IS, "/spec/runtime/batching/maxBatchSize", json!(1), json!(0), "spec.runtime.batching.maxBatchSize in body should be greater than or equal to 1"),
        other(IS, "/spec/runtime/requestTimeout", json!("1m30s"), json!("90 seconds"), "spec.runtime.requestTimeout in body should match"),
        other(IS, "/spec/model/postprocess/confidence", json!(1.0), json!(1.5), "spec.model.postprocess.confidence in body should be less than or equal to 1"),
        other(IS, "/spec/rollout/waves/1/percent", json!(25), json!(101), "spec.rollout.waves[1].percent in body should be less than or equal to 100"),
        other(IS, "/spec/rollout/waves/0/robots", json!(100), json!(101), "spec.rollout.waves[0].robots in body should be less than or equal to 100"),
        other(IS, "/spec/rollout/analysis/metrics/0/minSamples", json!(1), json!(0), "spec.rollout.analysis.metrics[0].minSamples in body should be greater than or equal to 1"),
        other(IS, "/spec/rollout/gates/robotState/deferTimeout", json!("1h30m"), json!("30 minutes"), "spec.rollout.gates.robotState.deferTimeout in body should match"),
        other(IS, "/spec/model/sha256", json!(sha), json!("abc"), "spec.model.sha256 in body should be at least 64 chars long"),
        other(IS, "/spec/ros/inputTopic", json!("/camera"), json!("camera image"), "spec.ros.inputTopic in body should match"),
        other(IS, "/spec/model/postprocess/classes", json!(["a"]), json!(vec!["a"; 1001]), "spec.model.postprocess.classes: Too many: 1001: must have at most 1000 items"),
        // ---- SafetyPolicy: CEL rules
        cel(SP, "/metadata/name", Some(ok_name.clone()), Some(long.clone()), NAME_MSG),
        cel(SP, "/spec/output/heartbeat", Some(json!("50ms")), Some(json!("200ms")), "spec.output.heartbeat must be shorter than spec.source.sourceTimeout (the lock is recomputed every heartbeat)"),
        cel(SP, "/spec/zones/1/name", Some(json!("slow-front")), Some(json!("stop-front")), "spec.zones: zone names must be unique"),
        cel(SP, "/spec/zones/1/range", Some(json!(0.8)), Some(json!(0.3)), "spec.zones: sectors on the same angles must keep range(stop) < range(slowdown) < range(warn)"),
        cel(SP, "/spec/zones/2/range", Some(json!(1.5)), Some(json!(0.8)), "spec.zones: sectors on the same angles must keep range(stop) < range(slowdown) < range(warn)"),
        cel(SP, "/spec/output/speedLimitTopic", Some(json!("/${ROBOT}/speed_limit")), Some(json!("/${ROBOT}/safety/stop")), "spec.output.stopTopic and speedLimitTopic must differ"),
        cel(SP, "/spec/robotSelector", Some(json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})), Some(json!({"matchLabels": {}})), "spec.robotSelector must set matchLabels or matchExpressions; omit it to select every robot"),
        cel(SP, "/spec/source/frame", None, Some(json!("laser")), "spec.source: set exactly one of transform (the laser's pose in base_link) or frame: laser (zones in the laser frame)"),
        cel(SP, "/spec/zones/0/range", Some(json!(0.35)), None, "spec.zones[]: shape sector needs minAngleDeg, maxAngleDeg and range, and only sectors take them"),
        cel(SP, "/spec/zones/2/minAngleDeg", Some(json!(-35)), Some(json!(40)), "spec.zones[]: minAngleDeg must be less than maxAngleDeg"),
        cel(SP, "/spec/zones/0/minRange", Some(json!(0.1)), Some(json!(0.5)), "spec.zones[]: minRange applies only to sectors and must be less than range"),
        cel(SP, "/spec/zones/3/points", Some(json!([[0.4, 0.3], [0.4, -0.3], [-0.3, 0.0]])), None, "spec.zones[]: shape polygon needs points (3-64), and only polygons take them"),
        cel(SP, "/spec/zones/4/radius", Some(json!(2.0)), None, "spec.zones[]: shape circle needs radius (and may set center); only circles take them"),
        cel(SP, "/spec/zones/0/center", None, Some(json!([0.0, 0.0])), "spec.zones[]: shape circle needs radius (and may set center); only circles take them"),
        cel(SP, "/spec/zones/0/speedLimitPercent", None, Some(json!(30)), "spec.zones[]: speedLimitPercent applies only to action slowdown"),
        // ---- SafetyPolicy: enums and required fields
        enum_(SP, "/spec/release/mode", json!("Auto"), "spec.release.mode"),
        Case {base: SP, at: "/spec/source", good: Some(json!({"frame": "laser"})), bad: Some(json!({"frame": "base_link"})), expect: "Unsupported value", covers: Covers::Enum("spec.source.frame"), },
        enum_(SP, "/spec/zones/0/action", json!("stop"), "spec.zones[].action"),
        enum_(SP, "/spec/zones/4/shape", json!("circle"), "spec.zones[].shape"),
        required(SP, "/spec/zones", json!([{"name": "z", "shape": "circle", "action": "stop", "radius": 0.3}]), "spec.zones"),
        required(SP, "/spec/zones/0/action", json!("stop"), "spec.zones[].action"),
        required(SP, "/spec/zones/0/name", json!("stop-front"), "spec.zones[].name"),
        required(SP, "/spec/zones/4/shape", json!("circle"), "spec.zones[].shape"),
        // ---- SafetyPolicy: types and ranges
        other(SP, "/spec/zones", json!([{"name": "z", "shape": "circle", "action": "stop", "radius": 0.3}]), json!([]), "spec.zones: Invalid value: 0: spec.zones in body should have at least 1 items"),
        other(SP, "/spec/zones/3/points", json!([[0.4, 0.3], [0.4, -0.3], [-0.3, 0.0]]), json!([[0.4, 0.3], [0.4, -0.3]]), "spec.zones[3].points in body should have at least 3 items"),
        other(SP, "/spec/zones/3/points/0", json!([0.4, 0.3]), json!([0.4]), "spec.zones[3].points[0] in body should have at least 2 items"),
        other(SP, "/spec/zones/0/range", json!(0.35), json!(0), "spec.zones[0].range in body should be greater than 0"),
        other(SP, "/spec/invalidReadings/maxInvalidFraction", json!(1.0), json!(1.5), "spec.invalidReadings.maxInvalidFraction in body should be less than or equal to 1"),
        other(SP, "/spec/zones/0/minPoints", json!(3), json!("three"), "spec.zones[0].minPoints in body must be of type integer"),
        // ---- SensorSim: CEL rules
        cel(SIM, "/metadata/name", Some(ok_name), Some(long), NAME_MSG),
        cel(SIM, "/spec/faults/corruptImageRate", None, Some(json!(0.1)), "spec.faults.corruptImageRate applies only to sensor.type camera"),
        cel(CAM, "/spec/faults/nanRate", None, Some(json!(0.01)), "spec.faults.nanRate, negInfRate and blindAfter apply only to sensor.type lidar2d"),
        cel(CAM, "/spec/faults/negInfRate", None, Some(json!(0.01)), "spec.faults.nanRate, negInfRate and blindAfter apply only to sensor.type lidar2d"),
        cel(CAM, "/spec/faults/blindAfter", None, Some(json!("5s")), "spec.faults.nanRate, negInfRate and blindAfter apply only to sensor.type lidar2d"),
        cel(SIM, "/spec/unitsUnderTest", Some(json!({"safetyPolicyRef": {"name": "warehouse-safety"}})), Some(json!({"inferenceServiceRef": {"name": "x"}})), "spec.expect: safety expectations (safetyStopWithin, safetyReleaseWithin) need spec.unitsUnderTest.safetyPolicyRef (or template: true, filled in by a rollout preflight)"),
        cel(SIM, "/spec/faults/stallAfter", Some(json!("12s")), None, "spec.expect: whenSensorFault needs spec.faults.stallAfter or blindAfter"),
        cel(SIM, "/spec/expect/1", Some(json!({"safetyStopWithin": "300ms", "whenSensorFault": true})), Some(json!({"maxDecodeErrorRatio": 0.1})), "spec.expect: maxDecodeErrorRatio applies only to sensor.type camera"),
        cel(CAM, "/spec/expect/0/safetyReleaseWithin", None, Some(json!("1s")), "spec.expect[]: set exactly one of safetyStopWithin, safetyReleaseWithin or maxDecodeErrorRatio"),
        cel(SIM, "/spec/expect/0/whenDistanceBelow", Some(json!(0.35)), None, "spec.expect[]: safetyStopWithin takes exactly one trigger, whenDistanceBelow or whenSensorFault: true (and only it takes them)"),
        cel(SIM, "/spec/expect/0/whenSensorFault", None, Some(json!(true)), "spec.expect[]: safetyStopWithin takes exactly one trigger, whenDistanceBelow or whenSensorFault: true (and only it takes them)"),
        cel(SIM, "/spec/expect/2/whenDistanceBelow", None, Some(json!(0.5)), "spec.expect[]: safetyStopWithin takes exactly one trigger, whenDistanceBelow or whenSensorFault: true (and only it takes them)"),
        cel(SIM, "/spec/expect/2/safetyReleaseNotBefore", Some(json!("1s")), Some(json!("3s")), "spec.expect[]: safetyReleaseNotBefore needs safetyReleaseWithin and must be shorter"),
        cel(SIM, "/spec/scenario/obstacles/1", Some(json!({"name": "b", "bearingDeg": 10, "startDistance": 2.0})), Some(json!({"name": "box", "bearingDeg": 10, "startDistance": 2.0})), "spec.scenario.obstacles: obstacle names must be unique"),
        cel(SIM, "/spec/scenario/obstacles/0/minDistance", Some(json!(0.2)), Some(json!(5.0)), "spec.scenario.obstacles[]: minDistance must not exceed startDistance"),
        cel(SIM, "/spec/scenario/obstacles/0/disappearAt", Some(json!("9s")), Some(json!("1s")), "spec.scenario.obstacles[]: appearAt must be before disappearAt"),
        cel(CAM, "/spec/sensor/lidar", None, Some(json!({})), "spec.sensor.lidar applies only to type lidar2d"),
        cel(SIM, "/spec/sensor/camera", None, Some(json!({})), "spec.sensor.camera applies only to type camera"),
        cel(SIM, "/spec/sensor/rateHz", Some(json!(100)), Some(json!(110)), "spec.sensor.rateHz must be at most 100 for lidar2d"),
        cel(SIM, "/spec/sensor/lidar/angleMinDeg", Some(json!(-180)), Some(json!(180)), "spec.sensor.lidar.angleMinDeg must be less than angleMaxDeg"),
        cel(SIM, "/spec/sensor/lidar/rangeMin", Some(json!(0.05)), Some(json!(12.0)), "spec.sensor.lidar.rangeMin must be less than rangeMax"),
        cel(SIM, "/spec/target/mode", Some(json!("Sandbox")), Some(json!("Robots")), "spec.target.robotSelector is required with mode Robots and not allowed with mode Sandbox"),
        cel(SIM, "/spec/target", Some(json!({"mode": "Robots", "robotSelector": {"matchLabels": {"robofleet.io/simulated": "true"}}})), Some(json!({"mode": "Robots", "robotSelector": {}})), "spec.target.robotSelector must set matchLabels or matchExpressions"),
        cel(CAM, "/spec/unitsUnderTest", Some(json!({"inferenceServiceRef": {"name": "pallet-detector"}})), Some(json!({})), "spec.unitsUnderTest must name a safetyPolicyRef, an inferenceServiceRef, or both"),
        cel(SIM, "/spec/unitsUnderTest/revision", None, Some(json!("abc123")), "spec.unitsUnderTest.revision needs inferenceServiceRef"),
        // ---- SensorSim: enums and required fields
        enum_(CAM, "/spec/sensor/camera/encoding", json!("jpeg"), "spec.sensor.camera.encoding"),
        enum_(SIM_MIN, "/spec/sensor/type", json!("lidar2d"), "spec.sensor.type"),
        enum_(SIM, "/spec/target/mode", json!("Sandbox"), "spec.target.mode"),
        required(SIM_MIN, "/spec/sensor", json!({"type": "lidar2d"}), "spec.sensor"),
        required(SIM_MIN, "/spec/sensor/type", json!("lidar2d"), "spec.sensor.type"),
        required(SIM, "/spec/scenario/obstacles/0/name", json!("box"), "spec.scenario.obstacles[].name"),
        required(SIM, "/spec/scenario/obstacles/0/bearingDeg", json!(0), "spec.scenario.obstacles[].bearingDeg"),
        required(SIM, "/spec/scenario/obstacles/0/startDistance", json!(3.0), "spec.scenario.obstacles[].startDistance"),
        required(SIM, "/spec/unitsUnderTest/safetyPolicyRef/name", json!("warehouse-safety"), "spec.unitsUnderTest.safetyPolicyRef.name"),
        required(CAM, "/spec/unitsUnderTest/inferenceServiceRef/name", json!("pallet-detector"), "spec.unitsUnderTest.inferenceServiceRef.name"),
        // ---- SensorSim: types and ranges
        other(SIM, "/spec/sensor/rateHz", json!(0.1), json!(0), "spec.sensor.rateHz in body should be greater than 0"),
        other(SIM, "/spec/scenario/obstacles/0/width", json!(0.5), json!(0), "spec.scenario.obstacles[0].width in body should be greater than 0"),
        other(IS, "/spec/rollout/analysis/metrics/1/quantile", json!(0.5), json!(0), "spec.rollout.analysis.metrics[1].quantile in body should be greater than 0"),
        other(SIM, "/spec/noise/stddev", json!(0.01), json!("a lot"), "spec.noise.stddev in body must be of type number"),
        other(SIM, "/spec/faults/dropRate", json!(1.0), json!(1.01), "spec.faults.dropRate in body should be less than or equal to 1"),
        other(SIM, "/spec/duration", json!("2h"), json!("2d"), "spec.duration in body should match"),
    ]
}

/// Rules checked by a dedicated test rather than a create-time case.
pub const RULES_COVERED_ELSEWHERE: &[&str] =
    &["spec.sensor.type is immutable: create a new SensorSim instead"];

/// Schema paths whose required fields belong to Kubernetes' own types.
pub fn upstream(path: &str) -> bool {
    path.contains("robotSelector.") || path.contains(".resources.")
}
