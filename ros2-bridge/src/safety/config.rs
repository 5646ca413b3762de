//! The safety policy as the monitor reads it: the mounted config file (what the operator renders
//! from a `SafetyPolicy`) or the quick command-line flags, validated into one [`Policy`].
//!
//! The file is YAML or JSON with the camelCase field names of the `SafetyPolicy` spec (see
//! docs/ros2-bridge.md). Unknown fields inside sections are rejected: a typo in a safety zone must
//! not silently become a default.

use std::time::Duration;

use super::geometry::{Pt, Shape, Transform2D};

mod spec;
pub use spec::*;

/// Why a policy was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The file did not parse.
    #[error("policy does not parse: {0}")]
    Parse(String),
    /// A duration string is not a Go-style duration.
    #[error("{field}: {value:?} is not a duration like 200ms, 1s or 1m30s")]
    Duration {
        /// Field name.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Parse(_) => "parse",
            ConfigError::Duration { .. } => "duration",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

/// Parses a Go-style duration (`300ms`, `1.5s`, `1m30s`, `2h`, `0`), as the CRD schema accepts.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A validated zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// Name.
    pub name: String,
    /// Region in the zone frame.
    pub shape: Shape,
    /// Action.
    pub action: Action,
    /// Points needed.
    pub min_points: usize,
    /// Slowdown limit (percent of max speed).
    pub speed_limit_percent: f64,
}

/// The validated policy the monitor runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Metric label.
    pub name: String,
    /// Scan topic, `${ROBOT}` resolved.
    pub scan_topic: String,
    /// Staleness limit.
    pub source_timeout: Duration,
    /// Allowed scan publishers.
    pub max_publishers: usize,
    /// Laser→zone frame.
    pub transform: Transform2D,
    /// Zones.
    pub zones: Vec<Zone>,
    /// Invalid fraction limit.
    pub max_invalid_fraction: f64,
    /// Release mode.
    pub release: ReleaseMode,
    /// Hold time for Auto release.
    pub hold_time: Duration,
    /// Stop lock topic.
    pub stop_topic: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Speed limit topic.
    pub speed_limit_topic: Option<String>,
    /// Diagnostics topic, if enabled.
    pub diagnostics_topic: Option<String>,
}

/// The quick flags, turned into a one-zone policy: a stop sector centred straight ahead.
#[derive(Debug, Clone)]
pub struct QuickFlags {
    /// `--scan`.
    pub scan: String,
    /// `--stop-topic`.
    pub stop_topic: String,
    /// `--stop-distance` (m).
    pub stop_distance: f64,
    /// `--sector-deg`: full width of the sector.
    pub sector_deg: f64,
    /// `--source-timeout`.
    pub source_timeout: String,
}

impl QuickFlags {
    /// The equivalent policy file.
    pub fn to_file(&self) -> PolicyFile {
        PolicyFile {
            name: default_name(),
            source: SourceSpec {
                topic: self.scan.clone(),
                source_timeout: self.source_timeout.clone(),
                max_publishers: 1,
                transform: None,
                frame: None,
            },
            zones: vec![ZoneSpec {
                name: "stop".into(),
                shape: ShapeSpec::Sector {
                    range: self.stop_distance,
                    min_range: 0.0,
                    min_angle_deg: -self.sector_deg / 2.0,
                    max_angle_deg: self.sector_deg / 2.0,
                },
                action: Action::Stop,
                min_points: 1,
                speed_limit_percent: None,
            }],
            invalid_readings: InvalidSpec::default(),
            release: ReleaseSpec::default(),
            output: OutputSpec {
                stop_topic: self.stop_topic.clone(),
                heartbeat: default_heartbeat(),
                speed_limit_topic: None,
            },
            diagnostics: DiagnosticsSpec::default(),
            reset_nonce: None,
        }
    }
}

/// Replaces `${ROBOT}` in a topic name and checks that the result is a ROS topic name. Node names
/// may hold `-` and `.`, which ROS names cannot: they become `_`.
pub fn resolve_topic(topic: &str, robot: &str) -> Result<String, ConfigError> {
    let t = topic.replace("${ROBOT}", &robot.replace(['-', '.'], "_"));
    let t = if t.starts_with('/') {
        t
    } else {
        format!("/{t}")
    };
    let ok = t.len() > 1
        && !t.ends_with('/')
        && !t.contains("//")
        && t.split('/').skip(1).all(|seg| {
            seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !seg.starts_with(|c: char| c.is_ascii_digit())
        });
    if ok {
        Ok(t)
    } else {
        Err(ConfigError::Invalid(format!(
            "{t:?} is not a valid ROS topic name"
        )))
    }
}

fn dur(field: &'static str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).ok_or_else(|| ConfigError::Duration {
        field,
        value: s.into(),
    })
}

fn positive_finite(what: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ConfigError::Invalid(format!(
            "{what} must be a positive number, got {v}"
        )))
    }
}

impl PolicyFile {
    /// Parses YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<PolicyFile, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks every rule and resolves `${ROBOT}` in topic names.
    pub fn validate(&self, robot: &str) -> Result<Policy, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let source_timeout = dur("source.sourceTimeout", &self.source.source_timeout)?;
        let hold_time = dur("release.holdTime", &self.release.hold_time)?;
        let heartbeat = dur("output.heartbeat", &self.output.heartbeat)?;
        if source_timeout.is_zero() || heartbeat.is_zero() {
            return invalid("sourceTimeout and heartbeat must be greater than zero".into());
        }
        if self.source.max_publishers == 0 {
            return invalid("source.maxPublishers must be at least 1".into());
        }
        let transform = match (&self.source.frame, self.source.transform) {
            (Some(f), Some(_)) if f == "laser" => {
                return invalid(
                    "source.frame: laser and source.transform exclude each other".into(),
                );
            }
            (Some(f), _) if f != "laser" && f != "base_link" => {
                return invalid(format!(
                    "source.frame must be laser or base_link, got {f:?}"
                ));
            }
            (_, Some(t))
                if [t.position.x, t.position.y, t.yaw_deg]
                    .iter()
                    .all(|v| v.is_finite()) =>
            {
                Transform2D {
                    x: t.position.x,
                    y: t.position.y,
                    yaw: t.yaw_deg.to_radians(),
                }
            }
            (_, Some(_)) => return invalid("source.transform must be finite".into()),
            (_, None) => Transform2D::default(),
        };
        let f = self.invalid_readings.max_invalid_fraction;
        if !(0.0..=1.0).contains(&f) {
            return invalid(format!(
                "invalidReadings.maxInvalidFraction must be in [0, 1], got {f}"
            ));
        }
        if self.zones.is_empty() {
            return invalid("at least one zone is required".into());
        }
        let mut zones = Vec::with_capacity(self.zones.len());
        for z in &self.zones {
            if z.name.is_empty() || zones.iter().any(|o: &Zone| o.name == z.name) {
                return invalid(format!(
                    "zone names must be unique and non-empty: {:?}",
                    z.name
                ));
            }
            if z.min_points == 0 {
                return invalid(format!("zone {}: minPoints must be at least 1", z.name));
            }
            let shape = zone_shape(&z.name, &z.shape)?;
            let speed_limit_percent = match (z.action, z.speed_limit_percent) {
                (Action::Slowdown, None) => 50.0,
                (Action::Slowdown, Some(p)) if p > 0.0 && p <= 100.0 => p,
                (Action::Slowdown, Some(p)) => {
                    return invalid(format!(
                        "zone {}: speedLimitPercent must be in (0, 100], got {p}",
                        z.name
                    ));
                }
                (_, Some(_)) => {
                    return invalid(format!(
                        "zone {}: speedLimitPercent is only for slowdown zones",
                        z.name
                    ));
                }
                (_, None) => 0.0,
            };
            zones.push(Zone {
                name: z.name.clone(),
                shape,
                action: z.action,
                min_points: z.min_points,
                speed_limit_percent,
            });
        }
        if zones.iter().any(|z| z.action == Action::Slowdown)
            && self.output.speed_limit_topic.is_none()
        {
            return invalid("slowdown zones need output.speedLimitTopic".into());
        }
        Ok(Policy {
            name: self.name.clone(),
            scan_topic: resolve_topic(&self.source.topic, robot)?,
            source_timeout,
            max_publishers: self.source.max_publishers,
            transform,
            zones,
            max_invalid_fraction: f,
            release: self.release.mode,
            hold_time,
            stop_topic: resolve_topic(&self.output.stop_topic, robot)?,
            heartbeat,
            speed_limit_topic: self
                .output
                .speed_limit_topic
                .as_deref()
                .map(|t| resolve_topic(t, robot))
                .transpose()?,
            diagnostics_topic: if self.diagnostics.enabled {
                Some(resolve_topic(&self.diagnostics.topic, robot)?)
            } else {
                None
            },
        })
    }
}

fn zone_shape(name: &str, spec: &ShapeSpec) -> Result<Shape, ConfigError> {
    let ctx = |what: &str| format!("zone {name}: {what}");
    match spec {
        ShapeSpec::Sector {
            range,
            min_range,
            min_angle_deg,
            max_angle_deg,
        } => {
            let range = positive_finite(&ctx("range"), *range)?;
            if !(min_range.is_finite() && *min_range >= 0.0 && *min_range < range) {
                return Err(ConfigError::Invalid(ctx("minRange must be in [0, range)")));
            }
            let width = max_angle_deg - min_angle_deg;
            if !(min_angle_deg.is_finite() && width > 0.0 && width <= 360.0) {
                return Err(ConfigError::Invalid(ctx(
                    "maxAngleDeg - minAngleDeg must be in (0, 360]",
                )));
            }
            Ok(Shape::sector(
                min_angle_deg.to_radians(),
                max_angle_deg.to_radians(),
                *min_range,
                range,
            ))
        }
        ShapeSpec::Circle { radius, center } => {
            let radius = positive_finite(&ctx("radius"), *radius)?;
            if !(center.x.is_finite() && center.y.is_finite()) {
                return Err(ConfigError::Invalid(ctx("center must be finite")));
            }
            Ok(Shape::Circle {
                center: Pt {
                    x: center.x,
                    y: center.y,
                },
                radius,
            })
        }
        ShapeSpec::Polygon { points } => {
            if points.len() < 3 || points.iter().any(|p| !(p.x.is_finite() && p.y.is_finite())) {
                return Err(ConfigError::Invalid(ctx(
                    "a polygon needs at least 3 finite points",
                )));
            }
            let area2: f64 = (0..points.len())
                .map(|i| {
                    let (a, b) = (points[i], points[(i + 1) % points.len()]);
                    a.x * b.y - b.x * a.y
                })
                .sum();
            if area2.abs() < 1e-12 {
                return Err(ConfigError::Invalid(ctx("the polygon has no area")));
            }
            Ok(Shape::Polygon {
                points: points.iter().map(|p| Pt { x: p.x, y: p.y }).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests;
