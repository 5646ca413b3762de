//! The `/metrics`, `/healthz` and `/readyz` endpoint and the `robofleet_ros_*` series every
//! subcommand shares. Labels are bounded: topics as resolved on this robot, never robot names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

/// `{topic, direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicDirection {
    /// Resolved ROS topic.
    pub topic: String,
    /// `in` or `out`.
    pub direction: &'static str,
}

/// `{topic}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Resolved ROS topic.
    pub topic: String,
}

/// `{state}` of `robofleet_robot_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Robot state from the state topic (normalized, bounded).
    pub state: String,
}

/// `robofleet_ros_*`, and `robofleet_robot_state`.
#[derive(Clone, Default)]
pub struct RosMetrics {
    /// 1 for the robot's current state (one series at a time).
    pub robot_state: Family<StateLabel, Gauge>,
    /// Messages per topic and direction.
    pub messages: Family<TopicDirection, Counter>,
    /// Age of the last message received per topic.
    pub last_message_age: Family<TopicLabel, Gauge<f64, AtomicU64>>,
    /// Payloads that did not decode.
    pub malformed: Family<TopicLabel, Counter>,
}

impl RosMetrics {
    /// Registers under `robofleet_ros_`.
    pub fn register(registry: &mut Registry) -> RosMetrics {
        let m = RosMetrics::default();
        registry.register(
            "robofleet_robot_state",
            "1 for the robot's current state as published on its state topic",
            m.robot_state.clone(),
        );
        let r = registry.sub_registry_with_prefix("robofleet_ros");
        r.register(
            "topic_messages",
            "ROS messages by topic and direction",
            m.messages.clone(),
        );
        r.register(
            "topic_last_message_age_seconds",
            "Seconds since the last message on the topic (monotonic)",
            m.last_message_age.clone(),
        );
        r.register(
            "malformed_messages",
            "Payloads that did not decode as the topic's type",
            m.malformed.clone(),
        );
        m
    }

    /// Counts one message.
    pub fn message(&self, topic: &str, direction: &'static str) {
        self.messages
            .get_or_create(&TopicDirection {
                topic: topic.into(),
                direction,
            })
            .inc();
    }

    /// Replaces the exported robot state. The label is normalized (lower case, `[a-z0-9_-]`, at
    /// most 32 characters, else `other`) so a misbehaving topic cannot create unbounded series.
    pub fn set_robot_state(&self, raw: &str) {
        let s = raw.trim().to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let state = if ok { s } else { "other".into() };
        self.robot_state.clear();
        self.robot_state.get_or_create(&StateLabel { state }).set(1);
    }

    /// Counts one undecodable payload.
    pub fn malformed(&self, topic: &str) {
        self.malformed
            .get_or_create(&TopicLabel {
                topic: topic.into(),
            })
            .inc();
    }
}

/// Health state shared with the HTTP handlers.
#[derive(Default)]
pub struct Health {
    /// The process is up and its ROS thread runs.
    pub live: AtomicBool,
    /// Ready: topics are fresh (each subcommand decides what that means).
    pub ready: AtomicBool,
}

struct AppState {
    registry: Registry,
    health: Arc<Health>,
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        ),
    }
}

fn flag(b: &AtomicBool) -> (StatusCode, &'static str) {
    if b.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` (port 0 picks a free port) and serves until `shutdown` resolves; returns the
/// bound address at once.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let state = Arc::new(AppState { registry, health });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|State(s): State<Arc<AppState>>| async move { flag(&s.health.live) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<AppState>>| async move { flag(&s.health.ready) }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn endpoints_and_bounded_robot_state() {
        let mut registry = Registry::default();
        let ros = RosMetrics::register(&mut registry);
        ros.set_robot_state("Charging");
        ros.set_robot_state("busy");
        ros.set_robot_state("busy");
        ros.malformed("/scan");
        let health = Arc::new(Health::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().expect("addr"),
            registry,
            health.clone(),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("serve");
        let body = get(addr, "/metrics").await;
        assert!(
            body.contains("robofleet_robot_state{state=\"busy\"} 1"),
            "{body}"
        );
        assert!(
            !body.contains("charging"),
            "one state series at a time: {body}"
        );
        assert!(
            body.contains("robofleet_ros_malformed_messages_total{topic=\"/scan\"} 1"),
            "{body}"
        );
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        ros.set_robot_state("x y {z}");
        ros.set_robot_state(&"a".repeat(33));
        assert!(
            get(addr, "/metrics")
                .await
                .contains("robofleet_robot_state{state=\"other\"} 1")
        );
        let _ = stop.send(());
        task.await.expect("server task");
    }
}
