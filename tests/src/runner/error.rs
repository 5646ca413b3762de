//! Errors of the runner's I/O parts.

use std::path::PathBuf;

/// What went wrong while running pods.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The pod watch failed.
    #[error("pod watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the path
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// the program
        program: String,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// The pod's network namespace could not be set up.
    #[error("pod network namespace: {0}")]
    Netns(String),
    /// The pod cannot be planned.
    #[error(transparent)]
    Plan(#[from] super::spec::PlanError),
}

impl RunnerError {
    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Watch(_) => "watch",
            Self::Io { .. } => "io",
            Self::Spawn { .. } => "spawn",
            Self::Netns(_) => "netns",
            Self::Plan(p) => p.kind(),
        }
    }

    /// Wraps an I/O error with what was done and where.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}
