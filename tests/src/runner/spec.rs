//! Pod spec → launch plan, with no I/O: which binary each container runs, with which arguments,
//! environment (downward API, ConfigMap/Secret references, ROS defaults) and working directory,
//! where its volumes live on the host, and which probes to run. Mount paths in arguments and
//! environment are rewritten to the host directories, and for hostNetwork pods `127.0.0.1` and
//! `0.0.0.0` become the robot's own address, so each simulated robot behaves as its own host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, KeyToPath, Pod, PodSpec, Probe, ProjectedVolumeSource, Secret,
    Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::address;
use super::config::ImageMap;

/// Why a pod cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No binary is mapped for the image.
    #[error("image {0:?} has no binary in the pod runner's image map")]
    UnknownImage(String),
    /// Something the runner does not simulate.
    #[error("not supported by the pod runner: {0}")]
    Unsupported(String),
    /// A referenced ConfigMap, Secret or key is missing (and not optional).
    #[error("missing {0}")]
    Missing(String),
}

impl PlanError {
    /// A short stable name for logs and container `waiting.reason`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownImage(_) => "ErrImageNeverPull",
            Self::Unsupported(_) => "CreateContainerConfigError",
            Self::Missing(_) => "CreateContainerConfigError",
        }
    }
}

/// What the runner knows about the robot a pod is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// node name
    pub name: String,
    /// InternalIP
    pub ip: String,
    /// `robofleet.io/ros-domain-id`
    pub ros_domain_id: Option<String>,
    /// allocatable CPU cores (for `resourceFieldRef` without a limit)
    pub cpu: Option<String>,
}

/// Everything [`plan`] needs besides the pod.
pub struct PlanInput<'a> {
    /// the robot
    pub node: &'a NodeInfo,
    /// the pod's IP as kwok assigned it (the node IP for hostNetwork pods)
    pub pod_ip: &'a str,
    /// per-pod directory (emptyDir, ConfigMap and Secret volumes, logs)
    pub pod_dir: &'a Path,
    /// per-robot directory (hostPath volumes live under `<robot_dir>/host/`)
    pub robot_dir: &'a Path,
    /// image → binary
    pub images: &'a ImageMap,
    /// host environment passed to every container
    pub pass_env: &'a [(String, String)],
    /// ConfigMaps of the pod's namespace it refers to, by name
    pub config_maps: &'a BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace it refers to, by name
    pub secrets: &'a BTreeMap<String, Secret>,
}

/// How a pod is run.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    /// containers in spec order
    pub containers: Vec<Launch>,
    /// volumes to materialise before starting
    pub volumes: Vec<VolumePlan>,
    /// shares the robot's network (else: its own network namespace)
    pub host_network: bool,
    /// `Always`, `OnFailure` or `Never`
    pub restart_policy: RestartPolicy,
    /// `terminationGracePeriodSeconds`
    pub grace: Duration,
}

/// `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// restart on any exit
    Always,
    /// restart on a non-zero exit
    OnFailure,
    /// never restart
    Never,
}

/// One container's process.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// container name
    pub name: String,
    /// image (reported in containerStatuses)
    pub image: String,
    /// binary to execute
    pub program: PathBuf,
    /// argv after the program
    pub args: Vec<String>,
    /// the complete environment (nothing else is inherited)
    pub env: Vec<(String, String)>,
    /// working directory
    pub cwd: PathBuf,
    /// where the container's logs and termination message go
    pub dir: PathBuf,
    /// host file standing in for `terminationMessagePath`
    pub termination_message: PathBuf,
    /// `terminationMessagePolicy: FallbackToLogsOnError`
    pub message_from_logs: bool,
    /// readiness probe
    pub readiness: Option<ProbePlan>,
    /// liveness probe
    pub liveness: Option<ProbePlan>,
}

/// A probe with its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    /// what to check
    pub action: ProbeAction,
    /// `initialDelaySeconds`
    pub initial_delay: Duration,
    /// `periodSeconds`
    pub period: Duration,
    /// `timeoutSeconds`
    pub timeout: Duration,
    /// `successThreshold`
    pub success_threshold: u32,
    /// `failureThreshold`
    pub failure_threshold: u32,
}

/// The check of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// HTTP GET; success is a status in 200..400
    Http {
        /// address
        host: String,
        /// port
        port: u16,
        /// path and query
        path: String,
    },
    /// TCP connect
    Tcp {
        /// address
        host: String,
        /// port
        port: u16,
    },
    /// command in the container's environment; success is exit 0
    Exec {
        /// argv
        argv: Vec<String>,
    },
}

/// A volume and where it lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    /// volume name
    pub name: String,
    /// host directory (or file, for file hostPaths)
    pub host_path: PathBuf,
    /// what goes in it
    pub content: VolumeContent,
}

/// What a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeContent {
    /// an empty directory, kept across container restarts
    EmptyDir,
    /// a directory under the robot's state, kept across pods
    HostDir,
    /// a file under the robot's state
    HostFile,
    /// files (relative path → bytes), from a ConfigMap or Secret
    Files(Vec<(String, Vec<u8>)>),
}

/// Plans a pod.
pub fn plan(pod: &Pod, input: &PlanInput<'_>) -> Result<PodPlan, PlanError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| PlanError::Unsupported("pod without spec".into()))?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(PlanError::Unsupported("init containers".into()));
    }
    let host_network = spec.host_network.unwrap_or(false);
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| plan_volume(v, pod, input))
        .collect::<Result<Vec<_>, _>>()?;
    let containers = spec
        .containers
        .iter()
        .map(|c| plan_container(pod, spec, c, &volumes, host_network, input))
        .collect::<Result<Vec<_>, _>>()?;
    let restart_policy = match spec.restart_policy.as_deref() {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    };
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .try_into()
            .unwrap_or(0),
    );
    Ok(PodPlan {
        containers,
        volumes,
        host_network,
        restart_policy,
        grace,
    })
}

fn plan_volume(v: &Volume, pod: &Pod, input: &PlanInput<'_>) -> Result<VolumePlan, PlanError> {
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

/// (mount path in the container, host path), longest first so nested mounts win.
fn mounts(c: &Container, volumes: &[VolumePlan]) -> Result<Vec<(String, String)>, PlanError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| PlanError::Missing(format!("volume {} for mount", m.name)))?;
        let mut host = v.host_path.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            host = host.join(sub);
        }
        out.push((
            m.mount_path.trim_end_matches('/').to_owned(),
            host.to_string_lossy().into_owned(),
        ));
    }
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    Ok(out)
}

fn plan_container(
    pod: &Pod,
    spec: &PodSpec,
    c: &Container,
    volumes: &[VolumePlan],
    host_network: bool,
    input: &PlanInput<'_>,
) -> Result<Launch, PlanError> {
    let image = c.image.clone().unwrap_or_default();
    let binary = input
        .images
        .resolve(&image)
        .ok_or_else(|| PlanError::UnknownImage(image.clone()))?
        .to_path_buf();
    let mounts = mounts(c, volumes)?;
    let dir = input.pod_dir.join("containers").join(&c.name);
    let message_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let termination_message = dir.join("termination-log");
    let mut rewrites = mounts.clone();
    rewrites.push((
        message_path,
        termination_message.to_string_lossy().into_owned(),
    ));
    let rewrite = |s: &str| {
        let s = address::rewrite_paths(s, &rewrites);
        if host_network {
            address::rewrite_loopback(&s, &input.node.ip)
        } else {
            s
        }
    };

    let env = environment(pod, spec, c, input)?;
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k, rewrite(&v))).collect();
    let lookup: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand = |s: &String| rewrite(&address::expand_vars(s, &lookup));

    let command: Vec<String> = c.command.iter().flatten().map(&expand).collect();
    let args: Vec<String> = c.args.iter().flatten().map(&expand).collect();
    let (program, args) = match command.split_first() {
        None => (binary, args),
        Some((first, rest)) => {
            let same = Path::new(first).file_name() == binary.file_name();
            let program = if same { binary } else { PathBuf::from(first) };
            (program, rest.iter().cloned().chain(args).collect())
        }
    };
    let cwd = c
        .working_dir
        .as_deref()
        .map(|w| PathBuf::from(rewrite(w)))
        .unwrap_or_else(|| dir.clone());
    let probe_host = input.pod_ip.to_owned();
    let probe = |p: &Option<Probe>| {
        p.as_ref()
            .map(|p| plan_probe(p, c, &probe_host, &expand))
            .transpose()
    };
    Ok(Launch {
        name: c.name.clone(),
        image,
        program,
        args,
        readiness: probe(&c.readiness_probe)?,
        liveness: probe(&c.liveness_probe)?,
        env,
        cwd,
        dir,
        termination_message,
        message_from_logs: c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"),
    })
}

/// The container's environment: passed-through host variables, ROS defaults, then `envFrom`, then
/// `env` (later wins), with `$(VAR)` references to earlier variables expanded.
fn environment(
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

fn plan_probe(
    p: &Probe,
    c: &Container,
    pod_ip: &str,
    expand: &dyn Fn(&String) -> String,
) -> Result<ProbePlan, PlanError> {
    let port = |port: &IntOrString| -> Result<u16, PlanError> {
        match port {
            IntOrString::Int(n) => {
                u16::try_from(*n).map_err(|_| PlanError::Unsupported(format!("port {n}")))
            }
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| PlanError::Missing(format!("named port {name}"))),
        }
    };
    let action = if let Some(h) = &p.http_get {
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(PlanError::Unsupported("httpGet scheme HTTPS".into()));
        }
        ProbeAction::Http {
            host: h.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port: port(&h.port)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        }
    } else if let Some(t) = &p.tcp_socket {
        ProbeAction::Tcp {
            host: t.host.clone().unwrap_or_else(|| pod_ip.to_owned()),
            port: port(&t.port)?,
        }
    } else if let Some(e) = &p.exec {
        ProbeAction::Exec {
            argv: e.command.iter().flatten().map(expand).collect(),
        }
    } else {
        return Err(PlanError::Unsupported(
            "probe without httpGet, tcpSocket or exec".into(),
        ));
    };
    let secs = |v: Option<i32>, default: u64| {
        Duration::from_secs(v.map_or(default, |v| v.max(0).unsigned_abs().into()))
    };
    Ok(ProbePlan {
        action,
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.map_or(1, |v| v.max(1).unsigned_abs()),
        failure_threshold: p.failure_threshold.map_or(3, |v| v.max(1).unsigned_abs()),
    })
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
