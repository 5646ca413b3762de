//! Pure parts of the detection bridge: a camera message → the frame sent to the sidecar (checked
//! against the ROS message contract, never re-encoded), the sidecar's JSON → `Detection2DArray`,
//! HTTP statuses → outcomes, and the two ordering rules (newest frame wins the next free request
//! slot; an answer older than one already published is dropped).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::msg::{
    BoundingBox2D, CompressedImage, Detection2D, Detection2DArray, Header, Image, ObjectHypothesis,
    ObjectHypothesisWithPose, Point2D, Pose2D, PoseWithCovariance,
};

/// `Content-Type` of raw frames on `POST /v1/detect`.
pub const RAW_CONTENT_TYPE: &str = "application/x-robofleet-raw";

/// What happened to one camera frame (the `outcome` label: a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Detections published.
    Ok,
    /// Dropped unsent because a newer frame arrived (or it waited longer than `--max-frame-age`),
    /// or its answer came after a newer frame's.
    Stale,
    /// The frame contradicts its own geometry (here) or the sidecar could not decode it (400).
    Corrupt,
    /// The sidecar does not take this encoding or format (415).
    Unsupported,
    /// The sidecar refused it: queue full or not ready (429, 503).
    Rejected,
    /// No answer within `--timeout` (or the sidecar's own deadline, 504).
    Timeout,
    /// The sidecar could not be reached (connection refused or reset).
    Unavailable,
    /// Any other failure: 5xx, an answer that is not the documented JSON.
    Error,
}

impl Outcome {
    /// Every outcome, for pre-registering the series.
    pub const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::Stale,
        Outcome::Corrupt,
        Outcome::Unsupported,
        Outcome::Rejected,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Stale => "stale",
            Outcome::Corrupt => "corrupt",
            Outcome::Unsupported => "unsupported",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a non-200 answer from `/v1/detect`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            400 | 413 => Outcome::Corrupt,
            415 => Outcome::Unsupported,
            429 | 503 => Outcome::Rejected,
            504 => Outcome::Timeout,
            _ => Outcome::Error,
        }
    }
}

/// A camera message that breaks its own contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No pixels or no bytes.
    #[error("empty frame")]
    Empty,
    /// `data` is not `step * height` bytes, or `step` is zero.
    #[error("{width}x{height} frame with step {step} has {len} bytes, not step*height")]
    Geometry {
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
        /// Bytes per row.
        step: u32,
        /// Bytes present.
        len: usize,
    },
    /// The encoding string cannot travel in an HTTP header.
    #[error("encoding {0:?} is not a printable ASCII token")]
    Encoding(String),
}

/// How the sidecar should read the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `sensor_msgs/Image`: raw pixels described by headers.
    Raw {
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
        /// `rgb8`, `bgr8`, ... as the camera sent it.
        encoding: String,
        /// Bytes per row.
        step: u32,
    },
    /// `sensor_msgs/CompressedImage`: JPEG or PNG bytes, which the sidecar recognises by content.
    Encoded,
}

/// One camera frame on its way to the sidecar.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Arrival order on this bridge.
    pub seq: u64,
    /// Monotonic arrival time.
    pub received: Instant,
    /// The image's header, copied onto the detections.
    pub header: Header,
    /// Body layout.
    pub payload: Payload,
    /// The camera's bytes, unchanged.
    pub body: Bytes,
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Frame {
    /// A raw image, checked against the `sensor_msgs/Image` contract (`data` is `step * height`
    /// bytes). The pixel format itself is the sidecar's business (it answers 415 for encodings it
    /// does not take), so the bridge needs no list of encodings.
    pub fn raw(img: Image, seq: u64, received: Instant) -> Result<Frame, FrameError> {
        if img.width == 0 || img.height == 0 || img.data.is_empty() {
            return Err(FrameError::Empty);
        }
        let expected = u64::from(img.step) * u64::from(img.height);
        if img.step == 0 || img.data.len() as u64 != expected {
            return Err(FrameError::Geometry {
                width: img.width,
                height: img.height,
                step: img.step,
                len: img.data.len(),
            });
        }
        if !token(&img.encoding) {
            return Err(FrameError::Encoding(img.encoding));
        }
        Ok(Frame {
            seq,
            received,
            header: img.header,
            payload: Payload::Raw {
                width: img.width,
                height: img.height,
                encoding: img.encoding,
                step: img.step,
            },
            body: Bytes::from(img.data),
        })
    }

    /// A compressed image: its bytes as they are.
    pub fn compressed(
        img: CompressedImage,
        seq: u64,
        received: Instant,
    ) -> Result<Frame, FrameError> {
        if img.data.is_empty() {
            return Err(FrameError::Empty);
        }
        Ok(Frame {
            seq,
            received,
            header: img.header,
            payload: Payload::Encoded,
            body: Bytes::from(img.data),
        })
    }

    /// Request headers for `POST /v1/detect`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match &self.payload {
            Payload::Raw {
                width,
                height,
                encoding,
                step,
            } => vec![
                ("content-type", RAW_CONTENT_TYPE.to_owned()),
                ("x-robofleet-width", width.to_string()),
                ("x-robofleet-height", height.to_string()),
                ("x-robofleet-encoding", encoding.clone()),
                ("x-robofleet-step", step.to_string()),
            ],
            Payload::Encoded => vec![("content-type", "application/octet-stream".to_owned())],
        }
    }

    /// Older than `max_age` at `now` (it waited too long for a free request slot).
    pub fn expired(&self, now: Instant, max_age: Duration) -> bool {
        now.saturating_duration_since(self.received) > max_age
    }
}

/// One detection as `/v1/detect` answers it (original image pixels).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SidecarDetection {
    /// Class index.
    pub class_id: u64,
    /// Class name, when the model declares names.
    #[serde(default)]
    pub class_name: Option<String>,
    /// Score.
    pub confidence: f64,
    /// Left.
    pub x1: f64,
    /// Top.
    pub y1: f64,
    /// Right.
    pub x2: f64,
    /// Bottom.
    pub y2: f64,
}

/// The `/v1/detect` answer (fields the bridge does not use are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DetectResponse {
    /// Detections, highest confidence first.
    pub detections: Vec<SidecarDetection>,
}

/// The detections as `vision_msgs/Detection2DArray`, stamped with the image's header: one
/// hypothesis per detection (`class_id` is the class name when declared, else the index), the box
/// as centre and size in image pixels, no 3D pose (identity, zero covariance), empty `id`.
pub fn to_detection_array(header: &Header, resp: &DetectResponse) -> Detection2DArray {
    let detections = resp
        .detections
        .iter()
        .map(|d| Detection2D {
            header: header.clone(),
            results: vec![ObjectHypothesisWithPose {
                hypothesis: ObjectHypothesis {
                    class_id: d
                        .class_name
                        .clone()
                        .unwrap_or_else(|| d.class_id.to_string()),
                    score: d.confidence,
                },
                pose: PoseWithCovariance::default(),
            }],
            bbox: BoundingBox2D {
                center: Pose2D {
                    position: Point2D {
                        x: (d.x1 + d.x2) / 2.0,
                        y: (d.y1 + d.y2) / 2.0,
                    },
                    theta: 0.0,
                },
                size_x: d.x2 - d.x1,
                size_y: d.y2 - d.y1,
            },
            id: String::new(),
        })
        .collect();
    Detection2DArray {
        header: header.clone(),
        detections,
    }
}

/// Newest wins: the one frame waiting for a free request slot. Putting a frame replaces (and
/// returns, to be counted stale) the one that was waiting.
#[derive(Debug)]
pub struct Latest<T> {
    waiting: Option<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest { waiting: None }
    }
}

impl<T> Latest<T> {
    /// Stores `item`; returns the item it replaced.
    pub fn put(&mut self, item: T) -> Option<T> {
        self.waiting.replace(item)
    }

    /// Takes the waiting item.
    pub fn take(&mut self) -> Option<T> {
        self.waiting.take()
    }
}

/// Publication order: with several requests in flight answers may overtake each other; an answer
/// for a frame older than one already published is dropped, so detections never go back in time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sequencer {
    last: Option<u64>,
}

impl Sequencer {
    /// Whether the answer for frame `seq` may be published now (and records it if so).
    pub fn admit(&mut self, seq: u64) -> bool {
        if self.last.is_some_and(|l| seq <= l) {
            return false;
        }
        self.last = Some(seq);
        true
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
