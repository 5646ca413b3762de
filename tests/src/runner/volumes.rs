//! Where a pod's volumes live on the host and what goes in them, with no I/O: `emptyDir`,
//! ConfigMap, Secret and projected volumes in the pod's directory, `hostPath` under the robot's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, Pod, ProjectedVolumeSource, Volume};

use super::spec::{PlanError, PlanInput, VolumeContent, VolumePlan};

pub(super) fn plan_volume(
    v: &Volume,
    pod: &Pod,
    input: &PlanInput<'_>,
) -> Result<VolumePlan, PlanError> {
    let in_pod = input.pod_dir.join("volumes").join(&v.name);
    let (host_path, content) = if v.empty_dir.is_some() {
        (in_pod, VolumeContent::EmptyDir)
    } else if let Some(hp) = &v.host_path {
        let path = input
            .robot_dir
            .join("host")
            .join(hp.path.trim_start_matches('/'));
        let file = matches!(
            hp.type_.as_deref(),
            Some("File" | "FileOrCreate" | "Socket" | "CharDevice" | "BlockDevice")
        );
        (
            path,
            if file {
                VolumeContent::HostFile
            } else {
                VolumeContent::HostDir
            },
        )
    } else if let Some(cm) = &v.config_map {
        let data = input.config_maps.get(&cm.name);
        let optional = cm.optional.unwrap_or(false);
        let all = data
            .map(|c| {
                let text = c
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
                let bin = c
                    .binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()));
                text.chain(bin).collect::<BTreeMap<_, _>>()
            })
            .ok_or_else(|| PlanError::Missing(format!("ConfigMap {}", cm.name)));
        let all = match all {
            Ok(a) => a,
            Err(_) if optional => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let items = cm.items.as_ref().map(|i| {
            i.iter()
                .map(|k| (k.key.clone(), k.path.clone()))
                .collect::<Vec<_>>()
        });
        (in_pod, VolumeContent::Files(select(&all, items, &cm.name)?))
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = input.secrets.get(&name);
        let all = match data {
            Some(sec) => {
                let bin = sec
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()));
                let text = sec
                    .string_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
                bin.chain(text).collect()
            }
            None if s.optional.unwrap_or(false) => BTreeMap::new(),
            None => return Err(PlanError::Missing(format!("Secret {name}"))),
        };
        let items = s.items.as_ref().map(|i| {
            i.iter()
                .map(|k| (k.key.clone(), k.path.clone()))
                .collect::<Vec<_>>()
        });
        (in_pod, VolumeContent::Files(select(&all, items, &name)?))
    } else if let Some(pr) = &v.projected {
        (in_pod, VolumeContent::Files(projected(pr, pod, input)?))
    } else {
        return Err(PlanError::Unsupported(format!(
            "volume {} (only emptyDir, hostPath, configMap, secret and projected)",
            v.name
        )));
    };
    Ok(VolumePlan {
        name: v.name.clone(),
        host_path,
        content,
    })
}

/// A projected volume (what the service-account admission adds to every pod): ConfigMap and
/// Secret items, downward API fields, and an empty placeholder for the service-account token
/// (robot binaries do not talk to the API server).
fn projected(
    pr: &ProjectedVolumeSource,
    pod: &Pod,
    input: &PlanInput<'_>,
) -> Result<Vec<(String, Vec<u8>)>, PlanError> {
    let mut files = Vec::new();
    let items = |i: &Option<Vec<KeyToPath>>| {
        i.as_ref().map(|i| {
            i.iter()
                .map(|k| (k.key.clone(), k.path.clone()))
                .collect::<Vec<_>>()
        })
    };
    for src in pr.sources.iter().flatten() {
        if let Some(cm) = &src.config_map {
            let all: BTreeMap<String, Vec<u8>> = input
                .config_maps
                .get(&cm.name)
                .and_then(|c| c.data.as_ref())
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                        .collect()
                })
                .unwrap_or_default();
            files.extend(select(&all, items(&cm.items), &cm.name)?);
        }
        if let Some(sec) = &src.secret {
            let all: BTreeMap<String, Vec<u8>> = input
                .secrets
                .get(&sec.name)
                .and_then(|s| s.data.as_ref())
                .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
                .unwrap_or_default();
            files.extend(select(&all, items(&sec.items), &sec.name)?);
        }
        if let Some(t) = &src.service_account_token {
            files.push((t.path.clone(), Vec::new()));
        }
        for item in src
            .downward_api
            .iter()
            .flat_map(|d| d.items.iter().flatten())
        {
            let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => pod.metadata.name.clone().unwrap_or_default(),
                Some("metadata.namespace") => pod.metadata.namespace.clone().unwrap_or_default(),
                Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                Some("spec.nodeName") => input.node.name.clone(),
                _ => String::new(),
            };
            files.push((item.path.clone(), value.into_bytes()));
        }
    }
    Ok(files)
}

fn select(
    all: &BTreeMap<String, Vec<u8>>,
    items: Option<Vec<(String, String)>>,
    source: &str,
) -> Result<Vec<(String, Vec<u8>)>, PlanError> {
    let files: Vec<(String, Vec<u8>)> = match items {
        None => all.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(items) => items
            .into_iter()
            .map(|(key, path)| {
                all.get(&key)
                    .map(|v| (path, v.clone()))
                    .ok_or_else(|| PlanError::Missing(format!("key {key} in {source}")))
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some((bad, _)) = files
        .iter()
        .find(|(p, _)| p.starts_with('/') || p.split('/').any(|s| s == ".."))
    {
        return Err(PlanError::Unsupported(format!("volume item path {bad}")));
    }
    Ok(files)
}
