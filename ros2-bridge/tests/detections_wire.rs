//! `vision_msgs/Detection2DArray` on the wire: ros2-bridge's type, published with ros2-client,
//! read by Cyclone DDS with the type written from the documented vision_msgs 4.x message
//! (tests/fixtures/ros2/msg/vision_msgs), not from the Rust types.
//!
//! Needs a loopback-only network namespace and the test venv (see safety_interop.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ros2_bridge::msg::*;
use ros2_bridge::ros::{self, RosOptions};

fn detections() -> Detection2DArray {
    let header = Header {
        stamp: Time {
            sec: 1_700_000_123,
            nanosec: 456,
        },
        frame_id: "camera_optical".into(),
    };
    let mut covariance = [0.0; 36];
    covariance[0] = 0.5;
    covariance[35] = 2.0;
    let hyp = |class: &str, score: f64| ObjectHypothesisWithPose {
        hypothesis: ObjectHypothesis {
            class_id: class.into(),
            score,
        },
        pose: PoseWithCovariance {
            pose: Pose {
                position: Point {
                    x: 1.0,
                    y: 2.0,
                    z: 3.0,
                },
                orientation: Quaternion::default(),
            },
            covariance,
        },
    };
    Detection2DArray {
        header: header.clone(),
        detections: vec![
            Detection2D {
                header: header.clone(),
                results: vec![hyp("person", 0.875)],
                bbox: BoundingBox2D {
                    center: Pose2D {
                        position: Point2D {
                            x: 320.5,
                            y: 240.25,
                        },
                        theta: 0.0,
                    },
                    size_x: 50.0,
                    size_y: 80.0,
                },
                id: "a".into(),
            },
            Detection2D {
                header,
                results: vec![hyp("dog", 0.5), hyp("cat", 0.25)],
                bbox: BoundingBox2D {
                    center: Pose2D {
                        position: Point2D { x: 10.0, y: 20.0 },
                        theta: 0.125,
                    },
                    size_x: 3.0,
                    size_y: 4.0,
                },
                id: String::new(),
            },
        ],
    }
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn cyclone_reads_detection2d_array_field_by_field() {
    require_netns();
    let domain = domain();
    let mut reader = cyclone(
        "det-reader",
        domain,
        &["read", "--topic", "/detections", "--type", "detections"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let ctx = ros::context(&RosOptions {
            domain_id: domain,
            localhost_only: true,
        })
        .unwrap();
        let mut node = ros::node(&ctx, "detections_test").unwrap();
        let spinner = node.spinner().unwrap();
        let spin = tokio::task::spawn_local(async move {
            let _ = spinner.spin().await;
        });
        let topic = node
            .create_topic(
                &ros::topic_name("/detections").unwrap(),
                ros::type_name::<Detection2DArray>(),
                &ros::qos_reliable(10),
            )
            .unwrap();
        let publisher = node
            .create_publisher::<Detection2DArray>(&topic, Some(ros::qos_reliable(10)))
            .unwrap();
        let deadline = Instant::now() + MATCH_TIMEOUT;
        // Publish until the reader has one (matching takes a few hundred ms on each side).
        loop {
            publisher.publish(detections()).unwrap();
            if reader.drain().iter().any(|v| v["ev"] == "sample") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Cyclone never received a Detection2DArray"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node.stop_spinner();
        let _ = spin.await;
    });
    let msg = reader.seen.iter().find(|v| v["ev"] == "sample").unwrap()["msg"].clone();
    assert_eq!(
        msg["header"]["stamp"],
        json!({"sec": 1_700_000_123, "nanosec": 456})
    );
    assert_eq!(msg["header"]["frame_id"], "camera_optical");
    let d = msg["detections"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(
        d[0]["results"][0]["hypothesis"],
        json!({"class_id": "person", "score": 0.875})
    );
    assert_eq!(
        d[0]["bbox"],
        json!({"center": {"position": {"x": 320.5, "y": 240.25}, "theta": 0.0}, "size_x": 50.0, "size_y": 80.0})
    );
    assert_eq!(d[0]["id"], "a");
    let pose = &d[0]["results"][0]["pose"];
    assert_eq!(
        pose["pose"]["position"],
        json!({"x": 1.0, "y": 2.0, "z": 3.0})
    );
    assert_eq!(
        pose["pose"]["orientation"],
        json!({"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0})
    );
    let cov = pose["covariance"].as_array().unwrap();
    assert_eq!(cov.len(), 36);
    assert_eq!(
        (cov[0].as_f64(), cov[35].as_f64(), cov[1].as_f64()),
        (Some(0.5), Some(2.0), Some(0.0))
    );
    assert_eq!(d[1]["results"].as_array().unwrap().len(), 2);
    assert_eq!(d[1]["results"][1]["hypothesis"]["class_id"], "cat");
    assert_eq!(d[1]["bbox"]["center"]["theta"], 0.125);
    assert_eq!(d[1]["id"], "");
}
