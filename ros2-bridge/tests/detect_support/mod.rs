//! Helpers for the detection bridge's interop tests: the real inference-sidecar serving the
//! camera fixture's detector, the fixture's frames and boxes, and box comparison.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/camera")
}

/// `tests/fixtures/camera/expected.json`.
pub fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap())
        .unwrap()
}

/// The fixture frame called `name` (`one_ahead.png` → `one_ahead`).
pub fn frame(exp: &Value, name: &str) -> Value {
    exp["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == format!("{name}.png"))
        .unwrap_or_else(|| panic!("no fixture frame {name}"))
        .clone()
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the one in the test venv (as the Makefile
/// finds it).
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let py = super::common::python();
    let venv = py.parent().and_then(Path::parent).unwrap().to_path_buf();
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| std::fs::read_dir(capi).ok())
            .flat_map(|rd| rd.filter_map(Result::ok).map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so."))
            })
    });
    found.unwrap_or_else(|| {
        panic!(
            "ONNX Runtime library not found: set ORT_DYLIB_PATH or install the test venv under {} (make venv)",
            venv.display()
        )
    })
}

/// The inference-sidecar binary built beside ros2-bridge (`make test` builds every binary).
pub fn sidecar_binary() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_ros2-bridge")).with_file_name("inference-sidecar");
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p inference-sidecar; make test does)",
        p.display()
    );
    p
}

/// A running `inference-sidecar serve` with the camera fixture's detector.
pub struct Sidecar {
    child: Child,
    pub api: String,
    pub admin: String,
    pub dir: PathBuf,
}

impl Sidecar {
    /// Starts the sidecar (API on `port`, 0 for a free one) and waits until it is ready.
    pub fn start(tag: &str, port: u16) -> Sidecar {
        let exp = expected();
        let model = fixture_dir().join(exp["detector"]["file"].as_str().unwrap());
        let digest = hex::encode(Sha256::digest(std::fs::read(&model).unwrap()));
        let dir = std::env::temp_dir().join(format!(
            "ros2-bridge-sidecar-{tag}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let addr_file = dir.join("addr.json");
        let args: Vec<String> = exp["detector"]["sidecarArgs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let child = Command::new(sidecar_binary())
            .arg("serve")
            .arg("--model")
            .arg(format!("file://{}@{digest}", model.display()))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--model-cache")
            .arg(dir.join("cache"))
            .arg("--address-file")
            .arg(&addr_file)
            .args(&args)
            .env("ORT_DYLIB_PATH", ort_library())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sidecar.log")).unwrap())
            .spawn()
            .unwrap();
        let mut s = Sidecar {
            child,
            api: String::new(),
            admin: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                s.api = v["api"].as_str().unwrap().to_owned();
                s.admin = v["admin"].as_str().unwrap().to_owned();
                if std::net::TcpStream::connect(&s.admin).is_ok()
                    && super::common::http_get(&s.admin, "/v2/health/ready").0 == 200
                {
                    return s;
                }
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("sidecar exited with {status}:\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not ready within 60 s:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://host:port/v1/detect`.
    pub fn detect_url(&self) -> String {
        format!("http://{}/v1/detect", self.api)
    }

    /// The API port.
    pub fn port(&self) -> u16 {
        self.api.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sidecar.log")).unwrap_or_default()
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sidecar did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `[x1, y1, x2, y2]` of a `Detection2D` as the Cyclone peer printed it (centre and size).
pub fn det_box(d: &Value) -> [f64; 4] {
    let c = &d["bbox"]["center"]["position"];
    let (cx, cy) = (c["x"].as_f64().unwrap(), c["y"].as_f64().unwrap());
    let (w, h) = (
        d["bbox"]["size_x"].as_f64().unwrap(),
        d["bbox"]["size_y"].as_f64().unwrap(),
    );
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// The drawn boxes of a fixture frame.
pub fn drawn_boxes(frame: &Value) -> Vec<[f64; 4]> {
    frame["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let f = |k: &str| b[k].as_f64().unwrap();
            [f("x1"), f("y1"), f("x2"), f("y2")]
        })
        .collect()
}

/// How far a detected edge may be from the drawn one: the detector finds edges to within about
/// one input pixel after the letterbox resize, i.e. 1/scale original pixels; 1.5 of them allowed.
pub fn tolerance(frame: &Value) -> f64 {
    let exp = expected();
    let size = exp["detector"]["size"].as_array().unwrap();
    let (mw, mh) = (size[0].as_f64().unwrap(), size[1].as_f64().unwrap());
    let (w, h) = (
        frame["width"].as_f64().unwrap(),
        frame["height"].as_f64().unwrap(),
    );
    1.5 / (mw / w).min(mh / h)
}

/// Asserts that a Detection2DArray (as printed by the Cyclone peer) holds exactly the drawn
/// boxes, each within `tol` pixels on every edge, class `obstacle`, and each detection carries the
/// array's header.
pub fn assert_boxes(msg: &Value, want: &[[f64; 4]], tol: f64) {
    let dets = msg["detections"].as_array().unwrap();
    assert_eq!(dets.len(), want.len(), "detections {msg}");
    for w in want {
        let best = dets
            .iter()
            .map(det_box)
            .map(|g| {
                g.iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            best <= tol,
            "drawn box {w:?}: nearest detection off by {best:.2} px (tolerance {tol:.2}): {msg}"
        );
    }
    for d in dets {
        assert_eq!(
            d["header"], msg["header"],
            "each detection has the image header"
        );
        assert_eq!(d["results"][0]["hypothesis"]["class_id"], "obstacle");
        assert_eq!(d["results"][0]["hypothesis"]["score"], 1.0);
    }
}
