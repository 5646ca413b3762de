//! Serving overhead benchmark: Open Inference Protocol binary infer through the real server
//! against a bare `session.run` loop with identical session options, on the same model and input,
//! alternating rounds, in one process tree (pin it with `taskset`; children inherit the CPU set).
//!
//! As a plain test it is a smoke run (a few iterations, nothing asserted about speed), so the
//! benchmark cannot rot. `inference-sidecar/bench/run.sh` runs it for real: release build,
//! `ROBOFLEET_BENCH_OUT=<json>` set, more rounds, then generates the results page.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Http, Server, fixture};
use inference_sidecar::ort_backend::{self, ExecutionProvider, SessionOptions};
use inference_sidecar::tensor::DataType;
use ort::value::TensorRef;
use serde_json::json;

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

fn summary(mut v: Vec<f64>) -> serde_json::Value {
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
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_overhead() {
    let out: Option<PathBuf> = std::env::var_os("ROBOFLEET_BENCH_OUT").map(PathBuf::from);
    let full = out.is_some();
    let rounds: usize = env_or("ROBOFLEET_BENCH_ROUNDS", if full { 20 } else { 2 });
    let per_round: usize = env_or("ROBOFLEET_BENCH_PER_ROUND", if full { 25 } else { 3 });
    let threads: usize = env_or("ROBOFLEET_BENCH_THREADS", 1);
    let model: PathBuf = std::env::var_os("ROBOFLEET_BENCH_MODEL")
        .map_or_else(|| fixture("slow.onnx"), PathBuf::from);

    // bare ONNX Runtime, same options as the server's sessions
    let env = ort_backend::environment(Some(&common::ort_library())).unwrap();
    let opts = SessionOptions {
        intra_threads: threads,
        execution_providers: vec![ExecutionProvider::Cpu],
    };
    let mut session = ort_backend::load_session(env, &model, &opts)
        .unwrap()
        .session;
    let sig = ort_backend::signature(&session).unwrap();
    // one FP32 input per model input, dynamic dims = 1, deterministic pseudo-random values
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let inputs: Vec<(String, Vec<i64>, Vec<f32>)> = sig
        .inputs
        .iter()
        .map(|s| {
            assert_eq!(
                s.datatype,
                DataType::Fp32,
                "the benchmark feeds FP32 inputs"
            );
            let shape: Vec<i64> = s.shape.iter().map(|&d| d.max(1)).collect();
            let n = shape.iter().product::<i64>() as usize;
            let data = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 1000) as f32 / 1000.0
                })
                .collect();
            (s.name.clone(), shape, data)
        })
        .collect();
    let mut bare_run = || {
        let values: Vec<(String, ort::session::SessionInputValue<'_>)> = inputs
            .iter()
            .map(|(name, shape, data)| {
                let t = TensorRef::from_array_view((shape.clone(), &data[..])).unwrap();
                (name.clone(), t.into())
            })
            .collect();
        let t = Instant::now();
        let outputs = session.run(values).unwrap();
        let elapsed = t.elapsed();
        drop(outputs);
        elapsed
    };

    // the server, one inference thread with the same options
    let http = Http::new();
    let mut server = Server::with_model(
        &model,
        &[
            "--intra-op-threads",
            &threads.to_string(),
            "--max-concurrency",
            "1",
        ],
    );
    server.wait_ready(&http).await;
    let rss_idle = server.rss_bytes();
    let header = json!({"inputs": inputs.iter().map(|(name, shape, data)| json!({
        "name": name, "shape": shape, "datatype": "FP32",
        "parameters": {"binary_data_size": data.len() * 4}})).collect::<Vec<_>>(),
        "parameters": {"binary_data_output": true}});
    let mut body = header.to_string().into_bytes();
    let header_len = body.len().to_string();
    for (_, _, data) in &inputs {
        body.extend(data.iter().flat_map(|x| x.to_le_bytes()));
    }
    let url = format!("{}/v2/models/model/infer", server.api);
    let server_run = || {
        let (http, url, body, header_len) = (&http, &url, body.clone(), header_len.clone());
        async move {
            let t = Instant::now();
            let r = http
                .request(
                    hyper::Method::POST,
                    url,
                    &[("inference-header-content-length", header_len)],
                    body,
                )
                .await
                .unwrap();
            let elapsed = t.elapsed();
            assert_eq!(r.status, 200, "{:?}", r.body);
            elapsed
        }
    };

    for _ in 0..5 {
        bare_run();
        server_run().await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut bare, mut served) = (Vec::new(), Vec::new());
    let mut rss_load = rss_idle;
    for round in 0..rounds {
        // alternate which side goes first so drift hits both equally
        for side in [round % 2, 1 - round % 2] {
            for _ in 0..per_round {
                if side == 0 {
                    bare.push(ms(bare_run()));
                } else {
                    served.push(ms(server_run().await));
                }
            }
        }
        rss_load = rss_load.max(server.rss_bytes());
    }
    let bare_s = summary(bare);
    let served_s = summary(served);
    let added =
        (served_s["p50_ms"].as_f64().unwrap() / bare_s["p50_ms"].as_f64().unwrap() - 1.0) * 100.0;
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
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let result = json!({
        "benchmark": "serve_overhead",
        "commit": cmd_output("git", &["rev-parse", "HEAD"]),
        "dirty": !cmd_output("git", &["status", "--porcelain", "--", "."]).is_empty(),
        "date": cmd_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "cpu_model": cpu,
        "cpus_allowed": cpus_allowed,
        "cpus_online": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "loadavg_after": loadavg,
        "command": std::env::var("ROBOFLEET_BENCH_COMMAND").unwrap_or_else(|_| "cargo test -p inference-sidecar --test bench".into()),
        "model": model.file_name().map(|n| n.to_string_lossy().into_owned()),
        "model_sha256": common::model_ref(&model).rsplit('@').next().unwrap_or_default().to_owned(),
        "input_shapes": inputs.iter().map(|(_, s, _)| s.clone()).collect::<Vec<_>>(),
        "intra_op_threads": threads,
        "rounds": rounds,
        "per_round": per_round,
        "bare_session_run": bare_s,
        "v2_binary_infer": served_s,
        "added_p50_percent": added,
        "server_rss_idle_bytes": rss_idle,
        "server_rss_load_bytes": rss_load,
    });
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap() + "\n").unwrap();
    }
    assert!(added.is_finite());
}
