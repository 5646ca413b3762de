//! `/v1/detect` benchmark (issue 5), in one process tree on the same CPUs:
//!
//! (a) latency: `POST /v1/detect` to the release server (1 inference thread, 1 intra-op thread)
//!     against the same pipeline in-process (decode, letterbox, `OrtBackend::infer`, the declared
//!     post-processing; same session options), sequential requests, alternating rounds;
//! (b) throughput at saturation: for every split of the thread budget into intra-op threads ×
//!     inference threads, bare ONNX Runtime (`session.run` loops on a prepared tensor, one session
//!     per thread), the in-process pipeline, and the server under a closed-loop load of
//!     `connections` keep-alive HTTP/1.1 connections;
//! (c) the Python server (`bench/detect_server.py`: onnxruntime + Pillow + numpy behind
//!     FastAPI/uvicorn, same split as uvicorn workers × intra-op threads) under the same load
//!     generator, alternating with (b) round by round. Only with `ROBOFLEET_DETECT_BENCH_PYTHON`.
//!
//! The load generator is this process (tokio, one worker thread); its CPU time during each HTTP
//! phase is recorded. As a plain test this is a smoke run on the fixture's tiny detector (a few
//! requests, nothing asserted about speed), so it cannot rot; `inference-sidecar/bench/detect.sh`
//! runs it for real and writes `bench/results/detect-<name>.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a failed run

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Http, Server, model_ref};
use hyper::Method;
use inference_sidecar::backend::Backend;
use inference_sidecar::config::{DetectArgs, Detection};
use inference_sidecar::detect::postprocess::Layout;
use inference_sidecar::detect::preprocess::{self, ColorOrder, Letterbox, ResizeRounding};
use inference_sidecar::ort_backend::{self, ExecutionProvider, OrtBackend, SessionOptions};
use inference_sidecar::tensor::{Tensor, TensorData};
use ort::session::Session;
use ort::value::TensorRef;
use serde_json::{Value, json};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    detect: DetectArgs,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    json!({
        "n": v.len(),
        "p50_ms": percentile(&v, 0.5),
        "p90_ms": percentile(&v, 0.9),
        "p99_ms": percentile(&v, 0.99),
        "min_ms": v[0],
        "mean_ms": v.iter().sum::<f64>() / v.len() as f64,
    })
}

fn cmd_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fields of `/proc/<pid>/stat` by their number in proc(5) (1-based; 10 minflt, 14 utime).
fn proc_stat(pid: u32, fields: &[usize]) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // after the command name (which may contain spaces): field 3 (state) on
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            fields
                .iter()
                .map(|f| rest.get(f - 3)?.parse::<f64>().ok())
                .sum::<Option<f64>>()
        })
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) of one process, all its threads.
fn proc_cpu_s(pid: u32, ticks: f64) -> f64 {
    proc_stat(pid, &[14, 15]) / ticks
}

/// Minor page faults of one process, all its threads.
fn proc_minflt(pid: u32) -> f64 {
    proc_stat(pid, &[10])
}

/// `per_process` summed over a process and, recursively, its live child processes.
fn tree_sum(pid: u32, per_process: &dyn Fn(u32) -> f64) -> f64 {
    let own = per_process(pid);
    let children: f64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .map(|p| tree_sum(p, per_process))
        .sum();
    own + children
}

/// CPU seconds of a process and its live child processes.
fn tree_cpu_s(pid: u32, ticks: f64) -> f64 {
    tree_sum(pid, &|p| proc_cpu_s(p, ticks))
}

/// Minor page faults of a process and its live child processes.
fn tree_minflt(pid: u32) -> f64 {
    tree_sum(pid, &proc_minflt)
}

/// What every side receives: an encoded image (JPEG/PNG), or the same picture as a raw rgb8
/// frame (`ROBOFLEET_DETECT_BENCH_RAW=1`: what the ROS 2 bridge sends, nothing to decode).
struct Frame {
    bytes: Vec<u8>,
    /// width and height of a raw rgb8 frame; `None`: encoded
    raw: Option<(u32, u32)>,
}

impl Frame {
    /// The request headers that describe the body.
    fn headers(&self) -> Vec<(&'static str, String)> {
        match self.raw {
            None => Vec::new(),
            Some((w, h)) => vec![
                ("content-type", "application/x-robofleet-raw".into()),
                ("x-robofleet-width", w.to_string()),
                ("x-robofleet-height", h.to_string()),
                ("x-robofleet-encoding", "rgb8".into()),
            ],
        }
    }

    /// Decodes the image, or copies the raw frame into an image, as the server does.
    fn decode(&self) -> image::RgbImage {
        match self.raw {
            None => preprocess::decode_encoded(&self.bytes).unwrap(),
            Some((width, height)) => preprocess::raw_to_rgb(&preprocess::RawFrame {
                width,
                height,
                step: width as usize * 3,
                encoding: preprocess::RawEncoding::Rgb8,
                data: &self.bytes,
            })
            .unwrap(),
        }
    }
}

/// The in-process pipeline, exactly as `/v1/detect` runs it minus HTTP: decode, letterbox and
/// normalise, the backend's infer (the server's inference threads call the same), post-process.
fn pipeline(backend: &mut OrtBackend, det: &Detection, image: &Frame) -> usize {
    timed_pipeline(backend, det, image, None)
}

/// [`pipeline`], pushing each stage's milliseconds (decode, prepare, infer, post-process) to
/// `times` when given.
fn timed_pipeline(
    backend: &mut OrtBackend,
    det: &Detection,
    image: &Frame,
    mut times: Option<&mut [Vec<f64>; 4]>,
) -> usize {
    let mut clock = Instant::now();
    let mut lap = |stage: usize| {
        if let Some(t) = times.as_deref_mut() {
            t[stage].push(clock.elapsed().as_secs_f64() * 1000.0);
        }
        clock = Instant::now();
    };
    let img = image.decode();
    lap(0);
    let prepared = preprocess::prepare(&img, &det.preprocess);
    lap(1);
    let pre = &det.preprocess;
    let input = Tensor::new(
        det.input.clone(),
        vec![1, 3, i64::from(pre.height), i64::from(pre.width)],
        TensorData::Fp32(prepared.data),
    )
    .unwrap();
    let out = backend.infer(vec![input]).unwrap();
    lap(2);
    let Some(Tensor {
        shape,
        data: TensorData::Fp32(data),
        ..
    }) = out.into_iter().next()
    else {
        panic!("the detector's first output is not FP32")
    };
    let n = det
        .postprocess
        .run(&data, &shape, &prepared.transform)
        .unwrap()
        .len();
    lap(3);
    n
}

/// Median milliseconds of each stage of [`pipeline`] over `n` runs: decode, letterbox and
/// normalise, infer (one thread), post-process.
fn stages(backend: &mut OrtBackend, det: &Detection, image: &Frame, n: usize) -> Value {
    let mut t: [Vec<f64>; 4] = Default::default();
    for _ in 0..n {
        timed_pipeline(backend, det, image, Some(&mut t));
    }
    let [decode, prepare, infer, post] = t.map(|mut v| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    });
    json!({
        "runs": n,
        "decode_p50_ms": decode,
        "prepare_p50_ms": prepare,
        "infer_p50_ms": infer,
        "postprocess_p50_ms": post,
        "decode_and_prepare_percent": (decode + prepare) / (decode + prepare + infer + post) * 100.0,
    })
}

fn session(model: &Path, intra: usize) -> Session {
    let env = ort_backend::environment(Some(&common::ort_library())).unwrap();
    let opts = SessionOptions {
        intra_threads: intra,
        execution_providers: vec![ExecutionProvider::Cpu],
    };
    ort_backend::load_session(env, model, &opts)
        .unwrap()
        .session
}

/// Bare ONNX Runtime: `session.run` on a prepared input, no copy, outputs dropped.
fn ort_run(session: &mut Session, input: &str, shape: &[i64], data: &[f32]) {
    let t = TensorRef::from_array_view((shape.to_vec(), data)).unwrap();
    let values: Vec<(String, ort::session::SessionInputValue<'_>)> =
        vec![(input.to_owned(), t.into())];
    drop(session.run(values).unwrap());
}

/// Runs `work` on one thread per state until `seconds` pass; completions per second (completions
/// over the time until the last thread finished its last item).
fn saturate<S: Send>(states: &mut [S], seconds: f64, work: impl Fn(&mut S) + Sync) -> f64 {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter_mut()
            .map(|st| {
                let work = &work;
                s.spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        work(st);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// One HTTP detector under test.
struct Target {
    url: String,
    pid: u32,
}

async fn post(http: &Http, t: &Target, image: &Frame) -> (f64, Value) {
    let start = Instant::now();
    let r = http
        .request(Method::POST, &t.url, &image.headers(), image.bytes.clone())
        .await
        .unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    (ms, r.json())
}

/// Closed-loop load: `connections` tasks, each sending the next request when the last answered.
async fn load(
    http: &Http,
    t: &Target,
    image: &Arc<Frame>,
    connections: usize,
    seconds: f64,
) -> Value {
    let ticks: f64 = cmd_output("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0);
    let me = std::process::id();
    let (cpu0, srv0, flt0) = (
        proc_cpu_s(me, ticks),
        tree_cpu_s(t.pid, ticks),
        tree_minflt(t.pid),
    );
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, image, stop) =
                (http.clone(), t.url.clone(), image.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    let r = http
                        .request(Method::POST, &url, &image.headers(), image.bytes.clone())
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    lat.push(s.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.unwrap());
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, srv1, flt1) = (
        proc_cpu_s(me, ticks),
        tree_cpu_s(t.pid, ticks),
        tree_minflt(t.pid),
    );
    json!({
        "rps": lat.len() as f64 / wall,
        "requests": lat.len(),
        "wall_s": wall,
        "latency": summary(lat.clone()),
        "loadgen_cpu_cores": (cpu1 - cpu0) / wall,
        "loadgen_cpu_us_per_request": (cpu1 - cpu0) * 1e6 / lat.len().max(1) as f64,
        "server_cpu_cores": (srv1 - srv0) / wall,
        "server_cpu_us_per_request": (srv1 - srv0) * 1e6 / lat.len().max(1) as f64,
        "server_minor_faults_per_request": (flt1 - flt0) / lat.len().max(1) as f64,
    })
}

/// The Python comparison server (uvicorn + FastAPI), stopped with SIGTERM (uvicorn stops its
/// workers) when dropped.
struct PyServer {
    child: Child,
    target: Target,
    ready_dir: tempfile::TempDir,
}

impl PyServer {
    async fn start(
        python: &Path,
        model: &Path,
        det: &Detection,
        intra: usize,
        workers: usize,
        http: &Http,
    ) -> PyServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (pre, post) = (&det.preprocess, &det.postprocess);
        assert!(
            pre.mean == [0.0; 3] && pre.std == [1.0; 3],
            "the Python server implements scale only (mean 0, std 1)"
        );
        let layout = match post.layout {
            Layout::Yolov8 => "yolov8",
            Layout::Yolov5 => "yolov5",
            Layout::Yolox => "yolox",
        };
        let ready = tempfile::tempdir().unwrap();
        let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let child = Command::new(python)
            .args(["-m", "uvicorn", "detect_server:app", "--app-dir"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", &workers.to_string()])
            .args(["--log-level", "warning", "--no-access-log"])
            .env("DETECT_MODEL", model)
            .env("DETECT_SIZE", format!("{}x{}", pre.width, pre.height))
            .env("DETECT_LAYOUT", layout)
            .env("DETECT_STRIDES", join(&post.strides))
            .env(
                "DETECT_COLOR_ORDER",
                if pre.color_order == ColorOrder::Bgr {
                    "bgr"
                } else {
                    "rgb"
                },
            )
            .env("DETECT_SCALE", pre.scale.to_string())
            .env(
                "DETECT_LETTERBOX",
                if pre.letterbox == Letterbox::TopLeft {
                    "topLeft"
                } else {
                    "center"
                },
            )
            .env("DETECT_PAD_VALUE", pre.pad_value.to_string())
            .env(
                "DETECT_RESIZE_ROUNDING",
                if pre.resize_rounding == ResizeRounding::Floor {
                    "floor"
                } else {
                    "round"
                },
            )
            .env("DETECT_CONFIDENCE", post.confidence.to_string())
            .env("DETECT_IOU", post.iou.to_string())
            .env("DETECT_CLASSES", post.classes.join(","))
            .env("DETECT_INTRA_OP_THREADS", intra.to_string())
            .env("DETECT_READY_DIR", ready.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut s = PyServer {
            target: Target {
                url: format!("http://127.0.0.1:{port}/v1/detect"),
                pid: child.id(),
            },
            child,
            ready_dir: ready,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // every worker has loaded its session (uvicorn --workers starts them one by one)
            let loaded = std::fs::read_dir(s.ready_dir.path()).unwrap().count();
            if loaded >= workers
                && let Ok(r) = http.get(&format!("http://127.0.0.1:{port}/health")).await
                && r.status == 200
            {
                break;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("the Python server exited with {status}");
            }
            assert!(Instant::now() < deadline, "the Python server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sidecar(
    model: &Path,
    flags: &[String],
    intra: usize,
    workers: usize,
    http: &Http,
) -> (Server, Target) {
    let mut args = vec!["--model".to_owned(), model_ref(model)];
    args.extend(flags.iter().cloned());
    args.extend([
        "--intra-op-threads".to_owned(),
        intra.to_string(),
        "--max-concurrency".to_owned(),
        workers.to_string(),
    ]);
    let mut server = Server::start(&args);
    server.wait_ready(http).await;
    let target = Target {
        url: format!("{}/v1/detect", server.api),
        pid: server.pid(),
    };
    (server, target)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn detect_bench() {
    let out: Option<PathBuf> = std::env::var_os("ROBOFLEET_DETECT_BENCH_OUT").map(PathBuf::from);
    let full = out.is_some();
    let camera = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/camera");
    let model: PathBuf = std::env::var_os("ROBOFLEET_DETECT_BENCH_MODEL")
        .map_or_else(|| camera.join("camera_boxes.onnx"), PathBuf::from);
    let image_path: PathBuf = std::env::var_os("ROBOFLEET_DETECT_BENCH_IMAGE")
        .map_or_else(|| camera.join("three_hd.png"), PathBuf::from);
    let flags: Vec<String> = std::env::var("ROBOFLEET_DETECT_BENCH_FLAGS")
        .unwrap_or_else(|_| {
            "--detect-size 128x128 --detect-classes obstacle --detect-confidence 0.5".into()
        })
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let python: Option<PathBuf> = std::env::var_os("ROBOFLEET_DETECT_BENCH_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let rounds: usize = env_or("ROBOFLEET_DETECT_BENCH_ROUNDS", if full { 10 } else { 2 });
    let per_round: usize = env_or(
        "ROBOFLEET_DETECT_BENCH_PER_ROUND",
        if full { 10 } else { 2 },
    );
    let tp_rounds: usize = env_or("ROBOFLEET_DETECT_BENCH_TP_ROUNDS", if full { 2 } else { 1 });
    let seconds: f64 = env_or(
        "ROBOFLEET_DETECT_BENCH_SECONDS",
        if full { 10.0 } else { 0.3 },
    );
    let warm_s: f64 = if full { 2.0 } else { 0.1 };
    let budget: usize = env_or(
        "ROBOFLEET_DETECT_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let connections: usize = env_or("ROBOFLEET_DETECT_BENCH_CONNECTIONS", 2 * budget.max(2));
    // glibc's malloc tuned as the sidecar binary tunes it
    ort_backend::keep_native_allocations();
    let load_before = loadavg();
    let uptime_before = cmd_output("uptime", &[]);

    let file = std::fs::read(&image_path).unwrap();
    let image = Arc::new(
        if std::env::var("ROBOFLEET_DETECT_BENCH_RAW").is_ok_and(|v| v == "1") {
            let img = preprocess::decode_encoded(&file).unwrap();
            Frame {
                raw: Some((img.width(), img.height())),
                bytes: img.into_raw(),
            }
        } else {
            Frame {
                bytes: file,
                raw: None,
            }
        },
    );
    let mut parse_args = vec!["bench".to_owned()];
    parse_args.extend(flags.iter().cloned());
    let configured = Flags::try_parse_from(&parse_args)
        .unwrap()
        .detect
        .detection()
        .unwrap()
        .expect("the flags enable detection (--detect-size)");
    let sig = ort_backend::signature(&session(&model, 1)).unwrap();
    let det = configured.for_model(&sig).unwrap().into_owned();
    let (pw, ph) = (det.preprocess.width, det.preprocess.height);
    let http = Http::new();

    // (a) latency, sequential: in-process pipeline | /v1/detect | Python, 1 thread each
    let mut backend = OrtBackend::new(session(&model, 1));
    let n_bare = pipeline(&mut backend, &det, &image);
    let (server, side) = sidecar(&model, &flags, 1, 1, &http).await;
    let rss_idle = server.rss_bytes();
    let py = match &python {
        Some(p) => Some(PyServer::start(p, &model, &det, 1, 1, &http).await),
        None => None,
    };
    let (_, v) = post(&http, &side, &image).await;
    let n_served = v["detections"].as_array().unwrap().len();
    assert_eq!(
        n_served, n_bare,
        "the server and the in-process pipeline disagree"
    );
    let n_python = match &py {
        Some(p) => Some(
            post(&http, &p.target, &image).await.1["detections"]
                .as_array()
                .unwrap()
                .len(),
        ),
        None => None,
    };
    for _ in 0..3 {
        pipeline(&mut backend, &det, &image);
        post(&http, &side, &image).await;
        if let Some(p) = &py {
            post(&http, &p.target, &image).await;
        }
    }
    let sides = if py.is_some() { 3 } else { 2 };
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut side_faults = 0.0;
    for round in 0..rounds {
        for k in 0..sides {
            let which = (round + k) % sides;
            let faults_before = proc_minflt(side.pid);
            for _ in 0..per_round {
                let ms = match which {
                    0 => {
                        let s = Instant::now();
                        pipeline(&mut backend, &det, &image);
                        s.elapsed().as_secs_f64() * 1000.0
                    }
                    1 => post(&http, &side, &image).await.0,
                    _ => post(&http, &py.as_ref().unwrap().target, &image).await.0,
                };
                lat[which].push(ms);
            }
            if which == 1 {
                side_faults += proc_minflt(side.pid) - faults_before;
            }
        }
    }
    let stage_ms = stages(&mut backend, &det, &image, rounds * per_round);
    eprintln!("in-process stages: {stage_ms:#}");
    let rss_after_latency = server.rss_bytes();
    drop((server, py, backend));
    let [bare_l, side_l, py_l] = <[Vec<f64>; 3]>::try_from(lat).unwrap();
    let (bare_l, side_l, py_l) = (summary(bare_l), summary(side_l), summary(py_l));
    let added = |q: &str| (side_l[q].as_f64().unwrap() / bare_l[q].as_f64().unwrap() - 1.0) * 100.0;
    let latency = json!({
        "rounds": rounds, "per_round": per_round,
        "intra_op_threads": 1, "inference_threads": 1,
        "in_process_pipeline": bare_l,
        "sidecar_detect": side_l,
        "python_detect": py_l,
        "added_p50_percent": added("p50_ms"),
        "added_p99_percent": added("p99_ms"),
        "sidecar_minor_faults_per_request": side_faults / (rounds * per_round) as f64,
        "in_process_stages": stage_ms,
    });
    eprintln!("latency: {latency:#}");

    // (b) + (c) throughput at saturation, every split of the thread budget
    let pre = &det.preprocess;
    let prepared = preprocess::prepare(&image.decode(), pre);
    let in_shape = vec![1, 3, i64::from(ph), i64::from(pw)];
    let splits: Vec<(usize, usize)> = (1..=budget)
        .filter(|w| budget.is_multiple_of(*w))
        .map(|w| (budget / w, w))
        .collect();
    let mut combos = Vec::new();
    let mut rss_load = rss_after_latency;
    for &(intra, workers) in &splits {
        let mut sessions: Vec<Session> = (0..workers).map(|_| session(&model, intra)).collect();
        let mut backends: Vec<OrtBackend> = (0..workers)
            .map(|_| OrtBackend::new(session(&model, intra)))
            .collect();
        let (server, side) = sidecar(&model, &flags, intra, workers, &http).await;
        let py = match &python {
            Some(p) => Some(PyServer::start(p, &model, &det, intra, workers, &http).await),
            None => None,
        };
        let kinds = if py.is_some() { 4 } else { 3 };
        let mut rps: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let mut http_runs: Vec<Vec<Value>> = vec![Vec::new(); 4];
        let mut loads = Vec::new();
        for round in 0..tp_rounds {
            for k in 0..kinds {
                let which = (round + k) % kinds;
                let r = match which {
                    0 => {
                        let work =
                            |s: &mut Session| ort_run(s, &det.input, &in_shape, &prepared.data);
                        tokio::task::block_in_place(|| saturate(&mut sessions, warm_s, work));
                        tokio::task::block_in_place(|| saturate(&mut sessions, seconds, work))
                    }
                    1 => {
                        let work = |b: &mut OrtBackend| {
                            pipeline(b, &det, &image);
                        };
                        tokio::task::block_in_place(|| saturate(&mut backends, warm_s, work));
                        tokio::task::block_in_place(|| saturate(&mut backends, seconds, work))
                    }
                    _ => {
                        let t = if which == 2 {
                            &side
                        } else {
                            &py.as_ref().unwrap().target
                        };
                        load(&http, t, &image, connections, warm_s).await;
                        let v = load(&http, t, &image, connections, seconds).await;
                        if which == 2 {
                            rss_load = rss_load.max(server.rss_bytes());
                        }
                        let r = v["rps"].as_f64().unwrap();
                        http_runs[which].push(v);
                        r
                    }
                };
                eprintln!("{intra}x{workers} round {round} kind {which}: {r:.2}/s");
                let side_name = ["bare_ort", "in_process_pipeline", "sidecar", "python"][which];
                loads.push(json!({"round": round, "side": side_name, "loadavg_after": loadavg()}));
                rps[which].push(r);
            }
        }
        drop((server, py, sessions, backends));
        let [ort_r, pipe_r, side_r, py_r] = <[Vec<f64>; 4]>::try_from(rps).unwrap();
        let [_, _, side_h, py_h] = <[Vec<Value>; 4]>::try_from(http_runs).unwrap();
        combos.push(json!({
            "intra_op_threads": intra,
            "inference_threads": workers,
            "bare_ort_rps": ort_r, "bare_ort_mean_rps": mean(&ort_r),
            "in_process_pipeline_rps": pipe_r, "in_process_pipeline_mean_rps": mean(&pipe_r),
            "sidecar_rps": side_r, "sidecar_mean_rps": mean(&side_r),
            "python_rps": py_r, "python_mean_rps": if py_r.is_empty() { Value::Null } else { json!(mean(&py_r)) },
            "sidecar_runs": side_h,
            "python_runs": py_h,
            "loadavg_per_measurement": loads,
        }));
    }
    let best = |key: &str| {
        combos
            .iter()
            .filter_map(|c| Some((c[key].as_f64()?, c)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(v, c)| json!({"rps": v, "intra_op_threads": c["intra_op_threads"], "inference_threads": c["inference_threads"]}))
            .unwrap_or(Value::Null)
    };
    let (bound, side_best, py_best, pipe_best) = (
        best("bare_ort_mean_rps"),
        best("sidecar_mean_rps"),
        best("python_mean_rps"),
        best("in_process_pipeline_mean_rps"),
    );
    let rps_of = |v: &Value| v["rps"].as_f64();
    let throughput = json!({
        "thread_budget": budget,
        "connections": connections,
        "seconds_per_measurement": seconds,
        "rounds": tp_rounds,
        "combos": combos,
        "bare_ort_bound": bound,
        "in_process_pipeline_best": pipe_best,
        "sidecar_best": side_best,
        "python_best": py_best,
        "sidecar_percent_of_bound": rps_of(&side_best).zip(rps_of(&bound)).map(|(s, b)| s / b * 100.0),
        "sidecar_percent_of_in_process_pipeline": rps_of(&side_best).zip(rps_of(&pipe_best)).map(|(s, b)| s / b * 100.0),
        "python_percent_of_bound": rps_of(&py_best).zip(rps_of(&bound)).map(|(s, b)| s / b * 100.0),
        "sidecar_over_python": rps_of(&side_best).zip(rps_of(&py_best)).map(|(s, p)| s / p),
    });

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cpus_allowed = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let img = image.decode();
    let result = json!({
        "benchmark": "detect",
        "name": std::env::var("ROBOFLEET_DETECT_BENCH_NAME").unwrap_or_else(|_| "smoke".into()),
        "commit": cmd_output("git", &["rev-parse", "HEAD"]),
        "dirty": !cmd_output("git", &["status", "--porcelain", "--", "."]).is_empty(),
        "date": cmd_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "cpu_model": cpu,
        "cpus_allowed": cpus_allowed,
        "cpus_online": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "uptime_before": uptime_before,
        "uptime_after": cmd_output("uptime", &[]),
        "allocator": "glibc malloc with a fixed 64 MiB mmap and 256 MiB trim threshold (ort_backend::keep_native_allocations), in the sidecar binary and in this benchmark's process",
        "command": std::env::var("ROBOFLEET_BENCH_COMMAND").unwrap_or_else(|_| "cargo test -p inference-sidecar --test detect_bench".into()),
        "model": model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "model_sha256": model_ref(&model).rsplit('@').next().unwrap_or_default().to_owned(),
        "image": image_path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "image_bytes": image.bytes.len(),
        "image_encoding": if image.raw.is_some() { "raw rgb8 (x-robofleet-raw)" } else { "encoded" },
        "image_size": [img.width(), img.height()],
        "input_size": [pw, ph],
        "detect_flags": flags.join(" "),
        "detections": {"in_process": n_bare, "sidecar": n_served, "python": n_python},
        "python_server": python.as_ref().map(|_| "bench/detect_server.py: uvicorn --workers N, FastAPI, Pillow, numpy, onnxruntime"),
        "latency": latency,
        "throughput": throughput,
        "server_rss_idle_bytes": rss_idle,
        "server_rss_load_bytes": rss_load,
    });
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();
    }
    assert!(
        result["latency"]["added_p50_percent"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
}
