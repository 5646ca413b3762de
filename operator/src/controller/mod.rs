//! One module per kind: reconcile + error_policy + watch wiring, nothing else.

pub mod inference_service;
pub mod safety_policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::runtime::reflector::Store;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::scrape::{LoadedModel, Scrape};

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
    /// Transport for robot pods' `/metrics`.
    pub scraper: Arc<dyn Scrape>,
    /// What each updated robot pod confirmed it serves: owner (`namespace/name`) → pod UID → model.
    /// Pruned to the owner's current pods on every reconcile, so it stays bounded.
    pub confirmations: Mutex<HashMap<String, HashMap<String, Confirmation>>>,
    /// Stop-lock consumers each safety monitor last reported: owner (`namespace/name`) → pod UID →
    /// count. A failed scrape keeps the last value (one failed scrape flips nothing); pruned to
    /// the owner's current pods on every reconcile.
    pub stop_consumers: Mutex<HashMap<String, HashMap<String, u32>>>,
}

/// What a robot pod's sidecar confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// The model it serves.
    pub model: LoadedModel,
    /// Its most frequent model load failure reason, if it counted any.
    pub failure_reason: Option<String>,
}
