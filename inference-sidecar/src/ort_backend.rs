//! The ONNX Runtime [`Backend`]: loads the shared library named by `ORT_DYLIB_PATH` (the PyPI
//! `onnxruntime` wheel's `libonnxruntime.so.*`), creates sessions with the configured execution
//! providers (each tried with error-on-failure, in order), and converts tensors both ways.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{DynValue, TensorElementType, ValueType};

use crate::backend::{Backend, BackendError, ModelSignature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// Errors while loading ONNX Runtime or a model.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    /// The shared library could not be loaded.
    #[error(
        "cannot load the ONNX Runtime library {path:?}: {message}. Set ORT_DYLIB_PATH (or \
         --ort-library) to libonnxruntime.so.* from the PyPI onnxruntime wheel, e.g. \
         ~/.cache/robofleet/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 \
         (`make venv` installs it)"
    )]
    Library {
        /// the path tried
        path: PathBuf,
        /// what failed
        message: String,
    },
    /// No library path was configured.
    #[error(
        "ORT_DYLIB_PATH is not set: point it (or --ort-library) at libonnxruntime.so.* from the PyPI \
         onnxruntime wheel (`make venv` installs it into ~/.cache/robofleet/venv)"
    )]
    NoLibrary,
    /// ONNX Runtime could not create its environment.
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
    /// Every configured execution provider failed.
    #[error("no execution provider could load the model: {0}")]
    Load(String),
    /// The model declares an input or output this server cannot serve.
    #[error("model {what} {name:?} is not servable: {reason}")]
    Signature {
        /// `input` or `output`
        what: &'static str,
        /// its name
        name: String,
        /// why
        reason: String,
    },
}

impl OrtError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Library { .. } | Self::NoLibrary | Self::Environment(_) => "runtime",
            Self::Load(_) => "load",
            Self::Signature { .. } => "signature",
        }
    }
}

/// An execution provider the configuration may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutionProvider {
    /// NVIDIA TensorRT (needs the `gpu` build feature and the GPU wheel's library)
    #[value(name = "tensorrt", alias = "TensorRT")]
    TensorRt,
    /// NVIDIA CUDA (needs the `gpu` build feature and the GPU wheel's library)
    #[value(name = "cuda", alias = "CUDA")]
    Cuda,
    /// the default CPU provider
    #[value(name = "cpu", alias = "CPU")]
    Cpu,
}

impl ExecutionProvider {
    /// The label value used in `robofleet_model_info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TensorRt => "tensorrt",
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }

    fn register(self, builder: SessionBuilder) -> Result<SessionBuilder, String> {
        let dispatch = match self {
            Self::Cpu => ort::ep::CPU::default().build().error_on_failure(),
            #[cfg(feature = "gpu")]
            Self::Cuda => ort::ep::CUDA::default().build().error_on_failure(),
            #[cfg(feature = "gpu")]
            Self::TensorRt => ort::ep::TensorRT::default().build().error_on_failure(),
            #[cfg(not(feature = "gpu"))]
            Self::Cuda | Self::TensorRt => {
                return Err(format!(
                    "{} support is not compiled into this binary (build with --features gpu)",
                    self.as_str()
                ));
            }
        };
        builder
            .with_execution_providers([dispatch])
            .map_err(|e| e.to_string())
    }
}

/// Session options shared by every inference thread.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// intra-op threads per session
    pub intra_threads: usize,
    /// execution providers, in order of preference
    pub execution_providers: Vec<ExecutionProvider>,
}

/// A session that loaded, with the provider that took it and the ones that failed before it.
pub struct LoadedSession {
    /// the session
    pub session: Session,
    /// the provider in use
    pub provider: ExecutionProvider,
    /// providers tried before and why they failed
    pub failed: Vec<(ExecutionProvider, String)>,
}

/// glibc's malloc with a fixed mmap threshold of 64 MiB, a trim threshold of 256 MiB and one
/// arena, as `MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456
/// MALLOC_ARENA_MAX=1` would set them, so the buffers a request frees (a decoded frame, the input
/// tensor, the operator kernels' temporaries) stay mapped for the next one. By default an
/// allocation above 128 KiB is mapped on its own and unmapped when freed (the threshold moves
/// only as such chunks are freed), the heap is trimmed above twice the threshold, and a thread's
/// own arena unmaps a heap as soon as it is empty whatever the trim threshold: depending on the
/// mix of sizes every request mapped and page-faulted its buffers anew (about 1,350 minor faults
/// per 1280x720 PNG request; 2,200 to 3,700 per YOLOX request with two intra-op threads). Costs:
/// up to 256 MiB of freed memory kept, and one malloc lock for all threads (few allocations per
/// request: ONNX Runtime serves tensors from its own arena). Call once at start-up, before
/// threads; a no-op off glibc.
pub fn keep_native_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets two of glibc's allocator parameters; it takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Loads ONNX Runtime from `library` once per process and returns its environment.
pub fn environment(library: Option<&Path>) -> Result<&'static Environment, OrtError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = library.ok_or(OrtError::NoLibrary)?;
    if !path.is_file() {
        return Err(OrtError::Library {
            path: path.to_owned(),
            message: "no such file".into(),
        });
    }
    let builder = ort::init_from(path).map_err(|e| OrtError::Library {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let env = builder
        .with_name("inference-sidecar")
        .with_telemetry(false)
        .build()
        .map_err(|e| OrtError::Environment(e.to_string()))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

fn builder(env: &Environment, opts: &SessionOptions) -> Result<SessionBuilder, String> {
    let s = |e: ort::Error<SessionBuilder>| e.to_string();
    Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(s)?
        .with_intra_threads(opts.intra_threads.max(1))
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        .with_intra_op_spinning(false)
        .map_err(s)?
        .with_inter_op_spinning(false)
        .map_err(s)
}

/// Creates a session for `model`, trying each execution provider in order.
pub fn load_session(
    env: &Environment,
    model: &Path,
    opts: &SessionOptions,
) -> Result<LoadedSession, OrtError> {
    let mut failed = Vec::new();
    for &ep in &opts.execution_providers {
        let attempt = builder(env, opts)
            .and_then(|b| ep.register(b))
            .and_then(|mut b| b.commit_from_file(model).map_err(|e| e.to_string()));
        match attempt {
            Ok(session) => {
                return Ok(LoadedSession {
                    session,
                    provider: ep,
                    failed,
                });
            }
            Err(e) => failed.push((ep, e)),
        }
    }
    let all = failed
        .iter()
        .map(|(ep, e)| format!("{}: {e}", ep.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    Err(OrtError::Load(all))
}

fn datatype(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        _ => return None,
    })
}

fn spec(what: &'static str, name: &str, ty: &ValueType) -> Result<TensorSpec, OrtError> {
    let err = |reason: String| OrtError::Signature {
        what,
        name: name.to_owned(),
        reason,
    };
    match ty {
        ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
            name: name.to_owned(),
            datatype: datatype(*ty).ok_or_else(|| err(format!("element type {ty:?}")))?,
            shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
        }),
        other => Err(err(format!("not a tensor ({other:?})"))),
    }
}

/// The model's declared inputs and outputs; refuses types this server cannot serve.
pub fn signature(session: &Session) -> Result<ModelSignature, OrtError> {
    Ok(ModelSignature {
        inputs: session
            .inputs()
            .iter()
            .map(|o| spec("input", o.name(), o.dtype()))
            .collect::<Result<_, _>>()?,
        outputs: session
            .outputs()
            .iter()
            .map(|o| spec("output", o.name(), o.dtype()))
            .collect::<Result<_, _>>()?,
    })
}

/// One ONNX Runtime session, owned by one inference thread.
pub struct OrtBackend {
    session: Session,
    outputs: Vec<String>,
}

impl OrtBackend {
    /// Wraps a session.
    pub fn new(session: Session) -> Self {
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        Self { session, outputs }
    }
}

fn to_value(t: Tensor) -> Result<DynValue, ort::Error> {
    macro_rules! conv {
        ($($variant:ident),*) => {
            match t.data {
                $(TensorData::$variant(v) => ort::value::Tensor::from_array((t.shape, v))?.into_dyn(),)*
            }
        };
    }
    Ok(conv!(
        Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp32, Fp64
    ))
}

fn from_value(name: &str, v: &DynValue) -> Result<Tensor, BackendError> {
    let err = |reason: String| BackendError::Output {
        name: name.to_owned(),
        reason,
    };
    let ty = match v.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(err(format!("not a tensor ({other:?})"))),
    };
    macro_rules! ext {
        ($($elem:ident => $variant:ident, $rust:ty;)*) => {
            match ty {
                $(TensorElementType::$elem => {
                    let (shape, data) = v.try_extract_tensor::<$rust>().map_err(|e| err(e.to_string()))?;
                    (shape.to_vec(), TensorData::$variant(data.to_vec()))
                })*
                other => return Err(err(format!("element type {other:?} is not supported"))),
            }
        };
    }
    let (shape, data) = ext! {
        Bool => Bool, bool;
        Uint8 => Uint8, u8;
        Uint16 => Uint16, u16;
        Uint32 => Uint32, u32;
        Uint64 => Uint64, u64;
        Int8 => Int8, i8;
        Int16 => Int16, i16;
        Int32 => Int32, i32;
        Int64 => Int64, i64;
        Float32 => Fp32, f32;
        Float64 => Fp64, f64;
    };
    Tensor::new(name.to_owned(), shape, data).map_err(|e| err(e.to_string()))
}

impl Backend for OrtBackend {
    fn infer(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let mut values = Vec::with_capacity(inputs.len());
        for t in inputs {
            let name = t.name.clone();
            values.push((
                name,
                to_value(t).map_err(|e| BackendError::Run(e.to_string()))?,
            ));
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| BackendError::Run(e.to_string()))?;
        self.outputs
            .iter()
            .map(|name| {
                let v = outputs
                    .get(name.as_str())
                    .ok_or_else(|| BackendError::Output {
                        name: name.clone(),
                        reason: "missing from the run's outputs".into(),
                    })?;
                from_value(name, v)
            })
            .collect()
    }
}
