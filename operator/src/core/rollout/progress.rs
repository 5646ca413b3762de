//! Moving a rollout one step: preflight, picking a `robots` wave, wave completion, pauses,
//! analyses, failures.

use robofleet_crds::inference_service::{
    AbortCause, HoldReason, InconclusiveAction, OnTimeout, PinnedWave, PreflightPhase, RolloutHold,
    RolloutStep, Verdict,
};

use super::clock::after;
use super::fleet::{Context, Fleet, View, gate};
use super::machine::{Machine, analysis_due, baseline_wanted, clear_wave, names, truncate};
use super::plan::{PausePlan, WaveSize};
use super::waves::smallest;
use super::{DeferReason, SimOutcome, events};

impl Machine<'_> {
    pub(super) fn progress(&mut self) {
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

    pub(super) fn preflight(&mut self) {
        let started = self
            .state
            .as_ref()
            .and_then(|s| s.preflight.as_ref())
            .map_or_else(|| self.now.clone(), |p| p.started_at.clone());
        let mut done = 0;
        let mut failed = None;
        for template in &self.plan.preflight {
            let child = self.input.preflight.iter().find(|c| {
                &c.template == template && super::clock::created_since(&c.created, &started)
            });
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

    pub(super) fn updating(&mut self, fleet: &Fleet<'_>) {
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
    pub(super) fn pin(&mut self, fleet: &Fleet<'_>, k: usize, n: usize, timed_out: bool) {
        let Some(revision) = self.state.as_ref().map(|s| s.revision.clone()) else {
            return;
        };
        let free: Vec<&View<'_>> = fleet
            .robots
            .iter()
            .filter(|v| v.obs.online && v.wave.is_none_or(|w| w >= k))
            .collect();
        let runs = |v: &View<'_>| v.obs.pod.as_ref().is_some_and(|p| p.revision == revision);
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
                        .filter(|v| !matches!(gate(self.plan, v.obs), Some(DeferReason::StopLock)))
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
    pub(super) fn finish_wave(&mut self, members: usize) {
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
    pub(super) fn advance(&mut self) {
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

    pub(super) fn analyzing(&mut self) {
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
