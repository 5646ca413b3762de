//! What a step reports: the robots to update, phase, conditions, message, the waves summary,
//! analysis and preflight requests, and when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use robofleet_crds::conditions::reasons;
use robofleet_crds::inference_service::{
    AbortCause, HoldReason, RolloutPhase, RolloutState, RolloutStep, WaveStatus,
};

use super::clock::until;
use super::fleet::{Context, Fleet, analysis_robots, stable_sample};
use super::machine::{Machine, baseline_wanted, next_analysis};
use super::{AnalysisRequest, Cond, Decision, DeferReason, PreflightRequest, Tally};

/// Requeue at least this often while robots wait for a gate the operator does not watch (the
/// bridge-reported state).
const DEFERRED_RECHECK: Duration = Duration::from_secs(30);
/// Requeue this soon after the persisted state changed, so updates follow the written state.
const AFTER_CHANGE: Duration = Duration::from_secs(1);
/// The shortest requeue.
const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// Requeue this soon while updated robots' loaded model is unconfirmed.
const CONFIRM_RECHECK: Duration = Duration::from_secs(5);

fn cond(status: bool, reason: &'static str) -> Cond {
    Cond { status, reason }
}

impl Machine<'_> {
    pub fn finish(self) -> Decision {
        let changed = !self.unchanged();
        let input = self.input;
        let state = self.state.as_ref();
        let hold = state.and_then(|s| s.hold.as_ref());
        let ctx = Context {
            plan: self.plan,
            state,
            stable: self.stable.as_deref(),
            aborted: self.aborted.as_deref(),
            paused: input.spec_paused || hold.is_some(),
            now: self.now,
        };
        let fleet = Fleet::assess(ctx, input.robots);
        let updates = if changed { Vec::new() } else { fleet.updates() };
        let deferred = fleet.deferrals();
        let tally = fleet.tally();
        let (phase, ready, reconciling, stalled, message) = self.verdict(&fleet, &tally);
        let active = state.filter(|s| s.step != RolloutStep::Aborted);
        let running = active.filter(|s| {
            matches!(
                s.step,
                RolloutStep::Updating | RolloutStep::Analyzing | RolloutStep::AwaitingApproval
            )
        });
        let stable = self.stable.as_deref();
        let analysis = AnalysisRequest {
            robots: analysis_robots(self.plan, running, stable, input.robots, self.now),
            due: super::analysis_due(self.plan, running, input.spec_paused, self.now),
            baseline_wanted: baseline_wanted(self.plan, running),
            stable_sample: if baseline_wanted(self.plan, running) {
                stable_sample(self.plan, running, stable, input.robots, self.now)
            } else {
                Vec::new()
            },
        };
        let preflight = active
            .filter(|s| s.step == RolloutStep::Preflight)
            .map(|s| PreflightRequest {
                revision: s.revision.clone(),
                templates: self.plan.preflight.clone(),
                since: s
                    .preflight
                    .as_ref()
                    .map_or_else(|| s.started_at.clone(), |p| p.started_at.clone()),
            });
        let mut requeue: Vec<Duration> = Vec::new();
        if changed {
            requeue.push(AFTER_CHANGE);
        }
        if let Some(s) = active {
            if s.step == RolloutStep::Analyzing
                && let Some(end) = &s.pause_until
            {
                requeue.push(until(self.now, end));
            }
            if let Some(next) = next_analysis(self.plan, Some(s), input.spec_paused) {
                requeue.push(until(self.now, &next));
            }
            if s.step == RolloutStep::Updating
                && !deferred.is_empty()
                && let Some(start) = &s.wave_started_at
            {
                let deadline = super::clock::after(start, self.plan.gates.defer_timeout);
                requeue.push(until(self.now, &deadline));
            }
        }
        if deferred
            .iter()
            .any(|d| matches!(d.reason, DeferReason::State(_) | DeferReason::StopLock))
        {
            requeue.push(DEFERRED_RECHECK);
        }
        if tally.unobserved > 0 {
            requeue.push(CONFIRM_RECHECK);
        }
        let targets = fleet
            .robots
            .iter()
            .filter_map(|v| v.target.map(|t| (v.obs.name.clone(), t.to_owned())))
            .collect();
        let waves = self.waves(&fleet);
        Decision {
            canary: active.map(|s| s.revision.clone()),
            current_wave: active.map(|_| fleet.ctx.current_wave() as u32 + 1),
            state: self.state.clone(),
            stable: self.stable.clone(),
            aborted: self.aborted.clone(),
            last_action: self.last_action.clone(),
            targets,
            updates,
            deferred,
            phase,
            ready,
            reconciling,
            stalled,
            message,
            waves,
            tally,
            events: self.events.clone(),
            aborts: self.aborts.clone(),
            analysis,
            preflight,
            // Never sooner than a second: an analysis the I/O layer could not take must not
            // spin the controller.
            requeue_after: requeue.into_iter().min().map(|d| d.max(MIN_REQUEUE)),
        }
    }

    /// Phase, the three conditions and the message.
    fn verdict(
        &self,
        fleet: &Fleet<'_>,
        tally: &Tally,
    ) -> (RolloutPhase, Cond, Cond, Cond, String) {
        let state = self.state.as_ref();
        let active = state.filter(|s| s.step != RolloutStep::Aborted);
        let ready = self.ready(fleet, tally, active);
        let fine = cond(false, reasons::AS_EXPECTED);
        if let Some(s) = state.filter(|s| s.step == RolloutStep::Aborted) {
            let reason = match s.abort.as_ref().map(|a| a.cause) {
                Some(AbortCause::PreflightFailed) => reasons::PREFLIGHT_FAILED,
                _ => reasons::ROLLOUT_ABORTED,
            };
            let returning = fleet
                .robots
                .iter()
                .filter(|v| v.obs.online)
                .filter(|v| v.obs.pod.as_ref().is_some_and(|p| p.revision == s.revision))
                .count();
            let mut message = s.abort.as_ref().map_or_else(
                || format!("rollout of revision {} aborted", s.revision),
                |a| a.message.clone(),
            );
            if returning > 0 && self.stable.is_some() {
                message.push_str(&format!(
                    " ({returning} robot(s) still returning to stable)"
                ));
            }
            let rolling_back = returning > 0 && self.stable.is_some();
            return (
                RolloutPhase::Degraded,
                ready,
                cond(rolling_back, reasons::ROLLOUT_ABORTED),
                cond(true, reason),
                message,
            );
        }
        if state.is_none() && self.aborted.as_deref() == Some(self.input.desired) {
            let message = format!(
                "revision {} was aborted and is not retried: change spec.model (or spec.runtime) \
                 in git, or use the retry action",
                self.input.desired
            );
            return (
                RolloutPhase::Degraded,
                ready,
                cond(false, reasons::ROLLOUT_ABORTED),
                cond(true, reasons::ROLLOUT_ABORTED),
                message,
            );
        }
        let Some(s) = active else {
            return self.steady(fleet, tally, ready);
        };
        let hold = s.hold.as_ref();
        if let Some(h) = hold.filter(|h| {
            matches!(
                h.reason,
                HoldReason::AnalysisFailed | HoldReason::ModelLoadFailed
            )
        }) {
            let reason = if h.reason == HoldReason::ModelLoadFailed {
                reasons::MODEL_LOAD_FAILED
            } else {
                reasons::ANALYSIS_FAILED
            };
            return (
                RolloutPhase::Degraded,
                ready,
                cond(false, reason),
                cond(true, reason),
                h.message.clone(),
            );
        }
        let progress = self.progress_line(fleet, tally, s);
        if self.input.spec_paused || hold.is_some() {
            let why = match hold {
                _ if self.input.spec_paused => "spec.paused is true".to_owned(),
                Some(h) => h.message.clone(),
                None => String::new(),
            };
            return (
                RolloutPhase::Paused,
                ready,
                cond(false, reasons::PAUSED),
                fine,
                format!("paused ({why}): {progress}"),
            );
        }
        if s.step == RolloutStep::AwaitingApproval {
            return (
                RolloutPhase::Paused,
                ready,
                cond(false, reasons::AWAITING_PROMOTION),
                fine,
                format!("{progress}; waiting for the promote action"),
            );
        }
        (
            RolloutPhase::Progressing,
            ready,
            cond(true, reasons::ROLLOUT_IN_PROGRESS),
            fine,
            progress,
        )
    }

    /// No rollout: every online robot not waiting for a gate runs the stable revision.
    fn steady(
        &self,
        fleet: &Fleet<'_>,
        tally: &Tally,
        ready: Cond,
    ) -> (RolloutPhase, Cond, Cond, Cond, String) {
        let revision = self.stable.as_deref().unwrap_or(self.input.desired);
        let mut message = format!(
            "{}/{} robots ready at revision {revision}",
            tally.stable, tally.total
        );
        push_counts(&mut message, tally, fleet);
        let fine = cond(false, reasons::AS_EXPECTED);
        let behind = tally.updating + tally.pending + tally.unobserved;
        if behind == 0 {
            return (
                RolloutPhase::Healthy,
                ready,
                cond(false, reasons::ROLLOUT_COMPLETE),
                fine,
                message,
            );
        }
        if self.input.spec_paused {
            return (
                RolloutPhase::Paused,
                ready,
                cond(false, reasons::PAUSED),
                fine,
                format!("paused (spec.paused is true): {message}"),
            );
        }
        (
            RolloutPhase::Progressing,
            ready,
            cond(true, reasons::ROLLOUT_IN_PROGRESS),
            fine,
            message,
        )
    }

    /// Availability: online robots that do not serve an approved revision (stable, or the one
    /// being rolled out) are at most what the current wave's `maxUnavailable` allows.
    fn ready(&self, fleet: &Fleet<'_>, tally: &Tally, active: Option<&RolloutState>) -> Cond {
        let approved = |rev: &str| {
            self.stable.as_deref() == Some(rev) || active.is_some_and(|s| s.revision == rev)
        };
        let online = tally.total - tally.offline;
        let serving = fleet
            .robots
            .iter()
            .filter(|v| v.available)
            .filter(|v| v.obs.pod.as_ref().is_some_and(|p| approved(&p.revision)))
            .count() as u32;
        let allowance = match active {
            Some(s) if s.step == RolloutStep::Updating => {
                fleet.wave_limit().min(u32::MAX as usize) as u32
            }
            _ => 0,
        };
        let ok = serving > 0 && online.saturating_sub(serving) <= allowance;
        if ok {
            cond(true, reasons::AVAILABLE)
        } else {
            cond(false, reasons::ROLLOUT_IN_PROGRESS)
        }
    }

    fn progress_line(&self, fleet: &Fleet<'_>, tally: &Tally, s: &RolloutState) -> String {
        let waves = self.plan.waves_for(s.all_at_once);
        let k = fleet.ctx.current_wave();
        let name = waves.get(k).map_or("", |w| w.name.as_str());
        let on_revision = tally.canary + tally.unobserved;
        let mut line = if s.step == RolloutStep::Preflight {
            format!(
                "revision {}: waiting for the preflight SensorSims ({})",
                s.revision,
                self.plan.preflight.join(", ")
            )
        } else if s.all_at_once {
            format!(
                "revision {}, all at once: {on_revision}/{} robots updated",
                s.revision, tally.total
            )
        } else {
            format!(
                "revision {}, wave {}/{} ({name}): {on_revision}/{} robots updated",
                s.revision,
                k + 1,
                waves.len(),
                tally.total
            )
        };
        push_counts(&mut line, tally, fleet);
        if s.step == RolloutStep::Analyzing
            && let Some(end) = &s.pause_until
        {
            line.push_str(&format!("; pausing until {}", end.0));
        }
        if let Some(v) = s.last_verdict {
            line.push_str(&format!("; last analysis {v:?}"));
            if let Some(m) = &self.analysis_message {
                line.push_str(&format!(": {m}"));
            }
        }
        line
    }

    /// `status.waves`: each wave's robots and updated robots; the current wave's last verdict;
    /// earlier waves keep theirs.
    fn waves(&self, fleet: &Fleet<'_>) -> Vec<WaveStatus> {
        let Some(s) = self.state.as_ref() else {
            return self.input.previous_waves.to_vec();
        };
        let same_rollout = self
            .input
            .state
            .is_some_and(|p| p.revision == s.revision && p.started_at == s.started_at);
        let previous: BTreeMap<&str, &WaveStatus> = if same_rollout {
            self.input
                .previous_waves
                .iter()
                .map(|w| (w.name.as_str(), w))
                .collect()
        } else {
            BTreeMap::new()
        };
        let waves = self.plan.waves_for(s.all_at_once);
        let current = fleet.ctx.current_wave();
        waves
            .iter()
            .enumerate()
            .map(|(k, w)| {
                let members = fleet
                    .robots
                    .iter()
                    .filter(|v| s.all_at_once || v.wave == Some(k));
                let robots = members.clone().count() as u32;
                let updated = members.filter(|v| v.confirmed(&s.revision)).count() as u32;
                let before = previous.get(w.name.as_str());
                let mut status = WaveStatus {
                    name: w.name.clone(),
                    robots,
                    updated,
                    verdict: before.and_then(|b| b.verdict),
                    message: before.and_then(|b| b.message.clone()),
                    analyzed_at: before.and_then(|b| b.analyzed_at.clone()),
                };
                if k == current && s.step != RolloutStep::Aborted {
                    status.verdict = s.last_verdict;
                    status.analyzed_at = s.last_analysis_at.clone();
                    if let Some(m) = &self.analysis_message {
                        status.message = Some(m.clone());
                    } else if s.last_verdict.is_none() {
                        status.message = None;
                    }
                }
                status
            })
            .collect()
    }
}

/// Appends `, N deferred (busy: 2, stop lock: 1), M offline`.
fn push_counts(line: &mut String, tally: &Tally, fleet: &Fleet<'_>) {
    if tally.deferred > 0 {
        let mut by: BTreeMap<String, u32> = BTreeMap::new();
        for d in fleet.deferrals() {
            let key = match d.reason {
                DeferReason::StopLock => "stop lock".to_owned(),
                DeferReason::State(s) => s,
                DeferReason::Paused => continue,
            };
            *by.entry(key).or_default() += 1;
        }
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        line.push_str(&format!(
            ", {} deferred ({})",
            tally.deferred,
            parts.join(", ")
        ));
    }
    if tally.offline > 0 {
        line.push_str(&format!(", {} offline", tally.offline));
    }
    if tally.unobserved > 0 {
        line.push_str(&format!(", {} unconfirmed", tally.unobserved));
    }
}
