//! The transitions: follow the spec's revision, apply a one-shot action, then move the rollout
//! one step (preflight, pins, wave completion, pauses, analyses, failures).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::annotations::parse_action;
use robofleet_crds::inference_service::{
    AbortCause, HoldReason, InconclusiveAction, OnTimeout, PinnedWave, PreflightPhase,
    PreflightState, RolloutAbort, RolloutHold, RolloutState, RolloutStep, Verdict,
};

use super::clock::after;
use super::fleet::{Context, Fleet, gate};
use super::plan::{PausePlan, Plan, WaveSize};
use super::waves::smallest;
use super::{Decision, Input, RolloutEvent, SimOutcome, events};

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

    fn event(&mut self, warning: bool, reason: &'static str, message: String) {
        self.events.push(RolloutEvent {
            warning,
            reason,
            message,
        });
    }

    fn stable_name(&self) -> String {
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

    fn start(&mut self, revision: &str, reason: &'static str) {
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

    fn ignore(&mut self, action: &str, why: &str) {
        self.event(
            true,
            events::ACTION_IGNORED,
            format!("action {action} acknowledged but ignored: {why}"),
        );
    }

    /// Applies `robofleet.io/action` once per nonce, acknowledging it in `lastAction`.
    fn apply_action(&mut self) {
        let Some(raw) = self.input.action.map(str::trim).filter(|a| !a.is_empty()) else {
            return;
        };
        if self.last_action.as_deref() == Some(raw) {
            return;
        }
        self.last_action = Some(raw.to_owned());
        let result = match parse_action(raw) {
            None => Err("write <verb>@<nonce>"),
            Some((verb, _)) => self.verb(verb, raw),
        };
        if let Err(why) = result {
            self.ignore(raw, why);
        }
    }

    fn verb(&mut self, verb: &str, raw: &str) -> Result<(), &'static str> {
        const SPEC_PAUSED: &str = "spec.paused is true: set it to false in git first";
        let spec_paused = self.input.spec_paused;
        if verb == "retry" {
            if self.aborted.as_deref() != Some(self.input.desired) {
                return Err("the spec's revision was not aborted");
            }
            self.aborted = None;
            let desired = self.input.desired.to_owned();
            self.start(&desired, events::ROLLOUT_RETRIED);
            return Ok(());
        }
        if !["pause", "resume", "promote", "promote-full", "abort"].contains(&verb) {
            return Err("unknown verb (pause, resume, promote, promote-full, abort, retry)");
        }
        let now = self.now.clone();
        let last_wave = self.plan.waves.len().saturating_sub(1) as u32;
        let Some(s) = self
            .state
            .as_mut()
            .filter(|s| s.step != RolloutStep::Aborted)
        else {
            return Err("no rollout is in progress");
        };
        let revision = s.revision.clone();
        match verb {
            "abort" => {
                self.abort(AbortCause::Action, "aborted by the abort action");
            }
            "pause" => {
                if s.hold.is_none() {
                    s.hold = Some(RolloutHold {
                        reason: HoldReason::Paused,
                        message: "paused by the pause action; resume or promote to go on".into(),
                    });
                }
                self.event(
                    false,
                    events::ROLLOUT_HELD,
                    format!("rollout of {revision} paused by the pause action"),
                );
            }
            "resume" => {
                if s.hold.is_none() {
                    return Err(if spec_paused {
                        SPEC_PAUSED
                    } else {
                        "the rollout is not paused"
                    });
                }
                s.hold = None;
                s.consecutive_failures = 0;
                // Analyse afresh: the next analysis comes one interval from now.
                if s.pause_started_at.is_some() {
                    s.last_analysis_at = Some(now);
                    s.last_verdict = None;
                }
                let note = if spec_paused {
                    "; spec.paused is still true: set it to false in git to go on"
                } else {
                    ""
                };
                self.event(
                    false,
                    events::ROLLOUT_RESUMED,
                    format!("rollout of {revision} resumed{note}"),
                );
            }
            _ if spec_paused => return Err(SPEC_PAUSED),
            "promote-full" => {
                s.full = true;
                s.hold = None;
                if s.step != RolloutStep::Preflight {
                    s.wave = last_wave.max(s.wave);
                    s.step = RolloutStep::Updating;
                    s.wave_started_at = Some(now);
                    clear_wave(s);
                }
                self.event(
                    false,
                    events::ROLLOUT_PROMOTED,
                    format!("rollout of {revision} promoted to every robot (promote-full)"),
                );
            }
            _ => return self.promote(raw),
        }
        Ok(())
    }

    fn promote(&mut self, _raw: &str) -> Result<(), &'static str> {
        let Some(s) = self.state.as_mut() else {
            return Err("no rollout is in progress");
        };
        let wave = s.wave + 1;
        let revision = s.revision.clone();
        match s.step {
            RolloutStep::Preflight => Err("promote does not skip the preflight SensorSims"),
            RolloutStep::Updating => {
                s.promoted = true;
                s.hold = None;
                self.event(
                    false,
                    events::ROLLOUT_PROMOTED,
                    format!(
                        "wave {wave} of {revision} promoted: it goes on without a pause or \
                         analysis once updated"
                    ),
                );
                Ok(())
            }
            _ => {
                s.hold = None;
                self.event(
                    false,
                    events::ROLLOUT_PROMOTED,
                    format!("wave {wave} of {revision} promoted by the promote action"),
                );
                self.advance();
                Ok(())
            }
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
            Some(st) if cause != AbortCause::PreflightFailed => {
                format!("updated robots return to stable revision {st}")
            }
            Some(_) => "no robot was updated".to_owned(),
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
    fn failure(&mut self, cause: AbortCause, detail: String) {
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

    fn progress(&mut self) {
        let Some(s) = self.state.clone() else {
            return;
        };
        if s.step == RolloutStep::Aborted {
            return;
        }
        let ctx = Context {
            plan: self.plan,
            state: Some(&s),
            stable: self.input.stable,
            aborted: self.input.aborted,
            paused: self.input.spec_paused || s.hold.is_some(),
            now: self.now,
        };
        let fleet = Fleet::assess(ctx, self.input.robots);
        let failed_hold = s.hold.as_ref().is_some_and(|h| {
            matches!(
                h.reason,
                HoldReason::AnalysisFailed | HoldReason::ModelLoadFailed
            )
        });
        // A model that fails to load is a failed update even while paused: rolling back is
        // always allowed.
        if s.step != RolloutStep::Preflight && self.stable.is_some() && !failed_hold {
            let fallen = fleet.fallen_back();
            if !fallen.is_empty() {
                let detail = format!(
                    "the model failed to load on {} updated robot(s) ({}), which serve the \
                     fallback model",
                    fallen.len(),
                    names(&fallen)
                );
                self.failure(AbortCause::ModelLoadFailed, detail);
                return;
            }
        }
        if self.input.spec_paused || s.hold.is_some() {
            return;
        }
        if baseline_wanted(self.plan, Some(&s))
            && let Some(b) = self.input.baseline
        {
            if let Some(st) = self.state.as_mut() {
                st.baseline = Some(b.clone());
            }
            return;
        }
        match s.step {
            RolloutStep::Preflight => self.preflight(),
            RolloutStep::Updating => self.updating(&fleet),
            RolloutStep::Analyzing | RolloutStep::AwaitingApproval => self.analyzing(),
            RolloutStep::Aborted => {}
        }
    }

    fn preflight(&mut self) {
        let started = self
            .state
            .as_ref()
            .and_then(|s| s.preflight.as_ref())
            .map_or_else(|| self.now.clone(), |p| p.started_at.clone());
        let mut done = 0;
        let mut failed = None;
        for template in &self.plan.preflight {
            let child = self
                .input
                .preflight
                .iter()
                .find(|c| &c.template == template && c.created >= started);
            match child.map(|c| &c.outcome) {
                Some(SimOutcome::Succeeded) => done += 1,
                Some(SimOutcome::Failed(m)) => {
                    failed = Some(format!("preflight SensorSim {template} failed: {m}"));
                    break;
                }
                _ => {}
            }
        }
        if let Some(detail) = failed {
            if let Some(p) = self.state.as_mut().and_then(|s| s.preflight.as_mut()) {
                p.phase = PreflightPhase::Failed;
                p.message = Some(truncate(&detail));
            }
            self.abort(AbortCause::PreflightFailed, &detail);
            return;
        }
        if done < self.plan.preflight.len() {
            return;
        }
        let now = self.now.clone();
        if let Some(s) = self.state.as_mut() {
            if let Some(p) = s.preflight.as_mut() {
                p.phase = PreflightPhase::Succeeded;
            }
            s.step = RolloutStep::Updating;
            s.wave_started_at = Some(now);
            let message = format!(
                "preflight of revision {} succeeded ({}); starting wave 1",
                s.revision,
                self.plan.preflight.join(", ")
            );
            self.event(false, events::PREFLIGHT_SUCCEEDED, message);
        }
    }

    fn updating(&mut self, fleet: &Fleet<'_>) {
        let Some(s) = self.state.clone() else {
            return;
        };
        let waves = self.plan.waves_for(s.all_at_once);
        let k = fleet.ctx.current_wave();
        let timed_out = fleet.ctx.timed_out();
        if let Some(WaveSize::Robots(n)) = waves.get(k).map(|w| w.size)
            && !s.full
            && !s.pinned.iter().any(|p| p.wave as usize == k)
        {
            self.pin(fleet, k, n as usize, timed_out);
            return;
        }
        let blocking = fleet.blocking_deferred();
        if timed_out && self.plan.gates.on_timeout == OnTimeout::Fail && !blocking.is_empty() {
            let stuck: Vec<&str> = blocking.iter().map(|v| v.obs.name.as_str()).collect();
            let detail = format!(
                "{} robot(s) stayed deferred past deferTimeout ({}) with onTimeout: Fail",
                stuck.len(),
                names(&stuck)
            );
            self.abort(AbortCause::DeferTimeout, &detail);
            return;
        }
        if fleet.wave_complete() {
            self.finish_wave(fleet.members());
        }
    }

    /// Records the robots of a `robots: N` wave: the N smallest hashes among online robots in no
    /// earlier wave that a gate allows now (or that already run the revision).
    fn pin(&mut self, fleet: &Fleet<'_>, k: usize, n: usize, timed_out: bool) {
        let Some(revision) = self.state.as_ref().map(|s| s.revision.clone()) else {
            return;
        };
        let free: Vec<&super::fleet::View<'_>> = fleet
            .robots
            .iter()
            .filter(|v| v.obs.online && v.wave.is_none_or(|w| w >= k))
            .collect();
        let runs =
            |v: &super::fleet::View<'_>| v.obs.pod.as_ref().is_some_and(|p| p.revision == revision);
        let allowed: Vec<&str> = free
            .iter()
            .filter(|v| runs(v) || gate(self.plan, v.obs).is_none())
            .map(|v| v.obs.name.as_str())
            .collect();
        let picked = if !allowed.is_empty() || free.is_empty() {
            smallest(&revision, allowed, n)
        } else if timed_out {
            match self.plan.gates.on_timeout {
                OnTimeout::Force => {
                    let unlocked = free
                        .iter()
                        .filter(|v| {
                            !matches!(gate(self.plan, v.obs), Some(super::DeferReason::StopLock))
                        })
                        .map(|v| v.obs.name.as_str());
                    smallest(&revision, unlocked, n)
                }
                OnTimeout::Skip => Vec::new(),
                OnTimeout::Fail => {
                    let detail = format!(
                        "no robot could join wave {} within deferTimeout: all {} candidates were \
                         deferred",
                        k + 1,
                        free.len()
                    );
                    self.abort(AbortCause::DeferTimeout, &detail);
                    return;
                }
            }
        } else {
            // Everyone is deferred: wait (deferTimeout counts from the wave's start).
            return;
        };
        let message = if picked.is_empty() {
            format!("wave {} has no robot to update", k + 1)
        } else {
            format!(
                "wave {} picked {} robot(s): {}",
                k + 1,
                picked.len(),
                names(&picked.iter().map(String::as_str).collect::<Vec<_>>())
            )
        };
        if let Some(s) = self.state.as_mut() {
            s.pinned.retain(|p| p.wave as usize != k);
            s.pinned.push(PinnedWave {
                wave: k as u32,
                robots: picked,
            });
        }
        self.event(false, events::ROBOTS_PICKED, message);
    }

    /// The current wave is updated: pause (timed or until promoted), or go on.
    fn finish_wave(&mut self, members: usize) {
        let Some(s) = self.state.clone() else {
            return;
        };
        let waves = self.plan.waves_for(s.all_at_once);
        let k = (s.wave as usize).min(waves.len().saturating_sub(1));
        let skip = s.promoted || s.full || s.all_at_once || members == 0;
        let pause = waves.get(k).and_then(|w| w.pause).filter(|_| !skip);
        let name = waves.get(k).map_or("", |w| w.name.as_str()).to_owned();
        let now = self.now.clone();
        match pause {
            Some(PausePlan::For(d)) => {
                if let Some(st) = self.state.as_mut() {
                    st.step = RolloutStep::Analyzing;
                    st.pause_started_at = Some(now.clone());
                    st.pause_until = Some(after(&now, d));
                }
                self.event(
                    false,
                    events::WAVE_UPDATED,
                    format!(
                        "wave {}/{} ({name}) updated: {members} robot(s); pausing {}s{}",
                        k + 1,
                        waves.len(),
                        d.as_secs(),
                        if self.plan.analysis.is_some() {
                            " with analysis"
                        } else {
                            ""
                        }
                    ),
                );
            }
            Some(PausePlan::UntilApproved) => {
                if let Some(st) = self.state.as_mut() {
                    st.step = RolloutStep::AwaitingApproval;
                    st.pause_started_at = Some(now);
                }
                self.event(
                    false,
                    events::AWAITING_PROMOTION,
                    format!(
                        "wave {}/{} ({name}) updated: {members} robot(s); waiting for the \
                         promote action",
                        k + 1,
                        waves.len()
                    ),
                );
            }
            None => self.advance(),
        }
    }

    /// The next wave, or the end of the rollout: the revision becomes stable.
    fn advance(&mut self) {
        let Some(s) = self.state.as_mut() else {
            return;
        };
        let waves = self.plan.waves_for(s.all_at_once);
        let next = s.wave as usize + 1;
        if s.full || s.all_at_once || next >= waves.len() {
            let revision = s.revision.clone();
            let before = self.stable_name();
            self.state = None;
            self.stable = Some(revision.clone());
            self.event(
                false,
                events::ROLLOUT_COMPLETED,
                format!("revision {revision} is stable (was {before})"),
            );
            return;
        }
        s.wave = next as u32;
        s.step = RolloutStep::Updating;
        s.wave_started_at = Some(self.now.clone());
        clear_wave(s);
        let message = format!(
            "wave {}/{} ({}) of revision {} started",
            next + 1,
            waves.len(),
            waves[next].name,
            s.revision
        );
        self.event(false, events::WAVE_STARTED, message);
    }

    fn analyzing(&mut self) {
        let Some(s) = self.state.clone() else {
            return;
        };
        if let Some(report) = self.input.analysis
            && analysis_due(self.plan, Some(&s), self.input.spec_paused, self.now)
            && s.pause_started_at.as_ref().is_some_and(|p| report.at >= *p)
        {
            let limit = self.plan.analysis.as_ref().map_or(1, |a| a.failure_limit);
            let summary = report.summary();
            let previous = s.last_verdict;
            let mut failures = s.consecutive_failures;
            match report.verdict {
                Verdict::Fail => failures += 1,
                Verdict::Pass => failures = 0,
                Verdict::Inconclusive => {}
            }
            if let Some(st) = self.state.as_mut() {
                st.last_analysis_at = Some(report.at.clone());
                st.last_verdict = Some(report.verdict);
                st.consecutive_failures = failures;
            }
            self.analysis_message = Some(truncate(&summary));
            let wave = s.wave + 1;
            match report.verdict {
                Verdict::Fail => {
                    self.event(
                        true,
                        events::ANALYSIS_FAILED,
                        format!("wave {wave}: analysis failed ({failures}/{limit}): {summary}"),
                    );
                    if failures >= limit {
                        let detail = format!(
                            "{failures} consecutive failed analyses in wave {wave}: {summary}"
                        );
                        self.failure(AbortCause::AnalysisFailed, detail);
                        return;
                    }
                }
                v if Some(v) != previous => {
                    let reason = if v == Verdict::Pass {
                        events::ANALYSIS_PASSED
                    } else {
                        events::ANALYSIS_INCONCLUSIVE
                    };
                    self.event(
                        false,
                        reason,
                        format!("wave {wave}: analysis {v:?}: {summary}"),
                    );
                }
                _ => {}
            }
        }
        let Some(s) = self.state.clone() else {
            return;
        };
        if s.step != RolloutStep::Analyzing
            || s.pause_until.as_ref().is_some_and(|t| *self.now < *t)
        {
            return;
        }
        let Some(analysis) = &self.plan.analysis else {
            self.advance();
            return;
        };
        match s.last_verdict {
            Some(Verdict::Pass) => self.advance(),
            Some(Verdict::Inconclusive) => match analysis.inconclusive {
                InconclusiveAction::Proceed => self.advance(),
                InconclusiveAction::Abort => self.abort(
                    AbortCause::Inconclusive,
                    "the analysis was inconclusive at the end of the pause \
                     (inconclusiveAction: Abort)",
                ),
                InconclusiveAction::Pause => {
                    let message = format!(
                        "wave {}: the analysis was inconclusive at the end of the pause; resume \
                         to analyse again or promote to go on",
                        s.wave + 1
                    );
                    if let Some(st) = self.state.as_mut() {
                        st.hold = Some(RolloutHold {
                            reason: HoldReason::Inconclusive,
                            message: message.clone(),
                        });
                    }
                    self.event(true, events::ROLLOUT_HELD, message);
                }
            },
            // A failure below the limit or no analysis yet: analyse again.
            Some(Verdict::Fail) | None => {}
        }
    }
}

/// Resets what belongs to one wave.
fn clear_wave(s: &mut RolloutState) {
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
