//! Command line and environment configuration of `inference-sidecar serve`, validated into one
//! [`ServeConfig`].

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::backend::ModelSignature;
use crate::detect::postprocess::{Layout, Postprocess};
use crate::detect::preprocess::{ColorOrder, Letterbox, Preprocess, ResizeRounding};
use crate::ort_backend::ExecutionProvider;
use crate::store::{ModelRef, StoreError};

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A model reference is malformed.
    #[error(transparent)]
    Model(#[from] StoreError),
    /// A duration does not parse.
    #[error("--{flag}: {message}")]
    Duration {
        /// the flag
        flag: &'static str,
        /// what is wrong
        message: String,
    },
    /// A model name that is not a safe URL path segment and directory name.
    #[error("--model-name {0:?} must be 1-253 characters of A-Z a-z 0-9 . _ - (not . or ..)")]
    ModelName(String),
    /// A `--warmup-shape` that is not INPUT=DIMS.
    #[error("--warmup-shape {0:?} is not INPUT=DIMS (e.g. images=1x3x640x640)")]
    WarmupShape(String),
    /// A value out of range.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    /// Batching asked for a model that has a fixed batch dimension.
    #[error(
        "--max-batch-size {0} needs a model whose first dimension is dynamic on every input and output"
    )]
    BatchingRefused(usize),
    /// A `--detect-*` flag out of range.
    #[error("{0}")]
    Detection(String),
}

impl ConfigError {
    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Model(_) => "model",
            Self::Duration { .. } => "duration",
            Self::Zero(_) => "range",
            Self::WarmupShape(_) => "warmup_shape",
            Self::ModelName(_) => "model_name",
            Self::BatchingRefused(_) => "batching",
            Self::Detection(_) => "detection",
        }
    }
}

/// `inference-sidecar serve`: serve one ONNX model over the Open Inference Protocol v2.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The model to serve, as URI@sha256 (file://, http:// or https://).
    #[arg(long, env = "ROBOFLEET_MODEL")]
    pub model: String,
    /// The model served when --model fails to fetch, verify, load or warm up (URI@sha256).
    #[arg(long, env = "ROBOFLEET_FALLBACK_MODEL")]
    pub fallback_model: Option<String>,
    /// Name under which the model is served (/v2/models/NAME) and labelled in metrics.
    #[arg(long, env = "ROBOFLEET_MODEL_NAME", default_value = "model")]
    pub model_name: String,
    /// Free version label of --model (metrics label `model_version`).
    #[arg(long, env = "ROBOFLEET_MODEL_VERSION", default_value = "1")]
    pub model_version: String,
    /// Version label of --fallback-model.
    #[arg(
        long,
        env = "ROBOFLEET_FALLBACK_MODEL_VERSION",
        default_value = "fallback"
    )]
    pub fallback_model_version: String,
    /// Address of the inference API (127.0.0.1 by default: robot pods share the host network).
    #[arg(long, env = "ROBOFLEET_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Address of /metrics and the health endpoints.
    #[arg(long, env = "ROBOFLEET_ADMIN_LISTEN", default_value = "0.0.0.0:8002")]
    pub admin_listen: SocketAddr,
    /// Path of libonnxruntime.so.* (from the PyPI onnxruntime wheel).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Execution providers in order of preference (tensorrt, cuda, cpu); each is tried with
    /// error-on-failure and a fallback is reported.
    #[arg(
        long,
        env = "ROBOFLEET_EXECUTION_PROVIDERS",
        value_delimiter = ',',
        default_value = "cpu"
    )]
    pub execution_providers: Vec<ExecutionProvider>,
    /// Intra-op threads per inference thread; 0 = the CPUs available (the pod's CPU limit) divided
    /// by --max-concurrency.
    #[arg(long, env = "ROBOFLEET_INTRA_OP_THREADS", default_value_t = 0)]
    pub intra_op_threads: usize,
    /// Inference threads, each with its own session (maxConcurrency).
    #[arg(long, env = "ROBOFLEET_MAX_CONCURRENCY", default_value_t = 1)]
    pub max_concurrency: usize,
    /// Requests that may wait for an inference thread; more are refused with 429 (maxQueue).
    #[arg(long, env = "ROBOFLEET_MAX_QUEUE", default_value_t = 64)]
    pub max_queue: usize,
    /// Requests merged into one model run (1 = no batching; needs a dynamic batch dimension).
    #[arg(long, env = "ROBOFLEET_MAX_BATCH_SIZE", default_value_t = 1)]
    pub max_batch_size: usize,
    /// How long an inference thread waits to fill a batch, e.g. 2ms.
    #[arg(long, env = "ROBOFLEET_MAX_QUEUE_DELAY", default_value = "0s")]
    pub max_queue_delay: String,
    /// Deadline of a request from acceptance (a client's smaller `timeout` parameter wins), e.g. 5s.
    #[arg(long, env = "ROBOFLEET_REQUEST_TIMEOUT", default_value = "5s")]
    pub request_timeout: String,
    /// Largest request body accepted, in bytes (maxRequestBytes).
    #[arg(long, env = "ROBOFLEET_MAX_REQUEST_BYTES", default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Warm-up runs per inference thread before the server reports ready.
    #[arg(long, env = "ROBOFLEET_WARMUP_RUNS", default_value_t = 1)]
    pub warmup_runs: usize,
    /// Warm-up shape of an input, INPUT=DIMS (e.g. images=1x3x640x640); repeat or separate with
    /// ';'. Inputs not named warm up with every dynamic dimension set to 1, which detectors with
    /// dynamic height and width may not accept.
    #[arg(
        long = "warmup-shape",
        env = "ROBOFLEET_WARMUP_SHAPES",
        value_delimiter = ';'
    )]
    pub warmup_shapes: Vec<String>,
    /// Node-local model cache directory (modelCache.hostPath); models live in a subdirectory per
    /// --model-name, so services sharing a robot never evict each other's models.
    #[arg(
        long,
        env = "ROBOFLEET_MODEL_CACHE",
        default_value = "/var/cache/robofleet/models"
    )]
    pub model_cache: PathBuf,
    /// Largest total size of the model cache, in bytes (modelCache.maxBytes).
    #[arg(long, env = "ROBOFLEET_MODEL_CACHE_MAX_BYTES", default_value_t = 4 << 30)]
    pub model_cache_max_bytes: u64,
    /// Models kept in the cache (modelCache.keep).
    #[arg(long, env = "ROBOFLEET_MODEL_CACHE_KEEP", default_value_t = 2)]
    pub model_cache_keep: usize,
    /// Time limit of one model download, e.g. 10m.
    #[arg(long, env = "ROBOFLEET_DOWNLOAD_TIMEOUT", default_value = "10m")]
    pub download_timeout: String,
    /// Tries of an HTTP(S) model download (1 s, 2 s, … apart, within --download-timeout).
    #[arg(long, env = "ROBOFLEET_DOWNLOAD_ATTEMPTS", default_value_t = 3)]
    pub download_attempts: u32,
    /// How long SIGTERM waits for in-flight requests before exiting anyway, e.g. 25s.
    #[arg(long, env = "ROBOFLEET_DRAIN_TIMEOUT", default_value = "25s")]
    pub drain_timeout: String,
    /// Write the bound addresses as JSON to this file once listening (for tests and tooling).
    #[arg(long, env = "ROBOFLEET_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,
    /// `/v1/detect` pre- and post-processing.
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// model to serve
    pub model: ModelRef,
    /// model to fall back to
    pub fallback_model: Option<ModelRef>,
    /// served name
    pub model_name: String,
    /// version label of `model`
    pub model_version: String,
    /// version label of `fallback_model`
    pub fallback_model_version: String,
    /// inference API address
    pub listen: SocketAddr,
    /// metrics and health address
    pub admin_listen: SocketAddr,
    /// libonnxruntime path
    pub ort_library: Option<PathBuf>,
    /// execution providers in order
    pub execution_providers: Vec<ExecutionProvider>,
    /// intra-op threads per session (resolved, at least 1)
    pub intra_op_threads: usize,
    /// inference threads
    pub max_concurrency: usize,
    /// queue bound
    pub max_queue: usize,
    /// batch bound
    pub max_batch_size: usize,
    /// batch fill wait
    pub max_queue_delay: Duration,
    /// request deadline
    pub request_timeout: Duration,
    /// body limit
    pub max_request_bytes: usize,
    /// warm-up runs per thread
    pub warmup_runs: usize,
    /// warm-up shapes by input name
    pub warmup_shapes: Vec<(String, Vec<i64>)>,
    /// cache directory
    pub model_cache: PathBuf,
    /// cache size bound
    pub model_cache_max_bytes: u64,
    /// cache entries kept
    pub model_cache_keep: usize,
    /// download limit
    pub download_timeout: Duration,
    /// download tries
    pub download_attempts: u32,
    /// drain limit
    pub drain_timeout: Duration,
    /// address file
    pub address_file: Option<PathBuf>,
    /// `/v1/detect` pre- and post-processing, when enabled
    pub detection: Option<Detection>,
}

/// Parses a Go-style duration (`300ms`, `1.5s`, `2m`, `1h30m`, `0s`); the same syntax the CRDs use.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?}: missing unit (ns, us, ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: bad number {num:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses `INPUT=1x3x640x640`.
fn parse_shape(s: &str) -> Result<(String, Vec<i64>), ConfigError> {
    let bad = || ConfigError::WarmupShape(s.chars().take(100).collect());
    let (name, dims) = s.trim().rsplit_once('=').ok_or_else(bad)?;
    let dims = dims
        .split(['x', ','])
        .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d >= 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    if name.is_empty() || dims.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), dims))
}

fn duration(flag: &'static str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).map_err(|message| ConfigError::Duration { flag, message })
}

/// Declared detection pre- and post-processing flags (`serve` and `batch`).
#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// Enables `POST /v1/detect`: the model input size, WxH (e.g. 640x640), or `auto` to take it
    /// from the model's input (a fixed `[N, 3, H, W]`, read when each model loads). WxH also adds
    /// the warm-up shape `--detect-input=1x3xHxW` unless one is given for that input.
    #[arg(long, env = "ROBOFLEET_DETECT_SIZE")]
    pub detect_size: Option<String>,
    /// The detector's image input.
    #[arg(long, env = "ROBOFLEET_DETECT_INPUT", default_value = "images")]
    pub detect_input: String,
    /// Channel order the detector expects: rgb or bgr.
    #[arg(long, env = "ROBOFLEET_DETECT_COLOR_ORDER", default_value = "rgb")]
    pub detect_color_order: String,
    /// Multiplier applied to 0-255 pixel values.
    #[arg(long, env = "ROBOFLEET_DETECT_SCALE", default_value_t = 1.0 / 255.0)]
    pub detect_scale: f32,
    /// Per-channel mean (model channel order), subtracted after scaling.
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_MEAN",
        value_delimiter = ',',
        default_value = "0,0,0"
    )]
    pub detect_mean: Vec<f32>,
    /// Per-channel std (model channel order).
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_STD",
        value_delimiter = ',',
        default_value = "1,1,1"
    )]
    pub detect_std: Vec<f32>,
    /// Letterbox placement: center or topLeft.
    #[arg(long, env = "ROBOFLEET_DETECT_LETTERBOX", default_value = "center")]
    pub detect_letterbox: String,
    /// Letterbox padding pixel value (0-255).
    #[arg(long, env = "ROBOFLEET_DETECT_PAD_VALUE", default_value_t = 114)]
    pub detect_pad_value: u8,
    /// How the letterboxed size (side x scale) is rounded to whole pixels: round (ultralytics
    /// YOLOv5/YOLOv8) or floor (the YOLOX reference code, ddddocr).
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_RESIZE_ROUNDING",
        default_value = "round"
    )]
    pub detect_resize_rounding: String,
    /// Output layout: yolov8, yolov5 or yolox.
    #[arg(long, env = "ROBOFLEET_DETECT_LAYOUT", default_value = "yolov8")]
    pub detect_layout: String,
    /// Class names by class id.
    #[arg(long, env = "ROBOFLEET_DETECT_CLASSES", value_delimiter = ',')]
    pub detect_classes: Vec<String>,
    /// Minimum score of a detection.
    #[arg(long, env = "ROBOFLEET_DETECT_CONFIDENCE", default_value_t = 0.25)]
    pub detect_confidence: f32,
    /// YOLOX strides (its output grids, finest first).
    #[arg(
        long,
        env = "ROBOFLEET_DETECT_STRIDES",
        value_delimiter = ',',
        default_value = "8,16,32"
    )]
    pub detect_strides: Vec<u32>,
    /// IoU above which NMS drops a box of the same class.
    #[arg(long, env = "ROBOFLEET_DETECT_IOU", default_value_t = 0.45)]
    pub detect_iou: f32,
}

/// The `/v1/detect` configuration (what `spec.model.preprocess/postprocess` render).
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// the model input the image tensor goes to
    pub input: String,
    /// pre-processing
    pub preprocess: Preprocess,
    /// post-processing
    pub postprocess: Postprocess,
}

impl Detection {
    /// This configuration for a loaded model: with `--detect-size auto`, the input size read from
    /// the model's declared input (`[N, 3, H, W]` with fixed H and W); otherwise itself.
    pub fn for_model(&self, signature: &ModelSignature) -> Result<Cow<'_, Self>, String> {
        if !self.preprocess.size_from_model() {
            return Ok(Cow::Borrowed(self));
        }
        let spec = signature
            .inputs
            .iter()
            .find(|i| i.name == self.input)
            .ok_or_else(|| {
                format!(
                    "the model has no input {:?} (--detect-input); its inputs: {}",
                    self.input,
                    signature
                        .inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let dim = |i: usize| {
            spec.shape
                .get(i)
                .and_then(|d| u32::try_from(*d).ok())
                .filter(|d| (1..=8192).contains(d))
        };
        match (spec.shape.len(), dim(1), dim(2), dim(3)) {
            (4, Some(3) | None, Some(h), Some(w)) => {
                let mut d = self.clone();
                d.preprocess.width = w;
                d.preprocess.height = h;
                Ok(Cow::Owned(d))
            }
            _ => Err(format!(
                "--detect-size auto needs a fixed [N, 3, H, W] input; {:?} is {:?} (set --detect-size WxH)",
                self.input, spec.shape
            )),
        }
    }
}

fn detect_err(message: impl Into<String>) -> ConfigError {
    ConfigError::Detection(message.into())
}

fn three(flag: &str, v: &[f32]) -> Result<[f32; 3], ConfigError> {
    <[f32; 3]>::try_from(v)
        .map_err(|_| detect_err(format!("--{flag} needs 3 comma-separated values")))
}

impl DetectArgs {
    /// The validated configuration; `None` without `--detect-size`.
    pub fn detection(&self) -> Result<Option<Detection>, ConfigError> {
        let Some(size) = &self.detect_size else {
            return Ok(None);
        };
        let (w, h) = if size.trim().eq_ignore_ascii_case("auto") {
            (0, 0)
        } else {
            size.split_once('x')
                .and_then(|(w, h)| {
                    Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?))
                })
                .filter(|&(w, h)| (1..=8192).contains(&w) && (1..=8192).contains(&h))
                .ok_or_else(|| {
                    detect_err(format!(
                        "--detect-size {size:?} is not WxH (1-8192) or auto"
                    ))
                })?
        };
        let color_order = match self.detect_color_order.to_ascii_lowercase().as_str() {
            "rgb" => ColorOrder::Rgb,
            "bgr" => ColorOrder::Bgr,
            o => {
                return Err(detect_err(format!(
                    "--detect-color-order {o:?}: rgb or bgr"
                )));
            }
        };
        let letterbox = match self.detect_letterbox.to_ascii_lowercase().as_str() {
            "center" => Letterbox::Center,
            "topleft" | "top-left" => Letterbox::TopLeft,
            o => {
                return Err(detect_err(format!(
                    "--detect-letterbox {o:?}: center or topLeft"
                )));
            }
        };
        let resize_rounding = match self.detect_resize_rounding.to_ascii_lowercase().as_str() {
            "round" => ResizeRounding::Round,
            "floor" => ResizeRounding::Floor,
            o => {
                return Err(detect_err(format!(
                    "--detect-resize-rounding {o:?}: round or floor"
                )));
            }
        };
        let layout = match self.detect_layout.to_ascii_lowercase().as_str() {
            "yolov8" => Layout::Yolov8,
            "yolov5" => Layout::Yolov5,
            "yolox" => Layout::Yolox,
            o => {
                return Err(detect_err(format!(
                    "--detect-layout {o:?}: yolov8, yolov5 or yolox"
                )));
            }
        };
        if self.detect_strides.is_empty() || self.detect_strides.contains(&0) {
            return Err(detect_err("--detect-strides must be positive"));
        }
        let std = three("detect-std", &self.detect_std)?;
        if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(detect_err(
                "--detect-std values must be finite and non-zero",
            ));
        }
        for (flag, v) in [
            ("detect-confidence", self.detect_confidence),
            ("detect-iou", self.detect_iou),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(detect_err(format!("--{flag} must be within 0-1")));
            }
        }
        Ok(Some(Detection {
            input: self.detect_input.clone(),
            preprocess: Preprocess {
                width: w,
                height: h,
                color_order,
                scale: self.detect_scale,
                mean: three("detect-mean", &self.detect_mean)?,
                std,
                letterbox,
                pad_value: self.detect_pad_value,
                resize_rounding,
            },
            postprocess: Postprocess {
                layout,
                classes: self
                    .detect_classes
                    .iter()
                    .map(|c| c.trim().to_owned())
                    .collect(),
                confidence: self.detect_confidence,
                iou: self.detect_iou,
                strides: self.detect_strides.clone(),
            },
        }))
    }
}

impl ServeArgs {
    /// Validates the arguments; `cpus` is the number of CPUs available to the process.
    pub fn validate(self, cpus: usize) -> Result<ServeConfig, ConfigError> {
        for (flag, v) in [
            ("max-concurrency", self.max_concurrency),
            ("max-queue", self.max_queue),
            ("max-batch-size", self.max_batch_size),
            ("max-request-bytes", self.max_request_bytes),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if self.execution_providers.is_empty() {
            return Err(ConfigError::Zero("execution-providers"));
        }
        let name_ok = !self.model_name.is_empty()
            && self.model_name.len() <= 253
            && self.model_name != "."
            && self.model_name != ".."
            && self
                .model_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(ConfigError::ModelName(
                self.model_name.chars().take(100).collect(),
            ));
        }
        let intra_op_threads = if self.intra_op_threads == 0 {
            (cpus / self.max_concurrency).max(1)
        } else {
            self.intra_op_threads
        };
        let detection = self.detect.detection()?;
        let mut warmup_shapes: Vec<(String, Vec<i64>)> = self
            .warmup_shapes
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_shape(s))
            .collect::<Result<_, _>>()?;
        if let Some(d) = &detection
            && !d.preprocess.size_from_model()
            && !warmup_shapes.iter().any(|(n, _)| *n == d.input)
        {
            warmup_shapes.push(parse_shape(&d.preprocess.warmup_shape(&d.input))?);
        }
        Ok(ServeConfig {
            model: self.model.parse()?,
            fallback_model: self.fallback_model.as_deref().map(str::parse).transpose()?,
            model_name: self.model_name,
            model_version: self.model_version,
            fallback_model_version: self.fallback_model_version,
            listen: self.listen,
            admin_listen: self.admin_listen,
            ort_library: self.ort_library,
            execution_providers: self.execution_providers,
            intra_op_threads,
            max_concurrency: self.max_concurrency,
            max_queue: self.max_queue,
            max_batch_size: self.max_batch_size,
            max_queue_delay: duration("max-queue-delay", &self.max_queue_delay)?,
            request_timeout: duration("request-timeout", &self.request_timeout)?,
            max_request_bytes: self.max_request_bytes,
            warmup_runs: self.warmup_runs,
            warmup_shapes,
            model_cache: self.model_cache,
            model_cache_max_bytes: self.model_cache_max_bytes,
            model_cache_keep: self.model_cache_keep,
            download_timeout: duration("download-timeout", &self.download_timeout)?,
            download_attempts: self.download_attempts.max(1),
            drain_timeout: duration("drain-timeout", &self.drain_timeout)?,
            address_file: self.address_file,
            detection,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    const D: &str = "8ed79c1eb2ea0ff09adabc2bf35499aed4ebcecbfcffeebd670c068588de00ed";

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn warmup_shapes() {
        let cli = Cli::try_parse_from([
            "x",
            "--model",
            &format!("file:///m.onnx@{D}"),
            "--warmup-shape",
            "images=1x3x640x640;mask=1,1",
        ])
        .unwrap();
        let c = cli.serve.validate(1).unwrap();
        assert_eq!(
            c.warmup_shapes,
            vec![
                ("images".to_owned(), vec![1, 3, 640, 640]),
                ("mask".to_owned(), vec![1, 1])
            ]
        );
        for bad in ["images", "images=", "=1x2", "images=1x-3", "images=axb"] {
            assert_eq!(
                parse_shape(bad).unwrap_err().kind(),
                "warmup_shape",
                "{bad}"
            );
        }
    }

    #[test]
    fn detection_flags() {
        let parse = |extra: &[&str]| {
            let model = format!("file:///m.onnx@{D}");
            let mut args = vec!["x", "--model", &model];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().serve.validate(1)
        };
        let c = parse(&[]).unwrap();
        assert_eq!(c.detection, None);
        assert!(c.warmup_shapes.is_empty());
        let c = parse(&[
            "--detect-size",
            "640x480",
            "--detect-color-order",
            "BGR",
            "--detect-letterbox",
            "topLeft",
            "--detect-mean",
            "0.5,0.5,0.5",
            "--detect-classes",
            "person, car",
            "--detect-layout",
            "yolov5",
            "--detect-resize-rounding",
            "floor",
        ])
        .unwrap();
        let d = c.detection.unwrap();
        assert_eq!(d.preprocess.resize_rounding, ResizeRounding::Floor);
        assert_eq!((d.preprocess.width, d.preprocess.height), (640, 480));
        assert_eq!(d.preprocess.color_order, ColorOrder::Bgr);
        assert_eq!(d.preprocess.letterbox, Letterbox::TopLeft);
        assert_eq!(d.preprocess.mean, [0.5; 3]);
        assert_eq!(d.postprocess.layout, Layout::Yolov5);
        assert_eq!(d.postprocess.classes, ["person", "car"]);
        assert_eq!(
            c.warmup_shapes,
            vec![("images".to_owned(), vec![1, 3, 480, 640])]
        );
        // an explicit warm-up shape for the input wins
        let c = parse(&[
            "--detect-size",
            "64x64",
            "--warmup-shape",
            "images=1x3x32x32",
        ])
        .unwrap();
        assert_eq!(
            c.warmup_shapes,
            vec![("images".to_owned(), vec![1, 3, 32, 32])]
        );
        for bad in [
            &["--detect-size", "640"][..],
            &["--detect-size", "0x10"],
            &["--detect-size", "8x8", "--detect-color-order", "rgba"],
            &["--detect-size", "8x8", "--detect-letterbox", "stretch"],
            &["--detect-size", "8x8", "--detect-layout", "ssd"],
            &["--detect-size", "8x8", "--detect-resize-rounding", "ceil"],
            &["--detect-size", "8x8", "--detect-std", "1,0,1"],
            &["--detect-size", "8x8", "--detect-mean", "1,2"],
            &["--detect-size", "8x8", "--detect-iou", "1.5"],
        ] {
            assert_eq!(parse(bad).unwrap_err().kind(), "detection", "{bad:?}");
        }
    }

    #[test]
    fn detect_size_auto_reads_the_model_input() {
        use crate::backend::TensorSpec;
        use crate::tensor::DataType;
        let model = format!("file:///m.onnx@{D}");
        let c = Cli::try_parse_from([
            "x",
            "--model",
            &model,
            "--detect-size",
            "AUTO",
            "--detect-layout",
            "yolox",
        ])
        .unwrap()
        .serve
        .validate(1)
        .unwrap();
        assert!(c.warmup_shapes.is_empty(), "the model's own shape warms up");
        let d = c.detection.unwrap();
        assert_eq!(d.postprocess.layout, Layout::Yolox);
        let sig = |name: &str, shape: Vec<i64>| ModelSignature {
            inputs: vec![TensorSpec {
                name: name.into(),
                datatype: DataType::Fp32,
                shape,
            }],
            outputs: vec![],
        };
        let r = d.for_model(&sig("images", vec![1, 3, 128, 160])).unwrap();
        assert_eq!((r.preprocess.width, r.preprocess.height), (160, 128));
        assert_eq!(r.postprocess, d.postprocess);
        let dynamic = d
            .for_model(&sig("images", vec![-1, 3, -1, -1]))
            .unwrap_err();
        assert!(dynamic.contains("--detect-size WxH"), "{dynamic}");
        let other = d.for_model(&sig("x", vec![1, 3, 8, 8])).unwrap_err();
        assert!(other.contains("no input \"images\""), "{other}");
        assert!(d.for_model(&sig("images", vec![1, 8, 8])).is_err());
        // an explicit size is kept whatever the model says
        let mut fixed = d.clone();
        fixed.preprocess.width = 64;
        fixed.preprocess.height = 48;
        assert!(matches!(
            fixed.for_model(&sig("images", vec![1, 3, 8, 8])).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn defaults_and_validation() {
        let cli = Cli::try_parse_from(["x", "--model", &format!("file:///m.onnx@{D}")]).unwrap();
        let c = cli.serve.validate(4).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.max_request_bytes, 64 << 20);
        assert_eq!(c.intra_op_threads, 4);
        assert_eq!(c.execution_providers, vec![ExecutionProvider::Cpu]);
        assert_eq!(c.request_timeout, Duration::from_secs(5));

        let cli = Cli::try_parse_from([
            "x",
            "--model",
            &format!("file:///m.onnx@{D}"),
            "--execution-providers",
            "cuda,cpu",
            "--max-concurrency",
            "3",
        ])
        .unwrap();
        let c = cli.serve.validate(4).unwrap();
        assert_eq!(
            c.execution_providers,
            vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu]
        );
        assert_eq!(c.intra_op_threads, 1);

        let cli = Cli::try_parse_from(["x", "--model", "file:///m.onnx"]).unwrap();
        assert_eq!(cli.serve.validate(1).unwrap_err().kind(), "model");
        for bad in ["..", "a/b", "", "x y"] {
            let model = format!("file:///m.onnx@{D}");
            let cli = Cli::try_parse_from(["x", "--model", &model, "--model-name", bad]).unwrap();
            assert_eq!(
                cli.serve.validate(1).unwrap_err().kind(),
                "model_name",
                "{bad}"
            );
        }
        let cli = Cli::try_parse_from([
            "x",
            "--model",
            &format!("file:///m.onnx@{D}"),
            "--max-queue",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.serve.validate(1).unwrap_err().kind(), "range");
    }
}
