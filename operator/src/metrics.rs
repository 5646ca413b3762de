//! The operator's own metrics (`robofleet_operator_*`) and its `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `robofleet_operator_reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Custom resource kind.
    pub kind: &'static str,
    /// `ok` or an error kind (bounded).
    pub result: &'static str,
}

/// Labels carrying only the kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Custom resource kind.
    pub kind: &'static str,
}

/// Labels of `robofleet_operator_scrapes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or a bounded error kind.
    pub outcome: &'static str,
}

/// Labels of `robofleet_operator_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...).
    pub verb: &'static str,
    /// Resource plural, with the subresource (`pods`, `inferenceservices/status`).
    pub resource: String,
}

/// Labels of `robofleet_operator_rollout_robots`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutRobotLabels {
    /// Namespace of the InferenceService.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `stable`, `canary`, `updating`, `deferred`, `offline`, `unobserved`, `pending`.
    pub state: &'static str,
}

/// Labels of `robofleet_operator_rollout_aborts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Bounded snake-case reason.
    pub reason: &'static str,
}

/// Reconcile metrics, registered once.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    scrapes: Family<OutcomeLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    rollout_robots: Family<RolloutRobotLabels, prometheus_client::metrics::gauge::Gauge>,
    rollout_aborts: Family<ReasonLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("robofleet_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register_with_unit(
            "reconcile_duration",
            "Time spent in one reconcile",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let scrapes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "scrapes",
            "Scrapes of robot pods by outcome",
            scrapes.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API, by verb and resource",
            api_requests.clone(),
        );
        let rollout_robots =
            Family::<RolloutRobotLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "rollout_robots",
            "Robots of each InferenceService by rollout state",
            rollout_robots.clone(),
        );
        let rollout_aborts = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rollout_aborts",
            "Rollouts aborted, by reason",
            rollout_aborts.clone(),
        );
        Self {
            registry,
            reconciles,
            scrapes,
            api_requests,
            rollout_robots,
            rollout_aborts,
            durations,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Starts timing a reconcile of `kind`; call [`ReconcileTimer::finish`] with the result.
    pub fn reconcile(&self, kind: &'static str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            kind,
            start: Instant::now(),
        }
    }

    /// Counts one scrape of a robot pod.
    pub fn scraped(&self, outcome: &'static str) {
        self.scrapes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts one request to the Kubernetes API.
    pub fn api_request(&self, verb: &'static str, resource: String) {
        self.api_requests
            .get_or_create(&ApiLabels { verb, resource })
            .inc();
    }

    /// Counts one aborted rollout.
    pub fn rollout_aborted(&self, reason: &'static str) {
        self.rollout_aborts
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Sets the robots of `namespace/name` per rollout state.
    pub fn rollout_robots(&self, namespace: &str, name: &str, states: &[(&'static str, u32)]) {
        for (state, n) in states {
            self.rollout_robots
                .get_or_create(&RolloutRobotLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    state,
                })
                .set(i64::from(*n));
        }
    }

    /// Drops the rollout gauges of a deleted InferenceService.
    pub fn forget_rollout(&self, namespace: &str, name: &str) {
        for state in [
            "stable",
            "canary",
            "updating",
            "deferred",
            "offline",
            "unobserved",
            "pending",
        ] {
            self.rollout_robots.remove(&RolloutRobotLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                state,
            });
        }
    }

    /// Marks the operator ready (caches synced) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Times one reconcile.
pub struct ReconcileTimer<'m> {
    metrics: &'m Metrics,
    kind: &'static str,
    start: Instant,
}

impl ReconcileTimer<'_> {
    /// Records the duration and the result (`ok` or a bounded error kind).
    pub fn finish(self, result: &'static str) {
        self.metrics
            .durations
            .get_or_create(&KindLabels { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: self.kind,
                result,
            })
            .inc();
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

async fn readyz(State(m): State<Arc<Metrics>>) -> StatusCode {
    if m.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(state: State<Arc<Metrics>>) -> impl IntoResponse {
    metrics(state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_metrics_are_named_per_the_contract() {
        let m = Metrics::default();
        m.reconcile("InferenceService").finish("ok");
        let text = m.encode();
        assert!(
            text.contains(
                r#"robofleet_operator_reconcile_total{kind="InferenceService",result="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("robofleet_operator_reconcile_duration_seconds_bucket"),
            "{text}"
        );
    }
}
