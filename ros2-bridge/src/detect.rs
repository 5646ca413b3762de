//! The detection bridge (`ros2-bridge detect`): camera frames from a ROS 2 topic to the inference
//! sidecar's `POST /v1/detect`, `vision_msgs/Detection2DArray` back with the image's header.
//!
//! Data flow: the ROS thread ([`node`]) decodes each `sensor_msgs/Image` or `CompressedImage`,
//! checks it against the message's own contract ([`frame`], pure) and puts it in a one-place slot
//! where the newest frame wins; the dispatcher ([`dispatch`]) takes the newest frame whenever one
//! of `--max-in-flight` request slots is free and posts its bytes unchanged ([`client`]); answers
//! go back to the ROS thread, which publishes them in frame order. Nothing queues and nothing is
//! fatal: stale frames, corrupt frames, sidecar errors and timeouts are counted ([`metrics`]).

pub mod cli;
pub mod client;
pub mod dispatch;
pub mod frame;
pub mod metrics;
pub mod node;
