//! A container's environment, with no I/O: passed-through host variables, ROS 2 defaults from the
//! robot, `envFrom`, `env` with the downward API and ConfigMap/Secret references, and `$(VAR)`
//! expansion, as the kubelet builds it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};

use super::address;
use super::spec::{PlanError, PlanInput};

/// The container's environment: passed-through host variables, ROS defaults, then `envFrom`, then
/// `env` (later wins), with `$(VAR)` references to earlier variables expanded.
pub(super) fn environment(
    pod: &Pod,
    spec: &PodSpec,
    c: &Container,
    input: &PlanInput<'_>,
) -> Result<Vec<(String, String)>, PlanError> {
    let mut env: Vec<(String, String)> = input.pass_env.to_vec();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match input.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(PlanError::Missing(format!("ConfigMap {}", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match input.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(PlanError::Missing(format!("Secret {}", r.name))),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let lookup: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let value = match env_value(pod, spec, c, e, input)? {
            Some(v) => address::expand_vars(&v, &lookup),
            None => continue,
        };
        set(&mut env, e.name.clone(), value);
    }
    let has = |env: &Vec<(String, String)>, k: &str| env.iter().any(|(ek, _)| ek == k);
    if !has(&env, "ROS_DOMAIN_ID")
        && let Some(d) = &input.node.ros_domain_id
    {
        env.push(("ROS_DOMAIN_ID".into(), d.clone()));
    }
    for (k, v) in [
        ("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        ("ROS_LOCALHOST_ONLY", "1"),
    ] {
        if !has(&env, k) {
            env.push((k.into(), v.into()));
        }
    }
    Ok(env)
}

fn env_value(
    pod: &Pod,
    spec: &PodSpec,
    c: &Container,
    e: &EnvVar,
    input: &PlanInput<'_>,
) -> Result<Option<String>, PlanError> {
    let Some(from) = &e.value_from else {
        return Ok(Some(e.value.clone().unwrap_or_default()));
    };
    if let Some(f) = &from.field_ref {
        let meta = &pod.metadata;
        let path = f.field_path.as_str();
        let map_key = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("']"))
                .map(str::to_owned)
        };
        let v = match path {
            "status.podIP" | "status.podIPs" => input.pod_ip.to_owned(),
            "status.hostIP" | "status.hostIPs" => input.node.ip.clone(),
            "spec.nodeName" => input.node.name.clone(),
            "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            _ => {
                if let Some(k) = map_key("metadata.labels['") {
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else if let Some(k) = map_key("metadata.annotations['") {
                    meta.annotations
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    return Err(PlanError::Unsupported(format!("fieldRef {path}")));
                }
            }
        };
        return Ok(Some(v));
    }
    if let Some(r) = &from.resource_field_ref {
        let res = c.resources.as_ref();
        let q = match r.resource.as_str() {
            "limits.cpu" => res
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("cpu")),
            "requests.cpu" => res
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.get("cpu")),
            "limits.memory" => res
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory")),
            "requests.memory" => res
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.get("memory")),
            other => return Err(PlanError::Unsupported(format!("resourceFieldRef {other}"))),
        };
        let v = match (q, r.resource.ends_with("cpu")) {
            (Some(q), true) => address::cpu_cores(&q.0).to_string(),
            (Some(q), false) => q.0.clone(),
            (None, true) => input.node.cpu.clone().unwrap_or_else(|| "1".into()),
            (None, false) => "0".into(),
        };
        return Ok(Some(v));
    }
    let optional_missing = |optional: Option<bool>, what: String| {
        if optional.unwrap_or(false) {
            Ok(None)
        } else {
            Err(PlanError::Missing(what))
        }
    };
    if let Some(k) = &from.config_map_key_ref {
        return match input
            .config_maps
            .get(&k.name)
            .and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get(&k.key))
        {
            Some(v) => Ok(Some(v.clone())),
            None => optional_missing(k.optional, format!("key {} in ConfigMap {}", k.key, k.name)),
        };
    }
    if let Some(k) = &from.secret_key_ref {
        return match input
            .secrets
            .get(&k.name)
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(&k.key))
        {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None => optional_missing(k.optional, format!("key {} in Secret {}", k.key, k.name)),
        };
    }
    Err(PlanError::Unsupported(format!("valueFrom of {}", e.name)))
}
