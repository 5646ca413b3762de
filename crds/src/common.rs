//! Small types and limits shared by the three kinds.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Longest `metadata.name` of every robofleet resource. Children are named
/// `<kind>-<owner>-<hash(node)>` (`safety-` is 7, the hash 10 plus a dash) and carry the owner's
/// name in the `robofleet.io/owner` label; SensorSim children are `<template>-<revision>`: all stay
/// within the 63 characters of a label value and a DNS label.
pub const MAX_NAME_LENGTH: usize = 40;

/// The CEL rule every kind carries on its root, and its message.
pub const NAME_RULE: (&str, &str) = (
    "size(self.metadata.name) <= 40",
    "metadata.name must be at most 40 characters, so the names and labels of the pods robofleet creates stay within 63",
);

/// The CEL rule on every `robotSelector`, and its message.
pub const SELECTOR_RULE: &str = "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)";

/// Pattern of a ROS 2 topic name; `${ROBOT}` is replaced by the robot's Node name.
pub const TOPIC_PATTERN: &str = r"^/?([A-Za-z_]|\$\{ROBOT\})([A-Za-z0-9_/]|\$\{ROBOT\})*$";

/// Pattern of a short name used as a list key (wave, zone, check, obstacle names).
pub const KEY_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A ROS 2 topic name such as `/scan` or `/${ROBOT}/camera/image_raw`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topic(pub String);

impl Topic {
    /// Wraps a topic name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name for one robot: `${ROBOT}` replaced by the Node name.
    pub fn for_robot(&self, node: &str) -> String {
        self.0.replace("${ROBOT}", node)
    }
}

impl JsonSchema for Topic {
    fn schema_name() -> Cow<'static, str> {
        "Topic".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": TOPIC_PATTERN,
        })
    }
}

/// A reference to another robofleet resource in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalRef {
    /// `metadata.name` of the referenced resource (same namespace).
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
}

/// A point or vector in a plane, written `[x, y]` in meters (REP 103: x forward, y left), like a
/// Nav2 footprint.
///
/// Not `{x: .., y: ..}`: kubectl reads YAML 1.1, where a bare `y` key is the boolean `true`, so a
/// field named `y` would be refused as unknown unless every user quoted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Point2 {
    /// Meters along x (forward).
    pub x: f64,
    /// Meters along y (left).
    pub y: f64,
}

impl From<[f64; 2]> for Point2 {
    fn from([x, y]: [f64; 2]) -> Self {
        Self { x, y }
    }
}

impl From<Point2> for [f64; 2] {
    fn from(p: Point2) -> Self {
        [p.x, p.y]
    }
}

/// Largest coordinate of a [`Point2`], in meters.
pub const MAX_COORDINATE: f64 = 100.0;

impl JsonSchema for Point2 {
    fn schema_name() -> Cow<'static, str> {
        "Point2".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "items": {"type": "number", "minimum": -MAX_COORDINATE, "maximum": MAX_COORDINATE},
            "minItems": 2,
            "maxItems": 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_resolve_per_robot() {
        let t = Topic::new("/${ROBOT}/scan");
        assert_eq!(t.for_robot("robot-7"), "/robot-7/scan");
        let re = regex::Regex::new(TOPIC_PATTERN).expect("compiles");
        for ok in ["/scan", "scan", "/${ROBOT}/camera/image_raw", "/a_b/c1"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["", "/", "/1scan", "/sc an", "/${NODE}/x", "/a-b"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn points_are_pairs() {
        let p: Point2 = serde_json::from_str("[0.5, -0.25]").expect("pair");
        assert_eq!(p, Point2 { x: 0.5, y: -0.25 });
        assert_eq!(
            serde_json::to_string(&p).expect("serializes"),
            "[0.5,-0.25]"
        );
        assert!(serde_json::from_str::<Point2>("[1.0]").is_err());
        assert!(serde_json::from_str::<Point2>(r#"{"x": 1.0, "y": 2.0}"#).is_err());
    }

    #[test]
    fn name_rule_matches_the_constant() {
        assert!(NAME_RULE.0.ends_with(&MAX_NAME_LENGTH.to_string()));
        assert!(NAME_RULE.1.contains(&MAX_NAME_LENGTH.to_string()));
    }
}
