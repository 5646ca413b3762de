//! One-shot actions (`robofleet.io/action: <verb>@<nonce>`), acknowledged in
//! `status.lastAction`: pause, resume, promote, promote-full, abort, retry.

use robofleet_crds::annotations::parse_action;
use robofleet_crds::inference_service::{AbortCause, HoldReason, RolloutHold, RolloutStep};

use super::events;
use super::machine::{Machine, clear_wave};

impl Machine<'_> {
    pub(super) fn ignore(&mut self, action: &str, why: &str) {
        self.event(
            true,
            events::ACTION_IGNORED,
            format!("action {action} acknowledged but ignored: {why}"),
        );
    }

    /// Applies `robofleet.io/action` once per nonce, acknowledging it in `lastAction`.
    pub(super) fn apply_action(&mut self) {
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

    pub(super) fn verb(&mut self, verb: &str, raw: &str) -> Result<(), &'static str> {
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

    pub(super) fn promote(&mut self, _raw: &str) -> Result<(), &'static str> {
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
}
