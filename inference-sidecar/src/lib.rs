//! inference-sidecar: serves an ONNX model on a robot through ONNX Runtime.
//!
//! Requests arrive over HTTP (Open Inference Protocol and `/v1/detect`), pass a bounded queue to
//! dedicated inference threads, and come back with metrics recorded on the way. Nothing of this
//! is built yet: the crate exists so the workspace layout, lints and CI cover it from the start.
