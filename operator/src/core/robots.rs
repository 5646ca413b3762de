//! The operator's view of a robot (a Node labelled `robofleet.io/robot=true`) and label selection.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use robofleet_crds::labels;

/// What the operator needs to know about one robot; built from a Node and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Robot {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The node's Ready condition is True (an offline robot is NotReady or Unknown).
    pub ready: bool,
}

impl Robot {
    /// The robot view of a Node, or `None` if the Node is not a robot.
    pub fn from_node(node: &Node) -> Option<Self> {
        let node_labels = node.metadata.labels.clone().unwrap_or_default();
        if node_labels.get(labels::ROBOT).map(String::as_str) != Some("true") {
            return None;
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Some(Self {
            name: node.metadata.name.clone()?,
            labels: node_labels,
            ready,
        })
    }

    /// The ROS 2 domain ID from the robot's label, if it carries a valid one.
    pub fn ros_domain_id(&self) -> Option<u32> {
        self.labels
            .get(labels::ROS_DOMAIN_ID)
            .and_then(|v| v.parse().ok())
            .filter(|d| *d <= 232)
    }
}

/// Why a label selector cannot be evaluated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    /// An operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown label selector operator {0:?}")]
    UnknownOperator(String),
    /// In / NotIn without values.
    #[error("label selector operator {0} on {1:?} needs values")]
    MissingValues(String, String),
}

impl SelectorError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownOperator(_) => "unknown_operator",
            Self::MissingValues(..) => "missing_values",
        }
    }
}

/// Whether `labels` match `selector` (Kubernetes semantics: all terms ANDed; `None` selects all).
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Ok(false);
        }
    }
    for expr in selector.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or_default();
        let ok = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues(
                    expr.operator.clone(),
                    expr.key.clone(),
                ));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(SelectorError::UnknownOperator(other.to_owned())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The robots `selector` picks (every robot when `None`), sorted by name.
pub fn select<'r>(
    selector: Option<&LabelSelector>,
    robots: impl IntoIterator<Item = &'r Robot>,
) -> Result<Vec<&'r Robot>, SelectorError> {
    let mut out = Vec::new();
    for robot in robots {
        if matches(selector, &robot.labels)? {
            out.push(robot);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn robot(name: &str, l: &[(&str, &str)]) -> Robot {
        Robot {
            name: name.into(),
            labels: l.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ready: true,
        }
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    #[test]
    fn nodes_without_the_robot_label_are_not_robots() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "infra", "labels": {"robofleet.io/robot": "false"}}
        }))
        .unwrap();
        assert!(Robot::from_node(&node).is_none());
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r1", "labels": {"robofleet.io/robot": "true", "robofleet.io/ros-domain-id": "7"}},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }))
        .unwrap();
        let r = Robot::from_node(&node).unwrap();
        assert!(!r.ready);
        assert_eq!(r.ros_domain_id(), Some(7));
    }

    #[test]
    fn selector_semantics() {
        let a = robot("a", &[("zone", "z1"), ("gpu", "yes")]);
        let b = robot("b", &[("zone", "z2")]);
        let all = [a.clone(), b.clone()];
        let by_labels = LabelSelector {
            match_labels: Some([("zone".to_owned(), "z1".to_owned())].into()),
            ..LabelSelector::default()
        };
        assert_eq!(select(Some(&by_labels), &all).unwrap(), vec![&a]);
        let cases = [
            (expr("zone", "In", &["z1", "z2"]), vec!["a", "b"]),
            (expr("zone", "NotIn", &["z1"]), vec!["b"]),
            (expr("gpu", "Exists", &[]), vec!["a"]),
            (expr("gpu", "DoesNotExist", &[]), vec!["b"]),
        ];
        for (e, want) in cases {
            let sel = LabelSelector {
                match_expressions: Some(vec![e.clone()]),
                ..LabelSelector::default()
            };
            let got: Vec<_> = select(Some(&sel), &all)
                .unwrap()
                .iter()
                .map(|r| r.name.clone())
                .collect();
            assert_eq!(got, want, "{e:?}");
        }
        assert_eq!(select(None, &all).unwrap().len(), 2);
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("zone", "Near", &["z1"])]),
            ..LabelSelector::default()
        };
        assert_eq!(
            select(Some(&bad), &all).unwrap_err().kind(),
            "unknown_operator"
        );
        let no_values = LabelSelector {
            match_expressions: Some(vec![expr("zone", "In", &[])]),
            ..LabelSelector::default()
        };
        assert_eq!(
            select(Some(&no_values), &all).unwrap_err().kind(),
            "missing_values"
        );
    }
}
