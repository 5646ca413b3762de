//! The sensor simulator (`ros2-bridge sensor-sim`): a simulated 2D LIDAR with seeded noise,
//! scripted obstacles and faults ([`scene`]), watching the stop lock of the monitor under test and
//! judging its expectations ([`expect`]); the result is a JSON file and the exit code.

pub mod camera;
pub mod cli;
pub mod config;
pub mod expect;
pub mod node;
pub mod rng;
pub mod scene;
