//! What the API server admits but the operator still has to check, as a pure function the
//! operator's validate step calls before anything else: today, Go durations that match the schema
//! `pattern` yet overflow (more than about 292 years), which CEL only catches where a rule calls
//! `duration()`. A problem found here becomes `Stalled=True`, reason `InvalidSpec`, with the
//! problem's text as the message.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::duration;
use crate::generate;

/// A value the API server admitted that the operator cannot honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// Concrete path, e.g. `spec.rollout.waves[1].pause.duration`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Schema paths of the duration fields of each kind (`[]` marks list items), read once from the
/// generated schemas so a new duration field is covered without touching this module.
fn duration_paths() -> &'static BTreeMap<String, Vec<String>> {
    static PATHS: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let pattern = format!("pattern `{}`", duration::PATTERN);
        generate::crds()
            .iter()
            .map(|crd| {
                let facts = generate::schema_json(crd)
                    .map(|s| generate::facts(&s))
                    .unwrap_or_default();
                let paths = facts
                    .fields
                    .into_iter()
                    .filter(|f| f.constraints.contains(&pattern))
                    .map(|f| f.path)
                    .collect();
                (crd.spec.names.kind.clone(), paths)
            })
            .collect()
    })
}

/// Every value at `path` (dot-separated, `name[]` descends into each list item), with its
/// concrete path.
fn values_at<'v>(root: &'v Value, path: &str) -> Vec<(String, &'v Value)> {
    let mut current: Vec<(String, &Value)> = vec![(String::new(), root)];
    for segment in path.split('.') {
        let (name, each) = match segment.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (segment, false),
        };
        let mut next = Vec::new();
        for (prefix, value) in current {
            let Some(child) = value.get(name) else {
                continue;
            };
            let here = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            };
            if each {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    next.push((format!("{here}[{i}]"), item));
                }
            } else {
                next.push((here, child));
            }
        }
        current = next;
    }
    current
}

/// Durations in `object` that do not parse (see [`duration::parse`]).
pub fn invalid_durations<K>(object: &K) -> Vec<SpecProblem>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let Ok(value) = serde_json::to_value(object) else {
        return vec![SpecProblem {
            path: String::new(),
            message: "object does not serialize".into(),
        }];
    };
    let kind = K::kind(&());
    let mut problems = Vec::new();
    for path in duration_paths().get(kind.as_ref()).into_iter().flatten() {
        for (concrete, v) in values_at(&value, path) {
            let Some(text) = v.as_str() else { continue };
            if let Err(e) = duration::parse(text) {
                problems.push(SpecProblem {
                    path: concrete,
                    message: e.to_string(),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InferenceService, SensorSim};

    fn isvc(rollout: Value) -> InferenceService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "robofleet.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "d"},
            "spec": {
                "model": {"uri": "file:///m.onnx", "sha256": "0".repeat(64)},
                "rollout": rollout,
            },
        }))
        .expect("valid")
    }

    #[test]
    fn every_duration_field_is_known() {
        let paths = duration_paths();
        assert!(
            paths["InferenceService"].contains(&"spec.rollout.waves[].pause.duration".to_owned())
        );
        assert!(paths["SafetyPolicy"].contains(&"spec.source.sourceTimeout".to_owned()));
        assert!(paths["SensorSim"].contains(&"spec.expect[].safetyStopWithin".to_owned()));
    }

    #[test]
    fn overflowing_durations_are_reported_with_their_path() {
        let ok = isvc(
            serde_json::json!({"waves": [{"name": "a", "percent": 100, "pause": {"duration": "10m"}}]}),
        );
        assert_eq!(invalid_durations(&ok), vec![]);
        let bad = isvc(serde_json::json!({"waves": [
            {"name": "a", "robots": 1},
            {"name": "b", "percent": 100, "pause": {"duration": "9999999h"}},
        ]}));
        let problems = invalid_durations(&bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "spec.rollout.waves[1].pause.duration");
        assert!(
            problems[0].to_string().contains("too long"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn defaults_and_absent_fields_are_fine() {
        let sim: SensorSim = serde_json::from_value(serde_json::json!({
            "apiVersion": "robofleet.io/v1alpha1",
            "kind": "SensorSim",
            "metadata": {"name": "s"},
            "spec": {"sensor": {"type": "lidar2d"}},
        }))
        .expect("valid");
        assert_eq!(invalid_durations(&sim), vec![]);
    }
}
