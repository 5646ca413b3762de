//! Bringing a model into service: fetch and verify (store), create one ONNX Runtime session per
//! inference thread (execution providers in order), check the declared inputs and outputs, warm
//! up every session, and fall back to `--fallback-model` when any of that fails for `--model`.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::{Backend, ModelSignature};
use crate::config::ServeConfig;
use crate::metrics::{Metrics, ModelInfoLabels, ModelLabels};
use crate::ort_backend::{self, ExecutionProvider, OrtBackend, OrtError, SessionOptions};
use crate::store::{ModelRef, ModelStore, StoreError};

/// Why a model could not be brought into service.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Fetching or verifying failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// ONNX Runtime or the session failed.
    #[error(transparent)]
    Ort(#[from] OrtError),
    /// The warm-up inference failed.
    #[error("warm-up inference failed: {0}")]
    Warmup(String),
    /// Batching was configured for a fixed-batch model.
    #[error(
        "--max-batch-size {0} needs a dynamic first dimension on every input and output; this model has a fixed batch"
    )]
    BatchingRefused(usize),
    /// The loading thread died.
    #[error("the model loading task failed: {0}")]
    Task(String),
}

impl LoadError {
    /// A short stable name: the `reason` label of `robofleet_model_load_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(e) => e.kind(),
            Self::Ort(e) => e.kind(),
            Self::Warmup(_) => "warmup",
            Self::BatchingRefused(_) => "batching",
            Self::Task(_) => "internal",
        }
    }
}

/// The model in service and how it got there.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// `{model, model_version}` for metrics
    pub labels: ModelLabels,
    /// digest of the loaded file
    pub sha256: String,
    /// declared inputs and outputs
    pub signature: ModelSignature,
    /// the execution provider that took the model
    pub provider: ExecutionProvider,
    /// whether this is the fallback model
    pub fallback: bool,
    /// why the primary model is not served (`kind: message`)
    pub fallback_reason: Option<String>,
}

impl ServedModel {
    /// The `robofleet_model_info` labels.
    pub fn info_labels(&self) -> ModelInfoLabels {
        ModelInfoLabels {
            model: self.labels.model.clone(),
            model_version: self.labels.model_version.clone(),
            sha256: self.sha256.clone(),
            execution_provider: self.provider.as_str().to_owned(),
            fallback: self.fallback.to_string(),
        }
    }
}

/// A model ready to serve: its description and one warm backend per inference thread.
pub struct Loaded {
    /// description
    pub model: ServedModel,
    /// one per inference thread
    pub backends: Vec<Box<dyn Backend>>,
}

/// Loads `--model`, or `--fallback-model` if that fails; counts and logs every failure.
pub async fn load(
    cfg: &ServeConfig,
    store: &ModelStore,
    metrics: &Arc<Metrics>,
) -> Result<Loaded, LoadError> {
    let started = Instant::now();
    let primary = load_one(cfg, store, &cfg.model, &cfg.model_version).await;
    let result = match (primary, &cfg.fallback_model) {
        (Ok(loaded), _) => Ok(loaded),
        (Err(e), None) => {
            metrics.load_failure(e.kind());
            tracing::error!(model = %cfg.model, reason = e.kind(), error = %e, "model failed and there is no fallback model");
            Err(e)
        }
        (Err(e), Some(fallback)) => {
            metrics.load_failure(e.kind());
            tracing::error!(model = %cfg.model, reason = e.kind(), error = %e, fallback = %fallback, "model failed; serving the fallback model");
            match load_one(cfg, store, fallback, &cfg.fallback_model_version).await {
                Ok(mut loaded) => {
                    loaded.model.fallback = true;
                    loaded.model.fallback_reason = Some(format!("{}: {e}", e.kind()));
                    Ok(loaded)
                }
                Err(e2) => {
                    metrics.load_failure(e2.kind());
                    tracing::error!(model = %fallback, reason = e2.kind(), error = %e2, "fallback model failed too");
                    Err(e2)
                }
            }
        }
    };
    metrics
        .model_load_duration
        .observe(started.elapsed().as_secs_f64());
    if let Ok(loaded) = &result {
        let in_use: Vec<&ModelRef> = [Some(&cfg.model), cfg.fallback_model.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        match store.evict(&in_use) {
            Ok(evicted) if !evicted.is_empty() => {
                tracing::info!(?evicted, "evicted old models from the cache")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "model cache eviction failed"),
        }
        metrics.model_served(&loaded.model.info_labels());
    }
    result
}

async fn load_one(
    cfg: &ServeConfig,
    store: &ModelStore,
    model: &ModelRef,
    version: &str,
) -> Result<Loaded, LoadError> {
    let path = store.fetch(model).await?;
    let cfg = cfg.clone();
    let sha256 = model.sha256.clone();
    let version = version.to_owned();
    tokio::task::spawn_blocking(move || {
        let env = ort_backend::environment(cfg.ort_library.as_deref())?;
        let opts = SessionOptions {
            intra_threads: cfg.intra_op_threads,
            execution_providers: cfg.execution_providers.clone(),
        };
        let mut sessions = Vec::with_capacity(cfg.max_concurrency);
        let mut provider = ExecutionProvider::Cpu;
        for i in 0..cfg.max_concurrency {
            let loaded = ort_backend::load_session(env, &path, &opts)?;
            if i == 0 && !loaded.failed.is_empty() {
                for (ep, why) in &loaded.failed {
                    tracing::warn!(requested = ep.as_str(), used = loaded.provider.as_str(), error = %why, "execution provider fallback");
                }
            }
            provider = loaded.provider;
            sessions.push(loaded.session);
        }
        let signature = match sessions.first() {
            Some(s) => ort_backend::signature(s)?,
            None => return Err(LoadError::Task("no inference threads".into())),
        };
        if cfg.max_batch_size > 1 && !signature.is_batchable() {
            return Err(LoadError::BatchingRefused(cfg.max_batch_size));
        }
        let warmup = signature
            .warmup_inputs(&cfg.warmup_shapes)
            .map_err(|e| LoadError::Warmup(format!("--warmup-shape: {e}")))?;
        let mut backends: Vec<Box<dyn Backend>> = Vec::with_capacity(sessions.len());
        for session in sessions {
            let mut b = OrtBackend::new(session);
            for _ in 0..cfg.warmup_runs {
                b.infer(warmup.clone())
                    .map_err(|e| LoadError::Warmup(e.to_string()))?;
            }
            backends.push(Box::new(b));
        }
        Ok(Loaded {
            model: ServedModel {
                labels: ModelLabels {
                    model: cfg.model_name.clone(),
                    model_version: version,
                },
                sha256,
                signature,
                provider,
                fallback: false,
                fallback_reason: None,
            },
            backends,
        })
    })
    .await
    .map_err(|e| LoadError::Task(e.to_string()))?
}
