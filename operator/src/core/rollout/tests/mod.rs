//! Rollout tests: a simulated fleet driven step by step, the persisted state written to status
//! and read back through JSON between every two steps (so every step is also a restart).

mod analysis;
mod flow;
mod gates;
mod plan;
mod resume;
mod verbs;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::inference_service::{
    RolloutSpec, RolloutState, StopBaseline, Verdict, WaveStatus,
};
use serde_json::json;

use super::*;
use crate::core::analysis::{AnalysisReport, CheckResult};

pub(super) fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

/// A plan from the JSON of `spec.rollout`.
pub(super) fn plan(rollout: serde_json::Value) -> Plan {
    let spec: RolloutSpec = serde_json::from_value(rollout).unwrap();
    Plan::from_spec(&spec).unwrap()
}

/// Canary of one robot paused 10 minutes, then 50% (maxUnavailable 2), then the rest (25%).
pub(super) fn three_waves() -> Plan {
    plan(json!({"waves": [
        {"name": "canary", "robots": 1, "pause": {"duration": "10m"}},
        {"name": "half", "percent": 50, "maxUnavailable": 2, "pause": {"duration": "5m"}},
        {"name": "rest", "percent": 100, "maxUnavailable": "25%"}
    ]}))
}

pub(super) fn name(i: usize) -> String {
    format!("robot-{i:03}")
}

pub(super) fn report(verdict: Verdict, now: &Time) -> AnalysisReport {
    AnalysisReport {
        at: now.clone(),
        verdict,
        checks: vec![CheckResult {
            name: "errors".into(),
            verdict,
            observed: Some(0.0),
            samples: 500.0,
            message: format!("errors: {verdict:?}"),
        }],
    }
}

/// The status fields the rollout reads and writes.
#[derive(Clone, Debug, Default)]
pub(super) struct Status {
    pub state: Option<RolloutState>,
    pub stable: Option<String>,
    pub aborted: Option<String>,
    pub last_action: Option<String>,
    pub waves: Vec<WaveStatus>,
}

/// A simulated service on a simulated fleet.
pub(super) struct Sim {
    pub plan: Plan,
    pub spec_paused: bool,
    pub desired: String,
    pub status: Status,
    pub action: Option<String>,
    pub robots: BTreeMap<String, RobotObservation>,
    pub now: i64,
    /// Pods deleted to be replaced, per robot.
    pub replaced: BTreeMap<String, u32>,
    /// Revisions each robot ran, in order.
    pub history: BTreeMap<String, Vec<String>>,
    /// The verdict an analysis gives when one is due (`None`: no analysis is taken).
    pub verdict: Option<Verdict>,
    /// Baseline given when one is wanted.
    pub baseline: Option<StopBaseline>,
    /// Revisions whose model falls back when loaded.
    pub bad_models: BTreeSet<String>,
    pub preflight: Vec<PreflightChild>,
    /// Updates are dropped (a crash after the status write) while set.
    pub drop_updates: bool,
    /// Pods are deleted but not created (a crash between the two) while set.
    pub delete_only: bool,
    pub last: Option<Decision>,
}

impl Sim {
    /// `n` online idle robots, each with a Ready pod at `stable` (none when `None`).
    pub fn new(plan: Plan, n: usize, stable: Option<&str>, desired: &str) -> Self {
        let robots = (0..n)
            .map(|i| {
                let pod = stable.map(|rev| PodState {
                    revision: rev.into(),
                    ready: true,
                    terminating: false,
                    created: at(-86_400),
                    loaded: Loaded::Requested,
                });
                (
                    name(i),
                    RobotObservation {
                        name: name(i),
                        online: true,
                        state_label: Some("idle".into()),
                        state_reported: None,
                        stop_lock: Some(false),
                        pod,
                    },
                )
            })
            .collect();
        let history = (0..n)
            .map(|i| {
                (
                    name(i),
                    stable.map(|s| vec![s.to_owned()]).unwrap_or_default(),
                )
            })
            .collect();
        Self {
            plan,
            spec_paused: false,
            desired: desired.into(),
            status: Status {
                stable: stable.map(str::to_owned),
                ..Status::default()
            },
            action: None,
            robots,
            now: 0,
            replaced: BTreeMap::new(),
            history,
            verdict: Some(Verdict::Pass),
            baseline: None,
            bad_models: BTreeSet::new(),
            preflight: Vec::new(),
            drop_updates: false,
            delete_only: false,
            last: None,
        }
    }

    pub fn now(&self) -> Time {
        at(self.now)
    }

    pub fn robot(&mut self, i: usize) -> &mut RobotObservation {
        self.robots.get_mut(&name(i)).unwrap()
    }

    /// One reconcile: read status (through JSON, as a restarted operator would), decide, write
    /// status, act on the updates.
    pub fn step(&mut self) -> Decision {
        let now = self.now();
        let state: Option<RolloutState> = self
            .status
            .state
            .as_ref()
            .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap());
        let report = analysis_due(&self.plan, state.as_ref(), self.spec_paused, &now)
            .then_some(self.verdict)
            .flatten()
            .map(|v| report(v, &now));
        let robots: Vec<RobotObservation> = self.robots.values().cloned().collect();
        let baseline = self.baseline.clone();
        let input = Input {
            plan: &self.plan,
            spec_paused: self.spec_paused,
            desired: &self.desired,
            stable: self.status.stable.as_deref(),
            state: state.as_ref(),
            aborted: self.status.aborted.as_deref(),
            last_action: self.status.last_action.as_deref(),
            action: self.action.as_deref(),
            previous_waves: &self.status.waves,
            robots: &robots,
            analysis: report.as_ref(),
            baseline: baseline
                .as_ref()
                .filter(|_| baseline_wanted(&self.plan, state.as_ref())),
            preflight: &self.preflight,
        };
        let d = step(&input, &now);
        // the same input decides the same
        assert_eq!(d, step(&input, &now), "step is not deterministic");
        // Events are per transition, never per robot
        assert!(d.events.len() <= 3, "{:?}", d.events);
        self.status = Status {
            state: d.state.clone(),
            stable: d.stable.clone(),
            aborted: d.aborted.clone(),
            last_action: d.last_action.clone(),
            waves: d.waves.clone(),
        };
        if !self.drop_updates {
            for u in &d.updates {
                self.apply(u);
            }
        }
        self.last = Some(d.clone());
        d
    }

    /// Deletes the robot's pod (if any) and creates the new one, not Ready yet.
    pub fn apply(&mut self, u: &Update) {
        let now = self.now();
        let robot = self.robots.get_mut(&u.robot).unwrap();
        assert!(robot.online, "{} is offline but was updated", u.robot);
        assert_eq!(
            robot.pod.as_ref().map(|p| p.revision.clone()),
            u.from,
            "{u:?}"
        );
        if robot.pod.is_some() {
            *self.replaced.entry(u.robot.clone()).or_default() += 1;
        }
        if self.delete_only {
            robot.pod = None;
            return;
        }
        self.history
            .entry(u.robot.clone())
            .or_default()
            .push(u.to.clone());
        robot.pod = Some(PodState {
            revision: u.to.clone(),
            ready: false,
            terminating: false,
            created: now,
            loaded: Loaded::Unknown,
        });
    }

    /// Online pods become Ready and report what they loaded.
    pub fn settle(&mut self) {
        let has_stable = self.status.stable.is_some();
        for r in self.robots.values_mut().filter(|r| r.online) {
            if let Some(p) = r.pod.as_mut() {
                p.ready = true;
                p.terminating = false;
                if p.loaded == Loaded::Unknown {
                    p.loaded = if has_stable && self.bad_models.contains(&p.revision) {
                        Loaded::Fallback
                    } else {
                        Loaded::Requested
                    };
                }
            }
        }
    }

    /// Cycles until the service is stable at `revision` with every online robot on it.
    pub fn until_stable(&mut self, revision: &str, max: usize) -> usize {
        for i in 0..max {
            self.step();
            self.settle();
            if self.status.stable.as_deref() == Some(revision)
                && self.status.state.is_none()
                && self
                    .robots
                    .values()
                    .filter(|r| r.online)
                    .all(|r| r.pod.as_ref().is_some_and(|p| p.revision == revision))
            {
                return i;
            }
            self.now += 60;
        }
        panic!(
            "not stable at {revision} after {max} cycles: {:?}",
            self.last.as_ref().map(|d| &d.message)
        );
    }

    pub fn on(&self, revision: &str) -> Vec<String> {
        self.robots
            .values()
            .filter(|r| r.pod.as_ref().is_some_and(|p| p.revision == revision))
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn reasons(&self) -> Vec<&'static str> {
        self.last
            .as_ref()
            .map(|d| d.events.iter().map(|e| e.reason).collect())
            .unwrap_or_default()
    }
}
