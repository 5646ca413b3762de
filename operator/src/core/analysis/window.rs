//! Counter deltas per robot since it was updated, with counter resets handled: the in-memory
//! accumulator the I/O layer feeds with successive scrapes of a wave's robots.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::scrape::Sample;

use super::{DURATION_BUCKET, MODEL_INFO, REQUESTS_TOTAL, STOPS_TOTAL};

/// Where a robot's counters stood when it was updated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process started with the update (a new sidecar pod starts at 0): the first snapshot
    /// is entirely delta. Use for the sidecar of an updated robot.
    Zero,
    /// The process predates the update (the robot's safety monitor is never replaced by an
    /// InferenceService rollout): the first snapshot is the baseline, only what follows counts.
    /// A series that first appears in a later snapshot was created after the first one, so its
    /// whole value counts.
    FirstSnapshot,
}

/// One counter series: its last raw value and the increase accumulated since the origin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counter {
    last: Option<f64>,
    delta: f64,
}

impl Counter {
    /// Feeds a raw value. A value below the last one is a counter reset (the process restarted
    /// and counts from 0 again), so the whole new value is increase, as Prometheus' `increase()`
    /// assumes. Non-finite and negative values are ignored.
    pub fn observe(&mut self, value: f64, count_first: bool) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        match self.last {
            None if count_first => self.delta += value,
            None => {}
            Some(last) if value >= last => self.delta += value - last,
            Some(_) => self.delta += value,
        }
        self.last = Some(value);
    }

    /// The increase since the origin.
    pub fn delta(&self) -> f64 {
        self.delta
    }
}

/// Key of one series: metric name and labels.
pub type SeriesKey = (String, BTreeMap<String, String>);

/// What the last `robofleet_model_info` of a robot said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The fallback (stable) model is served because the requested one failed.
    pub fallback: bool,
    /// Execution provider that took the model (`cpu`, `cuda`, `tensorrt`).
    pub execution_provider: String,
}

/// The counters of one robot since it was updated.
#[derive(Clone, Debug, PartialEq)]
pub struct RobotWindow {
    origin: Origin,
    pod: Option<String>,
    snapshots: u64,
    series: BTreeMap<SeriesKey, Counter>,
    since: Option<Time>,
    last_at: Option<Time>,
    model: Option<ModelInfo>,
}

impl RobotWindow {
    /// An empty window. `since` is when its counting starts: the pod's creation for
    /// [`Origin::Zero`]; for [`Origin::FirstSnapshot`] pass `None` and the first snapshot's time
    /// is used.
    pub fn new(origin: Origin, since: Option<Time>) -> Self {
        Self {
            origin,
            pod: None,
            snapshots: 0,
            series: BTreeMap::new(),
            since,
            last_at: None,
            model: None,
        }
    }

    /// Feeds one scrape of the robot's pod `pod` (its UID) taken at `at`. Only the series the
    /// analysis needs are kept, so memory stays bounded by the exposition's label sets. A
    /// different pod than before, or any kept counter lower than before, is a restart of the
    /// process: every series of the page counts from 0 again (one process restarts all its
    /// counters, including those that happen to have climbed back above their old value); the
    /// accumulated increase is kept.
    pub fn observe(&mut self, pod: &str, samples: &[Sample], at: &Time) {
        let new_pod = self.pod.as_deref().is_some_and(|p| p != pod);
        let dropped = samples.iter().any(|s| {
            s.value.is_finite()
                && self
                    .series
                    .get(&(s.name.clone(), s.labels.clone()))
                    .and_then(|c| c.last)
                    .is_some_and(|last| s.value < last)
        });
        if new_pod || dropped {
            for counter in self.series.values_mut() {
                counter.last = Some(0.0);
            }
        }
        let first = self.snapshots == 0;
        // The first snapshot of a pre-existing process is the baseline; anything created later
        // (a new series, or a new pod) counted from 0.
        let count_new = !(first && self.origin == Origin::FirstSnapshot);
        for s in samples {
            match s.name.as_str() {
                REQUESTS_TOTAL | DURATION_BUCKET | STOPS_TOTAL => {
                    let key = (s.name.clone(), s.labels.clone());
                    self.series
                        .entry(key)
                        .or_default()
                        .observe(s.value, count_new);
                }
                MODEL_INFO if s.value == 1.0 => {
                    self.model = Some(ModelInfo {
                        fallback: s.labels.get("fallback").is_some_and(|f| f == "true"),
                        execution_provider: s
                            .labels
                            .get("execution_provider")
                            .cloned()
                            .unwrap_or_default(),
                    });
                }
                _ => {}
            }
        }
        if self.since.is_none() {
            self.since = Some(at.clone());
        }
        self.pod = Some(pod.to_owned());
        self.snapshots += 1;
        self.last_at = Some(at.clone());
    }

    /// Increase of every kept series whose name is `name`, with its labels.
    pub fn deltas<'w>(
        &'w self,
        name: &'w str,
    ) -> impl Iterator<Item = (&'w BTreeMap<String, String>, f64)> + 'w {
        self.series
            .iter()
            .filter(move |((n, _), _)| n == name)
            .map(|((_, labels), c)| (labels, c.delta()))
    }

    /// Hours covered: from `since` to the last snapshot.
    pub fn hours(&self) -> f64 {
        match (&self.since, &self.last_at) {
            (Some(a), Some(b)) => (b.0.duration_since(a.0).as_secs_f64() / 3600.0).max(0.0),
            _ => 0.0,
        }
    }

    /// The model the robot last reported serving.
    pub fn model(&self) -> Option<&ModelInfo> {
        self.model.as_ref()
    }

    /// Snapshots fed so far.
    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }
}

/// Everything measured on the robots of one wave of one revision: the sidecars' counters (origin
/// [`Origin::Zero`]) and the safety monitors' counters (origin [`Origin::FirstSnapshot`]).
/// Keep one per InferenceService in memory and start a new one when [`WaveWindow::is_for`] says
/// the wave changed; after an operator restart it starts empty (see `docs/rollouts.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct WaveWindow {
    revision: String,
    wave: u32,
    /// Sidecars by robot.
    pub inference: BTreeMap<String, RobotWindow>,
    /// Safety monitors by robot.
    pub safety: BTreeMap<String, RobotWindow>,
}

impl WaveWindow {
    /// An empty window for `wave` (0-based) of `revision`.
    pub fn new(revision: &str, wave: u32) -> Self {
        Self {
            revision: revision.to_owned(),
            wave,
            inference: BTreeMap::new(),
            safety: BTreeMap::new(),
        }
    }

    /// Whether this window belongs to `wave` of `revision`.
    pub fn is_for(&self, revision: &str, wave: u32) -> bool {
        self.revision == revision && self.wave == wave
    }

    /// Feeds a scrape of `robot`'s sidecar pod (`pod` UID, created at `pod_created`: the moment
    /// the robot was updated).
    pub fn observe_sidecar(
        &mut self,
        robot: &str,
        pod: &str,
        pod_created: &Time,
        samples: &[Sample],
        at: &Time,
    ) {
        self.inference
            .entry(robot.to_owned())
            .or_insert_with(|| RobotWindow::new(Origin::Zero, Some(pod_created.clone())))
            .observe(pod, samples, at);
    }

    /// Like [`WaveWindow::observe_sidecar`], but counting only what follows the first snapshot:
    /// for a sidecar first scraped once its pod is Ready, so requests refused while the model was
    /// still loading (`rejected`, before the pod was Ready) are not held against the revision.
    pub fn observe_sidecar_since_first(
        &mut self,
        robot: &str,
        pod: &str,
        pod_created: &Time,
        samples: &[Sample],
        at: &Time,
    ) {
        self.inference
            .entry(robot.to_owned())
            .or_insert_with(|| RobotWindow::new(Origin::FirstSnapshot, Some(pod_created.clone())))
            .observe(pod, samples, at);
    }

    /// Feeds a scrape of `robot`'s safety monitor pod(s) (`pod`: UID of the monitor).
    pub fn observe_monitor(&mut self, robot: &str, pod: &str, samples: &[Sample], at: &Time) {
        self.safety
            .entry(robot.to_owned())
            .or_insert_with(|| RobotWindow::new(Origin::FirstSnapshot, None))
            .observe(pod, samples, at);
    }

    /// Keeps only the robots in `robots` (those still in the wave on the new revision).
    pub fn retain(&mut self, robots: &[&str]) {
        self.inference.retain(|r, _| robots.contains(&r.as_str()));
        self.safety.retain(|r, _| robots.contains(&r.as_str()));
    }
}
