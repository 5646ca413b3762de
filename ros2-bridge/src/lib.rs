//! ros2-bridge: robofleet's ROS 2 nodes in pure Rust (no ROS install on the robot image).
//!
//! Data flow: DDS samples arrive on a dedicated ROS thread ([`ros`]) that owns the `ros2-client`
//! node; they are decoded into the wire types of [`msg`] and handed over channels to pure logic —
//! the safety monitor's zone geometry and state machine in [`safety`] — whose decisions travel
//! back to the ROS thread to be published. Subcommands: `safety` (LIDAR safety monitor and stop
//! lock), `sensor-sim` (simulated sensors) and `detect` (camera frames to the inference sidecar,
//! detections back, in [`detect`]).

pub mod detect;
pub mod metrics;
pub mod msg;
pub mod ros;
pub mod safety;
pub mod sim;
