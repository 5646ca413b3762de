//! The real server on 127.0.0.1 with the generated fixture models: protocol conformance (JSON and
//! binary), bad requests, counting, fallback models, and the stock `tritonclient` client.

mod common;

type RawCase = (&'static str, Vec<(&'static str, String)>, Vec<u8>, u16);

use std::time::Duration;

use common::{Http, Server, fixture, metric, model_ref};
use serde_json::{Value, json};

const SUCCESS: &str =
    r#"robofleet_inference_requests_total{model="model",model_version="1",outcome="success"}"#;
const INVALID: &str =
    r#"robofleet_inference_requests_total{model="model",model_version="1",outcome="invalid"}"#;
const DURATION_COUNT: &str =
    r#"robofleet_inference_request_duration_seconds_count{model="model",model_version="1"}"#;

fn good_request() -> Value {
    json!({
        "id": "req-1",
        "inputs": [
            {"name": "INPUT0", "shape": [2, 4], "datatype": "FP32", "data": [[0, 0.5, 1, 1.5], [2, 2.5, 3, 3.5]]},
            {"name": "INPUT1", "shape": [2, 4], "datatype": "INT32", "data": [-3, -2, -1, 0, 1, 2, 3, 4]}
        ]
    })
}

fn binary_body(header: &Value, chunks: &[Vec<u8>]) -> (Vec<u8>, String) {
    let mut body = header.to_string().into_bytes();
    let len = body.len().to_string();
    for c in chunks {
        body.extend_from_slice(c);
    }
    (body, len)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[tokio::test]
async fn json_and_binary_inference_agree() {
    let http = Http::new();
    let mut s = Server::with_model(&fixture("add_mul.onnx"), &[]);
    s.wait_ready(&http).await;
    let url = format!("{}/v2/models/model/infer", s.api);

    let r = http.post_json(&url, &good_request()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["model_name"], "model");
    assert_eq!(v["outputs"][0]["name"], "OUTPUT0");
    assert_eq!(v["outputs"][0]["shape"], json!([2, 4]));
    assert_eq!(
        v["outputs"][0]["data"],
        json!([-3.0, -1.5, 0.0, 1.5, 3.0, 4.5, 6.0, 7.5])
    );
    assert_eq!(v["outputs"][1]["data"], json!([-6, -4, -2, 0, 2, 4, 6, 8]));

    // binary inputs, binary OUTPUT1 and JSON OUTPUT0, through the versioned route
    let a: Vec<f32> = vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5];
    let b: Vec<i32> = vec![-3, -2, -1, 0, 1, 2, 3, 4];
    let header = json!({
        "inputs": [
            {"name": "INPUT1", "shape": [2, 4], "datatype": "INT32", "parameters": {"binary_data_size": 32}},
            {"name": "INPUT0", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}
        ],
        "outputs": [
            {"name": "OUTPUT1", "parameters": {"binary_data": true}},
            {"name": "OUTPUT0"}
        ]
    });
    let (body, len) = binary_body(&header, &[i32_bytes(&b), f32_bytes(&a)]);
    let r = http
        .request(
            hyper::Method::POST,
            &format!("{}/v2/models/model/versions/1/infer", s.api),
            &[("inference-header-content-length", len)],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let n: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(v["outputs"][0]["name"], "OUTPUT1");
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 32);
    assert_eq!(&r.body[n..], &i32_bytes(&[-6, -4, -2, 0, 2, 4, 6, 8])[..]);
    assert_eq!(
        v["outputs"][1]["data"],
        json!([-3.0, -1.5, 0.0, 1.5, 3.0, 4.5, 6.0, 7.5])
    );

    // metadata and readiness
    let m = http
        .get(&format!("{}/v2/models/model", s.api))
        .await
        .unwrap()
        .json();
    assert_eq!(
        m["inputs"][0],
        json!({"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]})
    );
    assert_eq!(m["parameters"]["fallback"], false);
    assert_eq!(
        http.get(&format!("{}/v2/models/model/ready", s.api))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        http.get(&format!("{}/v2/models/other/ready", s.api))
            .await
            .unwrap()
            .status,
        404
    );
    let meta = http.get(&format!("{}/v2", s.api)).await.unwrap().json();
    assert_eq!(meta["name"], "inference-sidecar");

    let text = s.metrics(&http).await;
    assert_eq!(metric(&text, SUCCESS), 2.0, "{text}");
    assert!(text.contains(r#"robofleet_model_info{model="model",model_version="1",sha256="8ed79c1eb2ea0ff09adabc2bf35499aed4ebcecbfcffeebd670c068588de00ed",execution_provider="cpu",fallback="false"} 1"#), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"robofleet_model_loaded{model="model",model_version="1"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn bad_requests_are_4xx_json_errors_counted_invalid() {
    let http = Http::new();
    let mut s = Server::with_model(&fixture("add_mul.onnx"), &["--max-request-bytes", "4096"]);
    s.wait_ready(&http).await;
    let url = format!("{}/v2/models/model/infer", s.api);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut r = good_request();
        f(&mut r);
        r
    };
    let json_cases: Vec<(&str, String, Value, u16)> = vec![
        (
            "wrong shape",
            url.clone(),
            with(&|r| r["inputs"][0]["shape"] = json!([4, 2])),
            400,
        ),
        (
            "wrong rank",
            url.clone(),
            with(&|r| r["inputs"][0]["shape"] = json!([8])),
            400,
        ),
        (
            "wrong dtype",
            url.clone(),
            with(&|r| r["inputs"][1]["datatype"] = json!("INT64")),
            400,
        ),
        (
            "unsupported dtype",
            url.clone(),
            with(&|r| r["inputs"][1]["datatype"] = json!("FP16")),
            400,
        ),
        (
            "unknown dtype",
            url.clone(),
            with(&|r| r["inputs"][1]["datatype"] = json!("FLOAT")),
            400,
        ),
        (
            "unknown input",
            url.clone(),
            with(&|r| r["inputs"][1]["name"] = json!("INPUT9")),
            400,
        ),
        (
            "missing input",
            url.clone(),
            with(&|r| {
                r["inputs"].as_array_mut().unwrap().pop();
            }),
            400,
        ),
        (
            "unknown output",
            url.clone(),
            with(&|r| r["outputs"] = json!([{"name": "NOPE"}])),
            400,
        ),
        (
            "data length mismatch",
            url.clone(),
            with(&|r| r["inputs"][1]["data"] = json!([1, 2, 3])),
            400,
        ),
        (
            "bad element",
            url.clone(),
            with(&|r| r["inputs"][1]["data"][0] = json!("x")),
            400,
        ),
        (
            "unknown model",
            format!("{}/v2/models/nope/infer", s.api),
            good_request(),
            404,
        ),
        (
            "unknown version",
            format!("{}/v2/models/model/versions/9/infer", s.api),
            good_request(),
            404,
        ),
    ];
    let mut bad = 0;
    for (what, u, body, status) in json_cases {
        let r = http.post_json(&u, &body).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert!(r.json()["error"].is_string(), "{what}");
        bad += 1;
    }
    let header = json!({"inputs": [
        {"name": "INPUT0", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
        {"name": "INPUT1", "shape": [2, 4], "datatype": "INT32", "parameters": {"binary_data_size": 32}}]});
    let short = binary_body(&header, &[vec![0; 32], vec![0; 28]]);
    let long = binary_body(&header, &[vec![0; 32], vec![0; 36]]);
    let raw_cases: Vec<RawCase> = vec![
        (
            "binary too short",
            vec![("inference-header-content-length", short.1)],
            short.0,
            400,
        ),
        (
            "binary too long",
            vec![("inference-header-content-length", long.1)],
            long.0,
            400,
        ),
        (
            "header length past the body",
            vec![("inference-header-content-length", "99999".into())],
            b"{}".to_vec(),
            400,
        ),
        ("garbage", vec![], b"\x00\x01garbage\xff".to_vec(), 400),
        ("empty body", vec![], Vec::new(), 400),
        ("over the limit", vec![], vec![b' '; 5000], 413),
        (
            "unsupported encoding",
            vec![("content-encoding", "br".into())],
            b"x".to_vec(),
            415,
        ),
        (
            "corrupt gzip",
            vec![("content-encoding", "gzip".into())],
            b"not gzip".to_vec(),
            400,
        ),
    ];
    for (what, headers, body, status) in raw_cases {
        let r = http
            .request(hyper::Method::POST, &url, &headers, body)
            .await
            .unwrap();
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert!(r.json()["error"].is_string(), "{what}");
        bad += 1;
    }
    // still serving; N good requests add exactly N to the counters
    let before = s.metrics(&http).await;
    assert_eq!(metric(&before, INVALID), f64::from(bad), "{before}");
    assert_eq!(metric(&before, SUCCESS), 0.0);
    let n = 7;
    for _ in 0..n {
        assert_eq!(http.post_json(&url, &good_request()).await.status, 200);
    }
    let after = s.metrics(&http).await;
    assert_eq!(metric(&after, SUCCESS), f64::from(n), "{after}");
    assert_eq!(
        metric(&after, DURATION_COUNT) - metric(&before, DURATION_COUNT),
        f64::from(n)
    );
    assert_eq!(metric(&after, INVALID), f64::from(bad));
    assert_eq!(
        metric(&after, "robofleet_inference_in_flight_requests"),
        0.0
    );
    assert!(
        s.log().lines().all(|l| !l.contains("panicked")),
        "{}",
        s.log()
    );
}

/// Loads `--model` (which fails with `reason`) and a good fallback; the fallback must serve.
#[allow(clippy::unwrap_used)] // test helper
async fn assert_fallback(model_arg: String, reason: &str) {
    let http = Http::new();
    let fallback = model_ref(&fixture("add_mul.onnx"));
    let mut s = Server::start(&[
        "--model".into(),
        model_arg,
        "--fallback-model".into(),
        fallback,
        "--fallback-model-version".into(),
        "stable".into(),
    ]);
    s.wait_ready(&http).await;
    let m = http
        .get(&format!("{}/v2/models/model", s.api))
        .await
        .unwrap()
        .json();
    assert_eq!(m["parameters"]["fallback"], true, "{m}");
    assert!(
        m["parameters"]["fallback_reason"]
            .as_str()
            .unwrap()
            .starts_with(reason),
        "{m}"
    );
    assert_eq!(m["versions"], json!(["stable"]));
    let r = http
        .post_json(&format!("{}/v2/models/model/infer", s.api), &good_request())
        .await;
    assert_eq!(r.status, 200);
    let text = s.metrics(&http).await;
    assert!(
        text.contains(r#"execution_provider="cpu",fallback="true"} 1"#),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(r#"robofleet_model_load_failures_total{{reason="{reason}"}}"#)
        ),
        1.0,
        "{text}"
    );
    assert!(
        s.log().contains("serving the fallback model"),
        "{}",
        s.log()
    );
}

#[tokio::test]
async fn wrong_sha256_serves_the_fallback() {
    let path = fixture("slow.onnx");
    let wrong = format!("file://{}@{}", path.display(), "0".repeat(64));
    assert_fallback(wrong, "verify").await;
}

#[tokio::test]
async fn a_model_that_does_not_load_serves_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.onnx");
    std::fs::write(&bad, b"this is not an ONNX model").unwrap();
    assert_fallback(model_ref(&bad), "load").await;
}

#[tokio::test]
async fn a_model_that_fails_warmup_serves_the_fallback() {
    assert_fallback(model_ref(&fixture("warmup_fail.onnx")), "warmup").await;
}

#[tokio::test]
async fn a_missing_model_without_fallback_exits_non_zero() {
    let mut s = Server::start(&[
        "--model".into(),
        format!("file:///nonexistent/model.onnx@{}", "0".repeat(64)),
    ]);
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "{}", s.log());
    assert!(s.log().contains("no model could be served"), "{}", s.log());
}

#[tokio::test]
async fn batching_is_refused_for_a_fixed_batch_model() {
    let mut s = Server::with_model(&fixture("fixed_batch.onnx"), &["--max-batch-size", "4"]);
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "{}", s.log());
    assert!(s.log().contains("fixed batch"), "{}", s.log());
}

#[tokio::test]
async fn dynamic_batching_serves_concurrent_requests() {
    let http = Http::new();
    let mut s = Server::with_model(
        &fixture("add_mul.onnx"),
        &["--max-batch-size", "8", "--max-queue-delay", "5ms"],
    );
    s.wait_ready(&http).await;
    let url = format!("{}/v2/models/model/infer", s.api);
    let mut tasks = Vec::new();
    for i in 0..16i32 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"inputs": [
                {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [i, i, i, i]},
                {"name": "INPUT1", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]});
            let r = http.post_json(&url, &body).await;
            assert_eq!(r.status, 200);
            let f = f64::from(i);
            assert_eq!(
                r.json()["outputs"][0]["data"],
                json!([f + 1.0, f + 2.0, f + 3.0, f + 4.0])
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = s.metrics(&http).await;
    assert_eq!(metric(&text, SUCCESS), 16.0);
}

#[tokio::test]
async fn stock_tritonclient_json_and_binary() {
    let python = common::python();
    let http = Http::new();
    let mut s = Server::with_model(&fixture("add_mul.onnx"), &[]);
    s.wait_ready(&http).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tritonclient_interop.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(s.api.trim_start_matches("http://"))
        .arg("model")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "tritonclient interop failed:\n{text}\nserver:\n{}",
        s.log()
    );
    assert!(text.contains("tritonclient interop: ok"), "{text}");
}

#[tokio::test]
async fn execution_provider_fallback_is_reported() {
    let http = Http::new();
    let mut s = Server::with_model(
        &fixture("add_mul.onnx"),
        &["--execution-providers", "cuda,cpu"],
    );
    s.wait_ready(&http).await;
    let text = s.metrics(&http).await;
    assert!(
        text.contains(r#"execution_provider="cpu",fallback="false"} 1"#),
        "{text}"
    );
    assert!(
        s.log().contains("execution provider fallback"),
        "{}",
        s.log()
    );
    assert!(s.log().contains("requested=\"cuda\""), "{}", s.log());
}

#[tokio::test]
async fn a_missing_onnx_runtime_library_says_what_to_do() {
    let mut s = Server::with_model(
        &fixture("add_mul.onnx"),
        &["--ort-library", "/nonexistent/libonnxruntime.so.1.32.0"],
    );
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("ORT_DYLIB_PATH") && log.contains("make venv"),
        "{log}"
    );
}

#[tokio::test]
async fn fixtures_match_their_generator() {
    let dir = tempfile::tempdir().unwrap();
    let script = fixture("make_models.py");
    let out = tokio::process::Command::new(common::python())
        .arg(&script)
        .arg("--out")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let generated = entry.unwrap().path();
        let name = generated
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let committed = std::fs::read(fixture(&name)).unwrap_or_default();
        assert!(
            std::fs::read(&generated).unwrap() == committed,
            "tests/fixtures/models/{name} differs from make_models.py's output: regenerate and commit it"
        );
        n += 1;
    }
    // Every committed model comes from the generator (none left behind).
    let committed = std::fs::read_dir(fixture(""))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "onnx"))
        })
        .count();
    assert_eq!(n, committed);
}

#[tokio::test]
async fn a_warmup_shape_lets_a_model_that_rejects_batch_one_warm_up() {
    let http = Http::new();
    let mut s = Server::with_model(
        &fixture("warmup_fail.onnx"),
        &["--warmup-shape", "INPUT0=3x4"],
    );
    s.wait_ready(&http).await;
    let body = json!({"inputs": [{"name": "INPUT0", "shape": [3, 4], "datatype": "FP32", "data": vec![1.0f32; 12]}]});
    let r = http
        .post_json(&format!("{}/v2/models/model/infer", s.api), &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["outputs"][0]["shape"], json!([3, 4]));
    let text = s.metrics(&http).await;
    assert!(text.contains(r#"fallback="false"} 1"#), "{text}");
}

#[tokio::test]
async fn sigterm_while_the_model_downloads_exits_zero() {
    // a model server that accepts the connection and never answers
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stalled.local_addr().unwrap();
    let http = Http::new();
    let mut s = Server::start(&[
        "--model".into(),
        format!("http://{addr}/m.onnx@{}", "0".repeat(64)),
    ]);
    let live = http
        .get(&format!("{}/v2/health/live", s.admin))
        .await
        .unwrap();
    assert_eq!(live.status, 200);
    let ready = http
        .get(&format!("{}/v2/health/ready", s.admin))
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    let r = http
        .post_json(&format!("{}/v2/models/model/infer", s.api), &good_request())
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    s.terminate();
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", s.log());
    drop(stalled);
}
