//! One module per kind: reconcile + error_policy + watch wiring, nothing else.

pub mod inference_service;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::runtime::reflector::Store;

use crate::config::Config;
use crate::metrics::Metrics;

/// Shared by every reconcile; built once in [`crate::run`].
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Validated configuration.
    pub config: Config,
    /// Cache of Nodes (robots and others), kept by a reflector.
    pub nodes: Store<Node>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}
