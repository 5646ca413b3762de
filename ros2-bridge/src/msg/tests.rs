//! Golden vectors from `rosbags` (tests/fixtures/ros2/gen_cdr_vectors.py): every case is built
//! here with the same values, encoded and compared byte for byte, then decoded and re-encoded.

use super::*;

const VECTORS: &str = include_str!("../../../tests/fixtures/ros2/cdr_vectors.json");

fn vector(name: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(VECTORS).expect("fixture is JSON");
    let hex = v["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))["hex"]
        .as_str()
        .expect("hex")
        .to_owned();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Encode must equal the vector; decoding the vector and encoding again must too (this also
/// covers NaN, which `PartialEq` cannot).
fn check<T>(name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let want = vector(name);
    let got = encode(value).expect("encode");
    assert_eq!(got, want, "{name}: encoded bytes differ from rosbags");
    let back: T = decode(&want).expect("decode");
    assert_eq!(
        encode(&back).expect("re-encode"),
        want,
        "{name}: decode/encode round trip"
    );
}

fn hdr(sec: i32, nanosec: u32, frame: &str) -> Header {
    Header {
        stamp: Time { sec, nanosec },
        frame_id: frame.into(),
    }
}

fn scan(header: Header, ranges: Vec<f32>, intensities: Vec<f32>) -> LaserScan {
    use std::f64::consts::PI;
    LaserScan {
        header,
        angle_min: (-PI / 2.0) as f32,
        angle_max: (PI / 2.0) as f32,
        angle_increment: (PI / 180.0) as f32,
        time_increment: 0.0,
        scan_time: 0.025,
        range_min: 0.05,
        range_max: 30.0,
        ranges,
        intensities,
    }
}

fn hyp(class: &str, score: f64, cov_diag: f64) -> ObjectHypothesisWithPose {
    let mut covariance = [0.0; 36];
    for i in 0..6 {
        covariance[i * 7] = cov_diag;
    }
    ObjectHypothesisWithPose {
        hypothesis: ObjectHypothesis {
            class_id: class.into(),
            score,
        },
        pose: PoseWithCovariance {
            pose: Pose {
                position: Point {
                    x: 1.0,
                    y: -2.0,
                    z: 0.5,
                },
                orientation: Quaternion::default(),
            },
            covariance,
        },
    }
}

#[test]
fn std_msgs_and_time() {
    check("bool_true", &Bool { data: true });
    check("bool_false", &Bool { data: false });
    check(
        "string_empty",
        &StringMsg {
            data: String::new(),
        },
    );
    check(
        "string_utf8",
        &StringMsg {
            data: "idle-é".into(),
        },
    );
    check(
        "time",
        &Time {
            sec: 1_700_000_000,
            nanosec: 123_456_789,
        },
    );
    check("header_odd", &hdr(1, 2, "laser"));
}

#[test]
fn laser_scans() {
    check(
        "laserscan_empty",
        &scan(hdr(10, 20, "laser"), vec![], vec![]),
    );
    check(
        "laserscan_rep117",
        &scan(
            hdr(10, 20, "base_scan"),
            vec![0.5, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 31.0],
            vec![],
        ),
    );
    let ranges = (0..1080)
        .map(|i| (1.0 + f64::from(i % 100) * 0.05) as f32)
        .collect();
    let intensities = (0..1080).map(|i| (i % 7) as f32).collect();
    check(
        "laserscan_1080",
        &scan(
            hdr(1_700_000_000, 999_999_999, "laser"),
            ranges,
            intensities,
        ),
    );
}

#[test]
fn geometry_and_nav2() {
    check(
        "twist",
        &Twist {
            linear: Vector3 {
                x: 0.5,
                y: 0.0,
                z: 0.0,
            },
            angular: Vector3 {
                x: 0.0,
                y: 0.0,
                z: -0.25,
            },
        },
    );
    check(
        "speed_limit",
        &SpeedLimit {
            header: hdr(9, 10, "base_link"),
            percentage: true,
            speed_limit: 30.0,
        },
    );
}

#[test]
fn images() {
    check(
        "image_rgb8_2x2",
        &Image {
            header: hdr(3, 4, "cam"),
            height: 2,
            width: 2,
            encoding: "rgb8".into(),
            is_bigendian: 0,
            step: 6,
            data: (0..12).collect(),
        },
    );
    check(
        "compressed_image",
        &CompressedImage {
            header: hdr(3, 4, "cam"),
            format: "jpeg".into(),
            data: vec![0xFF, 0xD8, 0xFF, 0xD9],
        },
    );
}

#[test]
fn detections() {
    check(
        "detections_empty",
        &Detection2DArray {
            header: hdr(5, 6, "camera_optical"),
            detections: vec![],
        },
    );
    let bbox = |x, y, theta, sx, sy| BoundingBox2D {
        center: Pose2D {
            position: Point2D { x, y },
            theta,
        },
        size_x: sx,
        size_y: sy,
    };
    check(
        "detections_two",
        &Detection2DArray {
            header: hdr(5, 6, "c"),
            detections: vec![
                Detection2D {
                    header: hdr(5, 6, "c"),
                    results: vec![hyp("person", 0.875, 0.0)],
                    bbox: bbox(320.5, 240.25, 0.0, 50.0, 80.0),
                    id: String::new(),
                },
                Detection2D {
                    header: hdr(5, 6, "c"),
                    results: vec![hyp("dog", 0.5, 0.25), hyp("cat", 0.25, 1.0)],
                    bbox: bbox(10.0, 20.0, 0.125, 3.0, 4.0),
                    id: "7".into(),
                },
            ],
        },
    );
}

#[test]
fn diagnostics() {
    check(
        "diagnostics",
        &DiagnosticArray {
            header: hdr(7, 8, ""),
            status: vec![DiagnosticStatus {
                level: DiagnosticStatus::WARN,
                name: "robofleet/safety".into(),
                message: "stop".into(),
                hardware_id: String::new(),
                values: vec![
                    KeyValue {
                        key: "reason".into(),
                        value: "SensorInvalid".into(),
                    },
                    KeyValue {
                        key: "a".into(),
                        value: String::new(),
                    },
                ],
            }],
        },
    );
}

#[test]
fn every_vector_is_checked() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).expect("fixture is JSON");
    assert_eq!(
        v["vectors"].as_array().expect("vectors").len(),
        16,
        "add new vectors to these tests"
    );
}

#[test]
fn dds_names() {
    assert_eq!(
        LaserScan::dds_type_name(),
        "sensor_msgs::msg::dds_::LaserScan_"
    );
    assert_eq!(Bool::dds_type_name(), "std_msgs::msg::dds_::Bool_");
    assert_eq!(StringMsg::dds_type_name(), "std_msgs::msg::dds_::String_");
    assert_eq!(
        Detection2DArray::dds_type_name(),
        "vision_msgs::msg::dds_::Detection2DArray_"
    );
    assert_eq!(
        SpeedLimit::dds_type_name(),
        "nav2_msgs::msg::dds_::SpeedLimit_"
    );
    assert_eq!(
        DiagnosticArray::ros_type_name(),
        "diagnostic_msgs/msg/DiagnosticArray"
    );
    assert_eq!(dds_topic_name("/scan"), "rt/scan");
    assert_eq!(
        dds_topic_name("/robot1/safety/stop"),
        "rt/robot1/safety/stop"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let good = vector("laserscan_1080");
    for cut in [0, 3, 4, 5, 20, 40, 60, good.len() / 2, good.len() - 1] {
        assert!(
            decode::<LaserScan>(&good[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    // A sequence length far beyond the payload.
    let mut lying = vector("laserscan_empty");
    let n = lying.len();
    lying[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode::<LaserScan>(&lying).is_err());
    // Wrong encapsulation and a non-0/1 bool.
    assert!(matches!(
        decode::<Bool>(&[0, 7, 0, 0, 1]),
        Err(CdrError::UnsupportedEncapsulation(0, 7))
    ));
    assert!(decode::<Bool>(&[0, 1, 0, 0, 2]).is_err());
    assert!(
        decode::<StringMsg>(&[0, 1, 0, 0, 2, 0, 0, 0, 0xff, 0]).is_err(),
        "bad UTF-8"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn laserscan_round_trips(frame in "[a-z_]{0,9}", sec in any::<i32>(), ranges in proptest::collection::vec(any::<f32>(), 0..64)) {
            let msg = scan(hdr(sec, 1, &frame), ranges, vec![]);
            let bytes = encode(&msg).expect("encode");
            let back: LaserScan = decode(&bytes).expect("decode");
            prop_assert_eq!(encode(&back).expect("re-encode"), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<LaserScan>(&bytes);
            let _ = decode::<Detection2DArray>(&bytes);
            let _ = decode::<Image>(&bytes);
        }
    }
}
