//! Operator configuration: flags and environment, validated into one [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::Parser;

use crate::core::isvc::ImageAllowList;

/// robofleet-operator: runs InferenceService workloads on robots.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROBOFLEET_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
    /// Allowed sidecar images as `name=image` (repeatable or comma-separated); the first is the
    /// default unless --default-image names another.
    #[arg(
        long = "image",
        env = "ROBOFLEET_IMAGES",
        value_delimiter = ',',
        required = true
    )]
    pub images: Vec<String>,
    /// Allow-list entry used when spec.runtime.image is omitted.
    #[arg(long, env = "ROBOFLEET_DEFAULT_IMAGE")]
    pub default_image: Option<String>,
    /// hostPaths (model caches) must lie under this prefix.
    #[arg(
        long,
        env = "ROBOFLEET_HOST_PATH_PREFIX",
        default_value = "/var/lib/robofleet"
    )]
    pub host_path_prefix: String,
    /// Allowed bridge images (`ros2-bridge`, the safety monitor) as `name=image` (repeatable or
    /// comma-separated); the first is the one monitors run.
    #[arg(
        long = "bridge-image",
        env = "ROBOFLEET_BRIDGE_IMAGES",
        value_delimiter = ','
    )]
    pub bridge_images: Vec<String>,
    /// PriorityClass of safety monitor pods (shipped by the chart).
    #[arg(
        long,
        env = "ROBOFLEET_SAFETY_PRIORITY_CLASS",
        default_value = "robofleet-safety-critical"
    )]
    pub safety_priority_class: String,
    /// Port of the safety monitors' /metrics, /healthz and /readyz on the robot's address.
    #[arg(long, env = "ROBOFLEET_SAFETY_METRICS_PORT", default_value_t = 9470)]
    pub safety_metrics_port: u16,
    /// ROS domain ID of sandboxed SensorSim pods (each sandbox has its own network namespace, so
    /// it never meets a robot's graph whatever the ID).
    #[arg(long, env = "ROBOFLEET_SANDBOX_ROS_DOMAIN_ID", default_value_t = 0)]
    pub sandbox_ros_domain_id: u16,
    /// How robot pods' /metrics are reached: `direct` (the robot's address, flat networks) or
    /// `api-server-proxy` (the API server's pods/proxy, for robots behind NAT that the API server
    /// reaches through its node tunnel; needs `get` on `pods/proxy`).
    #[arg(long, env = "ROBOFLEET_SCRAPE_TRANSPORT", value_enum, default_value_t = crate::scrape::Transport::Direct)]
    pub scrape_transport: crate::scrape::Transport,
}

/// Why the configuration is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An `--image` value is not `name=image`.
    #[error("--image {0:?} must be name=image")]
    BadImage(String),
    /// `--default-image` names no entry.
    #[error("--default-image {0:?} is not one of the --image names")]
    UnknownDefault(String),
}

/// The validated configuration, passed whole.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address for /metrics, /healthz and /readyz.
    pub metrics_addr: SocketAddr,
    /// Image allow-list.
    pub images: ImageAllowList,
    /// Allowed hostPath prefix.
    pub host_path_prefix: String,
    /// Bridge image allow-list (the default entry runs safety monitors).
    pub bridge_images: ImageAllowList,
    /// PriorityClass of safety monitor pods.
    pub safety_priority_class: String,
    /// Port of the safety monitors' metrics and health endpoints.
    pub safety_metrics_port: u16,
    /// ROS domain ID of sandboxed SensorSim pods.
    pub sandbox_ros_domain_id: u16,
    /// How robot pods' /metrics are reached.
    pub scrape_transport: crate::scrape::Transport,
}

fn parse_entries(items: &[String]) -> Result<ImageAllowList, ConfigError> {
    let mut entries = BTreeMap::new();
    let mut first = None;
    for item in items {
        let (name, image) = item
            .split_once('=')
            .filter(|(n, i)| !n.is_empty() && !i.is_empty())
            .ok_or_else(|| ConfigError::BadImage(item.clone()))?;
        first.get_or_insert_with(|| name.to_owned());
        entries.insert(name.to_owned(), image.to_owned());
    }
    Ok(ImageAllowList {
        entries,
        default_entry: first.unwrap_or_default(),
    })
}

impl Args {
    /// Validates the flags into a [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut images = parse_entries(&self.images)?;
        match self.default_image {
            Some(d) if images.entries.contains_key(&d) => images.default_entry = d,
            Some(d) => return Err(ConfigError::UnknownDefault(d)),
            None => {}
        }
        let bridge_images = parse_entries(&self.bridge_images)?;
        Ok(Config {
            metrics_addr: self.metrics_addr,
            images,
            host_path_prefix: self.host_path_prefix,
            bridge_images,
            safety_priority_class: self.safety_priority_class,
            safety_metrics_port: self.safety_metrics_port,
            sandbox_ros_domain_id: self.sandbox_ros_domain_id,
            scrape_transport: self.scrape_transport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_parse_and_default_to_the_first() {
        let args = Args::parse_from([
            "op",
            "--image",
            "cpu=reg/sidecar@sha256:1,gpu=reg/gpu@sha256:2",
        ]);
        let c = args.validate().unwrap();
        assert_eq!(c.images.default_entry, "cpu");
        assert_eq!(c.images.entries.len(), 2);
        let bad = Args::parse_from(["op", "--image", "nonsense"]).validate();
        assert!(matches!(bad, Err(ConfigError::BadImage(_))));
        let bad = Args::parse_from(["op", "--image", "a=b", "--default-image", "c"]).validate();
        assert!(matches!(bad, Err(ConfigError::UnknownDefault(_))));
        let c = Args::parse_from(["op", "--image", "a=b", "--bridge-image", "bridge=reg/b@1"])
            .validate()
            .unwrap();
        assert_eq!(c.bridge_images.default_entry, "bridge");
        assert_eq!(c.safety_priority_class, "robofleet-safety-critical");
        assert_eq!(c.safety_metrics_port, 9470);
    }
}
