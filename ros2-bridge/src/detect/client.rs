//! The HTTP side: one keep-alive client that posts a frame's bytes to the sidecar's
//! `/v1/detect` exactly as the camera produced them and reads the JSON answer, within a deadline.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use super::frame::{DetectResponse, Frame, Outcome};

/// Largest answer read (the JSON of a few hundred detections is a few tens of KB).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Why a frame got no detections from the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The sidecar answered with an error status.
    #[error("sidecar answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of its `{"error": ...}` body.
        message: String,
    },
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting failed (the sidecar is not running or not listening yet).
    #[error("cannot reach the sidecar: {0}")]
    Connect(String),
    /// The exchange broke after connecting.
    #[error("request failed: {0}")]
    Transport(String),
    /// A 200 whose body is not the documented JSON.
    #[error("unreadable answer: {0}")]
    Answer(String),
}

impl DetectError {
    /// The frame's outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            DetectError::Status { status, .. } => Outcome::of_status(*status),
            DetectError::Timeout(_) => Outcome::Timeout,
            DetectError::Connect(_) => Outcome::Unavailable,
            DetectError::Transport(_) | DetectError::Answer(_) => Outcome::Error,
        }
    }
}

/// Posts frames to one `/v1/detect` URL.
#[derive(Clone)]
pub struct SidecarClient {
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl SidecarClient {
    /// A client for `url` (`http://host:port/v1/detect`); every request ends after `timeout`.
    pub fn new(url: Uri, timeout: Duration) -> SidecarClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        SidecarClient {
            client,
            url,
            timeout,
        }
    }

    /// Sends the frame; the body is the frame's bytes (shared, not copied).
    pub async fn detect(&self, frame: &Frame) -> Result<DetectResponse, DetectError> {
        match tokio::time::timeout(self.timeout, self.exchange(frame)).await {
            Ok(r) => r,
            Err(_) => Err(DetectError::Timeout(self.timeout)),
        }
    }

    async fn exchange(&self, frame: &Frame) -> Result<DetectResponse, DetectError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone());
        for (k, v) in frame.headers() {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(frame.body.clone()))
            .map_err(|e| DetectError::Transport(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                DetectError::Connect(source_chain(&e))
            } else {
                DetectError::Transport(source_chain(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| DetectError::Transport(e.to_string()))?
            .to_bytes();
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(DetectError::Status { status, message });
        }
        serde_json::from_slice(&body).map_err(|e| DetectError::Answer(e.to_string()))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
