//! HTTP: the Open Inference Protocol v2 routes (inference API, 127.0.0.1 by default) and the
//! admin routes (`/metrics`, health) on their own address. Every infer request ends in exactly one
//! outcome, counted once; errors are JSON `{"error": ...}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::backend::TensorSpec;
use crate::config::Detection;
use crate::detect::preprocess::{self as pre, ImageError, RawEncoding, RawFrame};
use crate::metrics::{Metrics, ModelLabels, Outcome};
use crate::model::ServedModel;
use crate::protocol::{self, HEADER_CONTENT_LENGTH};
use crate::scheduler::{Job, JobError, Scheduler, SubmitError};
use crate::tensor::{Tensor, TensorData};

/// A model in service and its inference threads.
pub struct Serving {
    /// the model
    pub model: ServedModel,
    /// its queue and threads
    pub scheduler: Scheduler,
    /// `/v1/detect` for this model (`--detect-size auto` resolved against its input once, at
    /// load), or why the model cannot take it; `None` when detection is not configured
    pub detection: Option<Result<Detection, String>>,
}

impl Serving {
    /// A loaded model in service, with the configured detection resolved for it.
    pub fn new(model: ServedModel, scheduler: Scheduler, detection: Option<&Detection>) -> Self {
        let detection = detection.map(|d| {
            d.for_model(&model.signature)
                .map(std::borrow::Cow::into_owned)
        });
        Self {
            model,
            scheduler,
            detection,
        }
    }
}

/// Shared state of both routers.
pub struct AppState {
    /// metrics
    pub metrics: Arc<Metrics>,
    /// set once the model is loaded and warm
    pub serving: OnceLock<Serving>,
    /// set on SIGTERM: readiness false, new requests refused
    pub draining: AtomicBool,
    /// labels used before a model is in service
    pub configured: ModelLabels,
    /// body limit
    pub max_request_bytes: usize,
    /// request deadline
    pub request_timeout: Duration,
    /// requests admitted at once (queued, running, or having their body read): bounds memory to
    /// this many times `max_request_bytes`; beyond it, 429 before the body is read
    pub admission: tokio::sync::Semaphore,
    /// `/v1/detect` pre- and post-processing; `None`: the route answers 404
    pub detection: Option<Detection>,
}

impl AppState {
    fn ready(&self) -> bool {
        self.serving.get().is_some() && !self.draining.load(Ordering::SeqCst)
    }
}

/// The inference API router.
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v1/detect", post(detect))
        // the body limit is enforced (and counted) by the infer handler itself
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The admin router: metrics and health.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .with_state(state)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(protocol::error_body(message))).into_response()
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(st): State<Arc<AppState>>) -> StatusCode {
    if st.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    match st.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed"),
    }
}

async fn server_metadata() -> axum::Json<Value> {
    axum::Json(json!({
        "name": "inference-sidecar",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

fn specs(list: &[TensorSpec]) -> Value {
    Value::from(
        list.iter()
            .map(|s| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape}))
            .collect::<Vec<_>>(),
    )
}

/// The served model if `name` (and `version`, if given) match it.
fn lookup<'a>(
    st: &'a AppState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Serving, (StatusCode, String)> {
    let serving = st.serving.get();
    let labels = serving.map_or(&st.configured, |s| &s.model.labels);
    if name != labels.model {
        return Err((StatusCode::NOT_FOUND, format!("unknown model {name:?}")));
    }
    if let Some(v) = version
        && v != labels.model_version
    {
        return Err((
            StatusCode::NOT_FOUND,
            format!("unknown version {v:?} of model {name:?}"),
        ));
    }
    serving.ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        format!("model {name:?} is not ready"),
    ))
}

async fn model_metadata(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    metadata(&st, &name, None)
}

async fn model_metadata_v(
    State(st): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata(&st, &name, Some(&version))
}

fn metadata(st: &AppState, name: &str, version: Option<&str>) -> Response {
    match lookup(st, name, version) {
        Ok(s) => {
            let m = &s.model;
            axum::Json(json!({
                "name": m.labels.model,
                "versions": [m.labels.model_version],
                "platform": "onnxruntime_onnx",
                "inputs": specs(&m.signature.inputs),
                "outputs": specs(&m.signature.outputs),
                "parameters": {
                    "sha256": m.sha256,
                    "execution_provider": m.provider.as_str(),
                    "fallback": m.fallback,
                    "fallback_reason": m.fallback_reason,
                },
            }))
            .into_response()
        }
        Err((status, msg)) => error(status, &msg),
    }
}

async fn model_ready(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> StatusCode {
    ready_of(&st, &name, None)
}

async fn model_ready_v(
    State(st): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> StatusCode {
    ready_of(&st, &name, Some(&version))
}

fn ready_of(st: &AppState, name: &str, version: Option<&str>) -> StatusCode {
    match lookup(st, name, version) {
        Ok(_) if st.ready() => StatusCode::OK,
        Ok(_) => StatusCode::SERVICE_UNAVAILABLE,
        Err((status, _)) => status,
    }
}

/// A failed request: status, outcome and message.
struct Failure(StatusCode, Outcome, String);

impl Failure {
    fn invalid(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self(status, Outcome::invalid, message.to_string())
    }
}

struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn infer(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_counted(st, name, None, headers, body).await
}

async fn infer_v(
    State(st): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_counted(st, name, Some(version), headers, body).await
}

async fn infer_counted(
    st: Arc<AppState>,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let accepted = Instant::now();
    st.metrics.in_flight.inc();
    let _in_flight = InFlight(st.metrics.clone());
    let labels = st.serving.get().map_or(&st.configured, |s| &s.model.labels);
    let result = infer_inner(&st, &name, version.as_deref(), &headers, body, accepted).await;
    finish(&st, labels, accepted, result)
}

/// Counts a finished request (outcome, and duration for those that reached the queue) and
/// renders its answer.
fn finish(
    st: &AppState,
    labels: &ModelLabels,
    accepted: Instant,
    result: Result<Response, Failure>,
) -> Response {
    let outcome = match &result {
        Ok(_) => Outcome::success,
        Err(Failure(_, outcome, _)) => *outcome,
    };
    st.metrics.request(labels, outcome);
    if matches!(
        outcome,
        Outcome::success | Outcome::error | Outcome::timeout
    ) {
        st.metrics
            .request_duration(labels, accepted.elapsed().as_secs_f64());
    }
    match result {
        Ok(resp) => resp,
        Err(Failure(status, outcome, msg)) => {
            if outcome == Outcome::error {
                tracing::warn!(error = %msg, "inference failed");
            } else {
                tracing::debug!(?outcome, error = %msg, "inference request refused");
            }
            error(status, &msg)
        }
    }
}

/// Reads a request body of at most `max_request_bytes`.
async fn read_body(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, Failure> {
    let limit = st.max_request_bytes;
    let too_large = || {
        Failure::invalid(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes reports a length-limit error by its source type
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            Failure::invalid(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        }
    })?;
    Ok(bytes)
}

/// Runs a job on the request's task when the model is short and a session idle
/// ([`Scheduler::try_inline`](crate::scheduler::Scheduler::try_inline)); otherwise queues it on
/// the scheduler and waits for its outputs until the deadline.
async fn run_job(
    serving: &Serving,
    inputs: Vec<Tensor>,
    accepted: Instant,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<Tensor>, Failure> {
    let timed_out = || {
        Failure(
            StatusCode::GATEWAY_TIMEOUT,
            Outcome::timeout,
            format!("no answer within the deadline of {timeout:?}"),
        )
    };
    let job_failed = |e: JobError| match e {
        JobError::Timeout => timed_out(),
        e => Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::error,
            e.to_string(),
        ),
    };
    if let Some(inline) = serving.scheduler.try_inline() {
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        return inline.run(inputs, accepted).map_err(job_failed);
    }
    let (tx, rx) = oneshot::channel();
    serving
        .scheduler
        .submit(Job {
            inputs,
            accepted,
            deadline,
            reply: tx,
        })
        .map_err(|e| match e {
            SubmitError::Full => Failure(
                StatusCode::TOO_MANY_REQUESTS,
                Outcome::rejected,
                e.to_string(),
            ),
            SubmitError::Closed => Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::rejected,
                e.to_string(),
            ),
        })?;
    match tokio::time::timeout_at(deadline.into(), rx).await {
        Err(_) => Err(timed_out()),
        Ok(Err(_)) => Err(Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::error,
            "the inference thread dropped the request".into(),
        )),
        Ok(Ok(result)) => result.map_err(job_failed),
    }
}

async fn infer_inner(
    st: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    accepted: Instant,
) -> Result<Response, Failure> {
    if st.draining.load(Ordering::SeqCst) {
        return Err(Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::rejected,
            "the server is shutting down".into(),
        ));
    }
    let serving = lookup(st, name, version).map_err(|(status, msg)| {
        let outcome = if status == StatusCode::SERVICE_UNAVAILABLE {
            Outcome::rejected
        } else {
            Outcome::invalid
        };
        Failure(status, outcome, msg)
    })?;
    let _admitted = st.admission.try_acquire().map_err(|_| {
        Failure(
            StatusCode::TOO_MANY_REQUESTS,
            Outcome::rejected,
            "too many requests in flight (the inference queue is full)".into(),
        )
    })?;
    let limit = st.max_request_bytes;
    let bytes = read_body(st, headers, body).await?;
    let bytes = match headers.get(header::CONTENT_ENCODING) {
        None => bytes,
        Some(enc) => {
            let enc = enc.to_str().unwrap_or("?").to_owned();
            let decoded =
                tokio::task::spawn_blocking(move || protocol::decompress(&enc, &bytes, limit))
                    .await
                    .map_err(|e| {
                        Failure(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            Outcome::error,
                            e.to_string(),
                        )
                    })?;
            match decoded {
                Ok(b) => bytes::Bytes::from(b),
                Err(e @ protocol::ProtocolError::UnsupportedEncoding(_)) => {
                    return Err(Failure::invalid(StatusCode::UNSUPPORTED_MEDIA_TYPE, e));
                }
                Err(e @ protocol::ProtocolError::TooLarge(_)) => {
                    return Err(Failure::invalid(StatusCode::PAYLOAD_TOO_LARGE, e));
                }
                Err(e) => return Err(Failure::invalid(StatusCode::BAD_REQUEST, e)),
            }
        }
    };
    let header_len = match headers.get(HEADER_CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Failure::invalid(
                StatusCode::BAD_REQUEST,
                "Inference-Header-Content-Length is not text",
            )
        })?),
    };
    let request = protocol::parse_infer_request(&bytes, header_len)
        .map_err(|e| Failure::invalid(StatusCode::BAD_REQUEST, e))?;
    drop(bytes);
    let signature = &serving.model.signature;
    if let Some(outs) = &request.outputs {
        signature
            .check_outputs(outs.iter().map(|o| o.name.as_str()))
            .map_err(|e| Failure::invalid(StatusCode::BAD_REQUEST, e))?;
    }
    let inputs = signature
        .check_inputs(request.inputs)
        .map_err(|e| Failure::invalid(StatusCode::BAD_REQUEST, e))?;
    let timeout = request
        .timeout
        .filter(|t| !t.is_zero())
        .map_or(st.request_timeout, |t| t.min(st.request_timeout));
    let deadline = accepted + timeout;
    let outputs = run_job(serving, inputs, accepted, deadline, timeout).await?;
    let selected: Vec<(Tensor, bool)> = match &request.outputs {
        None => outputs
            .into_iter()
            .map(|t| (t, request.binary_output_default))
            .collect(),
        Some(wanted) => {
            let mut all: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
            let mut sel = Vec::with_capacity(wanted.len());
            for w in wanted {
                if let Some(t) = all
                    .iter_mut()
                    .find(|t| t.as_ref().is_some_and(|t| t.name == w.name))
                    .and_then(Option::take)
                {
                    sel.push((t, w.binary));
                }
            }
            sel
        }
    };
    let labels = &serving.model.labels;
    let encoded = protocol::encode_infer_response(
        &labels.model,
        Some(&labels.model_version),
        request.id.as_deref(),
        &selected,
    )
    .map_err(|e| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::error,
            e.to_string(),
        )
    })?;
    let mut resp = Response::new(Body::from(encoded.body));
    let h = resp.headers_mut();
    match encoded.header_length {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(resp)
}

/// `Content-Type` of raw frames; geometry in the `X-Robofleet-*` headers.
pub const RAW_CONTENT_TYPE: &str = "application/x-robofleet-raw";

fn raw_header<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &str,
) -> Result<Option<T>, ImageError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ImageError::BadFrame(format!("header {name} does not parse")))
        })
        .transpose()
}

/// What a `/v1/detect` body holds: an encoded image, or a raw frame described by headers.
#[derive(Debug, Clone, Copy)]
enum ImageSource {
    /// JPEG or PNG
    Encoded,
    /// a raw frame
    Raw {
        width: u32,
        height: u32,
        step: usize,
        encoding: RawEncoding,
    },
}

/// Reads the content type and, for raw frames, their geometry from the headers.
fn image_source(headers: &HeaderMap) -> Result<ImageSource, ImageError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with(RAW_CONTENT_TYPE));
    if !raw {
        return Ok(ImageSource::Encoded);
    }
    let need = |name: &str| {
        raw_header::<u32>(headers, name)?
            .ok_or_else(|| ImageError::BadFrame(format!("raw frames need the {name} header")))
    };
    let width = need("x-robofleet-width")?;
    let height = need("x-robofleet-height")?;
    let encoding: String = raw_header(headers, "x-robofleet-encoding")?.ok_or_else(|| {
        ImageError::BadFrame("raw frames need the x-robofleet-encoding header".into())
    })?;
    let encoding = RawEncoding::parse(&encoding)?;
    let step = match raw_header::<usize>(headers, "x-robofleet-step")? {
        Some(step) => step,
        None => (width as usize).saturating_mul(encoding.bytes_per_pixel()),
    };
    Ok(ImageSource::Raw {
        width,
        height,
        step,
        encoding,
    })
}

/// Frames of at most this many pixels are decoded and prepared on the request's own task
/// (well under 100 us for a 160x120 PNG); larger ones on the blocking pool, so a big frame never
/// holds an async worker. Two thread hand-offs fewer per small frame.
const INLINE_MAX_PIXELS: u64 = 320 * 240;

/// The frame's pixel count from the raw headers or the encoded image's header, without decoding;
/// `None` when the header does not parse (the full decode then reports why).
fn frame_pixels(source: ImageSource, bytes: &[u8]) -> Option<u64> {
    let (w, h) = match source {
        ImageSource::Raw { width, height, .. } => (width, height),
        ImageSource::Encoded => image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?,
    };
    Some(u64::from(w) * u64::from(h))
}

/// Decodes the body and prepares the model input.
fn prepare_image(
    source: ImageSource,
    bytes: &[u8],
    preprocess: &pre::Preprocess,
) -> Result<pre::Prepared, ImageError> {
    let img = match source {
        ImageSource::Raw {
            width,
            height,
            step,
            encoding,
        } => pre::raw_to_rgb(&RawFrame {
            width,
            height,
            step,
            encoding,
            data: bytes,
        })?,
        ImageSource::Encoded => pre::decode_encoded(bytes)?,
    };
    Ok(pre::prepare(&img, preprocess))
}

async fn detect(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let accepted = Instant::now();
    st.metrics.in_flight.inc();
    let _in_flight = InFlight(st.metrics.clone());
    let labels = st.serving.get().map_or(&st.configured, |s| &s.model.labels);
    let result = detect_inner(&st, &headers, body, accepted).await;
    finish(&st, labels, accepted, result)
}

async fn detect_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    accepted: Instant,
) -> Result<Response, Failure> {
    if st.detection.is_none() {
        return Err(Failure::invalid(
            StatusCode::NOT_FOUND,
            "detection is not configured (serve --detect-size WxH or auto)",
        ));
    }
    if st.draining.load(Ordering::SeqCst) {
        return Err(Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::rejected,
            "the server is shutting down".into(),
        ));
    }
    let serving = st.serving.get().ok_or_else(|| {
        Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::rejected,
            "the model is not ready".into(),
        )
    })?;
    let _admitted = st.admission.try_acquire().map_err(|_| {
        Failure(
            StatusCode::TOO_MANY_REQUESTS,
            Outcome::rejected,
            "too many requests in flight (the inference queue is full)".into(),
        )
    })?;
    let server_error = |m: String| Failure(StatusCode::INTERNAL_SERVER_ERROR, Outcome::error, m);
    let detection = match &serving.detection {
        Some(Ok(d)) => d,
        Some(Err(why)) => return Err(server_error(why.clone())),
        None => {
            return Err(server_error(
                "detection was not resolved for the model".into(),
            ));
        }
    };
    let bytes = read_body(st, headers, body).await?;
    let prepared = match image_source(headers) {
        Err(e) => Err(e),
        Ok(source) if frame_pixels(source, &bytes).is_some_and(|n| n <= INLINE_MAX_PIXELS) => {
            prepare_image(source, &bytes, &detection.preprocess)
        }
        Ok(source) => {
            let preprocess = detection.preprocess.clone();
            tokio::task::spawn_blocking(move || prepare_image(source, &bytes, &preprocess))
                .await
                .map_err(|e| server_error(e.to_string()))?
        }
    };
    let prepared = match prepared {
        Ok(p) => {
            st.metrics.detection_image("ok");
            p
        }
        Err(e) => {
            st.metrics.detection_image(e.outcome());
            let status = match e {
                ImageError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err(Failure::invalid(status, e));
        }
    };
    let pre = &detection.preprocess;
    let tensor = Tensor::new(
        detection.input.clone(),
        vec![1, 3, i64::from(pre.height), i64::from(pre.width)],
        TensorData::Fp32(prepared.data),
    )
    .map_err(|e| server_error(e.to_string()))?;
    let inputs = serving
        .model
        .signature
        .check_inputs(vec![tensor])
        .map_err(|e| server_error(format!("the detection input does not fit the model: {e}")))?;
    let timeout = st.request_timeout;
    let outputs = run_job(serving, inputs, accepted, accepted + timeout, timeout).await?;
    let Some(Tensor {
        shape,
        data: TensorData::Fp32(data),
        ..
    }) = outputs.into_iter().next()
    else {
        return Err(server_error(
            "the detector's first output is not FP32".into(),
        ));
    };
    let detections = detection
        .postprocess
        .run(&data, &shape, &prepared.transform)
        .map_err(|e| server_error(e.to_string()))?;
    let labels = &serving.model.labels;
    Ok(axum::Json(json!({
        "model_name": labels.model,
        "model_version": labels.model_version,
        "width": prepared.transform.orig_width,
        "height": prepared.transform.orig_height,
        "detections": detections,
    }))
    .into_response())
}
#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
