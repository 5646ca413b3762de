//! The fleet as one rollout state sees it: each robot's wave and target revision, whether it
//! needs an update and may have it now, and the robots to update within `maxUnavailable`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use robofleet_crds::inference_service::{RolloutState, RolloutStep};
use robofleet_crds::rollout::OnTimeout;

use super::clock::after;
use super::plan::{MaxUnavailable, Plan, WavePlan};
use super::waves::{Membership, robot_hash, smallest};
use super::{
    DeferReason, Deferral, Loaded, MAX_ANALYSIS_ROBOTS, RobotObservation, STABLE_SAMPLE, Tally,
    Update, UpdateKind,
};

/// What an assessment depends on besides the robots.
#[derive(Clone, Copy, Debug)]
pub(super) struct Context<'a> {
    pub plan: &'a Plan,
    pub state: Option<&'a RolloutState>,
    pub stable: Option<&'a str>,
    pub aborted: Option<&'a str>,
    /// `spec.paused` or a hold: no robot moves to the rollout's revision.
    pub paused: bool,
    pub now: &'a Time,
}

impl<'a> Context<'a> {
    /// The waves of the current rollout (none without one).
    pub fn waves(&self) -> &'a [WavePlan] {
        match self.state {
            Some(s) => self.plan.waves_for(s.all_at_once),
            None => &[],
        }
    }

    fn membership(&self) -> Option<Membership<'a>> {
        self.state.map(|s| Membership {
            waves: self.plan.waves_for(s.all_at_once),
            pins: &s.pinned,
            revision: &s.revision,
        })
    }

    /// The rollout's current wave, clamped to the waves the spec has now.
    pub fn current_wave(&self) -> usize {
        self.state.map_or(0, |s| {
            (s.wave as usize).min(self.waves().len().saturating_sub(1))
        })
    }

    /// The wave's `deferTimeout` has passed (only while it is updating).
    pub fn timed_out(&self) -> bool {
        self.state.is_some_and(|s| {
            s.step == RolloutStep::Updating
                && s.wave_started_at
                    .as_ref()
                    .is_some_and(|t| *self.now >= after(t, self.plan.gates.defer_timeout))
        })
    }

    /// Every robot of the rollout is in its current wave (all at once, or promote-full).
    fn whole_fleet(&self) -> bool {
        self.state.is_some_and(|s| s.all_at_once || s.full)
    }
}

/// One robot as the rollout sees it.
#[derive(Clone, Debug)]
pub(super) struct View<'a> {
    pub obs: &'a RobotObservation,
    /// Orders robots within a wave (smallest first).
    pub hash: u64,
    /// Its wave in the current rollout.
    pub wave: Option<usize>,
    /// The revision it should run (`None`: leave it as it is).
    pub target: Option<&'a str>,
    /// Set when it needs an update (online robots only).
    pub kind: Option<UpdateKind>,
    /// Why that update waits.
    pub defer: Option<DeferReason>,
    /// Deferred past `deferTimeout` and skipped: it no longer holds its wave.
    pub skipped: bool,
    /// Online with a Ready pod that is not being replaced.
    pub available: bool,
}

impl View<'_> {
    /// Its pod runs `revision`, Ready, not being replaced.
    pub fn serves(&self, revision: &str) -> bool {
        self.available
            && self
                .obs
                .pod
                .as_ref()
                .is_some_and(|p| p.revision == revision)
    }

    /// It serves `revision` and its sidecar confirmed the model it loaded.
    pub fn confirmed(&self, revision: &str) -> bool {
        self.serves(revision)
            && self
                .obs
                .pod
                .as_ref()
                .is_some_and(|p| p.loaded != Loaded::Unknown)
    }
}

/// Why `obs` may not be updated forward now, by the gates.
pub(super) fn gate(plan: &Plan, obs: &RobotObservation) -> Option<DeferReason> {
    if plan.gates.defer_on_stop && obs.stop_lock == Some(true) {
        return Some(DeferReason::StopLock);
    }
    let allow = plan.gates.allow_when.as_ref()?;
    let states: Vec<String> = [&obs.state_label, &obs.state_reported]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if states.is_empty() {
        return Some(DeferReason::State("unknown".into()));
    }
    states
        .into_iter()
        .find(|s| !allow.contains(s))
        .map(DeferReason::State)
}

/// The fleet assessed against one rollout state.
#[derive(Clone, Debug)]
pub(super) struct Fleet<'a> {
    pub ctx: Context<'a>,
    pub robots: Vec<View<'a>>,
}

impl<'a> Fleet<'a> {
    pub fn assess(ctx: Context<'a>, robots: &'a [RobotObservation]) -> Self {
        let membership = ctx.membership();
        let rollout = ctx.state;
        let current = ctx.current_wave();
        let timed_out = ctx.timed_out();
        let order_by = rollout
            .map(|s| s.revision.as_str())
            .or(ctx.stable)
            .unwrap_or("");
        let views = robots
            .iter()
            .map(|obs| {
                let wave = membership.map(|m| m.wave_of(&obs.name));
                let target = target(&ctx, wave);
                let pod = obs.pod.as_ref();
                let available = obs.online && pod.is_some_and(|p| p.ready && !p.terminating);
                let needs =
                    obs.online && target.is_some_and(|t| pod.is_none_or(|p| p.revision != t));
                let kind = needs.then(|| {
                    let bad = |rev: &str| {
                        rollout.is_some_and(|s| s.step == RolloutStep::Aborted && s.revision == rev)
                            || ctx.aborted == Some(rev)
                    };
                    match pod {
                        None => UpdateKind::Create,
                        Some(p) if bad(&p.revision) => UpdateKind::Rollback,
                        Some(_) if target == rollout.map(|s| s.revision.as_str()) => {
                            UpdateKind::Forward
                        }
                        Some(_) => UpdateKind::Converge,
                    }
                });
                let forward_to_rollout =
                    target.is_some() && target == rollout.map(|s| s.revision.as_str());
                let mut defer = match kind {
                    Some(UpdateKind::Forward | UpdateKind::Create)
                        if forward_to_rollout && ctx.paused =>
                    {
                        Some(DeferReason::Paused)
                    }
                    Some(UpdateKind::Forward | UpdateKind::Converge) => gate(ctx.plan, obs),
                    _ => None,
                };
                let in_wave = ctx.whole_fleet() || wave == Some(current);
                let mut skipped = false;
                if timed_out && in_wave && forward_to_rollout {
                    match (&defer, ctx.plan.gates.on_timeout) {
                        (Some(DeferReason::State(_)), OnTimeout::Force) => defer = None,
                        (Some(DeferReason::StopLock), OnTimeout::Force | OnTimeout::Skip)
                        | (Some(DeferReason::State(_)), OnTimeout::Skip) => skipped = true,
                        _ => {}
                    }
                }
                View {
                    obs,
                    hash: robot_hash(order_by, &obs.name),
                    wave,
                    target,
                    kind,
                    defer,
                    skipped,
                    available,
                }
            })
            .collect();
        Self { ctx, robots: views }
    }

    /// Online robots the current wave waits for: its members that should run the rollout's
    /// revision and were not skipped.
    pub fn required(&self) -> impl Iterator<Item = &View<'a>> {
        let current = self.ctx.current_wave();
        let whole = self.ctx.whole_fleet();
        let revision = self.ctx.state.map(|s| s.revision.as_str());
        self.robots.iter().filter(move |v| {
            v.obs.online
                && v.target.is_some()
                && v.target == revision
                && (whole || v.wave == Some(current))
                && !v.skipped
        })
    }

    /// Robots of the current wave (any state).
    pub fn members(&self) -> usize {
        let current = self.ctx.current_wave();
        let whole = self.ctx.whole_fleet();
        self.robots
            .iter()
            .filter(|v| whole || v.wave == Some(current))
            .count()
    }

    /// Every robot the current wave waits for runs the revision, Ready and confirmed.
    pub fn wave_complete(&self) -> bool {
        let Some(revision) = self.ctx.state.map(|s| s.revision.as_str()) else {
            return false;
        };
        self.required().all(|v| v.confirmed(revision))
    }

    /// Robots the current wave waits for that a gate defers.
    pub fn blocking_deferred(&self) -> Vec<&View<'a>> {
        self.required()
            .filter(|v| matches!(v.defer, Some(DeferReason::StopLock | DeferReason::State(_))))
            .collect()
    }

    /// Online robots on the rollout's revision that serve the fallback model.
    pub fn fallen_back(&self) -> Vec<&str> {
        let Some(revision) = self.ctx.state.map(|s| s.revision.as_str()) else {
            return Vec::new();
        };
        self.robots
            .iter()
            .filter(|v| v.obs.online)
            .filter(|v| {
                v.obs
                    .pod
                    .as_ref()
                    .is_some_and(|p| p.revision == revision && p.loaded == Loaded::Fallback)
            })
            .map(|v| v.obs.name.as_str())
            .collect()
    }

    /// Robots that may not be updated now, and why.
    pub fn deferrals(&self) -> Vec<Deferral> {
        self.robots
            .iter()
            .filter(|v| v.kind.is_some())
            .filter_map(|v| {
                v.defer.clone().map(|reason| Deferral {
                    robot: v.obs.name.clone(),
                    reason,
                })
            })
            .collect()
    }

    fn limit(&self, group: usize, size: usize) -> usize {
        match self.ctx.state {
            Some(_) => self
                .ctx
                .waves()
                .get(group)
                .map_or(MaxUnavailable::Count(1), |w| w.max_unavailable)
                .of(size),
            None if self.ctx.plan.all_at_once => usize::MAX,
            None => self
                .ctx
                .plan
                .waves
                .last()
                .map_or(MaxUnavailable::Count(1), |w| w.max_unavailable)
                .of(size),
        }
    }

    /// `maxUnavailable` of the current wave.
    pub fn wave_limit(&self) -> usize {
        self.limit(self.ctx.current_wave(), self.members())
    }

    /// The robots to update now: per wave (the whole fleet without a rollout), robots already
    /// unavailable first (replacing them costs no availability), then the smallest hashes while
    /// the wave's unavailable robots stay within its `maxUnavailable`.
    pub fn updates(&self) -> Vec<Update> {
        let mut groups: BTreeMap<usize, Vec<&View<'a>>> = BTreeMap::new();
        for v in &self.robots {
            groups.entry(v.wave.unwrap_or(0)).or_default().push(v);
        }
        let mut out = Vec::new();
        for (group, members) in groups {
            let unavailable = members
                .iter()
                .filter(|v| v.obs.online && !v.available)
                .count();
            let mut budget = self.limit(group, members.len()).saturating_sub(unavailable);
            let mut candidates: Vec<&&View<'a>> = members
                .iter()
                .filter(|v| v.kind.is_some() && v.defer.is_none())
                .collect();
            candidates.sort_by_key(|v| (v.available, v.hash));
            for v in candidates {
                if v.available {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                }
                let (Some(kind), Some(to)) = (v.kind, v.target) else {
                    continue;
                };
                out.push(Update {
                    robot: v.obs.name.clone(),
                    from: v.obs.pod.as_ref().map(|p| p.revision.clone()),
                    to: to.to_owned(),
                    kind,
                });
            }
        }
        out.sort_by(|a, b| a.robot.cmp(&b.robot));
        out
    }

    /// Robots by state.
    pub fn tally(&self) -> Tally {
        let revision = self
            .ctx
            .state
            .filter(|s| s.step != RolloutStep::Aborted)
            .map(|s| s.revision.as_str());
        let mut t = Tally {
            total: self.robots.len() as u32,
            ..Tally::default()
        };
        for v in &self.robots {
            let on = |rev: Option<&str>| rev.is_some_and(|r| v.serves(r));
            if !v.obs.online {
                t.offline += 1;
            } else if !v.available {
                t.updating += 1;
            } else if v.kind.is_some()
                && matches!(v.defer, Some(DeferReason::StopLock | DeferReason::State(_)))
            {
                t.deferred += 1;
            } else if revision.is_some_and(|r| v.confirmed(r)) {
                t.canary += 1;
            } else if on(revision) {
                t.unobserved += 1;
            } else if on(self.ctx.stable) {
                t.stable += 1;
            } else {
                t.pending += 1;
            }
        }
        t
    }
}

fn target<'a>(ctx: &Context<'a>, wave: Option<usize>) -> Option<&'a str> {
    let Some(s) = ctx.state else {
        return ctx.stable;
    };
    match s.step {
        RolloutStep::Aborted | RolloutStep::Preflight => ctx.stable,
        _ if s.all_at_once || s.full || ctx.stable.is_none() => Some(&s.revision),
        _ if wave.is_some_and(|w| w <= ctx.current_wave()) => Some(&s.revision),
        _ => ctx.stable,
    }
}

/// The robots whose metrics feed the current wave's analysis: the wave's online robots that
/// serve the rollout's revision (the whole rollout's after promote-full or all at once), at most
/// [`MAX_ANALYSIS_ROBOTS`] by hash.
pub fn analysis_robots(
    plan: &Plan,
    state: Option<&RolloutState>,
    stable: Option<&str>,
    robots: &[RobotObservation],
    now: &Time,
) -> Vec<String> {
    let Some(s) = state else {
        return Vec::new();
    };
    let ctx = Context {
        plan,
        state,
        stable,
        aborted: None,
        paused: false,
        now,
    };
    let fleet = Fleet::assess(ctx, robots);
    let names = fleet
        .required()
        .filter(|v| v.serves(&s.revision))
        .map(|v| v.obs.name.as_str());
    smallest(&s.revision, names, MAX_ANALYSIS_ROBOTS)
}

/// Stable robots for the safety-stop baseline: online robots serving the stable revision outside
/// the waves started so far, at most [`STABLE_SAMPLE`] by hash.
pub fn stable_sample(
    plan: &Plan,
    state: Option<&RolloutState>,
    stable: Option<&str>,
    robots: &[RobotObservation],
    now: &Time,
) -> Vec<String> {
    let Some(stable) = stable else {
        return Vec::new();
    };
    let ctx = Context {
        plan,
        state,
        stable: Some(stable),
        aborted: None,
        paused: false,
        now,
    };
    let fleet = Fleet::assess(ctx, robots);
    let names = fleet
        .robots
        .iter()
        .filter(|v| v.target == Some(stable) && v.serves(stable))
        .map(|v| v.obs.name.as_str());
    smallest(stable, names, STABLE_SAMPLE)
}
