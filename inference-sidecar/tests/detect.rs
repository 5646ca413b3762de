//! `POST /v1/detect` on the real server with the generated YOLOv8-layout fixture
//! (`yolov8_tiny.onnx`, see `tests/fixtures/models/make_models.py`): encoded and raw frames, the
//! letterbox mapped back, bad images answered 4xx and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Http, Server, fixture, metric};
use hyper::Method;
use image::{Rgb, RgbImage};
use serde_json::Value;

/// Headers, body, expected status, expected `outcome` label.
type Case = (Vec<(&'static str, String)>, Vec<u8>, u16, &'static str);

const PAD: f64 = 114.0 / 255.0;

fn server() -> Server {
    Server::with_model(
        &fixture("yolov8_tiny.onnx"),
        &[
            "--detect-size",
            "32x32",
            "--detect-classes",
            "red,green",
            "--detect-confidence",
            "0.25",
            "--detect-iou",
            "0.5",
        ],
    )
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn detect(
    http: &Http,
    s: &Server,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let r = http
        .request(Method::POST, &format!("{}/v1/detect", s.api), headers, body)
        .await
        .unwrap();
    (r.status, r.json())
}

/// (class name, confidence, box) of each detection.
fn boxes(v: &Value) -> Vec<(String, f64, [f64; 4])> {
    v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let f = |k: &str| d[k].as_f64().unwrap();
            (
                d["class_name"].as_str().unwrap().to_owned(),
                f("confidence"),
                [f("x1"), f("y1"), f("x2"), f("y2")],
            )
        })
        .collect()
}

fn assert_close(got: &[(String, f64, [f64; 4])], want: &[(&str, f64, [f64; 4])], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{got:?}");
        assert!((g.1 - w.1).abs() < tol, "confidence {got:?} vs {want:?}");
        for (a, b) in g.2.iter().zip(&w.2) {
            assert!((a - b).abs() < 1e-3, "box {got:?} vs {want:?}");
        }
    }
}

/// A red 64x32 picture letterboxed into 32x32: scale 0.5, 8 rows of padding above and below.
/// Channel means: red 0.5 + 0.5 x pad, green 0.5 x pad. Candidate 0 (input box 12..20 x 12..20)
/// is red; candidate 1 overlaps it and is suppressed; candidate 2 (25..31 x 8..12) is green.
fn red_expected() -> Vec<(&'static str, f64, [f64; 4])> {
    vec![
        ("red", 0.5 + 0.5 * PAD, [24.0, 8.0, 40.0, 24.0]),
        ("green", PAD, [50.0, 0.0, 62.0, 8.0]),
    ]
}

fn raw_frame(img: &RgbImage, encoding: &str, pad: usize) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let (w, h) = img.dimensions();
    let mut data = Vec::new();
    let mut step = 0;
    for y in 0..h {
        let start = data.len();
        for x in 0..w {
            let [r, g, b] = img.get_pixel(x, y).0;
            match encoding {
                "rgb8" => data.extend([r, g, b]),
                "bgr8" => data.extend([b, g, r]),
                "rgba8" => data.extend([r, g, b, 255]),
                "bgra8" => data.extend([b, g, r, 255]),
                "mono8" => data.push(r),
                // BT.601 full range; the pictures here are uniform, so U/V need no averaging
                "yuv422" => {
                    let (rf, gf, bf) = (f64::from(r), f64::from(g), f64::from(b));
                    let yv = 0.299 * rf + 0.587 * gf + 0.114 * bf;
                    let q = |v: f64| v.round().clamp(0.0, 255.0) as u8;
                    let (u, v) = (q((bf - yv) / 1.772 + 128.0), q((rf - yv) / 1.402 + 128.0));
                    data.extend(if x % 2 == 0 { [q(yv), u] } else { [q(yv), v] });
                }
                other => panic!("{other}"),
            }
        }
        data.resize(data.len() + pad, 0);
        step = data.len() - start;
    }
    let headers = vec![
        ("content-type", "application/x-robofleet-raw".to_owned()),
        ("x-robofleet-width", w.to_string()),
        ("x-robofleet-height", h.to_string()),
        ("x-robofleet-encoding", encoding.to_owned()),
        ("x-robofleet-step", step.to_string()),
    ];
    (headers, data)
}

#[tokio::test]
async fn png_and_raw_frames_give_the_same_detections_in_original_coordinates() {
    let http = Http::new();
    let mut s = server();
    s.wait_ready(&http).await;
    let red = RgbImage::from_pixel(64, 32, Rgb([255, 0, 0]));

    let (status, v) = detect(
        &http,
        &s,
        &[("content-type", "image/png".into())],
        png(&red),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(64), Some(32))
    );
    assert_eq!(v["detections"][0]["class_id"], 0);
    assert_close(&boxes(&v), &red_expected(), 1e-4);

    for (encoding, tol) in [
        ("rgb8", 1e-4),
        ("bgr8", 1e-4),
        ("rgba8", 1e-4),
        ("bgra8", 1e-4),
        ("yuv422", 0.02),
    ] {
        let (headers, body) = raw_frame(&red, encoding, 3);
        let (status, v) = detect(&http, &s, &headers, body).await;
        assert_eq!(status, 200, "{encoding}: {v}");
        assert_close(&boxes(&v), &red_expected(), tol);
    }

    // mono8 against the same grey picture as PNG
    let grey = RgbImage::from_pixel(64, 32, Rgb([200, 200, 200]));
    let (_, from_png) = detect(&http, &s, &[], png(&grey)).await;
    let (headers, body) = raw_frame(&grey, "mono8", 0);
    let (status, from_raw) = detect(&http, &s, &headers, body).await;
    assert_eq!(status, 200, "{from_raw}");
    assert_eq!(from_png["detections"], from_raw["detections"]);
    assert!(!boxes(&from_raw).is_empty());

    let m = s.metrics(&http).await;
    assert_eq!(
        metric(&m, r#"robofleet_detection_images_total{outcome="ok"}"#),
        8.0
    );
}

#[tokio::test]
async fn bad_images_are_4xx_counted_and_the_server_keeps_serving() {
    let http = Http::new();
    let mut s = server();
    s.wait_ready(&http).await;
    let good = png(&RgbImage::from_pixel(64, 32, Rgb([255, 0, 0])));
    let raw = |w: &str, enc: &str| {
        vec![
            ("content-type", "application/x-robofleet-raw".to_owned()),
            ("x-robofleet-width", w.to_owned()),
            ("x-robofleet-height", "2".to_owned()),
            ("x-robofleet-encoding", enc.to_owned()),
        ]
    };
    let cases: Vec<Case> = vec![
        (vec![], Vec::new(), 400, "corrupt"), // empty
        (vec![], good[..good.len() / 2].to_vec(), 400, "corrupt"), // truncated
        (
            vec![],
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDRgarbage".to_vec(),
            400,
            "corrupt",
        ), // PNG magic, garbage
        (vec![], b"not an image at all".to_vec(), 415, "unsupported"),
        (raw("4", "rgb8"), vec![0; 10], 400, "corrupt"), // too few bytes
        (raw("4", "16UC1"), vec![0; 16], 415, "unsupported"),
        (raw("x", "rgb8"), vec![0; 24], 400, "corrupt"), // bad header
        (
            vec![("content-type", "application/x-robofleet-raw".to_owned())],
            vec![0; 24],
            400,
            "corrupt",
        ),
    ];
    let n = cases.len();
    for (headers, body, want, _) in cases.iter().cloned() {
        let (status, v) = detect(&http, &s, &headers, body).await;
        assert_eq!(status, want, "{headers:?}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (status, v) = detect(&http, &s, &[], good).await;
    assert_eq!(status, 200, "{v}");
    let m = s.metrics(&http).await;
    let count = |o: &str| {
        metric(
            &m,
            &format!(r#"robofleet_detection_images_total{{outcome="{o}"}}"#),
        )
    };
    let corrupt = cases.iter().filter(|c| c.3 == "corrupt").count();
    assert_eq!(count("corrupt"), corrupt as f64);
    assert_eq!(count("unsupported"), (n - corrupt) as f64);
    assert_eq!(count("ok"), 1.0);
}

#[tokio::test]
async fn detect_without_detection_configured_is_404() {
    let http = Http::new();
    let mut s = Server::with_model(&fixture("add_mul.onnx"), &[]);
    s.wait_ready(&http).await;
    let (status, v) = detect(&http, &s, &[], vec![1, 2, 3]).await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test]
async fn yolov5_layout_multiplies_objectness() {
    let http = Http::new();
    // `auto` takes the 32x32 input size from the model, as the operator renders it
    for size in ["32x32", "auto"] {
        let mut s = Server::with_model(
            &fixture("yolov5_tiny.onnx"),
            &[
                "--detect-size",
                size,
                "--detect-layout",
                "yolov5",
                "--detect-classes",
                "red,green",
            ],
        );
        s.wait_ready(&http).await;
        let red = RgbImage::from_pixel(64, 32, Rgb([255, 0, 0]));
        let (status, v) = detect(&http, &s, &[], png(&red)).await;
        assert_eq!(status, 200, "{size}: {v}");
        // the green candidate's objectness 0.5 halves its score (0.22) below the 0.25 default
        assert_close(&boxes(&v), &red_expected()[..1], 1e-4);
    }
}

#[tokio::test]
async fn detect_size_auto_on_a_model_without_an_image_input_is_a_clear_500() {
    let http = Http::new();
    let mut s = Server::with_model(&fixture("add_mul.onnx"), &["--detect-size", "auto"]);
    s.wait_ready(&http).await;
    let red = RgbImage::from_pixel(8, 8, Rgb([255, 0, 0]));
    let (status, v) = detect(&http, &s, &[], png(&red)).await;
    assert_eq!(status, 500, "{v}");
    assert!(v.to_string().contains("no input \\\"images\\\""), "{v}");
    let text = s.metrics(&http).await;
    assert_eq!(
        metric(
            &text,
            r#"robofleet_inference_requests_total{model="model",model_version="1",outcome="error"}"#
        ),
        1.0
    );
}

/// Minor page faults of a process so far (`/proc/<pid>/stat` field 10).
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // after the command name (which may contain spaces): field 3 (state) on
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    rest[10 - 3].parse().unwrap()
}

/// A 1280x720 frame's buffers (the decoded RGB frame, 2.7 MB) lie above glibc's mmap threshold.
/// With glibc's malloc and the whole-frame copy `decode_encoded` used to make, every request
/// grew and trimmed the heap again: 1,352 minor page faults per request here (0.3 to 1 now: no
/// copy, and fixed malloc thresholds, `ort_backend::keep_native_allocations`). Counts the server's faults over 30 requests
/// after a warm-up: a count of faults, not a time, so a loaded machine does not move it (what
/// remains is a new thread's first stack pages, a few dozen once).
#[tokio::test]
async fn large_frames_do_not_page_fault_on_every_request() {
    let http = Http::new();
    let mut s = server();
    s.wait_ready(&http).await;
    let img = RgbImage::from_fn(1280, 720, |x, y| {
        Rgb([
            (x % 256) as u8,
            (y % 256) as u8,
            if x < 640 { 255 } else { 0 },
        ])
    });
    let (headers, body) = (vec![("content-type", "image/png".to_owned())], png(&img));
    let (status, first) = detect(&http, &s, &headers, body.clone()).await;
    assert_eq!(status, 200, "{first}");
    for _ in 0..5 {
        detect(&http, &s, &headers, body.clone()).await;
    }
    let before = minor_faults(s.pid());
    let n = 30;
    for _ in 0..n {
        let (status, v) = detect(&http, &s, &headers, body.clone()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["detections"], first["detections"]);
    }
    let per_request = (minor_faults(s.pid()) - before) as f64 / f64::from(n);
    assert!(
        per_request < 100.0,
        "{per_request} minor page faults per request (1,352 before the fix)"
    );
}
