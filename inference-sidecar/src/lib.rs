//! inference-sidecar: serves an ONNX model on a robot through ONNX Runtime.
//!
//! Data flow: [`app`] binds the inference API and the admin listener, then [`model`] fetches the
//! model through the [`store`] (sha256-verified cache, fallback model), opens one ONNX Runtime
//! session per inference thread ([`ort_backend`]) and warms them up. An infer request arrives in
//! [`server`], is decoded by [`protocol`] into [`tensor`]s, checked against the model's
//! [`backend::ModelSignature`], and queued in the bounded [`scheduler`]; an inference thread runs
//! it (alone or batched) unless its deadline has passed, and the answer goes back the same way.
//! Every step updates the [`metrics`]. SIGTERM drains: no new requests, in-flight ones finish.

pub mod app;
pub mod backend;
pub mod batch;
pub mod config;
pub mod detect;
pub mod metrics;
pub mod model;
pub mod ort_backend;
pub mod protocol;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tensor;
