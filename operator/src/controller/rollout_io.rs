//! The I/O a rollout step needs, kept out of the InferenceService reconcile: the robots' safety
//! monitors (stop lock, reported robot state, stop counters), the analysed robots' sidecars, the
//! Prometheus HTTP API, all scraped with bounded concurrency and timeouts; unreachable or
//! malformed targets are counted in `robofleet_operator_scrapes_total{outcome}` and simply give
//! no data (never an error of the reconcile).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use robofleet_crds::labels;

use super::Context;
use crate::core::analysis::{self, PromQueryError, StableSample, WaveWindow};
use crate::scrape::{self, Sample};

/// Scrapes at once, per reconcile.
const CONCURRENCY: usize = 16;
/// A monitor's last scrape is reused for this long.
const MONITOR_TTL: Duration = Duration::from_secs(3);
/// Most monitors scraped per reconcile for gates.
const MAX_GATE_SCRAPES: usize = 32;

/// A safety monitor pod on a robot.
#[derive(Clone, Debug)]
pub struct Monitor {
    /// Pod UID.
    pub uid: String,
    /// Its metrics page ([`crate::scrape::pod_metrics_url`]).
    pub url: String,
    /// When its container started (for robot-hours).
    pub started: Option<Time>,
}

/// Every running safety monitor by robot (from the shared cache of the operator's own pods).
pub async fn monitors(ctx: &Context) -> Result<HashMap<String, Vec<Monitor>>, kube::Error> {
    ctx.caches_ready().await;
    let pods = crate::cache::pods_of_kind(&ctx.pods, super::safety_policy::KIND);
    let mut out: HashMap<String, Vec<Monitor>> = HashMap::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let st = p.status.as_ref();
        let (Some(node), Some(uid), Some(host)) = (
            p.spec.as_ref().and_then(|s| s.node_name.clone()),
            p.metadata.uid.clone(),
            st.and_then(|s| s.host_ip.clone()),
        ) else {
            continue;
        };
        let started = st
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        out.entry(node).or_default().push(Monitor {
            uid,
            url: crate::scrape::pod_metrics_url(
                ctx.config.scrape_transport,
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
                &host,
                ctx.config.safety_metrics_port,
            ),
            started,
        });
    }
    Ok(out)
}

/// Fetches and parses pages, at most [`CONCURRENCY`] at once; failures are counted and `None`.
pub async fn scrape_many(ctx: &Context, urls: Vec<String>) -> HashMap<String, Vec<Sample>> {
    futures::stream::iter(urls)
        .map(|url| async move {
            let res = ctx.scraper.fetch(&url).await;
            (url, res)
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|(url, res)| async move {
            match res {
                Ok(text) => {
                    let (samples, malformed) = scrape::parse(&text);
                    ctx.metrics.scraped(if malformed > 0 {
                        "malformed_lines"
                    } else {
                        "ok"
                    });
                    Some((url, samples))
                }
                Err(e) => {
                    ctx.metrics.scraped(e.kind());
                    tracing::debug!(%url, error = %e, "scrape failed");
                    None
                }
            }
        })
        .collect()
        .await
}

/// What the gates read from a robot's monitors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateView {
    /// A stop lock is engaged (`None`: no monitor answered yet).
    pub stop_lock: Option<bool>,
    /// The robot state its bridge reports.
    pub state: Option<String>,
}

/// Gate readings for `robots` (those that may be updated next), from a short-lived cache,
/// scraping at most [`MAX_GATE_SCRAPES`] stale monitors. A robot with a monitor that has not
/// answered yet reads as stop-locked: it is never updated on a guess.
pub async fn gate_views(
    ctx: &Context,
    monitors: &HashMap<String, Vec<Monitor>>,
    robots: &[String],
) -> HashMap<String, GateView> {
    let now = Instant::now();
    let mut cache = ctx
        .monitor_cache
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    cache.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(60));
    let stale: Vec<String> = robots
        .iter()
        .filter_map(|r| monitors.get(r))
        .flatten()
        .filter(|m| {
            cache
                .get(&m.url)
                .is_none_or(|(at, _)| now.duration_since(*at) >= MONITOR_TTL)
        })
        .map(|m| m.url.clone())
        .take(MAX_GATE_SCRAPES)
        .collect();
    for (url, samples) in scrape_many(ctx, stale).await {
        cache.insert(url, (now, samples));
    }
    let views = robots
        .iter()
        .map(|r| {
            let Some(ms) = monitors.get(r).filter(|m| !m.is_empty()) else {
                return (r.clone(), GateView::default());
            };
            let mut view = GateView {
                stop_lock: Some(false),
                state: None,
            };
            for m in ms {
                match cache.get(&m.url) {
                    None => view.stop_lock = Some(true),
                    Some((_, samples)) => {
                        if analysis::stop_lock_engaged(samples) != Some(false) {
                            view.stop_lock = Some(true);
                        }
                        if view.state.is_none() {
                            view.state = analysis::reported_state(samples);
                        }
                    }
                }
            }
            (r.clone(), view)
        })
        .collect();
    if let Ok(mut c) = ctx.monitor_cache.lock() {
        *c = cache;
    }
    views
}

/// Feeds the wave window with the analysed robots' sidecars and monitors.
pub async fn feed_window(
    ctx: &Context,
    window: &mut WaveWindow,
    robots: &[String],
    pods: &[Pod],
    metrics_port: u16,
    monitors: &HashMap<String, Vec<Monitor>>,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut sidecars: BTreeMap<String, (String, String, Time)> = BTreeMap::new();
    for p in pods {
        let (Some(node), Some(uid), Some(host), Some(created)) = (
            p.spec.as_ref().and_then(|s| s.node_name.clone()),
            p.metadata.uid.clone(),
            p.status.as_ref().and_then(|s| s.host_ip.clone()),
            p.metadata.creation_timestamp.clone(),
        ) else {
            continue;
        };
        // Counting starts at the first scrape of a Ready pod: what a sidecar refused while its
        // model was loading is start-up, not the revision's error rate.
        if p.metadata.deletion_timestamp.is_none() && is_ready(p) && robots.contains(&node) {
            let url = crate::scrape::pod_metrics_url(
                ctx.config.scrape_transport,
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
                &host,
                metrics_port,
            );
            sidecars.insert(url, (node, uid, created));
        }
    }
    let monitor_urls: BTreeMap<String, (String, String)> = robots
        .iter()
        .filter_map(|r| monitors.get(r).map(|ms| (r, ms)))
        .flat_map(|(r, ms)| {
            ms.iter()
                .map(move |m| (m.url.clone(), (r.clone(), m.uid.clone())))
        })
        .collect();
    let urls = sidecars
        .keys()
        .chain(monitor_urls.keys())
        .cloned()
        .collect();
    let pages = scrape_many(ctx, urls).await;
    for (url, (robot, uid, created)) in &sidecars {
        if let Some(samples) = pages.get(url) {
            window.observe_sidecar_since_first(robot, uid, created, samples, &now);
        }
    }
    for (url, (robot, uid)) in &monitor_urls {
        if let Some(samples) = pages.get(url) {
            window.observe_monitor(robot, uid, samples, &now);
        }
    }
    let keep: Vec<&str> = robots.iter().map(String::as_str).collect();
    window.retain(&keep);
}

/// The stable sample's monitors, scraped once: each one's lifetime stops and hours.
pub async fn stable_samples(
    ctx: &Context,
    robots: &[String],
    monitors: &HashMap<String, Vec<Monitor>>,
) -> Vec<StableSample> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let ms: Vec<&Monitor> = robots
        .iter()
        .filter_map(|r| monitors.get(r))
        .flatten()
        .collect();
    let pages = scrape_many(ctx, ms.iter().map(|m| m.url.clone()).collect()).await;
    ms.iter()
        .filter_map(|m| {
            let samples = pages.get(&m.url)?;
            let started = m.started.as_ref()?;
            let hours = now.duration_since(started.0).as_secs_f64() / 3600.0;
            Some(StableSample {
                stops: analysis::lifetime_stops(samples),
                hours,
            })
        })
        .collect()
}

/// Runs every Prometheus-API check's query (bounded by the checks, 16 at most).
pub async fn prometheus_results(
    ctx: &Context,
    checks: &[analysis::Check],
) -> BTreeMap<String, Result<f64, PromQueryError>> {
    let mut out = BTreeMap::new();
    for c in checks {
        let analysis::CheckKind::Prometheus { address, query, .. } = &c.kind else {
            continue;
        };
        let url = analysis::query_url(address, query);
        let res = match ctx.scraper.fetch(&url).await {
            Ok(body) => analysis::parse_query_response(&body),
            Err(e) => Err(PromQueryError::Transport(e.to_string())),
        };
        out.insert(c.name.clone(), res);
    }
    out
}

/// The robot a pod of `owner` belongs to: by its deterministic name among `robots` (a pod the
/// scheduler has not bound yet has no `nodeName`), else by its `nodeName`.
pub fn robot_of(pod: &Pod, owner: &str, robots: &[&str]) -> Option<String> {
    let name = pod.metadata.name.as_deref()?;
    robots
        .iter()
        .find(|r| crate::core::naming::pod_name("isvc", owner, r) == name)
        .map(|r| (*r).to_owned())
        .or_else(|| pod.spec.as_ref()?.node_name.clone())
}

/// Pods of `pods` by robot (deterministic names: at most one per robot).
pub fn by_robot<'p>(pods: &'p [Pod], owner: &str, robots: &[&str]) -> HashMap<String, &'p Pod> {
    pods.iter()
        .filter_map(|p| Some((robot_of(p, owner, robots)?, p)))
        .collect()
}

/// Whether `pod` is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `pod`'s revision label.
pub fn revision_of(pod: &Pod) -> String {
    pod.labels()
        .get(labels::REVISION)
        .cloned()
        .unwrap_or_default()
}
