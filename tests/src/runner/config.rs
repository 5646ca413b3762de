//! The pod runner's configuration: command line (every flag also an environment variable) and the
//! image → binary map, validated into one [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An image map entry is not `NAME=PATH`.
    #[error("image map entry {0:?} is not NAME=PATH")]
    ImageEntry(String),
    /// The image map file could not be read.
    #[error("image map file {path}: {source}")]
    ImageFile {
        /// the file
        path: PathBuf,
        /// why
        #[source]
        source: std::io::Error,
    },
    /// A label selector is not `key=value[,key=value]`.
    #[error("label selector {0:?} is not key=value[,key=value...]")]
    Selector(String),
}

impl ConfigError {
    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ImageEntry(_) => "image_entry",
            Self::ImageFile { .. } => "image_file",
            Self::Selector(_) => "selector",
        }
    }
}

/// pod-runner: a small kubelet for simulated robots that runs the real robofleet binaries.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Directory for per-robot state (volumes, logs, PID records); created if missing.
    #[arg(long, env = "ROBOFLEET_POD_RUNNER_STATE")]
    pub state_dir: PathBuf,
    /// Image → binary entries, `NAME=PATH`, comma-separated or repeated. NAME matches the whole
    /// image reference, the image without tag or digest, or its last path segment.
    #[arg(
        long = "image",
        env = "ROBOFLEET_POD_RUNNER_IMAGES",
        value_delimiter = ','
    )]
    pub images: Vec<String>,
    /// File with more image entries, one `NAME=PATH` a line (`#` starts a comment).
    #[arg(long, env = "ROBOFLEET_POD_RUNNER_IMAGE_MAP")]
    pub image_map: Option<PathBuf>,
    /// Pods the runner owns (label selector); kwok's upstream stages leave exactly these alone.
    #[arg(
        long,
        env = "ROBOFLEET_POD_RUNNER_POD_SELECTOR",
        default_value = "app.kubernetes.io/managed-by=robofleet-operator"
    )]
    pub pod_selector: String,
    /// Nodes that are simulated robots (label selector, `key=value[,key=value]`).
    #[arg(
        long,
        env = "ROBOFLEET_POD_RUNNER_NODE_SELECTOR",
        default_value = "type=kwok"
    )]
    pub node_selector: String,
    /// Host environment variables passed to every container (stand-ins for what an image bakes
    /// in, such as the ONNX Runtime library).
    #[arg(
        long,
        env = "ROBOFLEET_POD_RUNNER_PASS_ENV",
        value_delimiter = ',',
        default_value = "PATH,ORT_DYLIB_PATH,RUST_LOG,RUST_BACKTRACE"
    )]
    pub pass_env: Vec<String>,
    /// First restart delay of a container, in milliseconds (doubles per restart).
    #[arg(
        long,
        env = "ROBOFLEET_POD_RUNNER_BACKOFF_INITIAL_MS",
        default_value_t = 1000
    )]
    pub backoff_initial_ms: u64,
    /// Longest restart delay, in seconds.
    #[arg(long, env = "ROBOFLEET_POD_RUNNER_BACKOFF_MAX_S", default_value_t = 20)]
    pub backoff_max_s: u64,
    /// Grace period for the runner's own shutdown (SIGTERM to children, then SIGKILL), in seconds.
    #[arg(
        long,
        env = "ROBOFLEET_POD_RUNNER_SHUTDOWN_GRACE_S",
        default_value_t = 5
    )]
    pub shutdown_grace_s: u64,
    /// Give pods without hostNetwork their own network namespace (needs `unshare --net`).
    #[arg(long, env = "ROBOFLEET_POD_RUNNER_POD_NETNS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_netns: bool,
}

/// Validated configuration, passed whole.
#[derive(Debug, Clone)]
pub struct Config {
    /// state directory
    pub state_dir: PathBuf,
    /// image → binary
    pub images: ImageMap,
    /// pods the runner owns
    pub pod_selector: String,
    /// which nodes are simulated
    pub node_selector: BTreeMap<String, String>,
    /// host environment passed through, resolved at start
    pub pass_env: Vec<(String, String)>,
    /// restart backoff
    pub backoff: Backoff,
    /// own shutdown grace
    pub shutdown_grace: Duration,
    /// sandbox non-hostNetwork pods
    pub pod_netns: bool,
}

/// Restart backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// first delay
    pub initial: Duration,
    /// cap
    pub max: Duration,
}

impl Args {
    /// Validates the flags (reads the image map file and the passed-through host environment).
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut images = ImageMap::parse(self.images.iter().map(String::as_str))?;
        if let Some(path) = &self.image_map {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ImageFile {
                path: path.clone(),
                source,
            })?;
            images.extend(ImageMap::parse_file(&text)?);
        }
        let pass_env = self
            .pass_env
            .iter()
            .filter(|k| !k.is_empty())
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
            .collect();
        Ok(Config {
            state_dir: self.state_dir,
            images,
            node_selector: parse_selector(&self.node_selector)?,
            pod_selector: self.pod_selector,
            pass_env,
            backoff: Backoff {
                initial: Duration::from_millis(self.backoff_initial_ms.max(1)),
                max: Duration::from_secs(self.backoff_max_s.max(1)),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s),
            pod_netns: self.pod_netns,
        })
    }
}

/// Parses `key=value[,key=value]` (the only selector form the runner needs).
pub fn parse_selector(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ConfigError::Selector(s.to_owned()))
        })
        .collect()
}

/// True when every `key=value` of the selector is among the labels.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Image references → local binaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMap(Vec<(String, PathBuf)>);

impl ImageMap {
    /// Parses `NAME=PATH` entries.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ConfigError> {
        let mut map = Vec::new();
        for e in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let (name, path) = e
                .split_once('=')
                .filter(|(n, p)| !n.trim().is_empty() && !p.trim().is_empty())
                .ok_or_else(|| ConfigError::ImageEntry(e.to_owned()))?;
            map.push((name.trim().to_owned(), PathBuf::from(path.trim())));
        }
        Ok(Self(map))
    }

    /// Parses a file of `NAME=PATH` lines with `#` comments.
    pub fn parse_file(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text.lines().map(|l| l.split('#').next().unwrap_or("")))
    }

    fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// The binary for an image: an entry naming the whole reference wins over one naming the
    /// repository (no tag or digest), which wins over one naming the last path segment.
    pub fn resolve(&self, image: &str) -> Option<&Path> {
        let repo = repository(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        [image, repo, last]
            .iter()
            .find_map(|key| self.0.iter().find(|(n, _)| n == key))
            .map(|(_, p)| p.as_path())
    }
}

/// The image reference without tag or digest.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest_but_not_registry_port() {
        assert_eq!(repository("ghcr.io/x/sidecar:1.2"), "ghcr.io/x/sidecar");
        assert_eq!(repository("x/sidecar@sha256:abc"), "x/sidecar");
        assert_eq!(
            repository("localhost:5000/sidecar"),
            "localhost:5000/sidecar"
        );
        assert_eq!(
            repository("localhost:5000/sidecar:v1"),
            "localhost:5000/sidecar"
        );
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn image_map_prefers_the_most_specific_entry() {
        let map = ImageMap::parse([
            "inference-sidecar=/bin/generic",
            "ghcr.io/x/inference-sidecar=/bin/repo",
            "ghcr.io/x/inference-sidecar:2=/bin/exact",
        ])
        .expect("parses");
        assert_eq!(
            map.resolve("ghcr.io/x/inference-sidecar:2"),
            Some(Path::new("/bin/exact"))
        );
        assert_eq!(
            map.resolve("ghcr.io/x/inference-sidecar:1"),
            Some(Path::new("/bin/repo"))
        );
        assert_eq!(
            map.resolve("other.io/inference-sidecar@sha256:00"),
            Some(Path::new("/bin/generic"))
        );
        assert_eq!(map.resolve("ros2-bridge"), None);
    }

    #[test]
    fn image_map_file_skips_comments_and_refuses_garbage() {
        let map = ImageMap::parse_file("# images\nbusybox=/bin/sh # a shell\n\n").expect("parses");
        assert_eq!(map.resolve("busybox:1"), Some(Path::new("/bin/sh")));
        assert!(matches!(
            ImageMap::parse_file("no-equals-sign"),
            Err(ConfigError::ImageEntry(_))
        ));
        assert!(ImageMap::parse(["=/bin/sh"]).is_err());
    }

    #[test]
    fn selectors_parse_and_match() {
        let sel = parse_selector("type=kwok, a=b").expect("parses");
        let labels: BTreeMap<String, String> = [("type", "kwok"), ("a", "b"), ("c", "d")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert!(selector_matches(&sel, &labels));
        let other = parse_selector("type=real").expect("parses");
        assert!(!selector_matches(&other, &labels));
        assert!(parse_selector("novalue").is_err());
        assert!(parse_selector("").expect("empty is all").is_empty());
    }
}
