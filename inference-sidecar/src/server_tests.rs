//! Handler tests without ONNX Runtime: the real routers over a fake backend, driven in-process.

use std::sync::Mutex;
use std::sync::mpsc;

use axum::http::Request;
use tower::ServiceExt;

use super::*;
use crate::backend::{Backend, BackendError, ModelSignature};
use crate::ort_backend::ExecutionProvider;
use crate::scheduler::SchedulerConfig;
use crate::tensor::DataType;

/// Echoes its input; before each run it reports that it started and waits for a go-ahead.
struct Gated {
    started: mpsc::Sender<()>,
    go: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Backend for Gated {
    fn infer(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let _ = self.started.send(());
        let _ = self.go.lock().map(|rx| rx.recv());
        let mut t = inputs
            .into_iter()
            .next()
            .ok_or(BackendError::Run("no input".into()))?;
        t.name = "y".into();
        Ok(vec![t])
    }
}

fn labels() -> ModelLabels {
    ModelLabels {
        model: "m".into(),
        model_version: "1".into(),
    }
}

struct Harness {
    state: Arc<AppState>,
    started: mpsc::Receiver<()>,
    go: mpsc::Sender<()>,
}

fn harness(loaded: bool, max_queue: usize, admitted: usize, timeout: Duration) -> Harness {
    let metrics = Metrics::new();
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let state = Arc::new(AppState {
        metrics: metrics.clone(),
        serving: OnceLock::new(),
        draining: false.into(),
        configured: labels(),
        max_request_bytes: 1 << 20,
        request_timeout: timeout,
        admission: tokio::sync::Semaphore::new(admitted),
        detection: None,
    });
    if loaded {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 2],
        };
        let scheduler = Scheduler::start(
            vec![Box::new(Gated {
                started: started_tx,
                go: Arc::new(Mutex::new(go_rx)),
            })],
            SchedulerConfig {
                max_queue,
                max_batch: 1,
                max_queue_delay: Duration::ZERO,
                // the gated backend must run on its thread, never on the test's runtime
                inline_max_compute: Duration::ZERO,
            },
            metrics,
        )
        .unwrap();
        let model = ServedModel {
            labels: labels(),
            sha256: "ab".into(),
            signature: ModelSignature {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
            },
            provider: ExecutionProvider::Cpu,
            fallback: false,
            fallback_reason: None,
        };
        let serving = Serving::new(model, scheduler, state.detection.as_ref());
        assert!(state.serving.set(serving).is_ok());
    }
    Harness { state, started, go }
}

fn infer_request() -> Request<Body> {
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    Request::post("/v2/models/m/infer")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn call(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = api_router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn count(text: &str, outcome: &str) -> f64 {
    let series = format!(
        r#"robofleet_inference_requests_total{{model="m",model_version="1",outcome="{outcome}"}} "#
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_full_queue_and_deadline_outcomes() {
    let h = harness(true, 1, 8, Duration::from_millis(200));
    // A succeeds
    let st = h.state.clone();
    let a = tokio::spawn(async move { call(&st, infer_request()).await });
    h.started.recv().unwrap();
    h.go.send(()).unwrap();
    let (status, body) = a.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outputs"][0]["data"], json!([1.0, 2.0]));

    // B holds the inference thread, C fills the queue, D is refused at once
    let st = h.state.clone();
    let b = tokio::spawn(async move { call(&st, infer_request()).await });
    h.started.recv().unwrap();
    let st = h.state.clone();
    let c = tokio::spawn(async move { call(&st, infer_request()).await });
    while h.state.metrics.queue_depth.get() != 1 {
        tokio::task::yield_now().await;
    }
    let (status, body) = call(&h.state, infer_request()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].as_str().unwrap().contains("full"));
    // B and C pass their 200 ms deadline: 504 timeout for both
    assert_eq!(b.await.unwrap().0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(c.await.unwrap().0, StatusCode::GATEWAY_TIMEOUT);
    h.go.send(()).unwrap();

    let text = h.state.metrics.encode().unwrap();
    assert_eq!(count(&text, "success"), 1.0, "{text}");
    assert_eq!(count(&text, "rejected"), 1.0, "{text}");
    assert_eq!(count(&text, "timeout"), 2.0, "{text}");
    assert!(text.contains(
        r#"robofleet_inference_request_duration_seconds_count{model="m",model_version="1"} 3"#
    ));
    // C expired in the queue: the thread drops it without running it
    let s = h.state.serving.get().unwrap();
    s.scheduler.join();
    assert!(h.started.try_recv().is_err(), "the expired request was run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_before_reading_the_body() {
    let h = harness(true, 8, 1, Duration::from_secs(5));
    let st = h.state.clone();
    let a = tokio::spawn(async move { call(&st, infer_request()).await });
    h.started.recv().unwrap();
    // the one admission permit is held by the running request: the next is refused at once
    let (status, body) = call(&h.state, infer_request()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].as_str().unwrap().contains("in flight"));
    h.go.send(()).unwrap();
    assert_eq!(a.await.unwrap().0, StatusCode::OK);
    // the permit is back once the response is out
    h.go.send(()).unwrap();
    assert_eq!(call(&h.state, infer_request()).await.0, StatusCode::OK);
    h.state.serving.get().unwrap().scheduler.join();
}

#[tokio::test]
async fn not_ready_and_draining_are_refused() {
    let h = harness(false, 4, 8, Duration::from_secs(1));
    let (status, _) = call(&h.state, infer_request()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = Request::get("/v2/health/ready")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&h.state, ready).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let live = Request::get("/v2/health/live").body(Body::empty()).unwrap();
    assert_eq!(call(&h.state, live).await.0, StatusCode::OK);

    let h2 = harness(true, 4, 8, Duration::from_secs(1));
    h2.state.draining.store(true, Ordering::SeqCst);
    assert_eq!(
        call(&h2.state, infer_request()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ready = Request::get("/v2/health/ready")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&h2.state, ready).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for h in [&h, &h2] {
        let text = h.state.metrics.encode().unwrap();
        assert_eq!(count(&text, "rejected"), 1.0, "{text}");
    }
    drop(h2.go);
    h2.state.serving.get().unwrap().scheduler.join();
}
