//! The machine: follow the spec's revision, apply a one-shot action ([`super::verbs`]), then
//! move the rollout one step ([`super::progress`]); aborts and failures.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::inference_service::{
    AbortCause, HoldReason, PreflightPhase, PreflightState, RolloutAbort, RolloutHold,
    RolloutState, RolloutStep,
};

use super::clock::after;
use super::plan::Plan;
use super::{Decision, Input, RolloutEvent, events};

/// Whether an analysis of the current wave is due at `now`: the wave is updated and pausing (or
/// awaiting promotion), nothing holds it, and `interval` has passed since the last analysis (the
/// first one is due `interval` after the pause began, or when a shorter timed pause ends).
pub fn analysis_due(
    plan: &Plan,
    state: Option<&RolloutState>,
    spec_paused: bool,
    now: &Time,
) -> bool {
    next_analysis(plan, state, spec_paused).is_some_and(|t| *now >= t)
}

pub(super) fn next_analysis(
    plan: &Plan,
    state: Option<&RolloutState>,
    spec_paused: bool,
) -> Option<Time> {
    let s = state?;
    let analysis = plan.analysis.as_ref()?;
    if spec_paused
        || s.hold.is_some()
        || s.promoted
        || s.full
        || !matches!(
            s.step,
            RolloutStep::Analyzing | RolloutStep::AwaitingApproval
        )
    {
        return None;
    }
    if let Some(last) = &s.last_analysis_at {
        return Some(after(last, analysis.interval));
    }
    let first = after(s.pause_started_at.as_ref()?, analysis.interval);
    Some(match &s.pause_until {
        Some(end) if *end < first => end.clone(),
        _ => first,
    })
}

/// Whether the rollout wants the stable safety-stop baseline of its current wave: it has a
/// SafetyStopRate check, the wave runs, and no baseline is frozen for it yet.
pub fn baseline_wanted(plan: &Plan, state: Option<&RolloutState>) -> bool {
    state.is_some_and(|s| {
        s.baseline.is_none()
            && matches!(
                s.step,
                RolloutStep::Updating | RolloutStep::Analyzing | RolloutStep::AwaitingApproval
            )
            && plan.analysis.as_ref().is_some_and(|a| a.needs_baseline())
    })
}

pub(super) struct Machine<'a> {
    pub input: &'a Input<'a>,
    pub plan: &'a Plan,
    pub now: &'a Time,
    pub state: Option<RolloutState>,
    pub stable: Option<String>,
    pub aborted: Option<String>,
    pub last_action: Option<String>,
    pub events: Vec<RolloutEvent>,
    pub aborts: Vec<&'static str>,
    /// Message of the analysis consumed in this step.
    pub analysis_message: Option<String>,
}

impl<'a> Machine<'a> {
    pub fn new(input: &'a Input<'a>, now: &'a Time) -> Self {
        Self {
            input,
            plan: input.plan,
            now,
            state: input.state.cloned(),
            stable: input.stable.map(str::to_owned),
            aborted: input.aborted.map(str::to_owned),
            last_action: input.last_action.map(str::to_owned),
            events: Vec::new(),
            aborts: Vec::new(),
            analysis_message: None,
        }
    }

    pub fn run(mut self) -> Decision {
        self.follow_spec();
        self.apply_action();
        if self.unchanged() {
            self.progress();
        }
        self.finish()
    }

    /// Nothing persisted changed in this step (so robots may be updated).
    pub fn unchanged(&self) -> bool {
        self.state.as_ref() == self.input.state
            && self.stable.as_deref() == self.input.stable
            && self.aborted.as_deref() == self.input.aborted
    }

    pub(super) fn event(&mut self, warning: bool, reason: &'static str, message: String) {
        self.events.push(RolloutEvent {
            warning,
            reason,
            message,
        });
    }

    pub(super) fn stable_name(&self) -> String {
        self.stable.clone().unwrap_or_else(|| "(none)".into())
    }

    fn fresh(&self, revision: &str) -> RolloutState {
        let preflight = !self.plan.preflight.is_empty();
        RolloutState {
            revision: revision.to_owned(),
            started_at: self.now.clone(),
            all_at_once: self.stable.is_none() || self.plan.all_at_once,
            step: if preflight {
                RolloutStep::Preflight
            } else {
                RolloutStep::Updating
            },
            wave: 0,
            wave_started_at: (!preflight).then(|| self.now.clone()),
            pause_started_at: None,
            pause_until: None,
            last_analysis_at: None,
            last_verdict: None,
            consecutive_failures: 0,
            hold: None,
            promoted: false,
            full: false,
            pinned: Vec::new(),
            baseline: None,
            preflight: preflight.then(|| PreflightState {
                started_at: self.now.clone(),
                phase: PreflightPhase::Running,
                message: None,
            }),
            abort: None,
        }
    }

    pub(super) fn start(&mut self, revision: &str, reason: &'static str) {
        let state = self.fresh(revision);
        let how = if state.all_at_once {
            "all robots at once".to_owned()
        } else {
            format!("{} waves", self.plan.waves.len())
        };
        let first = if state.step == RolloutStep::Preflight {
            format!("preflight {} first", self.plan.preflight.join(", "))
        } else {
            "starting with wave 1".to_owned()
        };
        self.event(
            false,
            reason,
            format!(
                "rolling out revision {revision} (stable {}): {how}, {first}",
                self.stable_name()
            ),
        );
        self.state = Some(state);
    }

    /// Follows `desired`: a new revision replaces (aborts) the one being rolled out, the memory
    /// of an aborted revision ends when the spec names another one, and a rollout starts unless
    /// the revision is stable or remembered as aborted.
    fn follow_spec(&mut self) {
        let desired = self.input.desired;
        if self.aborted.as_deref().is_some_and(|a| a != desired) {
            self.aborted = None;
        }
        if let Some(s) = &self.state
            && s.revision != desired
        {
            if s.step != RolloutStep::Aborted {
                let message = format!(
                    "revision {desired} replaces revision {} mid-rollout; its robots return to \
                     stable revision {}",
                    s.revision,
                    self.stable_name()
                );
                self.event(true, events::ROLLOUT_SUPERSEDED, message);
                self.aborts.push("superseded");
            }
            self.state = None;
        }
        if self.state.is_none()
            && self.stable.as_deref() != Some(desired)
            && self.aborted.as_deref() != Some(desired)
        {
            self.start(desired, events::ROLLOUT_STARTED);
        }
    }

    /// Aborts the rollout: robots return to stable (the step's targets do it), the revision is
    /// remembered.
    pub fn abort(&mut self, cause: AbortCause, detail: &str) {
        let stable = self.stable.clone();
        let now = self.now.clone();
        let Some(s) = self.state.as_mut() else {
            return;
        };
        let back = match &stable {
            _ if s.step == RolloutStep::Preflight => "no robot was updated".to_owned(),
            Some(st) => format!("updated robots return to stable revision {st}"),
            None => format!(
                "there is no stable revision to return to, robots keep revision {}",
                s.revision
            ),
        };
        let message = format!(
            "rollout of revision {} aborted: {detail}; {back}. Change spec.model (or \
             spec.runtime) in git to a fixed revision or back to the stable one, or use the \
             retry action to try this revision again",
            s.revision
        );
        s.step = RolloutStep::Aborted;
        s.hold = None;
        s.abort = Some(RolloutAbort {
            cause,
            message: truncate(&message),
            at: now,
        });
        self.aborted = Some(s.revision.clone());
        self.aborts.push(cause.label());
        self.event(true, events::ROLLOUT_ABORTED, message);
    }

    /// A failed analysis or model load: abort with `autoRollback`, else hold where it is.
    pub(super) fn failure(&mut self, cause: AbortCause, detail: String) {
        if self.plan.auto_rollback {
            self.abort(cause, &detail);
            return;
        }
        let reason = if cause == AbortCause::ModelLoadFailed {
            HoldReason::ModelLoadFailed
        } else {
            HoldReason::AnalysisFailed
        };
        let message = truncate(&format!(
            "{detail}; autoRollback is false, so robots keep what they run: use the abort action \
             to roll back, or promote or resume to go on"
        ));
        if let Some(s) = self.state.as_mut() {
            s.hold = Some(RolloutHold {
                reason,
                message: message.clone(),
            });
        }
        self.event(true, events::ROLLOUT_HELD, message);
    }
}

/// Resets what belongs to one wave.
pub(super) fn clear_wave(s: &mut RolloutState) {
    s.pause_started_at = None;
    s.pause_until = None;
    s.last_analysis_at = None;
    s.last_verdict = None;
    s.consecutive_failures = 0;
    s.promoted = false;
    s.baseline = None;
}

/// At most 5 names, then a count.
pub(super) fn names(list: &[&str]) -> String {
    let mut shown: Vec<&str> = list.iter().take(5).copied().collect();
    shown.sort_unstable();
    let mut out = shown.join(", ");
    if list.len() > 5 {
        out.push_str(&format!(" and {} more", list.len() - 5));
    }
    out
}

/// Status strings are bounded (`maxLength: 1024`).
pub(super) fn truncate(text: &str) -> String {
    if text.len() <= 1000 {
        return text.to_owned();
    }
    let mut end = 1000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
