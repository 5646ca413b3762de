//! `spec.rollout` resolved once per reconcile: durations parsed, defaults applied, the analysis
//! checks typed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use robofleet_crds::duration::DurationError;
use robofleet_crds::inference_service::{
    InconclusiveAction, NoDataPolicy, OnTimeout, RolloutSpec, RolloutStrategy, SafetyStopGate,
};

use crate::core::analysis::{Check, CheckError, CheckKind};

/// Default `maxUnavailable` of a wave.
pub const DEFAULT_MAX_UNAVAILABLE: MaxUnavailable = MaxUnavailable::Count(1);
/// How long a wave waits for robots whose stop lock is engaged when no robot-state gate sets a
/// `deferTimeout`.
pub const DEFAULT_DEFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The resolved rollout spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Strategy `AllAtOnce`: every robot in one wave, no pause, no analysis.
    pub all_at_once: bool,
    /// The waves (strategy `Waves`); never empty.
    pub waves: Vec<WavePlan>,
    /// Analysis during the waves' pauses.
    pub analysis: Option<AnalysisPlan>,
    /// Update gates.
    pub gates: GatePlan,
    /// SensorSim templates run before wave 1.
    pub preflight: Vec<String>,
    /// Return updated robots to stable on an abort.
    pub auto_rollback: bool,
}

/// One wave.
#[derive(Clone, Debug, PartialEq)]
pub struct WavePlan {
    /// Name from the spec.
    pub name: String,
    /// Its robots.
    pub size: WaveSize,
    /// Robots of the wave unavailable at once.
    pub max_unavailable: MaxUnavailable,
    /// The pause after it is updated.
    pub pause: Option<PausePlan>,
}

/// Which robots a wave holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaveSize {
    /// The N smallest hashes among the eligible robots, recorded when the wave starts.
    Robots(u32),
    /// Robots whose hash falls below this cumulative percent (1-100).
    Percent(u32),
}

/// How many robots of a wave may be unavailable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxUnavailable {
    /// A count.
    Count(u32),
    /// A share of the wave's robots, rounded down, at least 1.
    Percent(u32),
    /// No limit (strategy `AllAtOnce`).
    Unlimited,
}

impl MaxUnavailable {
    /// The limit for a wave of `robots` robots.
    pub fn of(self, robots: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => (robots * p as usize / 100).max(1),
            Self::Unlimited => usize::MAX,
        }
    }
}

/// A wave's pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PausePlan {
    /// Wait this long.
    For(Duration),
    /// Wait for the promote action.
    UntilApproved,
}

/// The analysis settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisPlan {
    /// Time between analyses.
    pub interval: Duration,
    /// What no data means.
    pub no_data: NoDataPolicy,
    /// What an inconclusive analysis at the end of a pause does.
    pub inconclusive: InconclusiveAction,
    /// Consecutive failures that abort.
    pub failure_limit: u32,
    /// The checks.
    pub checks: Vec<Check>,
}

impl AnalysisPlan {
    /// Whether a check needs the stable baseline.
    pub fn needs_baseline(&self) -> bool {
        self.checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::SafetyStopRate { .. }))
    }
}

/// The gates.
#[derive(Clone, Debug, PartialEq)]
pub struct GatePlan {
    /// States a robot may be updated in; `None`: any.
    pub allow_when: Option<Vec<String>>,
    /// Whether an engaged stop lock defers.
    pub defer_on_stop: bool,
    /// How long a wave waits for deferred robots.
    pub defer_timeout: Duration,
    /// What happens to them then.
    pub on_timeout: OnTimeout,
}

/// Why `spec.rollout` cannot be run (the API server admits these only for overflowing
/// durations, so they become `Stalled`/`InvalidSpec`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A duration does not parse.
    #[error("{0}: {1}")]
    Duration(String, DurationError),
    /// An analysis check is incomplete.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// `maxUnavailable` is not a count or a percentage.
    #[error("spec.rollout.waves[{0}].maxUnavailable {1:?} is not a count or a percentage")]
    MaxUnavailable(usize, String),
    /// Strategy `Waves` with no wave.
    #[error("spec.rollout.waves: strategy Waves needs at least one wave")]
    NoWaves,
}

impl PlanError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Duration(..) => "duration",
            Self::Check(e) => e.kind(),
            Self::MaxUnavailable(..) => "max_unavailable",
            Self::NoWaves => "no_waves",
        }
    }
}

fn duration(path: String, d: &robofleet_crds::GoDuration) -> Result<Duration, PlanError> {
    d.get().map_err(|e| PlanError::Duration(path, e))
}

fn max_unavailable(i: usize, v: Option<&IntOrString>) -> Result<MaxUnavailable, PlanError> {
    let bad = |s: String| PlanError::MaxUnavailable(i, s);
    match v {
        None => Ok(DEFAULT_MAX_UNAVAILABLE),
        Some(IntOrString::Int(n)) if *n > 0 => Ok(MaxUnavailable::Count(*n as u32)),
        Some(IntOrString::Int(n)) => Err(bad(n.to_string())),
        Some(IntOrString::String(s)) => {
            let parsed = match s.strip_suffix('%') {
                Some(p) => p.parse().ok().map(MaxUnavailable::Percent),
                None => s.parse().ok().map(MaxUnavailable::Count),
            };
            match parsed {
                Some(MaxUnavailable::Percent(p)) if (1..=100).contains(&p) => {
                    Ok(MaxUnavailable::Percent(p))
                }
                Some(MaxUnavailable::Count(n)) if n > 0 => Ok(MaxUnavailable::Count(n)),
                _ => Err(bad(s.clone())),
            }
        }
    }
}

impl Plan {
    /// Resolves `spec.rollout`.
    pub fn from_spec(spec: &RolloutSpec) -> Result<Self, PlanError> {
        let all_at_once = spec.strategy == RolloutStrategy::AllAtOnce;
        let waves = if all_at_once {
            vec![all_wave()]
        } else {
            let mut waves = Vec::with_capacity(spec.waves.len());
            for (i, w) in spec.waves.iter().enumerate() {
                let size = match (w.robots, w.percent) {
                    (Some(n), _) => WaveSize::Robots(n),
                    (None, Some(p)) => WaveSize::Percent(p.min(100)),
                    (None, None) => WaveSize::Percent(100),
                };
                let pause = match &w.pause {
                    Some(p) if p.until_approved == Some(true) => Some(PausePlan::UntilApproved),
                    Some(p) => match &p.duration {
                        Some(d) => Some(PausePlan::For(duration(
                            format!("spec.rollout.waves[{i}].pause.duration"),
                            d,
                        )?)),
                        None => None,
                    },
                    None => None,
                };
                waves.push(WavePlan {
                    name: w.name.clone(),
                    size,
                    max_unavailable: max_unavailable(i, w.max_unavailable.as_ref())?,
                    pause,
                });
            }
            if waves.is_empty() {
                return Err(PlanError::NoWaves);
            }
            // The schema demands a last wave of 100%, so every robot has a wave; hold to that
            // even for a spec that slipped past it.
            if let Some(last) = waves.last_mut() {
                last.size = WaveSize::Percent(100);
            }
            waves
        };
        let analysis = match &spec.analysis {
            Some(a) => Some(AnalysisPlan {
                interval: duration("spec.rollout.analysis.interval".into(), &a.interval)?,
                no_data: a.no_data_policy,
                inconclusive: a.inconclusive_action,
                failure_limit: a.failure_limit.max(1),
                checks: a
                    .metrics
                    .iter()
                    .map(Check::from_spec)
                    .collect::<Result<_, _>>()?,
            }),
            None => None,
        };
        let gates = spec.gates.clone().unwrap_or_default();
        let (allow_when, defer_timeout, on_timeout) = match &gates.robot_state {
            Some(g) => (
                Some(g.allow_when.clone()),
                duration(
                    "spec.rollout.gates.robotState.deferTimeout".into(),
                    &g.defer_timeout,
                )?,
                g.on_timeout,
            ),
            None => (None, DEFAULT_DEFER_TIMEOUT, OnTimeout::Skip),
        };
        Ok(Self {
            all_at_once,
            waves,
            analysis,
            gates: GatePlan {
                allow_when,
                defer_on_stop: gates.safety_stop_active == SafetyStopGate::Defer,
                defer_timeout,
                on_timeout,
            },
            preflight: spec
                .preflight
                .iter()
                .map(|p| p.sensor_sim_template.name.clone())
                .collect(),
            auto_rollback: spec.auto_rollback,
        })
    }

    /// The waves a rollout runs: the spec's, or one wave of every robot for a rollout that goes
    /// out all at once (strategy `AllAtOnce`, or the service's first revision).
    pub fn waves_for(&self, all_at_once: bool) -> &[WavePlan] {
        if all_at_once && !self.all_at_once {
            std::slice::from_ref(all_wave_ref())
        } else {
            &self.waves
        }
    }
}

fn all_wave() -> WavePlan {
    WavePlan {
        name: "all".into(),
        size: WaveSize::Percent(100),
        max_unavailable: MaxUnavailable::Unlimited,
        pause: None,
    }
}

fn all_wave_ref() -> &'static WavePlan {
    static ALL: std::sync::OnceLock<WavePlan> = std::sync::OnceLock::new();
    ALL.get_or_init(all_wave)
}
