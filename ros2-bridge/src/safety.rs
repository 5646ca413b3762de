//! The LIDAR safety monitor (`ros2-bridge safety`).
//!
//! Pure parts: [`config`] (policy file and quick flags → validated [`config::Policy`]),
//! [`geometry`] (zones, transform), [`evaluate`] (one scan → verdict), [`monitor`] (the stop-lock
//! state machine on an injected monotonic clock). The DDS node wires them to topics.
//!
//! This is a software monitor, not certified safety equipment: it must sit beside a safety-rated
//! scanner or PLC, and consumers must treat a silent lock as stop.

pub mod cli;
pub mod config;
pub mod evaluate;
pub mod geometry;
pub mod metrics;
pub mod monitor;
pub mod node;
