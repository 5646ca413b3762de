//! sensor_msgs images and vision_msgs 4.x detections (Humble/Jazzy layout).

use serde::{Deserialize, Serialize};

use super::common::{Header, PoseWithCovariance, ros_type};
use super::{RosType, byte_seq};

/// `sensor_msgs/Image`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Image {
    /// Header.
    pub header: Header,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Pixel encoding (`rgb8`, `bgr8`, `mono8`, ...).
    pub encoding: String,
    /// Non-zero if multi-byte pixels are big-endian.
    pub is_bigendian: u8,
    /// Bytes per row.
    pub step: u32,
    /// Pixels, `step * height` bytes.
    #[serde(with = "byte_seq")]
    pub data: Vec<u8>,
}
ros_type!(Image, "sensor_msgs", "Image");

/// `sensor_msgs/CompressedImage`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CompressedImage {
    /// Header.
    pub header: Header,
    /// `jpeg`, `png`, ...
    pub format: String,
    /// Encoded image.
    #[serde(with = "byte_seq")]
    pub data: Vec<u8>,
}
ros_type!(CompressedImage, "sensor_msgs", "CompressedImage");

/// `vision_msgs/Point2D`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Point2D {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
}
ros_type!(Point2D, "vision_msgs", "Point2D");

/// `vision_msgs/Pose2D` (4.x: position is a `Point2D`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Pose2D {
    /// Position.
    pub position: Point2D,
    /// Rotation (rad).
    pub theta: f64,
}
ros_type!(Pose2D, "vision_msgs", "Pose2D");

/// `vision_msgs/BoundingBox2D`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct BoundingBox2D {
    /// Centre in pixels.
    pub center: Pose2D,
    /// Width in pixels.
    pub size_x: f64,
    /// Height in pixels.
    pub size_y: f64,
}
ros_type!(BoundingBox2D, "vision_msgs", "BoundingBox2D");

/// `vision_msgs/ObjectHypothesis`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ObjectHypothesis {
    /// Class id (a string in 4.x).
    pub class_id: String,
    /// Confidence.
    pub score: f64,
}
ros_type!(ObjectHypothesis, "vision_msgs", "ObjectHypothesis");

/// `vision_msgs/ObjectHypothesisWithPose`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ObjectHypothesisWithPose {
    /// Class and score.
    pub hypothesis: ObjectHypothesis,
    /// 3D pose (unused by 2D detectors; identity with zero covariance).
    pub pose: PoseWithCovariance,
}
ros_type!(
    ObjectHypothesisWithPose,
    "vision_msgs",
    "ObjectHypothesisWithPose"
);

/// `vision_msgs/Detection2D`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Detection2D {
    /// Header (the image's).
    pub header: Header,
    /// Class hypotheses.
    pub results: Vec<ObjectHypothesisWithPose>,
    /// Box in pixels.
    pub bbox: BoundingBox2D,
    /// Tracking id, may be empty.
    pub id: String,
}
ros_type!(Detection2D, "vision_msgs", "Detection2D");

/// `vision_msgs/Detection2DArray`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Detection2DArray {
    /// Header (the image's).
    pub header: Header,
    /// Detections.
    pub detections: Vec<Detection2D>,
}
ros_type!(Detection2DArray, "vision_msgs", "Detection2DArray");
