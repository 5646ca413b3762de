//! ros2-bridge: robofleet's ROS 2 nodes in pure Rust (no ROS install on the robot image).
//!
//! Subcommands will be `detect` (camera topic to the inference sidecar and back as detections),
//! `safety` (the LIDAR safety monitor publishing a stop lock) and `sensor-sim` (simulated sensors
//! with scripted obstacles and faults). Nothing of this is built yet: the crate exists so the
//! workspace layout, lints and CI cover it from the start.
