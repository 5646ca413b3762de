use super::*;
use crate::msg::Time;
use proptest::prelude::*;

fn header() -> Header {
    Header {
        stamp: Time {
            sec: 12,
            nanosec: 34,
        },
        frame_id: "camera_optical".into(),
    }
}

fn image(width: u32, height: u32, step: u32, len: usize, encoding: &str) -> Image {
    Image {
        header: header(),
        height,
        width,
        encoding: encoding.into(),
        is_bigendian: 0,
        step,
        data: vec![7; len],
    }
}

#[test]
fn raw_frames_keep_their_bytes_and_describe_them_in_headers() {
    let img = image(4, 2, 13, 26, "bgr8");
    let data = img.data.clone();
    let f = Frame::raw(img, 5, Instant::now()).unwrap();
    assert_eq!(&f.body[..], &data[..], "sent as received, padding included");
    assert_eq!(f.header, header());
    assert_eq!(
        f.headers(),
        vec![
            ("content-type", RAW_CONTENT_TYPE.to_owned()),
            ("x-robofleet-width", "4".to_owned()),
            ("x-robofleet-height", "2".to_owned()),
            ("x-robofleet-encoding", "bgr8".to_owned()),
            ("x-robofleet-step", "13".to_owned()),
        ]
    );
}

#[test]
fn raw_frames_that_break_their_geometry_are_corrupt() {
    let now = Instant::now();
    // sensor-sim's corrupt frames: half the data
    assert!(matches!(
        Frame::raw(image(4, 2, 12, 12, "rgb8"), 0, now),
        Err(FrameError::Geometry { len: 12, .. })
    ));
    assert!(matches!(
        Frame::raw(image(4, 2, 12, 25, "rgb8"), 0, now),
        Err(FrameError::Geometry { .. })
    ));
    assert!(matches!(
        Frame::raw(image(4, 2, 0, 24, "rgb8"), 0, now),
        Err(FrameError::Geometry { .. })
    ));
    assert_eq!(
        Frame::raw(image(0, 2, 12, 24, "rgb8"), 0, now).unwrap_err(),
        FrameError::Empty
    );
    assert_eq!(
        Frame::raw(image(4, 2, 12, 24, "rgb 8\n"), 0, now).unwrap_err(),
        FrameError::Encoding("rgb 8\n".into())
    );
    // An encoding the sidecar may not take still goes there (it answers 415, counted).
    assert!(Frame::raw(image(4, 2, 8, 16, "16UC1"), 0, now).is_ok());
}

#[test]
fn compressed_frames_go_as_they_are() {
    let now = Instant::now();
    let img = CompressedImage {
        header: header(),
        format: "jpeg".into(),
        data: vec![0xff, 0xd8, 0xff],
    };
    let f = Frame::compressed(img.clone(), 1, now).unwrap();
    assert_eq!(&f.body[..], &[0xff, 0xd8, 0xff]);
    assert_eq!(f.payload, Payload::Encoded);
    assert_eq!(f.headers()[0].0, "content-type");
    let empty = CompressedImage {
        data: vec![],
        ..img
    };
    assert_eq!(
        Frame::compressed(empty, 2, now).unwrap_err(),
        FrameError::Empty
    );
}

#[test]
fn statuses_map_to_bounded_outcomes() {
    assert_eq!(Outcome::of_status(400), Outcome::Corrupt);
    assert_eq!(Outcome::of_status(415), Outcome::Unsupported);
    assert_eq!(Outcome::of_status(429), Outcome::Rejected);
    assert_eq!(Outcome::of_status(503), Outcome::Rejected);
    assert_eq!(Outcome::of_status(504), Outcome::Timeout);
    assert_eq!(Outcome::of_status(500), Outcome::Error);
    assert_eq!(Outcome::of_status(404), Outcome::Error);
    let labels: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(labels.len(), Outcome::ALL.len());
}

#[test]
fn sidecar_answers_become_detection2d_arrays_with_the_image_header() {
    let resp: DetectResponse = serde_json::from_str(
        r#"{"model_name":"m","model_version":"1","width":160,"height":120,"detections":[
            {"class_id":0,"class_name":"obstacle","confidence":1.0,"x1":50,"y1":30,"x2":110,"y2":90},
            {"class_id":3,"confidence":0.5,"x1":1.5,"y1":2,"x2":3.5,"y2":10}]}"#,
    )
    .unwrap();
    let a = to_detection_array(&header(), &resp);
    assert_eq!(a.header, header());
    assert_eq!(a.detections.len(), 2);
    let d = &a.detections[0];
    assert_eq!(d.header, header());
    assert_eq!(d.results[0].hypothesis.class_id, "obstacle");
    assert_eq!(d.results[0].hypothesis.score, 1.0);
    assert_eq!(
        (d.bbox.center.position.x, d.bbox.center.position.y),
        (80.0, 60.0)
    );
    assert_eq!((d.bbox.size_x, d.bbox.size_y), (60.0, 60.0));
    assert_eq!(d.results[0].pose, PoseWithCovariance::default());
    let d = &a.detections[1];
    assert_eq!(d.results[0].hypothesis.class_id, "3", "no name: the index");
    assert_eq!((d.bbox.center.position.x, d.bbox.size_x), (2.5, 2.0));
    let none: DetectResponse = serde_json::from_str(r#"{"detections":[]}"#).unwrap();
    assert!(to_detection_array(&header(), &none).detections.is_empty());
    assert!(serde_json::from_str::<DetectResponse>(r#"{"error":"x"}"#).is_err());
}

#[test]
fn frames_expire_after_max_age() {
    let t0 = Instant::now();
    let f = Frame::raw(image(1, 1, 3, 3, "rgb8"), 0, t0).unwrap();
    assert!(!f.expired(t0 + Duration::from_millis(100), Duration::from_millis(100)));
    assert!(f.expired(t0 + Duration::from_millis(101), Duration::from_millis(100)));
    assert!(!f.expired(t0, Duration::ZERO));
}

proptest! {
    /// Whatever the interleaving of arrivals and takes, at most one frame waits, the frame taken is
    /// always the newest that arrived before the take, and every frame is either taken or
    /// returned as replaced exactly once.
    #[test]
    fn newest_wins_and_every_frame_is_accounted_for(ops in proptest::collection::vec(any::<bool>(), 0..200)) {
        let mut slot = Latest::default();
        let (mut next, mut taken, mut dropped) = (0u64, Vec::new(), Vec::new());
        for put in ops {
            if put {
                if let Some(old) = slot.put(next) { dropped.push(old); }
                next += 1;
            } else if let Some(t) = slot.take() {
                prop_assert_eq!(t, next - 1, "the newest frame");
                taken.push(t);
            }
        }
        let mut all: Vec<u64> = taken.iter().chain(&dropped).copied().chain(slot.take()).collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..next).collect::<Vec<_>>());
    }

    /// The published sequence is strictly increasing whatever order answers arrive in.
    #[test]
    fn published_answers_never_go_back(seqs in proptest::collection::vec(0u64..50, 0..100)) {
        let mut s = Sequencer::default();
        let published: Vec<u64> = seqs.iter().copied().filter(|&q| s.admit(q)).collect();
        prop_assert!(published.windows(2).all(|w| w[0] < w[1]));
        if let Some(&first) = seqs.first() { prop_assert_eq!(published.first(), Some(&first)); }
    }
}
