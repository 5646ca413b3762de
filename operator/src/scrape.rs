//! Fetch and parse robot pods' `/metrics` for bounded confirmation: after a robot is updated the
//! operator scrapes it until it knows which model it loaded and whether that is the fallback.
//! The transport sits behind [`Scrape`] (direct HTTP, or the API server's `pods/proxy`) so tests
//! can feed text; parsing is pure.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest `/metrics` body accepted.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why a scrape failed (counted as `robofleet_operator_scrapes_total{outcome}`).
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL is not a valid URI.
    #[error("invalid scrape URL {0:?}")]
    Url(String),
    /// Connection refused, reset, or other transport failure.
    #[error("scrape transport: {0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("scrape timed out")]
    Timeout,
    /// Non-200 status.
    #[error("scrape answered HTTP {0}")]
    Status(u16),
    /// Body larger than [`MAX_BODY_BYTES`] or not UTF-8.
    #[error("scrape body unusable: {0}")]
    Body(String),
}

impl ScrapeError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url(_) => "invalid_url",
            Self::Transport(_) => "unreachable",
            Self::Timeout => "timeout",
            Self::Status(_) => "http_error",
            Self::Body(_) => "bad_body",
        }
    }
}

/// Boxed future returned by [`Scrape::fetch`].
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<String, ScrapeError>> + Send + 'a>>;

/// Fetches one metrics page.
pub trait Scrape: Send + Sync {
    /// GETs `url` and returns its body.
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a>;
}

/// Plain HTTP scraping of pod or host IPs (flat networks).
pub struct HttpScrape {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl HttpScrape {
    /// A scraper with a per-request timeout.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }
}

impl Scrape for HttpScrape {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let uri: hyper::Uri = url.parse().map_err(|_| ScrapeError::Url(url.to_owned()))?;
            let request = async {
                let resp = self
                    .client
                    .get(uri)
                    .await
                    .map_err(|e| ScrapeError::Transport(e.to_string()))?;
                if resp.status() != hyper::StatusCode::OK {
                    return Err(ScrapeError::Status(resp.status().as_u16()));
                }
                let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                    .collect()
                    .await
                    .map_err(|e| ScrapeError::Body(e.to_string()))?
                    .to_bytes();
                String::from_utf8(body.to_vec()).map_err(|e| ScrapeError::Body(e.to_string()))
            };
            tokio::time::timeout(self.timeout, request)
                .await
                .map_err(|_| ScrapeError::Timeout)?
        })
    }
}

/// How robot pods' `/metrics` are reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// `http://<robot address>:<port>/metrics` (robot pods use the host network).
    #[default]
    Direct,
    /// The API server's `pods/proxy` subresource: reaches robots behind NAT through the API
    /// server's tunnel to the node, with the operator's own credentials.
    ApiServerProxy,
}

/// Where a robot pod's metrics page is, for `transport`: an absolute URL (direct) or an API
/// server path (proxy). Either is the key of the page in the scrape caches.
pub fn pod_metrics_url(
    transport: Transport,
    namespace: &str,
    pod: &str,
    host: &str,
    port: u16,
) -> String {
    match transport {
        Transport::Direct => format!("http://{host}:{port}/metrics"),
        Transport::ApiServerProxy => {
            format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics")
        }
    }
}

/// Scrapes API server paths (`/api/...`, from [`pod_metrics_url`] with
/// [`Transport::ApiServerProxy`]) through the API server with the operator's client, and
/// absolute URLs (Prometheus queries) directly.
pub struct ApiServerProxyScrape {
    client: kube::Client,
    direct: HttpScrape,
    timeout: Duration,
}

impl ApiServerProxyScrape {
    /// A proxy scraper with a per-request timeout.
    pub fn new(client: kube::Client, timeout: Duration) -> Self {
        Self {
            client,
            direct: HttpScrape::new(timeout),
            timeout,
        }
    }
}

impl Scrape for ApiServerProxyScrape {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        if !url.starts_with("/api/") {
            return self.direct.fetch(url);
        }
        Box::pin(async move {
            let request = http::Request::get(url)
                .body(Vec::new())
                .map_err(|_| ScrapeError::Url(url.to_owned()))?;
            let answer = tokio::time::timeout(self.timeout, self.client.request_text(request))
                .await
                .map_err(|_| ScrapeError::Timeout)?;
            match answer {
                Ok(text) if text.len() > MAX_BODY_BYTES => Err(ScrapeError::Body(format!(
                    "larger than {MAX_BODY_BYTES} bytes"
                ))),
                Ok(text) => Ok(text),
                Err(kube::Error::Api(e)) => Err(ScrapeError::Status(e.code)),
                Err(e) => Err(ScrapeError::Transport(e.to_string())),
            }
        })
    }
}

/// One sample of the Prometheus text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with `_total`, `_bucket` ... suffixes as exposed).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the Prometheus / OpenMetrics text format. Malformed lines are skipped and counted, never
/// fatal: a robot with one bad line still tells us the rest.
pub fn parse(text: &str) -> (Vec<Sample>, usize) {
    let mut samples = Vec::new();
    let mut malformed = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => samples.push(s),
            None => malformed += 1,
        }
    }
    (samples, malformed)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

/// What a robot's sidecar says it serves, from `robofleet_model_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedModel {
    /// sha256 of the loaded file.
    pub sha256: String,
    /// The fallback model is served (the requested one failed).
    pub fallback: bool,
    /// Execution provider that took the model.
    pub execution_provider: String,
}

/// The model a sidecar reports serving (the `robofleet_model_info` series with value 1).
pub fn loaded_model(samples: &[Sample]) -> Option<LoadedModel> {
    samples
        .iter()
        .find(|s| s.name == "robofleet_model_info" && s.value == 1.0)
        .map(|s| LoadedModel {
            sha256: s.labels.get("sha256").cloned().unwrap_or_default(),
            fallback: s.labels.get("fallback").is_some_and(|f| f == "true"),
            execution_provider: s
                .labels
                .get("execution_provider")
                .cloned()
                .unwrap_or_default(),
        })
}

/// The failure reasons a sidecar counted, largest count first (`robofleet_model_load_failures_total`).
pub fn load_failure_reasons(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = samples
        .iter()
        .filter(|s| s.name == "robofleet_model_load_failures_total" && s.value > 0.0)
        .map(|s| (s.labels.get("reason").cloned().unwrap_or_default(), s.value))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Subscribers of the stop lock a safety monitor reports for `policy`
/// (`robofleet_safety_stop_consumers{policy}`), if it exports the gauge.
pub fn stop_consumers(samples: &[Sample], policy: &str) -> Option<u32> {
    samples
        .iter()
        .find(|s| {
            s.name == "robofleet_safety_stop_consumers"
                && s.labels.get("policy").map(String::as_str) == Some(policy)
        })
        .filter(|s| s.value.is_finite() && s.value >= 0.0)
        .map(|s| s.value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP robofleet_model_info The served model
# TYPE robofleet_model_info gauge
robofleet_model_info{model="detector",model_version="v2",sha256="abc",execution_provider="cpu",fallback="true"} 1
robofleet_model_load_failures_total{reason="verify"} 3
robofleet_model_load_failures_total{reason="download"} 1
robofleet_inference_request_duration_seconds_bucket{model="d",le="+Inf"} 12
weird line without value
robofleet_escaped{path="a\"b\\c"} 2.5e0
# EOF
"#;

    #[test]
    fn parses_samples_and_counts_malformed_lines() {
        let (samples, malformed) = parse(PAGE);
        assert_eq!(malformed, 1);
        assert_eq!(samples.len(), 5);
        let esc = samples
            .iter()
            .find(|s| s.name == "robofleet_escaped")
            .unwrap();
        assert_eq!(esc.labels["path"], r#"a"b\c"#);
        assert_eq!(esc.value, 2.5);
        let inf = samples
            .iter()
            .find(|s| s.name.ends_with("_bucket"))
            .unwrap();
        assert_eq!(inf.labels["le"], "+Inf");
    }

    #[test]
    fn reads_the_loaded_model_and_failure_reasons() {
        let (samples, _) = parse(PAGE);
        let m = loaded_model(&samples).unwrap();
        assert!(m.fallback);
        assert_eq!(m.sha256, "abc");
        assert_eq!(
            load_failure_reasons(&samples)[0],
            ("verify".to_owned(), 3.0)
        );
        assert!(loaded_model(&parse("garbage{{{\n").0).is_none());
    }

    /// Real pages: what the sidecar and the bridge expose (captured from the e2e runs).
    #[test]
    fn the_committed_corpus_parses_without_malformed_lines() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics");
        let mut pages = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let (samples, malformed) = parse(&text);
            assert_eq!(malformed, 0, "{}", path.display());
            let lines = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .count();
            assert_eq!(samples.len(), lines, "{}", path.display());
            pages += 1;
        }
        assert!(pages >= 2, "corpus present");
    }

    fn escape(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    use proptest::prelude::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes (lossily decoded as a scrape body would be) never panic, and every
        /// line is either a sample or counted as malformed.
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let (samples, malformed) = parse(&text);
            let lines = text.lines().filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#')).count();
            proptest::prop_assert_eq!(samples.len() + malformed, lines);
        }

        /// Well-formed exposition lines come back exactly: names, escaped label values, values.
        #[test]
        fn valid_lines_round_trip(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,30}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}", 0..4),
            value in any::<f64>().prop_filter("finite", |v| v.is_finite()),
            timestamp in proptest::option::of(0u64..2_000_000_000_000),
        ) {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let mut line = if body.is_empty() { name.clone() } else { format!("{name}{{{}}}", body.join(",")) };
            line.push_str(&format!(" {value}"));
            if let Some(t) = timestamp {
                line.push_str(&format!(" {t}"));
            }
            let (samples, malformed) = parse(&line);
            proptest::prop_assert_eq!(malformed, 0, "{}", line);
            proptest::prop_assert_eq!(samples.len(), 1);
            proptest::prop_assert_eq!(&samples[0].name, &name);
            proptest::prop_assert_eq!(&samples[0].labels, &labels);
            proptest::prop_assert_eq!(samples[0].value, value);
        }
    }

    /// The committed corpus pages, for mutation.
    fn corpus() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics");
        let mut pages: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("txt"))
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .collect()
            })
            .unwrap_or_default();
        pages.push(PAGE.to_owned());
        pages
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Mutations of real pages (bytes overwritten, inserted, removed; the page cut short, as a
        /// dropped connection would) never panic, and every line is a sample or counted.
        #[test]
        fn mutated_corpus_pages_never_panic(
            page in 0usize..8,
            edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..24),
            cut in any::<u16>(),
        ) {
            let pages = corpus();
            let mut bytes = pages[page % pages.len()].clone().into_bytes();
            for (at, byte, op) in edits {
                let i = usize::from(at) % (bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            bytes.truncate(usize::from(cut) % (bytes.len() + 1));
            let text = String::from_utf8_lossy(&bytes);
            let (samples, malformed) = parse(&text);
            let lines = text.lines().filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#')).count();
            proptest::prop_assert_eq!(samples.len() + malformed, lines);
        }
    }

    /// A stand-in for the API server's pods/proxy (the real one refuses loopback pod addresses,
    /// and every pod address of the test ground is loopback: docs/known-limits.md).
    async fn fake_api_server() -> (String, tokio::task::JoinHandle<()>) {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/fleet/pods/{pod}/proxy/metrics",
                get(|axum::extract::Path(pod): axum::extract::Path<String>| async move {
                    match pod.as_str() {
                        "good:8002" => (axum::http::StatusCode::OK, PAGE.to_owned()),
                        "big:8002" => (axum::http::StatusCode::OK, "x 1\n".repeat(MAX_BODY_BYTES / 4 + 1)),
                        "slow:8002" => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            (axum::http::StatusCode::OK, String::new())
                        }
                        _ => (
                            axum::http::StatusCode::BAD_REQUEST,
                            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"address not allowed","reason":"BadRequest","code":400}"#.to_owned(),
                        ),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), server)
    }

    #[tokio::test]
    async fn the_api_server_proxy_transport_fetches_pages_and_counts_refusals() {
        let (url, server) = fake_api_server().await;
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let scrape = ApiServerProxyScrape::new(client, Duration::from_millis(500));
        let at =
            |pod: &str| pod_metrics_url(Transport::ApiServerProxy, "fleet", pod, "127.1.0.5", 8002);
        let page = scrape.fetch(&at("good")).await.unwrap();
        assert!(loaded_model(&parse(&page).0).is_some());
        let refused = scrape.fetch(&at("loopback")).await.unwrap_err();
        assert!(matches!(refused, ScrapeError::Status(400)), "{refused:?}");
        assert_eq!(refused.kind(), "http_error");
        let big = scrape.fetch(&at("big")).await.unwrap_err();
        assert_eq!(big.kind(), "bad_body");
        let slow = scrape.fetch(&at("slow")).await.unwrap_err();
        assert_eq!(slow.kind(), "timeout");
        // Absolute URLs (Prometheus queries) still go direct: nothing listens on port 9 here.
        let direct = scrape
            .fetch("http://127.0.0.1:9/api/v1/query")
            .await
            .unwrap_err();
        assert_eq!(direct.kind(), "unreachable");
        server.abort();
    }

    #[test]
    fn metrics_urls_follow_the_transport() {
        assert_eq!(
            pod_metrics_url(Transport::Direct, "fleet", "isvc-det-1", "127.1.0.5", 8002),
            "http://127.1.0.5:8002/metrics"
        );
        assert_eq!(
            pod_metrics_url(
                Transport::ApiServerProxy,
                "fleet",
                "isvc-det-1",
                "127.1.0.5",
                8002
            ),
            "/api/v1/namespaces/fleet/pods/isvc-det-1:8002/proxy/metrics"
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "{",
            "a{b=\"",
            "a{b=\"c\"",
            "a{=}",
            "\u{0}\u{1} 1",
            "a 1 2 3",
            "a{b=c} 1",
        ] {
            let _ = parse(text);
        }
    }
}
