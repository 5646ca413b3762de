//! ROS 2 message types as they travel on the wire.
//!
//! Every struct mirrors its `.msg` definition field by field and in the same order, because CDR is
//! positional. The ROS type `pkg/msg/T` is the DDS type `pkg::msg::dds_::T_` (see [`RosType`]).
//! Payloads are XCDR1 little-endian with the encapsulation header `00 01 00 00`, as every ROS 2 RMW
//! writes them; [`encode`] and [`decode`] produce and check exactly that framing and are what the
//! golden-vector tests (made by the independent `rosbags` serializer) exercise.

mod common;
mod detection;
mod diagnostics;

pub use common::{
    Bool, Header, LaserScan, Point, Pose, PoseWithCovariance, Quaternion, SpeedLimit, StringMsg,
    Time, Twist, Vector3,
};
pub use detection::{
    BoundingBox2D, CompressedImage, Detection2D, Detection2DArray, Image, ObjectHypothesis,
    ObjectHypothesisWithPose, Point2D, Pose2D,
};
pub use diagnostics::{DiagnosticArray, DiagnosticStatus, KeyValue};

use serde::{Serialize, de::DeserializeOwned};

/// The CDR_LE encapsulation header that precedes every ROS 2 payload.
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Errors from encoding or decoding a wire payload.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// The payload is shorter than the 4-byte encapsulation header.
    #[error("payload of {0} bytes has no encapsulation header")]
    MissingHeader(usize),
    /// The encapsulation is not CDR_LE / CDR_BE (for example XCDR2 or parameter lists).
    #[error("unsupported encapsulation {0:02x}{1:02x}")]
    UnsupportedEncapsulation(u8, u8),
    /// The body does not decode as the expected type (truncated, wrong lengths, bad UTF-8, ...).
    #[error("malformed CDR body: {0}")]
    Malformed(#[from] cdr_encoding::Error),
}

impl CdrError {
    /// Short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CdrError::MissingHeader(_) => "missing_header",
            CdrError::UnsupportedEncapsulation(..) => "unsupported_encapsulation",
            CdrError::Malformed(_) => "malformed",
        }
    }
}

/// A ROS 2 message type with its package and name, which give the DDS type name.
pub trait RosType {
    /// ROS package, e.g. `sensor_msgs`.
    const PACKAGE: &'static str;
    /// Message name, e.g. `LaserScan`.
    const NAME: &'static str;

    /// The DDS type name, e.g. `sensor_msgs::msg::dds_::LaserScan_`.
    fn dds_type_name() -> String {
        format!("{}::msg::dds_::{}_", Self::PACKAGE, Self::NAME)
    }

    /// The ROS type name, e.g. `sensor_msgs/msg/LaserScan`.
    fn ros_type_name() -> String {
        format!("{}/msg/{}", Self::PACKAGE, Self::NAME)
    }
}

/// The DDS topic name of a ROS topic: `/scan` becomes `rt/scan`.
pub fn dds_topic_name(ros_topic: &str) -> String {
    format!("rt/{}", ros_topic.trim_start_matches('/'))
}

/// Serializes a message with the CDR_LE header, byte for byte as ROS 2 RMWs do.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CdrError> {
    let body = cdr_encoding::to_vec::<T, byteorder::LittleEndian>(msg)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&CDR_LE_HEADER);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Deserializes a payload that starts with a CDR encapsulation header (LE or BE).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CdrError> {
    if payload.len() < 4 {
        return Err(CdrError::MissingHeader(payload.len()));
    }
    let body = &payload[4..];
    let (value, _) = match (payload[0], payload[1]) {
        (0x00, 0x01) => cdr_encoding::from_bytes::<T, byteorder::LittleEndian>(body)?,
        (0x00, 0x00) => cdr_encoding::from_bytes::<T, byteorder::BigEndian>(body)?,
        (a, b) => return Err(CdrError::UnsupportedEncapsulation(a, b)),
    };
    Ok(value)
}

/// `uint8[]` fields as one length-prefixed block instead of element by element (same bytes, much
/// faster for camera frames).
pub(crate) mod byte_seq {
    use serde::{Deserializer, Serializer, de::Visitor};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte sequence")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests;
