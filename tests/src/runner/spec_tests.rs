use super::*;

fn node() -> NodeInfo {
    NodeInfo {
        name: "robot-001".into(),
        ip: "127.100.0.2".into(),
        ros_domain_id: Some("2".into()),
        cpu: Some("8".into()),
    }
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "isvc-a-1", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": spec,
    }))
    .expect("pod")
}

fn run(p: &Pod, cms: &BTreeMap<String, ConfigMap>) -> Result<PodPlan, PlanError> {
    let images = ImageMap::parse([
        "inference-sidecar=/target/inference-sidecar",
        "busybox=/bin/sh",
    ])
    .expect("map");
    let node = node();
    plan(
        p,
        &PlanInput {
            node: &node,
            pod_ip: "127.100.0.2",
            pod_dir: Path::new("/st/robots/robot-001/pods/ns_isvc-a-1_u1"),
            robot_dir: Path::new("/st/robots/robot-001"),
            images: &images,
            pass_env: &[("PATH".into(), "/usr/bin".into())],
            config_maps: cms,
            secrets: &BTreeMap::new(),
        },
    )
}

#[test]
fn host_network_sidecar_gets_robot_addresses_host_paths_and_downward_api() {
    let p = pod(serde_json::json!({
        "hostNetwork": true,
        "containers": [{
            "name": "sidecar", "image": "ghcr.io/robofleet/inference-sidecar:0.1",
            "args": ["serve", "--listen=127.0.0.1:$(PORT)", "--admin-listen", "0.0.0.0:9",
                     "--model-cache", "/var/cache/robofleet/models", "--model", "file:///cfg/m.onnx@sha256:00"],
            "env": [
                {"name": "PORT", "value": "8000"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
            ],
            "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/robofleet/models"},
                             {"name": "cfg", "mountPath": "/cfg"}],
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "admin"}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": 9}},
            "ports": [{"name": "admin", "containerPort": 9}],
        }],
        "volumes": [{"name": "cache", "hostPath": {"path": "/var/cache/robofleet/models", "type": "DirectoryOrCreate"}},
                    {"name": "cfg", "configMap": {"name": "cfg"}}],
    }));
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cfg"}, "data": {"k": "v", "m.onnx": "x"}
    }))
    .expect("cm");
    let plan = run(&p, &[("cfg".to_owned(), cm)].into()).expect("plans");
    assert!(plan.host_network);
    assert_eq!(plan.restart_policy, RestartPolicy::Always);
    assert_eq!(plan.grace, Duration::from_secs(30));
    let c = &plan.containers[0];
    assert_eq!(c.program, Path::new("/target/inference-sidecar"));
    assert_eq!(
        c.args,
        [
            "serve",
            "--listen=127.100.0.2:8000",
            "--admin-listen",
            "127.100.0.2:9",
            "--model-cache",
            "/st/robots/robot-001/host/var/cache/robofleet/models",
            "--model",
            "file:///st/robots/robot-001/pods/ns_isvc-a-1_u1/volumes/cfg/m.onnx@sha256:00",
        ]
    );
    let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
    assert_eq!(env["POD_IP"], "127.100.0.2");
    assert_eq!(env["NODE"], "robot-001");
    assert_eq!(env["APP"], "x");
    assert_eq!(env["CPUS"], "8");
    assert_eq!(env["CFG"], "v");
    assert_eq!(env["PATH"], "/usr/bin");
    assert_eq!(env["ROS_DOMAIN_ID"], "2");
    assert_eq!(env["ROS_LOCALHOST_ONLY"], "1");
    assert_eq!(env["ROS_AUTOMATIC_DISCOVERY_RANGE"], "LOCALHOST");
    let probe = c.readiness.as_ref().expect("probe");
    assert_eq!(
        probe.action,
        ProbeAction::Http {
            host: "127.100.0.2".into(),
            port: 9,
            path: "/v2/health/ready".into()
        }
    );
    assert_eq!(probe.period, Duration::from_secs(1));
    assert_eq!(
        c.liveness.as_ref().map(|p| &p.action),
        Some(&ProbeAction::Tcp {
            host: "127.100.0.2".into(),
            port: 9
        }),
        "an explicit loopback probe host is the robot's address too"
    );
    assert_eq!(probe.failure_threshold, 3);
    assert_eq!(plan.volumes.len(), 2);
    assert_eq!(
        plan.volumes[1].content,
        VolumeContent::Files(vec![
            ("k".into(), b"v".to_vec()),
            ("m.onnx".into(), b"x".to_vec())
        ])
    );
}

#[test]
fn command_shell_and_termination_log_and_pod_domain_wins() {
    let p = pod(serde_json::json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 3,
        "containers": [{
            "name": "job", "image": "busybox:1",
            "command": ["sh", "-c"],
            "args": ["echo done > /dev/termination-log; touch /work/x; exit 3"],
            "env": [{"name": "ROS_DOMAIN_ID", "value": "7"}],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }));
    let plan = run(&p, &BTreeMap::new()).expect("plans");
    assert!(!plan.host_network);
    assert_eq!(plan.restart_policy, RestartPolicy::Never);
    assert_eq!(plan.grace, Duration::from_secs(3));
    let c = &plan.containers[0];
    assert_eq!(c.program, Path::new("/bin/sh"));
    let dir = "/st/robots/robot-001/pods/ns_isvc-a-1_u1";
    assert_eq!(
        c.args,
        [
            "-c".to_owned(),
            format!(
                "echo done > {dir}/containers/job/termination-log; touch {dir}/volumes/work/x; exit 3"
            )
        ]
    );
    assert!(c.env.contains(&("ROS_DOMAIN_ID".into(), "7".into())));
    assert!(!c.env.iter().any(|(k, v)| k == "ROS_DOMAIN_ID" && v == "2"));
}

#[test]
fn unknown_images_missing_refs_and_unsupported_volumes_are_refused() {
    let unknown = pod(serde_json::json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
    assert_eq!(
        run(&unknown, &BTreeMap::new()),
        Err(PlanError::UnknownImage("nginx:1".into()))
    );
    let missing = pod(
        serde_json::json!({"containers": [{"name": "a", "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}),
    );
    assert!(matches!(
        run(&missing, &BTreeMap::new()),
        Err(PlanError::Missing(_))
    ));
    let optional = pod(
        serde_json::json!({"containers": [{"name": "a", "image": "busybox",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}]}]}),
    );
    assert!(run(&optional, &BTreeMap::new()).is_ok());
    let projected = pod(
        serde_json::json!({"containers": [{"name": "a", "image": "busybox"}],
        "volumes": [{"name": "kube-api-access", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]}),
    );
    let plan = run(&projected, &BTreeMap::new()).expect("projected volumes are simulated");
    assert_eq!(
        plan.volumes[0].content,
        VolumeContent::Files(vec![
            ("token".into(), vec![]),
            ("namespace".into(), b"ns".to_vec())
        ])
    );
    let pvc = pod(
        serde_json::json!({"containers": [{"name": "a", "image": "busybox"}],
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]}),
    );
    assert!(matches!(
        run(&pvc, &BTreeMap::new()),
        Err(PlanError::Unsupported(_))
    ));
}
