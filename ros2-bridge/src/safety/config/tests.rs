use super::*;
use crate::safety::geometry::Shape;

const FULL: &str = r#"
name: warehouse
source:
  topic: /${ROBOT}/scan
  sourceTimeout: 200ms
  maxPublishers: 1
  transform: {position: {x: 0.2, y: 0.0}, yawDeg: 180}
zones:
  - {name: front, shape: sector, range: 0.35, minAngleDeg: -30, maxAngleDeg: 30, action: stop, minPoints: 3}
  - {name: slow, shape: circle, radius: 1.0, action: slowdown, speedLimitPercent: 30}
  - name: cart
    shape: polygon
    points: [{x: 0, y: -0.4}, {x: 0.6, y: -0.4}, {x: 0.6, y: 0.4}, {x: 0, y: 0.4}]
    action: warn
invalidReadings: {maxInvalidFraction: 0.3}
release: {mode: Latched, holdTime: 1500ms}
output: {stopTopic: "/${ROBOT}/safety/stop", heartbeat: 50ms, speedLimitTopic: /speed_limit}
diagnostics: {enabled: false, topic: /diagnostics}
"#;

#[test]
fn durations_like_go() {
    let d = |s| parse_duration(s);
    assert_eq!(d("200ms"), Some(Duration::from_millis(200)));
    assert_eq!(d("1s"), Some(Duration::from_secs(1)));
    assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(d("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(d("250us"), Some(Duration::from_micros(250)));
    assert_eq!(d("0"), Some(Duration::ZERO));
    for bad in ["", "10", "ms", "1x", "-1s", "1s-", "1..2s"] {
        assert_eq!(d(bad), None, "{bad:?}");
    }
}

#[test]
fn full_file_validates() {
    let p = PolicyFile::parse(FULL)
        .expect("parses")
        .validate("r2")
        .expect("valid");
    assert_eq!(p.name, "warehouse");
    assert_eq!(p.scan_topic, "/r2/scan");
    assert_eq!(p.stop_topic, "/r2/safety/stop");
    assert_eq!(p.source_timeout, Duration::from_millis(200));
    assert_eq!(p.hold_time, Duration::from_millis(1500));
    assert_eq!(p.heartbeat, Duration::from_millis(50));
    assert_eq!(p.release, ReleaseMode::Latched);
    assert_eq!(p.max_invalid_fraction, 0.3);
    assert_eq!(p.transform.x, 0.2);
    assert_eq!(p.zones.len(), 3);
    assert_eq!(p.zones[0].min_points, 3);
    assert_eq!(p.zones[1].speed_limit_percent, 30.0);
    assert_eq!(p.zones[2].action, Action::Warn);
    assert_eq!(p.speed_limit_topic.as_deref(), Some("/speed_limit"));
    assert_eq!(p.diagnostics_topic, None);
}

#[test]
fn quick_flags_make_a_forward_sector() {
    let q = QuickFlags {
        scan: "/scan".into(),
        stop_topic: "/safety/stop".into(),
        stop_distance: 0.35,
        sector_deg: 60.0,
        source_timeout: "200ms".into(),
    };
    let p = q.to_file().validate("r").expect("valid");
    assert_eq!(p.zones.len(), 1);
    assert!(p.zones[0].shape.contains(Pt { x: 0.3, y: 0.1 }));
    assert!(!p.zones[0].shape.contains(Pt { x: 0.3, y: 0.2 }));
    assert_eq!(p.hold_time, Duration::from_secs(1));
    assert_eq!(p.release, ReleaseMode::Auto);
    assert_eq!(p.heartbeat, Duration::from_millis(100));
    assert_eq!(p.diagnostics_topic.as_deref(), Some("/diagnostics"));
}

fn rejects(mutate: impl Fn(&mut String), needle: &str) {
    let mut text = FULL.to_string();
    mutate(&mut text);
    let err = PolicyFile::parse(&text).and_then(|f| f.validate("r2"));
    match err {
        Err(e) => assert!(
            e.to_string().contains(needle),
            "{e} does not mention {needle:?}"
        ),
        Ok(_) => panic!("accepted a policy that should fail with {needle:?}"),
    }
}

#[test]
fn invalid_policies_are_rejected_with_a_reason() {
    rejects(|t| *t = t.replace("200ms", "200"), "sourceTimeout");
    rejects(|t| *t = t.replace("range: 0.35", "range: -1"), "range");
    rejects(
        |t| *t = t.replace("maxAngleDeg: 30", "maxAngleDeg: -40"),
        "maxAngleDeg",
    );
    rejects(
        |t| *t = t.replace("minPoints: 3", "minPoints: 0"),
        "minPoints",
    );
    rejects(
        |t| *t = t.replace("maxInvalidFraction: 0.3", "maxInvalidFraction: 1.5"),
        "maxInvalidFraction",
    );
    rejects(|t| *t = t.replace("name: slow", "name: front"), "unique");
    rejects(
        |t| *t = t.replace("speedLimitPercent: 30", "speedLimitPercent: 0"),
        "speedLimitPercent",
    );
    rejects(
        |t| *t = t.replace(", speedLimitTopic: /speed_limit", ""),
        "speedLimitTopic",
    );
    rejects(
        |t| *t = t.replace("{x: 0.6, y: -0.4}, {x: 0.6, y: 0.4}, ", ""),
        "polygon",
    );
    rejects(
        |t| *t = t.replace("maxPublishers: 1", "maxPublishers: 0"),
        "maxPublishers",
    );
    rejects(
        |t| *t = t.replace("heartbeat: 50ms", "heartbeatt: 50ms"),
        "unknown field",
    );
    rejects(
        |t| *t = t.replace("mode: Latched", "mode: Sometimes"),
        "Sometimes",
    );
    rejects(
        |t| *t = t.replace("/${ROBOT}/scan", "/scan with space"),
        "topic",
    );
    rejects(|t| *t = t.replace("shape: circle", "shape: blob"), "blob");
    rejects(
        |t| {
            *t = t.replace(
                "  maxPublishers: 1\n",
                "  maxPublishers: 1\n  frame: laser\n",
            )
        },
        "exclude",
    );
}

#[test]
fn topics_resolve_robot_names() {
    assert_eq!(
        resolve_topic("/${ROBOT}/scan", "amr_7").as_deref(),
        Ok("/amr_7/scan")
    );
    assert_eq!(resolve_topic("scan", "x").as_deref(), Ok("/scan"));
    assert!(resolve_topic("/a//b", "x").is_err());
    assert_eq!(
        resolve_topic("/${ROBOT}/scan", "robot-1.lab").as_deref(),
        Ok("/robot_1_lab/scan")
    );
    assert!(resolve_topic("/", "x").is_err());
    assert!(resolve_topic("/1scan", "x").is_err());
}

/// The CRD's documented examples (docs/reference/examples), as the operator would mount their
/// `spec`, parse and validate here: the file format and the CRD stay one contract.
#[test]
fn crd_examples_are_valid_policy_files() {
    for (name, text) in [
        (
            "safetypolicy.yaml",
            include_str!("../../../../docs/reference/examples/safetypolicy.yaml"),
        ),
        (
            "safetypolicy-minimal.yaml",
            include_str!("../../../../docs/reference/examples/safetypolicy-minimal.yaml"),
        ),
    ] {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).expect("example YAML");
        let spec = serde_yaml::to_string(&doc["spec"]).expect("spec");
        let p = PolicyFile::parse(&spec)
            .and_then(|f| f.validate("robot-1"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!p.zones.is_empty(), "{name}");
        assert!(p.stop_topic.starts_with('/'), "{name}");
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(include_str!(
        "../../../../docs/reference/examples/safetypolicy.yaml"
    ))
    .expect("yaml");
    let p = PolicyFile::parse(&serde_yaml::to_string(&doc["spec"]).expect("spec"))
        .expect("parse")
        .validate("robot-1")
        .expect("valid");
    assert_eq!(p.scan_topic, "/robot_1/scan");
    assert_eq!(p.transform.x, 0.2);
    assert_eq!(p.release, ReleaseMode::Latched);
    assert!(
        p.zones
            .iter()
            .any(|z| matches!(&z.shape, Shape::Polygon { points } if points.len() == 4))
    );
}
