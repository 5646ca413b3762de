//! Pod spec → launch plan, with no I/O: which binary each container runs, with which arguments,
//! environment (downward API, ConfigMap/Secret references, ROS defaults) and working directory,
//! where its volumes live on the host, and which probes to run. Mount paths in arguments and
//! environment are rewritten to the host directories, and for hostNetwork pods `127.0.0.1` and
//! `0.0.0.0` become the robot's own address, so each simulated robot behaves as its own host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Probe, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::ImageMap;
use super::{address, env, volumes};

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
        .map(|v| volumes::plan_volume(v, pod, input))
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

    let env = env::environment(pod, spec, c, input)?;
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
            host: h.host.as_ref().map_or_else(|| pod_ip.to_owned(), expand),
            port: port(&h.port)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        }
    } else if let Some(t) = &p.tcp_socket {
        ProbeAction::Tcp {
            host: t.host.as_ref().map_or_else(|| pod_ip.to_owned(), expand),
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
