use super::*;

fn spec(text: &str) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).expect("example YAML");
    serde_yaml::to_string(&doc["spec"]).expect("spec")
}

/// The CRD's documented SensorSim examples parse; the operator adds the resolved stop topic.
#[test]
fn crd_examples_are_valid_scenario_files() {
    let full = spec(include_str!(
        "../../../../docs/reference/examples/sensorsim.yaml"
    ));
    let mut f = SimFile::parse(&full).expect("parse");
    assert!(
        f.validate("r").is_err(),
        "safety expectations need the resolved stop topic"
    );
    f.units_under_test.stop_topic = Some("/safety/stop".into());
    let c = f.validate("r").expect("valid");
    assert_eq!(c.beams, 720);
    assert_eq!(c.expect.len(), 3);
    assert_eq!(c.obstacles[0].appear, 1.0);
    let minimal = spec(include_str!(
        "../../../../docs/reference/examples/sensorsim-minimal.yaml"
    ));
    let m = SimFile::parse(&minimal).expect("parse minimal");
    if m.expect.is_empty() {
        m.validate("r").expect("valid minimal");
    }
    let camera = spec(include_str!(
        "../../../../docs/reference/examples/sensorsim-camera.yaml"
    ));
    let mut cam = SimFile::parse(&camera).expect("parse camera");
    let err = cam
        .validate("r")
        .expect_err("decode expectations need the detect bridge");
    assert!(err.to_string().contains("detect bridge"), "{err}");
    cam.expect.retain(|e| e.max_decode_error_ratio.is_none());
    let c = cam.validate("r").expect("valid camera scenario");
    let cc = c.camera.expect("camera");
    assert_eq!((cc.width, cc.height, cc.corrupt_rate), (640, 480, 0.05));
}
