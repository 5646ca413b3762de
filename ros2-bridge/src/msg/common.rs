//! builtin_interfaces, std_msgs, geometry_msgs, sensor_msgs/LaserScan and nav2_msgs/SpeedLimit.

use serde::{Deserialize, Serialize};

use super::RosType;

macro_rules! ros_type {
    ($t:ty, $pkg:literal, $name:literal) => {
        impl RosType for $t {
            const PACKAGE: &'static str = $pkg;
            const NAME: &'static str = $name;
        }
        impl ros2_client::Message for $t {}
    };
}
pub(crate) use ros_type;

/// `builtin_interfaces/Time`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// Seconds.
    pub sec: i32,
    /// Nanoseconds within the second.
    pub nanosec: u32,
}

impl Time {
    /// Wall-clock time now (the `header.stamp` ROS nodes put on messages; never used for ages).
    pub fn now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            sec: i32::try_from(d.as_secs()).unwrap_or(i32::MAX),
            nanosec: d.subsec_nanos(),
        }
    }
}
ros_type!(Time, "builtin_interfaces", "Time");

/// `std_msgs/Header`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Acquisition time.
    pub stamp: Time,
    /// Coordinate frame.
    pub frame_id: String,
}
ros_type!(Header, "std_msgs", "Header");

/// `std_msgs/Bool`; the stop lock (`true` = stop).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bool {
    /// The value.
    pub data: bool,
}
ros_type!(Bool, "std_msgs", "Bool");

/// `std_msgs/String` (robot state topic).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StringMsg {
    /// The value.
    pub data: String,
}
ros_type!(StringMsg, "std_msgs", "String");

/// `geometry_msgs/Vector3`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Vector3 {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
}
ros_type!(Vector3, "geometry_msgs", "Vector3");

/// `geometry_msgs/Twist`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Twist {
    /// Linear velocity.
    pub linear: Vector3,
    /// Angular velocity.
    pub angular: Vector3,
}
ros_type!(Twist, "geometry_msgs", "Twist");

/// `geometry_msgs/Point`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
}
ros_type!(Point, "geometry_msgs", "Point");

/// `geometry_msgs/Quaternion`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Quaternion {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
    /// w.
    pub w: f64,
}
impl Default for Quaternion {
    fn default() -> Self {
        // The .msg default is the identity rotation.
        Quaternion {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}
ros_type!(Quaternion, "geometry_msgs", "Quaternion");

/// `geometry_msgs/Pose`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Pose {
    /// Position.
    pub position: Point,
    /// Orientation.
    pub orientation: Quaternion,
}
ros_type!(Pose, "geometry_msgs", "Pose");

/// `geometry_msgs/PoseWithCovariance`; `covariance` is the fixed array `float64[36]` (no length
/// prefix on the wire).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct PoseWithCovariance {
    /// Pose.
    pub pose: Pose,
    /// Row-major 6x6 covariance.
    #[serde(with = "cov36")]
    pub covariance: [f64; 36],
}
impl Default for PoseWithCovariance {
    fn default() -> Self {
        PoseWithCovariance {
            pose: Pose::default(),
            covariance: [0.0; 36],
        }
    }
}
ros_type!(PoseWithCovariance, "geometry_msgs", "PoseWithCovariance");

/// serde derives arrays only up to 32 elements; a fixed array is a tuple in CDR.
mod cov36 {
    use serde::{
        Deserializer, Serializer,
        de::{Error, SeqAccess, Visitor},
        ser::SerializeTuple,
    };

    pub fn serialize<S: Serializer>(v: &[f64; 36], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(36)?;
        for x in v {
            t.serialize_element(x)?;
        }
        t.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 36], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [f64; 36];
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("36 float64")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<[f64; 36], A::Error> {
                let mut out = [0.0; 36];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = a
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(36, V)
    }
}

/// `sensor_msgs/LaserScan`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct LaserScan {
    /// Stamp of the first beam and the laser frame.
    pub header: Header,
    /// Start angle (rad).
    pub angle_min: f32,
    /// End angle (rad).
    pub angle_max: f32,
    /// Angle between beams (rad).
    pub angle_increment: f32,
    /// Time between beams (s).
    pub time_increment: f32,
    /// Time between scans (s).
    pub scan_time: f32,
    /// Minimum valid range (m).
    pub range_min: f32,
    /// Maximum valid range (m).
    pub range_max: f32,
    /// Ranges (m); REP 117 values allowed.
    pub ranges: Vec<f32>,
    /// Intensities, possibly empty.
    pub intensities: Vec<f32>,
}
ros_type!(LaserScan, "sensor_msgs", "LaserScan");

/// `nav2_msgs/SpeedLimit` (Humble/Jazzy).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct SpeedLimit {
    /// Header.
    pub header: Header,
    /// `true`: `speed_limit` is a percentage of the maximum speed.
    pub percentage: bool,
    /// Limit in m/s or percent; 0 means no limit.
    pub speed_limit: f64,
}
ros_type!(SpeedLimit, "nav2_msgs", "SpeedLimit");
