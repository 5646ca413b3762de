//! `inference-sidecar serve`: binds both listeners, loads the model in the background (health
//! answers meanwhile, readiness stays false until the model is warm), serves, and on SIGTERM or
//! SIGINT drains: readiness false, no new requests, in-flight requests finished, inference
//! threads stopped, exit 0.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::metrics::{Metrics, ModelLabels};
use crate::model;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::server::{self, AppState, Serving};
use crate::store::ModelStore;

/// Errors that end `serve` with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// address
        addr: std::net::SocketAddr,
        /// error
        source: std::io::Error,
    },
    /// Neither the model nor the fallback could be brought into service.
    #[error("no model could be served: {0}")]
    Load(#[from] model::LoadError),
    /// Other I/O (address file, threads, serving).
    #[error("{what}: {source}")]
    Io {
        /// what failed
        what: &'static str,
        /// error
        source: std::io::Error,
    },
}

impl ServeError {
    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind",
            Self::Load(e) => e.kind(),
            Self::Io { .. } => "io",
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Listens for SIGTERM and SIGINT from now on (registered when called, not when first awaited, so
/// a signal that arrives while the model loads is never missed nor left to its default action,
/// which would kill the process); the future completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    let e = term.err().or(int.err());
                    tracing::warn!(error = ?e, "cannot listen for SIGTERM/SIGINT; stopping on ctrl-c only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Requests admitted at once: a full queue, a batch on every inference thread, and as many again
/// having their bodies read (they may find room once a run ends).
fn admitted(cfg: &ServeConfig) -> usize {
    let running = cfg.max_concurrency.saturating_mul(cfg.max_batch_size);
    cfg.max_queue
        .saturating_add(running)
        .saturating_mul(2)
        .min(tokio::sync::Semaphore::MAX_PERMITS)
}

/// Runs the server until SIGTERM/SIGINT (Ok) or until no model can be served (Err).
pub async fn serve(cfg: ServeConfig) -> Result<(), ServeError> {
    // before anything can be asked of the server: a SIGTERM from here on drains it
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let metrics = Metrics::new();
    let state = Arc::new(AppState {
        metrics: metrics.clone(),
        serving: OnceLock::new(),
        draining: false.into(),
        configured: ModelLabels {
            model: cfg.model_name.clone(),
            model_version: cfg.model_version.clone(),
        },
        max_request_bytes: cfg.max_request_bytes,
        request_timeout: cfg.request_timeout,
        admission: tokio::sync::Semaphore::new(admitted(&cfg)),
        detection: cfg.detection.clone(),
    });
    let api = bind(cfg.listen).await?;
    let admin = bind(cfg.admin_listen).await?;
    let api_addr = api.local_addr().map_err(|source| ServeError::Io {
        what: "api address",
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| ServeError::Io {
        what: "admin address",
        source,
    })?;
    tracing::info!(%api_addr, %admin_addr, "listening");
    if let Some(path) = &cfg.address_file {
        let text =
            serde_json::json!({"api": api_addr.to_string(), "admin": admin_addr.to_string()});
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| ServeError::Io {
                what: "writing the address file",
                source,
            })?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // answers go out at once (Nagle's algorithm would hold a small write behind an unacknowledged one)
    let api = axum::serve::ListenerExt::tap_io(api, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let api_server = tokio::spawn(
        axum::serve(api, server::api_router(state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let admin_server = tokio::spawn(
        axum::serve(admin, server::admin_router(state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );

    let store = ModelStore::new(
        cfg.model_cache.join(&cfg.model_name),
        cfg.model_cache_max_bytes,
        cfg.model_cache_keep,
        cfg.download_timeout,
    )
    .with_retries(cfg.download_attempts, Duration::from_secs(1));
    let load = {
        let (cfg, state) = (cfg.clone(), state.clone());
        async move {
            let loaded = model::load(&cfg, &store, &state.metrics).await?;
            let scheduler = Scheduler::start(
                loaded.backends,
                SchedulerConfig {
                    max_queue: cfg.max_queue,
                    max_batch: cfg.max_batch_size,
                    max_queue_delay: cfg.max_queue_delay,
                    inline_max_compute: crate::scheduler::INLINE_MAX_COMPUTE,
                },
                state.metrics.clone(),
            )
            .map_err(|source| ServeError::Io {
                what: "starting inference threads",
                source,
            })?;
            let m = &loaded.model;
            tracing::info!(
                model = %m.labels.model, version = %m.labels.model_version, sha256 = %m.sha256,
                execution_provider = m.provider.as_str(), fallback = m.fallback,
                reason = m.fallback_reason.as_deref().unwrap_or(""), "model loaded and warm; ready"
            );
            let _ = state.serving.set(Serving::new(
                loaded.model,
                scheduler,
                state.detection.as_ref(),
            ));
            Ok::<(), ServeError>(())
        }
    };

    let result = tokio::select! {
        r = load => match r {
            Ok(()) => { (&mut shutdown).await; Ok(()) }
            Err(e) => Err(e),
        },
        () = &mut shutdown => Ok(()),
    };
    tracing::info!("draining: refusing new requests and finishing in-flight ones");
    state.draining.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let servers = async {
        for (name, h) in [("api", api_server), ("admin", admin_server)] {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(server = name, error = %e, "server ended with an error")
                }
                Err(e) => tracing::warn!(server = name, error = %e, "server task failed"),
            }
        }
    };
    if tokio::time::timeout(cfg.drain_timeout, servers)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?cfg.drain_timeout, "drain timed out; exiting with requests still open");
    }
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(s) = st.serving.get() {
            s.scheduler.join();
        }
    })
    .await;
    tracing::info!("stopped");
    result
}
