//! robofleet's test ground: what every cluster test needs to talk to the local control plane.
//!
//! `tests/cluster/up.sh` starts a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) with kwok-simulated robot Nodes and writes `$ROBOFLEET_CLUSTER_STATE/kubeconfig`;
//! `make test` runs the `#[ignore = "needs cluster"]` tests against it. [`TestCluster::connect`]
//! finds that cluster (or, only when `ROBOFLEET_TEST_KUBECONFIG` is set, an existing cluster that
//! carries the `kube-system/robofleet-test-ok` marker), [`TestNamespace`] gives each test its own
//! namespace, and [`wait_until`] polls a condition with a deadline instead of sleeping.

pub mod runner;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Name of the ConfigMap in `kube-system` that marks an existing cluster as safe to test on.
pub const MARKER_CONFIGMAP: &str = "robofleet-test-ok";

/// Why the harness could not give a test a cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No cluster was configured for the tests.
    #[error(
        "no test cluster: run the tests with `make test`, or start one with `make cluster-up` and \
         export ROBOFLEET_CLUSTER_STATE (see docs/development.md)"
    )]
    NoCluster,
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Path of the kubeconfig file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// An existing cluster lacks the marker ConfigMap, so it is not ours to test on.
    #[error(
        "ROBOFLEET_TEST_KUBECONFIG points at a cluster without kube-system/{MARKER_CONFIGMAP}; \
         refusing to run tests there"
    )]
    NotMarked,
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The local cluster runs no pod runner.
    #[error(
        "the local cluster runs no pod runner: start it with ROBOFLEET_POD_RUNNER=<path to the \
         pod-runner binary> tests/cluster/up.sh (make test does; see docs/development.md)"
    )]
    NoPodRunner,
    /// A condition did not hold before its deadline.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// A connection to the cluster the tests run against.
#[derive(Clone)]
pub struct TestCluster {
    /// Client with admin rights on the test cluster.
    pub client: Client,
    /// True for the local kwok cluster started by `tests/cluster/up.sh`; false for an existing
    /// cluster given through `ROBOFLEET_TEST_KUBECONFIG`.
    pub kwok: bool,
    /// State directory of the local cluster (PKI, logs, audit log), if it is the local one.
    pub state_dir: Option<PathBuf>,
}

impl TestCluster {
    /// Connects to the local test cluster, or to an explicitly named and marked existing one.
    pub async fn connect() -> Result<Self, HarnessError> {
        if let Some(path) = std::env::var_os("ROBOFLEET_TEST_KUBECONFIG").map(PathBuf::from) {
            let client = client_from(&path).await?;
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
            if cms.get_opt(MARKER_CONFIGMAP).await?.is_none() {
                return Err(HarnessError::NotMarked);
            }
            return Ok(Self {
                client,
                kwok: false,
                state_dir: None,
            });
        }
        let state = std::env::var_os("ROBOFLEET_CLUSTER_STATE")
            .map(PathBuf::from)
            .ok_or(HarnessError::NoCluster)?;
        let path = state.join("kubeconfig");
        if !path.exists() {
            return Err(HarnessError::NoCluster);
        }
        let client = client_from(&path).await?;
        Ok(Self {
            client,
            kwok: true,
            state_dir: Some(state),
        })
    }

    /// For tests that need kwok (simulated nodes going offline, node IPs): returns false and
    /// prints the reason when running on an existing cluster, so the test can return early.
    pub fn require_kwok(&self, test: &str) -> bool {
        if !self.kwok {
            eprintln!("skipped {test}: needs the local kwok cluster, not an existing one");
        }
        self.kwok
    }

    /// For tests that need the pod runner (pods that really run): its state directory (PID
    /// records under `pids/`), `Ok(None)` with the reason printed on an existing cluster, and an
    /// error on a local cluster started without the runner.
    pub fn require_pod_runner(&self, test: &str) -> Result<Option<PathBuf>, HarnessError> {
        if !self.require_kwok(test) {
            return Ok(None);
        }
        let state = self.state_dir.as_ref().ok_or(HarnessError::NoPodRunner)?;
        if !state.join("pids").join("pod-runner.pid").exists() {
            return Err(HarnessError::NoPodRunner);
        }
        Ok(Some(
            std::env::var_os("ROBOFLEET_POD_RUNNER_STATE")
                .map_or_else(|| state.join("pod-runner"), PathBuf::from),
        ))
    }
}

async fn client_from(path: &PathBuf) -> Result<Client, HarnessError> {
    let err = |source| HarnessError::Kubeconfig {
        path: path.clone(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err)?;
    Ok(Client::try_from(config)?)
}

/// A namespace owned by one test; its deletion is requested when dropped (it then terminates in
/// the background).
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
}

impl TestNamespace {
    /// Creates a fresh namespace named `<prefix>-<random>` with the given labels, and waits until
    /// its default ServiceAccount exists (pods are refused before that).
    pub async fn create(
        client: &Client,
        prefix: &str,
        labels: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let name = format!("{prefix}-{}", random_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_until(
            Duration::from_secs(60),
            "default ServiceAccount",
            || async { Ok(sas.get_opt("default").await?.is_some()) },
        )
        .await?;
        Ok(Self { name })
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace before returning (a task spawned on the test's runtime would die
    /// with the runtime at the end of the test, leaving the namespace's pods on the robots for the
    /// next test). The delete runs on a thread of its own, so this works inside and outside a
    /// runtime; the namespace then terminates in the background.
    fn drop(&mut self) {
        let name = self.name.clone();
        // A client of its own: the test's client is served by a task of the test's runtime,
        // which this blocking drop holds up.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let delete = async {
                    let cluster = TestCluster::connect().await?;
                    Api::<Namespace>::all(cluster.client)
                        .delete(&name, &DeleteParams::background())
                        .await?;
                    Ok::<(), HarnessError>(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), delete).await;
            });
        });
        let _ = done.join();
    }
}

/// Installs robofleet's CRDs (as `crdgen` generates them, identical to the committed YAML) with
/// server-side apply and waits until each is Established.
pub async fn install_crds(client: &Client) -> Result<(), HarnessError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::ResourceExt;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in robofleet_crds::generate::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &kube::api::PatchParams::apply("robofleet-tests").force(),
            &kube::api::Patch::Apply(&crd),
        )
        .await?;
        wait_until(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || async {
                Ok(api.get_opt(&name).await?.is_some_and(|c| {
                    c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
                }))
            },
        )
        .await?;
    }
    Ok(())
}

/// Path of a workspace binary built beside the running test binary (`cargo build --workspace
/// --bins` puts them in the target profile directory, the parent of `deps/`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .unwrap_or_else(|| name.into())
}

/// A short random lowercase suffix for object names (tests may run in parallel).
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:08x}", h.finish() as u32)
}

/// The kubeconfig the operator under test runs with: `ROBOFLEET_OPERATOR_KUBECONFIG` when set
/// (the chart's ServiceAccount token, `tests/tests/operator_as_chart_sa.rs`), else the cluster's
/// admin kubeconfig.
pub fn operator_kubeconfig(cluster: &TestCluster) -> Option<PathBuf> {
    std::env::var_os("ROBOFLEET_OPERATOR_KUBECONFIG")
        .map(PathBuf::from)
        .or_else(|| cluster.state_dir.as_ref().map(|d| d.join("kubeconfig")))
}

/// The Lease name the operator under test uses: `ROBOFLEET_OPERATOR_LEASE` when set (the chart's
/// Role allows only its own Lease name), else `default`.
pub fn operator_lease(default: String) -> String {
    std::env::var("ROBOFLEET_OPERATOR_LEASE").unwrap_or(default)
}

/// A cluster tool (`kubectl`, `helm`) from the harness's bin dir (`ROBOFLEET_CLUSTER_BIN`), else
/// from PATH, with KUBECONFIG pointing at the test cluster.
pub fn cluster_tool(name: &str) -> std::process::Command {
    let bin = std::env::var_os("ROBOFLEET_CLUSTER_BIN")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name));
    let mut cmd = std::process::Command::new(bin);
    let kubeconfig = std::env::var_os("ROBOFLEET_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("ROBOFLEET_CLUSTER_STATE").map(|s| PathBuf::from(s).join("kubeconfig"))
        });
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd
}

/// One blocking HTTP/1.1 GET (tests reach robots on loopback addresses): status code and body, or
/// `None` if nothing answered within 5 s.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((code, body))
}

/// Polls `check` every 250 ms until it returns `Ok(true)` or `timeout` passes.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, HarnessError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HarnessError::Timeout(timeout, what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_dns_safe_and_differ() {
        let a = random_suffix();
        let b = random_suffix();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn wait_until_times_out_with_the_condition_named() {
        let err = wait_until(Duration::from_millis(300), "never", || async { Ok(false) })
            .await
            .expect_err("must time out");
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[tokio::test]
    async fn wait_until_returns_once_true() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), "third poll", || {
            n += 1;
            let done = n >= 3;
            async move { Ok(done) }
        })
        .await
        .expect("becomes true");
        assert_eq!(n, 3);
    }
}
