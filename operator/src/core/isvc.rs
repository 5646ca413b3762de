//! InferenceService → the pod each selected robot runs. The pod template is rendered once per
//! revision and is the same for every robot; the per-robot pod adds only the node affinity and the
//! robot's ROS domain. The revision is a hash of the rendered template, so any spec change that
//! alters the template is a new revision and metadata-only changes are not.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, Pod, PodSpec, Probe, SeccompProfile, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use robofleet_crds::inference_service::{ExecutionProvider, InferenceServiceSpec};
use robofleet_crds::labels;
use serde::{Deserialize, Serialize};

use super::naming::{pod_name, short_hash};
use super::robots::Robot;

/// Where the sidecar sees the model cache inside the pod.
pub const MODEL_CACHE_MOUNT: &str = "/var/cache/robofleet/models";
/// Container name of the inference sidecar.
pub const SIDECAR_CONTAINER: &str = "inference-sidecar";

/// The operator's image allow-list: entry name → image reference (by digest in production).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageAllowList {
    /// Allowed sidecar images by entry name.
    pub entries: BTreeMap<String, String>,
    /// Entry used when `spec.runtime.image` is omitted.
    pub default_entry: String,
}

/// Why a spec cannot be rendered into a pod.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// `spec.runtime.image` names no allow-list entry.
    #[error("image {0:?} is not in the operator's allow-list (allowed: {1})")]
    ImageNotAllowed(String, String),
    /// The model cache is outside the prefix the cluster admin allowed.
    #[error("spec.runtime.modelCache.hostPath {0:?} is not under the allowed prefix {1:?}")]
    HostPathNotAllowed(String, String),
    /// `spec.ros` is enabled but the operator has no bridge image.
    #[error(
        "spec.ros is enabled but the operator has no --bridge-image to run the detection bridge with"
    )]
    NoBridgeImage,
}

impl RenderError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ImageNotAllowed(..) => "image_not_allowed",
            Self::HostPathNotAllowed(..) => "host_path_not_allowed",
            Self::NoBridgeImage => "no_bridge_image",
        }
    }
}

/// What rendering needs besides the spec.
#[derive(Clone, Debug)]
pub struct RenderContext<'a> {
    /// The allow-list.
    pub images: &'a ImageAllowList,
    /// Model-cache hostPaths must lie under this prefix.
    pub host_path_prefix: &'a str,
    /// The bridge image (the first `--bridge-image`), for the detection bridge.
    pub bridge_image: Option<&'a str>,
}

/// The sidecar's `/v1/detect` flags from `spec.model.preprocess/postprocess`; none without a
/// postprocess (raw tensors only). The input size comes from the model itself (`auto`), so a new
/// model with another input size needs no spec change.
fn detection_args(model: &robofleet_crds::inference_service::ModelSpec) -> Vec<String> {
    use robofleet_crds::inference_service::{
        ColorOrder, Letterbox, PostprocessLayout, ResizeRounding,
    };
    let Some(post) = &model.postprocess else {
        return Vec::new();
    };
    let pre = &model.preprocess;
    let three = |v: &[f64]| {
        let v: Vec<String> = if v.len() == 1 {
            vec![v[0].to_string(); 3]
        } else {
            v.iter().map(f64::to_string).collect()
        };
        v.join(",")
    };
    let mut args = vec![
        "--detect-size=auto".to_owned(),
        format!(
            "--detect-color-order={}",
            match pre.color_order {
                ColorOrder::Rgb => "rgb",
                ColorOrder::Bgr => "bgr",
            }
        ),
        format!("--detect-scale={}", pre.scale),
        format!("--detect-mean={}", three(&pre.mean)),
        format!("--detect-std={}", three(&pre.std)),
        format!(
            "--detect-letterbox={}",
            match pre.letterbox {
                Letterbox::Center => "center",
                Letterbox::TopLeft => "topLeft",
            }
        ),
        format!("--detect-pad-value={}", pre.pad_value),
        format!(
            "--detect-resize-rounding={}",
            match pre.resize_rounding {
                ResizeRounding::Round => "round",
                ResizeRounding::Floor => "floor",
            }
        ),
        format!(
            "--detect-layout={}",
            match post.layout {
                PostprocessLayout::Yolov8 => "yolov8",
                PostprocessLayout::Yolov5 => "yolov5",
                PostprocessLayout::Yolox => "yolox",
            }
        ),
        format!("--detect-confidence={}", post.confidence),
        format!("--detect-iou={}", post.iou),
    ];
    if !post.classes.is_empty() {
        args.push(format!("--detect-classes={}", post.classes.join(",")));
    }
    if !post.strides.is_empty() {
        let s: Vec<String> = post.strides.iter().map(u32::to_string).collect();
        args.push(format!("--detect-strides={}", s.join(",")));
    }
    args
}

/// Container name of the detection bridge.
pub const DETECT_CONTAINER: &str = "ros2-bridge-detect";

/// The `ros2-bridge detect` container of a service with `spec.ros` enabled: camera frames from
/// the robot's topic to the sidecar's `/v1/detect` on loopback, detections back on ROS 2. Ready
/// only while frames are fresh.
fn detect_container(spec: &InferenceServiceSpec, image: &str) -> Option<Container> {
    let ros = spec.ros.as_ref().filter(|r| r.enabled)?;
    let ports = &spec.runtime.ports;
    let port = i32::from(ports.bridge_metrics);
    let mut args = vec![
        "detect".to_owned(),
        format!("--input-topic={}", ros.input_topic.for_robot("$(ROBOT)")),
        format!("--input-type={:?}", ros.input_type),
        format!("--output-topic={}", ros.output_topic.for_robot("$(ROBOT)")),
        format!("--reliability={:?}", ros.qos.reliability),
        format!("--depth={}", ros.qos.depth.max(1)),
        format!(
            "--sidecar-url=http://127.0.0.1:{}/v1/detect",
            ports.inference
        ),
        format!("--timeout={}", spec.runtime.request_timeout.as_str()),
        format!("--metrics-addr=$(HOST_IP):{}", ports.bridge_metrics),
        "--robot=$(ROBOT)".to_owned(),
    ];
    if let Some(t) = spec
        .rollout
        .gates
        .as_ref()
        .and_then(|g| g.robot_state.as_ref())
        .and_then(|r| r.state_topic.as_ref())
    {
        args.push(format!("--state-topic={}", t.for_robot("$(ROBOT)")));
    }
    Some(Container {
        name: DETECT_CONTAINER.into(),
        image: Some(image.to_owned()),
        args: Some(args),
        env: Some(vec![
            field_env("HOST_IP", "status.hostIP"),
            field_env("ROBOT", "spec.nodeName"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("bridge-metrics".into()),
            container_port: port,
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        security_context: Some(restricted_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    })
}

/// The robot-independent pod template of one revision, as stored in its ControllerRevision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Pod spec without node affinity and ROS domain.
    pub spec: PodSpec,
}

impl Template {
    /// The revision: a hash of the template's canonical JSON (field order is fixed by the types).
    pub fn revision(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        short_hash(&json, 10)
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sidecar's name of an execution provider (`--execution-providers`, metrics label).
pub fn provider_arg(p: &ExecutionProvider) -> &'static str {
    match p {
        ExecutionProvider::TensorRT => "tensorrt",
        ExecutionProvider::Cuda => "cuda",
        ExecutionProvider::Cpu => "cpu",
    }
}

/// Renders the sidecar pod template of `spec` (the service is `name`).
pub fn render(
    name: &str,
    spec: &InferenceServiceSpec,
    ctx: &RenderContext<'_>,
) -> Result<Template, RenderError> {
    let entry = spec
        .runtime
        .image
        .clone()
        .unwrap_or_else(|| ctx.images.default_entry.clone());
    let image = ctx.images.entries.get(&entry).cloned().ok_or_else(|| {
        let allowed: Vec<_> = ctx.images.entries.keys().cloned().collect();
        RenderError::ImageNotAllowed(entry.clone(), allowed.join(", "))
    })?;
    let cache = &spec.runtime.model_cache;
    let prefix = ctx.host_path_prefix.trim_end_matches('/');
    if !(cache.host_path == prefix || cache.host_path.starts_with(&format!("{prefix}/"))) {
        return Err(RenderError::HostPathNotAllowed(
            cache.host_path.clone(),
            prefix.to_owned(),
        ));
    }
    let rt = &spec.runtime;
    let model = &spec.model;
    let mut args = vec![
        "serve".to_owned(),
        format!("--model={}@{}", model.uri, model.sha256),
        format!("--model-name={name}"),
        format!(
            "--model-version={}",
            model
                .version
                .clone()
                .unwrap_or_else(|| model.sha256[..12.min(model.sha256.len())].to_owned())
        ),
        format!("--listen=127.0.0.1:{}", rt.ports.inference),
        format!("--admin-listen=$(HOST_IP):{}", rt.ports.metrics),
        format!(
            "--execution-providers={}",
            rt.execution_providers
                .iter()
                .map(provider_arg)
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("--max-concurrency={}", rt.max_concurrency),
        format!("--max-queue={}", rt.max_queue),
        format!("--request-timeout={}", rt.request_timeout.as_str()),
        format!("--max-request-bytes={}", rt.max_request_bytes),
        format!("--warmup-runs={}", model.warmup.iterations),
        format!("--model-cache={MODEL_CACHE_MOUNT}"),
        format!("--model-cache-max-bytes={}", cache.max_bytes),
        format!("--model-cache-keep={}", cache.keep),
    ];
    if let Some(t) = rt.intra_op_threads {
        args.push(format!("--intra-op-threads={t}"));
    }
    args.extend(detection_args(model));
    if let Some(b) = &rt.batching {
        args.push(format!("--max-batch-size={}", b.max_batch_size));
        args.push(format!("--max-queue-delay={}", b.max_queue_delay.as_str()));
    }
    let container = Container {
        name: SIDECAR_CONTAINER.into(),
        image: Some(image),
        args: Some(args),
        env: Some(vec![
            field_env("HOST_IP", "status.hostIP"),
            field_env("ROBOT", "spec.nodeName"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(rt.ports.metrics),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/v2/health/ready".into()),
                port: IntOrString::Int(i32::from(rt.ports.metrics)),
                ..Default::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        resources: rt.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: "model-cache".into(),
            mount_path: MODEL_CACHE_MOUNT.into(),
            ..Default::default()
        }]),
        security_context: Some(restricted_security_context()),
        // A sidecar that cannot start says why in its last log lines; status shows them.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let mut containers = vec![container];
    if spec.ros.as_ref().is_some_and(|r| r.enabled) {
        let bridge = ctx.bridge_image.ok_or(RenderError::NoBridgeImage)?;
        containers.extend(detect_container(spec, bridge));
    }
    let spec = PodSpec {
        host_network: Some(true),
        // Robot pods never talk to the API server.
        automount_service_account_token: Some(false),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        containers,
        runtime_class_name: rt.runtime_class_name.clone(),
        restart_policy: Some("Always".into()),
        termination_grace_period_seconds: Some(30),
        tolerations: Some(robot_tolerations()),
        volumes: Some(vec![Volume {
            name: "model-cache".into(),
            host_path: Some(HostPathVolumeSource {
                path: cache.host_path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Ok(Template { spec })
}

/// The "restricted" pod security settings robot pods keep although their namespace is privileged.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Tolerations with no time limit: a robot off Wi-Fi keeps its pods.
pub fn robot_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/network-unavailable", "NoSchedule"),
    ]
    .into_iter()
    .map(|(key, effect)| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        toleration_seconds: None,
        ..Default::default()
    })
    .collect()
}

/// Identity of the owning custom resource, for labels and the ownerReference.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Kind (`InferenceService`).
    pub kind: String,
    /// Name of the resource.
    pub name: String,
    /// Namespace of the resource.
    pub namespace: String,
    /// ownerReference to put on children.
    pub reference: OwnerReference,
}

/// Labels every child of `owner` carries (never `app.kubernetes.io/instance`: Argo CD would prune).
pub fn child_labels(owner: &Owner, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "robofleet"),
        ("app.kubernetes.io/component", component),
        ("app.kubernetes.io/managed-by", "robofleet-operator"),
        (labels::OWNER_KIND, owner.kind.as_str()),
        (labels::OWNER, owner.name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The pod `robot` runs for `owner` at `revision`.
pub fn robot_pod(
    owner: &Owner,
    template: &Template,
    revision: &str,
    robot: &Robot,
    default_domain: Option<u32>,
    fallback_model: Option<&str>,
) -> Pod {
    let mut spec = template.spec.clone();
    // The stable revision's model is the fallback. It is not part of the revision: promoting a
    // revision to stable must not replace the pods that run it.
    if let Some(fallback) = fallback_model {
        for c in spec
            .containers
            .iter_mut()
            .filter(|c| c.name == SIDECAR_CONTAINER)
        {
            c.args
                .get_or_insert_with(Vec::new)
                .push(format!("--fallback-model={fallback}"));
        }
    }
    // ROS domain: the robot's label, else the spec's, else 0.
    let domain = robot.ros_domain_id().or(default_domain).unwrap_or(0);
    pin_to_robot(owner, "isvc", "inference", spec, revision, robot, domain)
}

/// Turns a robot-independent pod spec into the pod of `owner` on `robot`: the deterministic name
/// `<prefix>-<owner>-<hash(node)>`, the common labels with the revision, the ownerReference,
/// `nodeAffinity` on the node name (as the DaemonSet controller does, so the scheduler checks fit
/// and host ports) and the robot's ROS domain in every container.
pub fn pin_to_robot(
    owner: &Owner,
    prefix: &str,
    component: &str,
    mut spec: PodSpec,
    revision: &str,
    robot: &Robot,
    ros_domain: u32,
) -> Pod {
    let mut pod_labels = child_labels(owner, component);
    pod_labels.insert(labels::REVISION.to_owned(), revision.to_owned());
    spec.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![robot.name.clone()]),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    for c in &mut spec.containers {
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "ROS_DOMAIN_ID".into(),
            value: Some(ros_domain.to_string()),
            ..Default::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(prefix, &owner.name, &robot.name)),
            namespace: Some(owner.namespace.clone()),
            labels: Some(pod_labels),
            owner_references: Some(vec![owner.reference.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use robofleet_crds::InferenceService;

    pub(crate) fn example_spec() -> InferenceServiceSpec {
        let isvc: InferenceService = serde_json::from_value(serde_json::json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "detector", "namespace": "fleet"},
            "spec": {"model": {"uri": "file:///models/a.onnx", "sha256": "a".repeat(64), "version": "v1"}}
        }))
        .unwrap();
        isvc.spec
    }

    fn images() -> ImageAllowList {
        ImageAllowList {
            entries: [(
                "default".to_owned(),
                "robofleet/inference-sidecar@sha256:00".to_owned(),
            )]
            .into(),
            default_entry: "default".into(),
        }
    }

    fn ctx(images: &ImageAllowList) -> RenderContext<'_> {
        RenderContext {
            images,
            host_path_prefix: "/var/lib/robofleet",
            bridge_image: Some("robofleet/ros2-bridge@sha256:11"),
        }
    }

    #[test]
    fn template_has_the_robot_pod_guarantees() {
        let images = images();
        let t = render("detector", &example_spec(), &ctx(&images)).unwrap();
        assert_eq!(t.spec.host_network, Some(true));
        assert_eq!(t.spec.automount_service_account_token, Some(false));
        let tolerations = t.spec.tolerations.clone().unwrap();
        assert!(tolerations.iter().all(|t| t.toleration_seconds.is_none()));
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
        );
        let c = &t.spec.containers[0];
        let args = c.args.clone().unwrap();
        assert!(args.contains(&format!("--model=file:///models/a.onnx@{}", "a".repeat(64))));
        assert!(args.iter().any(|a| a.starts_with("--listen=127.0.0.1:")));
        assert!(c.readiness_probe.is_some());
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn postprocess_renders_the_sidecar_detection_flags() {
        let images = images();
        let mut spec = example_spec();
        let sidecar_args = |spec: &InferenceServiceSpec| {
            render("detector", spec, &ctx(&images))
                .unwrap()
                .spec
                .containers[0]
                .args
                .clone()
                .unwrap()
        };
        assert!(
            !sidecar_args(&spec)
                .iter()
                .any(|a| a.starts_with("--detect")),
            "no postprocess: raw tensors only, /v1/detect stays off"
        );
        spec.model = serde_json::from_value(serde_json::json!({
            "uri": "file:///models/a.onnx", "sha256": "a".repeat(64),
            "preprocess": {"colorOrder": "bgr", "scale": 1.0, "mean": [0.5], "std": [0.25, 0.5, 1.0],
                           "letterbox": "topLeft", "padValue": 0, "resizeRounding": "floor"},
            "postprocess": {"layout": "yolox", "classes": ["person", "forklift"], "confidence": 0.4,
                            "iou": 0.6, "strides": [8, 16]}
        }))
        .unwrap();
        let args = sidecar_args(&spec);
        for want in [
            "--detect-size=auto",
            "--detect-color-order=bgr",
            "--detect-scale=1",
            "--detect-mean=0.5,0.5,0.5",
            "--detect-std=0.25,0.5,1",
            "--detect-letterbox=topLeft",
            "--detect-pad-value=0",
            "--detect-resize-rounding=floor",
            "--detect-layout=yolox",
            "--detect-classes=person,forklift",
            "--detect-confidence=0.4",
            "--detect-iou=0.6",
            "--detect-strides=8,16",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        // defaults: YOLO preprocessing, the layout's own strides
        spec.model = serde_json::from_value(serde_json::json!({
            "uri": "file:///models/a.onnx", "sha256": "a".repeat(64),
            "postprocess": {"layout": "yolov8"}
        }))
        .unwrap();
        let args = sidecar_args(&spec);
        assert!(args.iter().any(|a| a == "--detect-color-order=rgb"));
        assert!(args.iter().any(|a| a == "--detect-letterbox=center"));
        assert!(args.iter().any(|a| a == "--detect-resize-rounding=round"));
        assert!(!args.iter().any(|a| a.starts_with("--detect-strides")));
        assert!(!args.iter().any(|a| a.starts_with("--detect-classes")));
    }

    #[test]
    fn ros_enabled_adds_the_detection_bridge_beside_the_sidecar() {
        let images = images();
        let mut spec = example_spec();
        let plain = render("detector", &spec, &ctx(&images)).unwrap();
        assert_eq!(
            plain.spec.containers.len(),
            1,
            "no ros section: the sidecar alone"
        );
        spec.ros = Some(
            serde_json::from_value(serde_json::json!({
                "inputTopic": "/${ROBOT}/front_camera/image_raw", "inputType": "CompressedImage",
                "outputTopic": "/${ROBOT}/detections", "qos": {"reliability": "BestEffort", "depth": 2}
            }))
            .unwrap(),
        );
        spec.rollout.gates = Some(
            serde_json::from_value(serde_json::json!({
                "robotState": {"allowWhen": ["idle"], "stateTopic": "/${ROBOT}/state"}
            }))
            .unwrap(),
        );
        let t = render("detector", &spec, &ctx(&images)).unwrap();
        assert_ne!(
            t.revision(),
            plain.revision(),
            "the bridge is part of the revision"
        );
        let d = &t.spec.containers[1];
        assert_eq!(d.name, DETECT_CONTAINER);
        assert_eq!(d.image.as_deref(), Some("robofleet/ros2-bridge@sha256:11"));
        let args = d.args.clone().unwrap();
        for want in [
            "detect",
            "--input-topic=/$(ROBOT)/front_camera/image_raw",
            "--input-type=CompressedImage",
            "--output-topic=/$(ROBOT)/detections",
            "--reliability=BestEffort",
            "--depth=2",
            "--sidecar-url=http://127.0.0.1:8000/v1/detect",
            "--metrics-addr=$(HOST_IP):8003",
            "--robot=$(ROBOT)",
            "--state-topic=/$(ROBOT)/state",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert!(d.readiness_probe.is_some(), "ready only with fresh frames");
        // disabled: no bridge; enabled without a bridge image: refused, not half-rendered
        spec.ros.as_mut().unwrap().enabled = false;
        assert_eq!(
            render("detector", &spec, &ctx(&images))
                .unwrap()
                .spec
                .containers
                .len(),
            1
        );
        spec.ros.as_mut().unwrap().enabled = true;
        let mut no_bridge = ctx(&images);
        no_bridge.bridge_image = None;
        assert!(matches!(
            render("detector", &spec, &no_bridge),
            Err(RenderError::NoBridgeImage)
        ));
    }

    #[test]
    fn revision_changes_with_the_model_only() {
        let images = images();
        let a = render("detector", &example_spec(), &ctx(&images)).unwrap();
        let b = render("detector", &example_spec(), &ctx(&images)).unwrap();
        assert_eq!(a.revision(), b.revision());
        let mut changed = example_spec();
        changed.model.sha256 = "b".repeat(64);
        let c = render("detector", &changed, &ctx(&images)).unwrap();
        assert_ne!(a.revision(), c.revision());
    }

    #[test]
    fn images_and_host_paths_outside_the_allow_lists_are_refused() {
        let images = images();
        let mut spec = example_spec();
        spec.runtime.image = Some("evil".into());
        let err = render("detector", &spec, &ctx(&images)).unwrap_err();
        assert_eq!(err.kind(), "image_not_allowed");
        assert!(err.to_string().contains("default"), "{err}");
        let mut spec = example_spec();
        spec.runtime.model_cache.host_path = "/etc".into();
        assert_eq!(
            render("detector", &spec, &ctx(&images)).unwrap_err().kind(),
            "host_path_not_allowed"
        );
        spec.runtime.model_cache.host_path = "/var/lib/robofleetx".into();
        assert!(render("detector", &spec, &ctx(&images)).is_err());
    }

    #[test]
    fn robot_pod_is_pinned_to_its_robot_with_its_domain() {
        let images = images();
        let t = render("detector", &example_spec(), &ctx(&images)).unwrap();
        let owner = Owner {
            kind: "InferenceService".into(),
            name: "detector".into(),
            namespace: "fleet".into(),
            reference: OwnerReference::default(),
        };
        let robot = Robot {
            name: "robot-007".into(),
            labels: [(labels::ROS_DOMAIN_ID.to_owned(), "12".to_owned())].into(),
            ready: true,
        };
        let pod = robot_pod(
            &owner,
            &t,
            &t.revision(),
            &robot,
            Some(3),
            Some("file:///old.onnx@abc"),
        );
        let spec = pod.spec.unwrap();
        let term = &spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        assert_eq!(
            term.match_fields.as_ref().unwrap()[0].values,
            Some(vec!["robot-007".to_owned()])
        );
        let args = spec.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--fallback-model=file:///old.onnx@abc".to_owned()));
        let env = spec.containers[0].env.clone().unwrap();
        assert!(
            env.iter()
                .any(|e| e.name == "ROS_DOMAIN_ID" && e.value.as_deref() == Some("12"))
        );
        let l = pod.metadata.labels.unwrap();
        assert_eq!(l.get(labels::REVISION), Some(&t.revision()));
        assert!(!l.contains_key("app.kubernetes.io/instance"));
        assert_eq!(
            pod.metadata.name.unwrap(),
            pod_name("isvc", "detector", "robot-007")
        );
    }
}
