//! diagnostic_msgs.

use serde::{Deserialize, Serialize};

use super::RosType;
use super::common::{Header, ros_type};

/// `diagnostic_msgs/KeyValue`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}
ros_type!(KeyValue, "diagnostic_msgs", "KeyValue");

/// `diagnostic_msgs/DiagnosticStatus`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct DiagnosticStatus {
    /// [`DiagnosticStatus::OK`], `WARN`, `ERROR` or `STALE` (`byte` on the wire).
    pub level: u8,
    /// Component name.
    pub name: String,
    /// Human-readable summary.
    pub message: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Details.
    pub values: Vec<KeyValue>,
}
ros_type!(DiagnosticStatus, "diagnostic_msgs", "DiagnosticStatus");

impl DiagnosticStatus {
    /// Level OK.
    pub const OK: u8 = 0;
    /// Level WARN.
    pub const WARN: u8 = 1;
    /// Level ERROR.
    pub const ERROR: u8 = 2;
    /// Level STALE.
    pub const STALE: u8 = 3;
}

/// `diagnostic_msgs/DiagnosticArray`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct DiagnosticArray {
    /// Header.
    pub header: Header,
    /// Statuses.
    pub status: Vec<DiagnosticStatus>,
}
ros_type!(DiagnosticArray, "diagnostic_msgs", "DiagnosticArray");
