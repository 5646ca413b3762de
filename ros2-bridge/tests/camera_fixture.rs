//! The shared synthetic-camera fixture (`tests/fixtures/camera`) agrees with what sensor-sim
//! draws: the same boxes and exactly the same pixels as the committed PNG frames. The generator
//! (Python) and `sim::camera` (Rust) are written separately; this keeps them one contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ros2_bridge::msg::Time;
use ros2_bridge::sim::camera::{self, CameraConfig, Encoding};
use ros2_bridge::sim::config::Obstacle;
use ros2_bridge::sim::rng::Rng;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/camera")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn obstacles(frame: &Value) -> Vec<Obstacle> {
    frame["obstacles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| Obstacle {
            bearing: o["bearingDeg"].as_f64().unwrap().to_radians(),
            start: o["startDistance"].as_f64().unwrap(),
            speed: 0.0,
            min: 0.1,
            radius: o["width"].as_f64().unwrap() / 2.0,
            appear: 0.0,
            disappear: f64::INFINITY,
        })
        .collect()
}

fn decode_png(path: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn sensor_sim_draws_the_fixture_boxes_and_pixels() {
    let exp = expected();
    let frames = exp["frames"].as_array().unwrap();
    assert!(frames.len() >= 3);
    let mut boxes_seen = 0;
    for f in frames {
        let cam = CameraConfig {
            width: f["width"].as_u64().unwrap() as u32,
            height: f["height"].as_u64().unwrap() as u32,
            encoding: Encoding::Rgb8,
            corrupt_rate: 0.0,
        };
        let obs = obstacles(f);
        let drawn: Vec<Value> = camera::boxes(&cam, &obs, 0.0)
            .into_iter()
            .map(|(x1, y1, x2, y2, rgb)| {
                serde_json::json!({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "rgb": rgb})
            })
            .collect();
        assert_eq!(&Value::from(drawn.clone()), &f["boxes"], "{}", f["file"]);
        boxes_seen += drawn.len();
        let (img, corrupt) = camera::frame(&cam, &obs, 0.0, &mut Rng::new(1), Time::default(), "c");
        assert!(!corrupt);
        let (w, h, pixels) = decode_png(&dir().join(f["file"].as_str().unwrap()));
        assert_eq!((w, h), (cam.width, cam.height));
        assert!(pixels == img.data, "{}: pixels differ", f["file"]);
    }
    assert!(boxes_seen >= 5, "the fixture has obstacles to find");
}

/// The generator reproduces the committed files byte for byte (needs the test venv: onnx,
/// onnxruntime for its self-check).
#[test]
#[ignore = "needs the test venv (make test)"]
fn generator_reproduces_the_committed_fixture() {
    let py = std::env::var_os("ROBOFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/robofleet/venv/bin/python")
        });
    assert!(
        py.exists(),
        "test venv python {} is missing (make venv)",
        py.display()
    );
    let out = std::env::temp_dir().join(format!("robofleet-camera-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = std::process::Command::new(&py)
        .arg(dir().join("make_camera_fixtures.py"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "generator failed (its self-check included)"
    );
    let mut compared = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap();
        let committed = std::fs::read(dir().join(name))
            .unwrap_or_else(|e| panic!("{name:?} is generated but not committed: {e}"));
        assert!(
            std::fs::read(&p).unwrap() == committed,
            "{name:?} differs from the generator's output: re-run make_camera_fixtures.py"
        );
        compared += 1;
    }
    assert!(compared >= 6, "{compared} files");
    let _ = std::fs::remove_dir_all(&out);
}
